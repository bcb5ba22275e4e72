"""Process housekeeping for the command line: SIGTERM handled like SIGINT, worker pools
stopped on interruption, and stale temporaries of dead medistill processes cleared.

A signal raises :class:`Interrupted` (a ``BaseException``, so neither click nor typer
swallows it) in the main thread; every ``with`` block on the way out cleans up after
itself (the run folder's temporary sibling, temporary FHIR exports). A second signal of
the same kind falls back to the default action (immediate exit).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

TEMP_PREFIX = "medistill-"


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise)


def stop_workers() -> None:
    """Stop joblib's reusable process pool now, instead of letting idle workers linger
    for minutes after an interrupted run."""
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None) if module else None
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)   # killed first, so the wait is short


def temp_prefix(kind: str) -> str:
    """Prefix of a temporary folder of this process, e.g. ``medistill-fhir-1234-``: the
    pid lets a later start tell a dead process's leftovers from a live one's."""
    return f"{TEMP_PREFIX}{kind}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid still runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale_temp_dirs(folder: str | Path | None = None) -> list[Path]:
    """Remove ``medistill-KIND-PID-*`` folders in the temporary folder that belong to this
    user and to a process that no longer runs. Returns what was removed."""
    folder = Path(folder or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        parts = entry.name.split("-")
        if (not entry.name.startswith(TEMP_PREFIX) or len(parts) < 4 or not parts[2].isdigit()
                or entry.is_symlink() or not entry.is_dir()):
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = int(parts[2])
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


__all__ = ["Interrupted", "clear_stale_temp_dirs", "install_signal_handlers", "stop_workers",
           "temp_prefix"]
