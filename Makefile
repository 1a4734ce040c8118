# Two commands on a fresh Debian machine:  make demo   and   make test
VENV   ?= .venv
PY     := $(VENV)/bin/python
# What edgecompile needs (and `make demo` uses): the AVR and Cortex-M toolchains, libsimavr
# (edgecompile compiles its own simavr host against it), QEMU, avrdude (flashing AVR boards),
# Debian's Arduino AVR core (Arduino-framework builds, Optiboot), a host C compiler with libc
# headers, and venv for Python.
APT_PACKAGES := gcc-avr avr-libc binutils-avr gcc-arm-none-eabi libnewlib-arm-none-eabi \
	libsimavr-dev qemu-system-arm avrdude arduino-core-avr gcc libc6-dev python3-venv openocd
# What only the tests need on top: the Arduino IDE's builder, simavr, clang, strace, and a
# headless browser for the HTML reports.
APT_TEST_PACKAGES := arduino-builder arduino-ctags simavr clang strace chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pytest exits 5 when a marker selects no tests: that is not a failure.
PYTEST = $(PY) -m pytest -q $(1) || [ $$? -eq 5 ]

.PHONY: demo test test-fast test-all setup apt apt-test venv lint clean
.DEFAULT_GOAL := demo

define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

apt:
	$(call apt_install,$(APT_PACKAGES))

apt-test:
	$(call apt_install,$(APT_TEST_PACKAGES))

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

setup: apt venv

demo: setup
	$(PY) examples/demo.py

lint: venv
	$(PY) -m ruff check edgecompile tests benchmarks examples
	$(PY) -m mypy

# Tiers: test-fast (no emulator, PlatformIO or full build), test (what CI runs: all but the long
# sweeps marked slowest), test-all (everything).
test-fast: setup apt-test lint
	$(call PYTEST,-m "not slow and not slowest")

test: setup apt-test lint
	$(call PYTEST,-m "not slowest")

test-all: setup apt-test lint
	$(call PYTEST,)

clean:
	rm -rf $(VENV) build dist .pytest_cache
