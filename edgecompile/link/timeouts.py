"""Every timeout and retry count of the serial link, in one place.

Override for one process with environment variables ``EDGECOMPILE_<NAME>`` (e.g.
``EDGECOMPILE_HANDSHAKE_WINDOW_S=8`` for a board whose bootloader waits longer). Each value
must be a number inside the field's range (:data:`LIMITS`); anything else is a one-line error.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any

from edgecompile.errors import ConfigError


@dataclass(frozen=True)
class Timeouts:
    #: Keep sending INFO for this long before calling a port silent (covers a board that resets
    #: when the port opens: Optiboot waits ~1.4 s before the application starts).
    handshake_window_s: float = 4.0
    #: Wait this long for one INFO reply before sending the next.
    handshake_reply_s: float = 0.5
    #: Base wait for any reply (transfer time and compute time are added on top).
    reply_base_s: float = 1.0
    #: Extra wait per time step in a STEP frame (a big model on a 16 MHz AVR: ~10 ms/step).
    per_step_s: float = 0.1
    #: Bytes per second assumed for the wire (115200 8N1) when scaling by frame size.
    wire_bytes_per_s: float = 11520.0
    #: After an unreadable reply, wait this long for a good one before sending again.
    bad_frame_grace_s: float = 0.25
    #: Retransmissions of one frame after a CRC or framing error.
    frame_retries: int = 3
    #: Restarts of one whole sequence after a device reset or a broken sequence.
    sequence_attempts: int = 3
    #: Poll interval of a blocking read (a read never blocks longer than this at once).
    poll_s: float = 0.05
    #: Emulator start-up (process up, pty/TCP port ready).
    emulator_start_s: float = 15.0
    #: Emulator shutdown: SIGTERM, then SIGKILL after this long.
    emulator_stop_s: float = 3.0
    #: ``verify --emulate`` runs this many instances of the emulated board and spreads the
    #: sequences over them (0: as many as pay off on this machine, at most one per 32 sequences).
    emulator_instances: int = 0

    def reply_timeout(self, nbytes: int, steps: int = 0) -> float:
        """Allowed time for one request of ``nbytes`` on the wire computing ``steps`` steps."""
        return self.reply_base_s + steps * self.per_step_s + 2.0 * nbytes / self.wire_bytes_per_s


#: Allowed range of each override: (smallest, largest, smallest excluded).
LIMITS: dict[str, tuple[float, float, bool]] = {
    "handshake_window_s": (0.0, 3600.0, True),
    "handshake_reply_s": (0.0, 600.0, True),
    "reply_base_s": (0.0, 3600.0, True),
    "per_step_s": (0.0, 600.0, False),
    "wire_bytes_per_s": (0.0, 1e9, True),
    "bad_frame_grace_s": (0.0, 600.0, False),
    "frame_retries": (0, 100, False),
    "sequence_attempts": (1, 100, False),
    "poll_s": (0.0, 5.0, True),
    "emulator_start_s": (0.0, 3600.0, True),
    "emulator_stop_s": (0.0, 600.0, False),
    "emulator_instances": (0, 64, False),
}
#: Values of ``EDGECOMPILE_OFFLINE`` (empty or unset: probe the PlatformIO registry).
OFFLINE_VALUES = ("1", "true", "yes", "0", "false", "no")


def _parse(name: str, kind: type, raw: str) -> float | int:
    """One override, checked against :data:`LIMITS`; a bad value raises :class:`ConfigError`."""
    lo, hi, lo_open = LIMITS[name]
    unit = "an integer" if kind is int else "a number of seconds" if name.endswith("_s") else "a number"
    allowed = f"{unit} {'>' if lo_open else '>='} {lo:g} and <= {hi:g}"
    var = "EDGECOMPILE_" + name.upper()
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: expected {allowed}") from None
    if not math.isfinite(value) or value < lo or (lo_open and value == lo) or value > hi:
        raise ConfigError(f"{var}={raw!r}: expected {allowed}")
    return value


def from_env(base: Timeouts | None = None) -> Timeouts:
    """``Timeouts`` with any ``EDGECOMPILE_<FIELD>`` environment overrides applied; a value
    that is not a number in the field's range raises :class:`ConfigError` (exit status 2)."""
    base = base or Timeouts()
    changes: dict[str, Any] = {}
    for f in fields(base):
        raw = os.environ.get("EDGECOMPILE_" + f.name.upper())
        if raw is not None:
            changes[f.name] = _parse(f.name, type(getattr(base, f.name)), raw)
    return dataclasses.replace(base, **changes)


def check_environment() -> None:
    """Check every ``EDGECOMPILE_*`` value with a fixed form (the timeouts above and
    ``EDGECOMPILE_OFFLINE``) before a command starts; raises :class:`ConfigError`."""
    from_env()
    raw = os.environ.get("EDGECOMPILE_OFFLINE")
    if raw is not None and raw.strip() and raw.strip().lower() not in OFFLINE_VALUES:
        raise ConfigError(f"EDGECOMPILE_OFFLINE={raw!r}: expected one of {', '.join(OFFLINE_VALUES)} "
                          "(or empty: probe the registry)")


DEFAULT = Timeouts()
