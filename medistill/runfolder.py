"""Atomic run folders: everything is written to a temporary sibling folder, then swapped
into place. A failed run leaves nothing half-written, and nothing the tool did not write is
ever removed.

- :func:`check_destination` decides, before any work, whether ``--out`` may be written:
  a missing or empty folder, or an unchanged medistill run folder (its manifest verifies
  and it holds nothing else). Anything else is refused with what differs.
- :func:`verify_manifest` compares a folder with its ``manifest.json``.
- :class:`AtomicRunFolder` writes into ``.NAME.tmp-PID-XXXX`` and swaps it with the old
  folder in one ``renameat2(RENAME_EXCHANGE)`` where the kernel has it (Linux), so there is
  no moment without a folder; elsewhere two renames. Stale temporaries of dead medistill
  processes are cleared at the next start.

Files and folders are created with the process's umask (``umask 077`` keeps a run private).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from medistill.errors import RunFolderError
from medistill.housekeeping import pid_alive

MANIFEST = "manifest.json"
TMP_MARK = ".medistill-tmp"
MAX_LISTED = 5


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every regular file in ``folder`` (except the manifest itself)."""
    hashes = {p.relative_to(folder).as_posix(): sha256_of(p) for p in sorted(folder.rglob("*"))
              if p.is_file() and not p.is_symlink() and p.name not in (MANIFEST, TMP_MARK)}
    (folder / MANIFEST).write_text(json.dumps({"sha256": hashes}, indent=2))
    return hashes


