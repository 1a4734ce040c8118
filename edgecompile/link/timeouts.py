"""Every timeout and retry count of the serial link, in one place.

Override for one process with environment variables ``EDGECOMPILE_<NAME>`` (e.g.
``EDGECOMPILE_HANDSHAKE_WINDOW_S=8`` for a board whose bootloader waits longer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


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

    def reply_timeout(self, nbytes: int, steps: int = 0) -> float:
        """Allowed time for one request of ``nbytes`` on the wire computing ``steps`` steps."""
        return self.reply_base_s + steps * self.per_step_s + 2.0 * nbytes / self.wire_bytes_per_s


def from_env(base: Timeouts | None = None) -> Timeouts:
    """``Timeouts`` with any ``EDGECOMPILE_<FIELD>`` environment overrides applied."""
    base = base or Timeouts()
    changes = {}
    for f in fields(base):
        raw = os.environ.get("EDGECOMPILE_" + f.name.upper())
        if raw is not None:
            changes[f.name] = type(getattr(base, f.name))(raw)
    return Timeouts(**{**{f.name: getattr(base, f.name) for f in fields(base)}, **changes})


DEFAULT = Timeouts()
