"""Whether this machine can run a command without network (``unshare -n``)."""

from __future__ import annotations

import shutil
import subprocess


def unshare_ok() -> bool:
    """True when ``unshare -n`` works here (root, or user namespaces allowed)."""
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