def _listing(names: tuple[str, ...]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


@dataclass(frozen=True)
class ManifestCheck:
    """How a folder compares with its ``manifest.json``."""

    folder: Path
    recorded: dict[str, str]
    has_manifest: bool = True
    missing: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    symlinks: tuple[str, ...] = ()
    unreadable: str | None = None

    @property
    def ok(self) -> bool:
        """The manifest verifies and the folder holds nothing else."""
        return (self.has_manifest and self.unreadable is None and not self.missing
                and not self.changed and not self.extra and not self.symlinks)

    def describe(self) -> str:
        """What differs, in one sentence (file names only, never contents)."""
        if not self.has_manifest:
            return "it has no manifest.json"
        if self.unreadable:
            return f"its manifest.json is unreadable ({self.unreadable})"
        parts = [f"{label} {_listing(names)}" for label, names in (
            ("changed since the run:", self.changed), ("missing:", self.missing),
            ("not written by medistill:", self.extra), ("symbolic links:", self.symlinks))
            if names]
        return "; ".join(parts) or "nothing differs"


def _read_manifest(folder: Path) -> dict[str, str]:
    raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    hashes = raw.get("sha256") if isinstance(raw, dict) else None
    if not isinstance(hashes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
        raise ValueError("no 'sha256' mapping of file names to hashes")
    bad = [k for k in hashes if k.startswith("/") or ".." in Path(k).parts]
    if bad:
        raise ValueError("it lists paths outside the folder")
    return hashes


def verify_manifest(folder: str | Path) -> ManifestCheck:
    """Compare ``folder`` with its ``manifest.json``: changed, missing and extra files,
    and symbolic links (never followed)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file() or (folder / MANIFEST).is_symlink():
        return ManifestCheck(folder, {}, has_manifest=False)
    try:
        recorded = _read_manifest(folder)
    except (OSError, ValueError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        return ManifestCheck(folder, {}, unreadable=reason)
    implied_dirs = {p.as_posix() for name in recorded for p in Path(name).parents
                    if p != Path(".")}
    missing, changed, extra, links = [], [], [], []
    present = set()
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            links.append(name)
        elif path.is_dir():
            if name not in implied_dirs:
                extra.append(name + "/")
        elif name != MANIFEST:
            present.add(name)
            if name not in recorded:
                extra.append(name)
            elif sha256_of(path) != recorded[name]:
                changed.append(name)
    missing = [n for n in recorded if n not in present and n not in links]
    return ManifestCheck(folder, recorded, missing=tuple(missing), changed=tuple(changed),
                         extra=tuple(extra), symlinks=tuple(links))


def require_verified(folder: str | Path, *, purpose: str) -> dict[str, str]:
    """The manifest's hashes if ``folder`` is an unchanged run folder; else
    :class:`RunFolderError` naming what differs. ``purpose`` ends the message's first
    clause (e.g. "re-judge it")."""
    check = verify_manifest(folder)
    if not check.ok:
        raise RunFolderError(
            f"'{folder}' does not verify against its manifest, so medistill will not "
            f"{purpose}: {check.describe()}.",
            hint="Use an untouched run folder (re-run the pipeline, or restore the changed "
                 "files); keep sign-offs and attachments outside the run folder.")
    return check.recorded


def _contains_cwd(path: Path) -> bool:
    cwd, target = Path.cwd().resolve(), path.resolve()
    return cwd == target or target in cwd.parents


def check_destination(path: str | Path) -> None:
    """Refuse, before any work, an ``--out`` that the run may not replace.

    Allowed: a path that does not exist yet, an empty folder, or an unchanged medistill run
    folder. Refused: a file, a symbolic link, the current folder (or one containing it), and
    any other non-empty folder, with what differs.
    """
    dest = Path(path)
    if dest.is_symlink():
        raise RunFolderError(f"--out '{dest}' is a symbolic link; medistill writes run folders "
                             "only to real paths.", hint="Give the link's target instead.")
    if dest.exists() and not dest.is_dir():
        raise RunFolderError(f"--out '{dest}' exists and is a file, not a folder.",
                             hint="Choose a folder path for the run.")
    if _contains_cwd(dest):
        raise RunFolderError(
            f"--out '{dest}' is the current folder or contains it; a run folder is replaced "
            "as a whole, so it cannot be the folder you are working in.",
            hint="Give a new subfolder, e.g. --out runs/my-run.")
    ancestor = dest.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out '{dest}': cannot create it inside '{ancestor}' (not a "
                             "writable folder).")
    try:
        if not dest.exists() or not any(dest.iterdir()):
            return
        check = verify_manifest(dest)
    except OSError as error:
        raise RunFolderError(f"--out '{dest}' cannot be read ({error.strerror or error}); "
                             "refusing to write over it.") from None
    if check.ok:
        return
    if not check.has_manifest:
        raise RunFolderError(
            f"--out '{dest}' is not empty and is not a medistill run folder (no "
            "manifest.json); refusing to overwrite it.",
            hint="Choose another --out folder, or empty this one yourself.")
    raise RunFolderError(
        f"--out '{dest}' is a medistill run folder that was changed after its run "
        f"({check.describe()}); refusing to replace it, since that would delete files "
        "medistill did not write.",
        hint="Move the added or edited files elsewhere, or choose another --out folder.")


def _is_stale(folder: Path) -> bool:
    """A temporary of a medistill process that is no longer running."""
    try:
        pid = int(json.loads((folder / TMP_MARK).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not ours (or not readable): never touched
    return pid != os.getpid() and not pid_alive(pid)


def clear_stale_temporaries(parent: str | Path) -> list[Path]:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` folders in ``parent`` that carry
    medistill's marker and whose process is gone. Returns what was removed."""
    parent, removed = Path(parent), []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        if (entry.name.startswith(".") and (".tmp-" in entry.name or ".old-" in entry.name)
                and entry.is_dir() and not entry.is_symlink() and _is_stale(entry)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def remove_written(folder: Path, listed: dict[str, str]) -> bool:
    """Delete the files a run wrote (those in its manifest, and the manifest), then the
    folders left empty. Anything else stays. True if ``folder`` is gone."""
    for name in listed:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)
    (folder / TMP_MARK).unlink(missing_ok=True)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()),
                      key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


class AtomicRunFolder:
    """Context manager: ``with AtomicRunFolder(out) as tmp: write into tmp``.

    On entry the destination is checked (:func:`check_destination`) and stale temporaries
    are cleared. On success the manifest is written and ``tmp`` takes the place of ``out``;
    an earlier run folder there is removed file by file, only what its manifest lists. On
    error (including an interrupt) ``tmp`` is removed and ``out`` is untouched.
    """

    def __init__(self, destination: Path) -> None:
        self.destination = Path(destination)
        self.notes: list[str] = []

    def __enter__(self) -> Path:
        dest = self.destination
        check_destination(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_temporaries(dest.parent)
        self.tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        (self.tmp / TMP_MARK).write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        (self.tmp / TMP_MARK).unlink(missing_ok=True)
        write_manifest(self.tmp)
        self._swap()

    def _swap(self) -> None:
        dest = self.destination
        try:
            check_destination(dest)
        except RunFolderError as error:
            kept = dest.with_name(f"{dest.name}.new-{time.strftime('%Y%m%dT%H%M%S')}")
            os.rename(self.tmp, kept)
            raise RunFolderError(f"{error.message} It changed during the run; the new run "
                                 f"was kept at '{kept}'.") from None
        if not dest.exists():
            os.rename(self.tmp, dest)
            return
        previous = verify_manifest(dest).recorded
        if exchange(self.tmp, dest):
            old = self.tmp  # the swap left the previous run here
        else:
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(dest, old)
            os.rename(self.tmp, dest)
        if not remove_written(old, previous):
            kept = dest.with_name(f"{dest.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
            os.rename(old, kept)
            self.notes.append(f"files added to the previous run folder during the run were "
                              f"kept in '{kept}'.")


__all__ = ["MANIFEST", "AtomicRunFolder", "ManifestCheck", "check_destination",
           "clear_stale_temporaries", "remove_written", "require_verified", "sha256_of",
           "verify_manifest", "write_manifest"]
