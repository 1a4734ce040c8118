"""Board profiles: one JSON record per board in ``boards/``, validated into :class:`BoardProfile`.

A profile is data only (pyOCD-style): MCU, clock, memory budget, PlatformIO settings for online
users (standard platforms) and for offline builds (the local platform and a board definition),
cycle-counter method, upload method, emulator and the name of the board's platform. Behaviour
lives in that platform (``targets.platforms``) and in the other ``targets`` modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from edgecompile.errors import BoardError
from edgecompile.resources import resource_dir

Family = Literal["avr", "cortex-m", "native"]
_FAMILIES = ("avr", "cortex-m", "native")

#: The C kernel a core runs: chosen by the instruction set, not by the board family.
KernelBackend = Literal["avr", "armv6m", "armv7m", "armv7em", "native"]
_BACKEND_OF_CORE: dict[str, KernelBackend] = {
    "avr5": "avr", "avr6": "avr",
    "cortex-m0": "armv6m", "cortex-m0plus": "armv6m",
    "cortex-m3": "armv7m",
    "cortex-m4": "armv7em", "cortex-m7": "armv7em",
    "host": "native",
}


@dataclass(frozen=True)
class Emulator:
    kind: Literal["simavr", "qemu", "process"]
    machine: str


@dataclass(frozen=True)
class Upload:
    tool: str
    protocol: str
    speed: int | None = None


@dataclass(frozen=True)
class BoardProfile:
    """One board. Sizes in bytes; ``None`` means "no limit" (the host)."""

    id: str
    name: str
    family: Family
    mcu: str
    core: str
    f_cpu_hz: int | None
    flash_bytes: int | None
    ram_bytes: int | None
    stack_reserve_bytes: int
    cycle_counter: str
    upload: Upload | None
    emulator: Emulator | None
    platform: str  # a module of edgecompile.targets.platforms
    build_flags: tuple[str, ...] = ()
    online: dict[str, str] | None = None  # platformio.ini keys of the standard environment
    offline_board: str | None = None  # board id of the offline PlatformIO board file
    offline_board_json: dict[str, Any] | None = field(default=None, compare=False)
    aliases: tuple[str, ...] = ()  # former ids, still accepted by get_board

    @property
    def pio_env_online(self) -> str:
        """Name of the online environment in the generated platformio.ini."""
        return self.id.replace("-", "_")

    @property
    def pio_env_offline(self) -> str:
        """Name of the offline environment (local platform, Debian toolchains)."""
        return self.pio_env_online + "_offline"

    @property
    def kernel_backend(self) -> KernelBackend:
        """The fast kernel of this board's core (the reference kernel is always there too)."""
        return _BACKEND_OF_CORE[self.core]

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly record (what ``edgecompile boards --json`` writes)."""
        from edgecompile.targets.platforms import platform_for

        return {
            "id": self.id,
            "name": self.name,
            "family": self.family,
            "mcu": self.mcu,
            "core": self.core,
            "f_cpu_hz": self.f_cpu_hz,
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "stack_reserve_bytes": self.stack_reserve_bytes,
            "cycle_counter": self.cycle_counter,
            "upload": None if self.upload is None else {
                "tool": self.upload.tool, "protocol": self.upload.protocol,
                "speed": self.upload.speed},
            "emulator": None if self.emulator is None else {
                "kind": self.emulator.kind, "machine": self.emulator.machine},
            "platform": self.platform,
            "aliases": list(self.aliases),
            "harness": platform_for(self).firmware is not None,
            "pio_env_online": self.pio_env_online if self.online else None,
            "pio_env_offline": self.pio_env_offline,
            "online": self.online,
        }


def _req(rec: dict[str, Any], key: str, types: type | tuple[type, ...], path: Path) -> Any:
    if key not in rec:
        raise BoardError(f"board file {path.name}: missing key '{key}'")
    val = rec[key]
    if not isinstance(val, types):
        raise BoardError(f"board file {path.name}: '{key}' has the wrong type ({type(val).__name__})")
    return val


def profile_from_dict(rec: dict, path: Path = Path("<dict>")) -> BoardProfile:
    """Validate one board record (the JSON layout of ``boards/*.json``)."""
    fam = _req(rec, "family", str, path)
    if fam not in _FAMILIES:
        raise BoardError(f"board file {path.name}: family '{fam}' is not one of {', '.join(_FAMILIES)}")
    core = _req(rec, "core", str, path)
    if core not in _BACKEND_OF_CORE:
        raise BoardError(f"board file {path.name}: core '{core}' is not one of {', '.join(_BACKEND_OF_CORE)}")
    up = rec.get("upload")
    emu = rec.get("emulator")
    pio = _req(rec, "pio", dict, path)
    offline = pio.get("offline") or {}
    aliases = rec.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise BoardError(f"board file {path.name}: 'aliases' must be a list of board ids")
    for key in ("flash_bytes", "ram_bytes", "f_cpu_hz"):
        v = rec.get(key)
        if v is not None and (not isinstance(v, int) or v <= 0):
            raise BoardError(f"board file {path.name}: '{key}' must be a positive integer or null")
    return BoardProfile(
        id=_req(rec, "id", str, path),
        name=_req(rec, "name", str, path),
        family=fam,
        mcu=_req(rec, "mcu", str, path),
        core=core,
        f_cpu_hz=rec.get("f_cpu_hz"),
        flash_bytes=rec.get("flash_bytes"),
        ram_bytes=rec.get("ram_bytes"),
        stack_reserve_bytes=int(rec.get("stack_reserve_bytes", 0)),
        cycle_counter=_req(rec, "cycle_counter", str, path),
        upload=None if up is None else Upload(up["tool"], up["protocol"], up.get("speed")),
        emulator=None if emu is None else Emulator(emu["kind"], emu["machine"]),
        platform=_req(rec, "platform", str, path),
        build_flags=tuple(rec.get("build_flags", ())),
        online=pio.get("online"),
        offline_board=offline.get("board"),
        offline_board_json=offline.get("board_json"),
        aliases=tuple(aliases),
    )


def boards_dir() -> Path:
    return resource_dir("boards")


@cache
def _all_boards() -> tuple[BoardProfile, ...]:
    out = []
    for path in sorted(boards_dir().glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BoardError(f"board file {path.name} is unreadable: {exc}") from exc
        prof = profile_from_dict(rec, path)
        if prof.id != path.stem:
            raise BoardError(f"board file {path.name} holds board id '{prof.id}' (must match the file name)")
        out.append(prof)
    seen: dict[str, str] = {}
    for prof in out:
        for name in (prof.id, *prof.aliases):
            if name in seen:
                raise BoardError(f"board id '{name}' is claimed by both '{seen[name]}' and "
                                 f"'{prof.id}'")
            seen[name] = prof.id
    return tuple(sorted(out, key=lambda b: b.id))


def list_boards() -> list[BoardProfile]:
    """Every known board, sorted by id."""
    return list(_all_boards())


def board_ids() -> list[str]:
    return [b.id for b in _all_boards()]


def get_board(board_id: str | BoardProfile) -> BoardProfile:
    """The profile of ``board_id`` (an id or a former id, e.g. ``mps2-an385`` for
    ``mps2_an385``); an unknown id raises :class:`BoardError` listing valid ids."""
    if isinstance(board_id, BoardProfile):
        return board_id
    for b in _all_boards():
        if b.id == board_id:
            return b
    for b in _all_boards():
        if board_id in b.aliases:
            return b
    raise BoardError(f"unknown board '{board_id}'; valid boards: {', '.join(board_ids())}")


def render_boards(boards: list[BoardProfile] | None = None) -> str:
    """The table printed by ``edgecompile boards``."""
    boards = list_boards() if boards is None else boards

    def kb(n: int | None) -> str:
        if n is None:
            return "host"
        return f"{n / 1024:g} KB" if n % 1024 == 0 else f"{n} B"

    rows = [("id", "name", "core", "flash", "RAM", "emulator", "online platform")]
    for b in boards:
        emu = "-" if b.emulator is None else f"{b.emulator.kind}:{b.emulator.machine}"
        online = "-" if not b.online else b.online.get("platform", "-")
        rows.append((b.id, b.name, b.core, kb(b.flash_bytes), kb(b.ram_bytes), emu, online))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
