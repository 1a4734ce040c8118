"""Board profiles, generated project files, PlatformIO core set-up, budget arithmetic (fast)."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from edgecompile.cli import main
from edgecompile.errors import BoardError
from edgecompile.resources import resource_dir
from edgecompile.targets.boards import get_board, list_boards, profile_from_dict
from edgecompile.targets.budget import BudgetReport, check_budget
from edgecompile.targets.platformio import pio_versions, prepare_core_dir
from edgecompile.targets.platforms import platform_for, platform_names
from edgecompile.targets.project import project_files

from .targets_helpers import FIXTURES

REQUIRED = ["uno", "nano", "megaatmega2560", "native", "lm3s6965evb", "mps2_an385", "mps2_an386",
            "mps2_an500", "nano33ble", "nucleo_f401re", "bluepill_f103c8", "pico"]
EMULATED = ["lm3s6965evb", "mps2_an385", "mps2_an386", "mps2_an500"]


def test_every_required_board_has_a_valid_profile():
    ids = [b.id for b in list_boards()]
    assert ids == sorted(ids)
    for bid in REQUIRED:
        b = get_board(bid)
        assert b.id == bid and b.name and b.cycle_counter
        assert b.offline_board_json is not None or b.family == "native"
        if b.family != "native":
            assert b.flash_bytes > 0 and b.ram_bytes > 0 and b.f_cpu_hz > 0
    for bid in EMULATED:
        assert get_board(bid).emulator.kind == "qemu"
        assert get_board(bid).emulator.machine == bid.replace("_", "-")
    for bid in ("nano33ble", "nucleo_f401re", "bluepill_f103c8", "pico"):
        assert get_board(bid).online["platform"] in ("nordicnrf52", "ststm32", "raspberrypi")


@pytest.mark.parametrize("board", [b.id for b in list_boards() if b.flash_bytes is not None])
def test_each_board_budget_reaches_the_linked_size_check(board):
    """The budget of the board's JSON is what the exported project's offline link checks:
    PlatformIO's size check reads maximum_size/maximum_ram_size of the project's board file, and
    the Cortex-M linker script keeps ec_stack_size free."""
    b = get_board(board)
    files = project_files(b, "tiny", harness=False)
    pio_board = json.loads(files[f"boards/{b.offline_board}.json"])
    assert pio_board["upload"]["maximum_size"] == b.flash_bytes
    assert pio_board["upload"]["maximum_ram_size"] == b.ram_bytes
    if b.family == "cortex-m":
        assert pio_board["build"]["ec_stack_size"] == b.stack_reserve_bytes
        assert "__stack_size = @STACK_SIZE@" in files[".edgecompile/platform/cortexm/cortexm.ld.in"].decode()
    over = BudgetReport(b.id, "linked", b.flash_bytes + 1, b.flash_bytes, 0, b.ram_bytes,
                        b.stack_reserve_bytes)
    with pytest.raises(BoardError, match=f"the board has {b.flash_bytes} B"):
        check_budget(over)


@pytest.mark.parametrize("board", [b.id for b in list_boards()])
def test_each_board_platform_accepts_its_json(board):
    b = get_board(board)
    platform = platform_for(b)
    assert b.platform in platform_names()
    assert b.cycle_counter in platform.cycle_counters
    if platform.firmware is not None:
        assert (resource_dir("firmware") / platform.firmware / "ech_hal_config.h").is_file()
        assert {f"src/{n}" for n in ("ech_main.c", "ech_hal_config.h")} <= set(platform.harness_files())
    if b.emulator is not None:
        assert platform.emulator_argv(FIXTURES / "x.elf", 1234)


def test_platform_refuses_what_it_does_not_support():
    rec = json.loads((resource_dir("boards") / "mps2_an385.json").read_text())
    rec["cycle_counter"] = "timer1"
    with pytest.raises(BoardError, match="cycle_counter 'timer1' is not one of systick-icount"):
        platform_for(profile_from_dict(rec))
    rec["cycle_counter"], rec["platform"] = "systick-icount", "pic32"
    with pytest.raises(BoardError, match="platform 'pic32' is not one of"):
        platform_for(profile_from_dict(rec))
    rec["platform"] = "lm3s"  # an LM3S HAL cannot run the MPS2 machine
    with pytest.raises(BoardError, match="runs the QEMU machines lm3s6965evb"):
        platform_for(profile_from_dict(rec))


def test_cycle_units_come_from_the_board_platform():
    qemu = platform_for("mps2_an385").cycle_unit("systick", 25e6, emulated=True)
    assert (qemu.scale, qemu.hz) == (40.0, None) and "40 per count" in qemu.name
    assert platform_for("lm3s6965evb").cycle_unit("systick", 50e6, emulated=True).scale == 80.0
    avr = platform_for("uno").cycle_unit("avr-timer1", 16e6, emulated=True)
    assert (avr.scale, avr.hz, avr.name) == (1.0, 16e6, "cpu cycles (AVR Timer1), simavr cycle-exact")
    silicon = platform_for("nucleo_f401re").cycle_unit("dwt-cyccnt", 84e6, emulated=False)
    assert (silicon.scale, silicon.name) == (1.0, "cpu cycles (DWT CYCCNT)")


def test_unknown_board_lists_the_valid_ids():
    with pytest.raises(BoardError) as err:
        get_board("uno2")
    msg = str(err.value)
    assert "uno2" in msg and all(bid in msg for bid in REQUIRED)


def test_profile_validation_names_the_problem(tmp_path):
    rec = json.loads((resource_dir("boards") / "uno.json").read_text())
    rec["family"] = "pic"
    with pytest.raises(BoardError, match="family 'pic'"):
        profile_from_dict(rec)
    del rec["pio"]
    rec["family"] = "avr"
    with pytest.raises(BoardError, match="missing key 'pio'"):
        profile_from_dict(rec)


def test_boards_command_lists_memory_and_emulator(tmp_path):
    out = tmp_path / "boards.json"
    res = CliRunner().invoke(main, ["boards", "--json", str(out)])
    assert res.exit_code == 0, res.output
    for bid in REQUIRED:
        assert bid in res.output
    assert "qemu:mps2-an386" in res.output and "simavr:atmega328p" in res.output
    lines = res.output.splitlines()
    assert "flash KiB" in lines[0] and "RAM KiB" in lines[0]  # one unit for every size column
    uno_line = next(ln for ln in lines if ln.startswith("uno "))
    assert " 31.5 " in uno_line and " 2.0 " in uno_line and "pio" in uno_line
    assert "baremetal, arduino " in uno_line
    nucleo = next(ln for ln in lines if ln.startswith("nucleo_f401re "))
    assert "arduino (online)" in nucleo and "drive, openocd" in nucleo
    data = json.loads(out.read_text())
    recs = {b["id"]: b for b in data["boards"]}
    assert set(REQUIRED) <= set(recs)
    assert recs["uno"]["flash_bytes"] == 32256 and recs["uno"]["ram_bytes"] == 2048
    assert recs["mps2_an500"]["emulator"] == {"kind": "qemu", "machine": "mps2-an500"}
    caps = {bid: r["capabilities"] for bid, r in recs.items()}
    assert caps["uno"] == {"harness": ["baremetal", "arduino"], "arduino_offline": True,
                           "emulator": {"kind": "simavr", "machine": "atmega328p", "twin": False},
                           "flash": ["pio"], "upload_tool": "avrdude"}
    assert caps["mps2_an500"]["flash"] == [] and caps["mps2_an500"]["upload_tool"] is None
    assert caps["nucleo_f401re"]["emulator"]["twin"] is True
    assert caps["pico"]["flash"] == ["drive", "pyocd", "openocd"] and caps["pico"]["emulator"] is None
    assert caps["native"]["flash"] == []


def test_project_files_are_deterministic_and_relative():
    a = project_files("uno", "tiny")
    b = project_files(get_board("uno"), "tiny")
    assert a == b and list(a) == sorted(a)
    ini = a["platformio.ini"].decode()
    assert "[env:uno]\nboard = uno\nplatform = atmelavr\n" in ini
    assert "[env:uno_offline]\nplatform = symlink://.edgecompile/platform\nboard = ec_uno\n" in ini
    assert "default_envs = uno\n" in ini and "model = tiny" in ini
    for path, data in a.items():
        assert not path.startswith("/") and ".." not in path
        if path.endswith((".ini", ".json", ".py")):
            text = data.decode()
            assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text, path
    assert json.loads(a["boards/ec_uno.json"])["build"]["mcu"] == "atmega328p"
    assert ".edgecompile/platform/platform.json" in a
    assert not any("/cortexm/" in k for k in a)  # the Cortex-M start-up is not an AVR's
    assert ".edgecompile/platform/cortexm/startup.c" in project_files("mps2_an385", "tiny")


def test_project_files_take_the_whole_harness_for_the_family():
    fw = resource_dir("firmware")
    for bid in ("uno", "mps2_an385", "lm3s6965evb", "native"):
        board = get_board(bid)
        files = project_files(board, "tiny")
        want = {f"src/{p.name}" for p in (fw / "harness").glob("*") if p.suffix in (".c", ".h", ".def")}
        want |= {f"src/{p.name}" for p in (fw / platform_for(board).firmware).glob("*")}
        assert want and want == {k for k in files if k.startswith("src/")}


def test_board_without_offline_standard_platform_has_only_the_offline_env():
    ini = project_files("mps2_an386", "m").get("platformio.ini").decode()
    assert "[env:mps2_an386_offline]" in ini and "default_envs = mps2_an386_offline" in ini
    assert ini.count("[env:") == 1
    assert '"cpu": "cortex-m4"' in project_files("mps2_an386", "m")["boards/ec_mps2_an386.json"].decode()


def test_project_files_refusals():
    with pytest.raises(BoardError, match="C identifier"):
        project_files("uno", "my-model")
    generic = json.loads((resource_dir("boards") / "pico.json").read_text())
    generic["platform"] = "cortexm"  # the Arm base platform: the library only, no harness
    with pytest.raises(BoardError, match="no firmware harness"):
        project_files(profile_from_dict(generic), "m")
    with pytest.raises(BoardError, match="AVR"):
        project_files("lm3s6965evb", "m", harness=False, framework="arduino")
    assert "src/ech_main.c" not in project_files("pico", "m", harness=False)


def test_core_dir_has_the_scons_shim_and_pinned_appstate(tmp_path):
    core = prepare_core_dir(tmp_path / "core")
    pio, scons = pio_versions()
    assert scons.startswith("4.4110")
    piopm = json.loads((core / "packages/tool-scons/.piopm").read_text())
    assert piopm["spec"]["owner"] == "platformio" and piopm["version"] == scons
    assert json.loads((core / "appstate.json").read_text())["last_version"] == pio
    before = (core / "appstate.json").stat().st_mtime_ns
    prepare_core_dir(core)  # idempotent
    assert (core / "appstate.json").stat().st_mtime_ns == before


def test_section_classification_per_family():
    secs = [(".text", 100), (".progmem.data", 50), (".data", 10), (".rodata", 4), (".bss", 20),
            (".noinit", 2), (".comment", 99), (".debug_info", 500)]
    assert platform_for("uno").classify(secs) == (164, 36)
    assert platform_for("mps2_an385").classify(secs) == (114, 32)  # no PROGMEM on Arm


def _report(flash, ram, parts=None):
    return BudgetReport("uno", "estimate", flash, 32256, ram, 2048, 512, parts or {
        "lib/m": {"flash": flash - 1000, "ram": ram // 2}, "harness": {"flash": 1000, "ram": ram // 2}})


def test_budget_refusal_names_what_to_change(tmp_path):
    assert check_budget(_report(32256, 1536)).ok  # exactly at the limits fits
    with pytest.raises(BoardError) as err:
        check_budget(_report(32257, 100))
    msg = str(err.value)
    assert "32257 B of flash" in msg and "32256" in msg
    assert "rank" in msg and "sparsity" in msg and "hidden size" in msg
    with pytest.raises(BoardError) as err:
        check_budget(_report(2000, 1537))
    assert "1537 B of static RAM + 512 B of stack" in str(err.value)
    assert "hidden size" in str(err.value)


def test_budget_refusal_suggests_8_bit_weights_for_a_16_bit_library():
    with pytest.raises(BoardError, match="--bits 8"):
        check_budget(_report(40000, 100), 16)


def _cc(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, (cmd, res.stderr)


STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Os", "-c", "-o", "/dev/null"]


def test_standin_library_is_clean_c99():
    src = FIXTURES / "standin" / "lib" / "tiny" / "src" / "tiny.c"
    _cc(["gcc", *STRICT, str(src)])
    _cc(["avr-gcc", "-mmcu=atmega328p", *STRICT, str(src)])
    _cc(["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", *STRICT, str(src)])


@pytest.mark.parametrize("machine", [["-mcpu=cortex-m0plus"], ["-mcpu=cortex-m3"],
                                     ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
                                     ["-mcpu=cortex-m7"]])
def test_cortexm_startup_and_syscalls_are_clean_c99(machine):
    for name in ("startup.c", "syscalls.c"):
        _cc(["arm-none-eabi-gcc", *machine, "-mthumb", *STRICT,
             str(resource_dir("firmware") / "cortexm" / name)])


def test_offline_choice(monkeypatch):
    from edgecompile.targets import platformio as pio

    def no_probe(*_a, **_k):
        raise AssertionError("the registry must not be probed")

    monkeypatch.setattr(pio, "registry_reachable", no_probe)
    assert pio.choose_offline(True) is True and pio.choose_offline(False) is False
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")
    assert pio.choose_offline(None) is True
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "0")
    assert pio.choose_offline(None) is False
