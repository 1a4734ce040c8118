# Two commands on a fresh Debian machine:  make demo   and   make test
VENV   ?= .venv
PY     := $(VENV)/bin/python
EC     := $(VENV)/bin/edgecompile
APT_PACKAGES := gcc-avr avr-libc binutils-avr arduino-core-avr gcc-arm-none-eabi \
	libnewlib-arm-none-eabi simavr libsimavr-dev libsimavrparts1 qemu-system-arm avrdude \
	gcc clang make strace
# Test-only packages: a headless browser for the HTML report tests, the Arduino IDE's builder.
APT_TEST_PACKAGES := chromium chromium-driver arduino-builder arduino-ctags
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup apt apt-test venv lint clean
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

test: setup apt-test
	$(PY) -m ruff check edgecompile tests benchmarks examples
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist .pytest_cache
