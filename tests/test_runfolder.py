import json
import os
import subprocess
import sys

import pytest

from medistill.errors import RunFolderError
from medistill.runfolder import (
    TMP_MARK,
    AtomicRunFolder,
    check_destination,
    clear_stale_temporaries,
    verify_manifest,
)


def _run(out, files=None):
    with AtomicRunFolder(out) as tmp:
        for name, text in (files or {"a.txt": "x", "sub/b.txt": "y"}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return out


def test_success_moves_into_place_with_manifest(tmp_path) -> None:
    out = tmp_path / "run"
    with AtomicRunFolder(out) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "x"
    assert set(json.loads((out / "manifest.json").read_text())["sha256"]) == {"a.txt"}
    assert verify_manifest(out).ok


def test_failure_leaves_nothing_and_keeps_the_old_run(tmp_path) -> None:
    out = tmp_path / "run"
    with AtomicRunFolder(out) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicRunFolder(out) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (out / "old.txt").exists() and not (out / "new.txt").exists()


def test_16_1_refuses_foreign_folder(tmp_path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("k")
    with pytest.raises(RunFolderError, match="not a medistill run folder"):
        check_destination(tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "k"


def test_16_1_refuses_folder_with_any_manifest_and_other_files(tmp_path) -> None:
    """The reported case: a bare manifest.json no longer licenses deleting a thesis."""
    v = tmp_path / "v"
    (v / "src").mkdir(parents=True)
    (v / "manifest.json").write_text("{}")
    (v / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match="manifest.json is unreadable"):
        with AtomicRunFolder(v):
            pass
    assert (v / "thesis.tex").exists() and (v / "src").is_dir()


def test_16_1_refuses_changed_run_folder_saying_what_differs(tmp_path) -> None:
    out = _run(tmp_path / "run")
    (out / "signoff.pdf").write_text("signed")
    (out / "a.txt").write_text("edited")
    with pytest.raises(RunFolderError) as info:
        check_destination(out)
    message = info.value.render()
    assert "'a.txt'" in message and "'signoff.pdf'" in message and "changed" in message
    with pytest.raises(RunFolderError):
        _run(out)
    assert (out / "signoff.pdf").read_text() == "signed"


def test_16_1_replaces_unchanged_run_folder(tmp_path) -> None:
    out = _run(tmp_path / "run")
    _run(out, {"c.txt": "new"})
    assert sorted(p.name for p in out.iterdir()) == ["c.txt", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_16_1_out_dot_is_refused_cleanly(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunFolderError, match="current folder"):
        check_destination(".")
    with pytest.raises(RunFolderError, match="current folder"):
        check_destination("..")
    check_destination("sub")  # a new subfolder is fine


def test_16_1_refuses_file_and_symlink(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    with pytest.raises(RunFolderError, match="is a file"):
        check_destination(tmp_path / "f")
    with pytest.raises(RunFolderError, match="symbolic link"):
        check_destination(tmp_path / "link")


def test_16_1_symlink_inside_run_folder_is_a_difference(tmp_path) -> None:
    out = _run(tmp_path / "run")
    (out / "data.csv").symlink_to(tmp_path / "elsewhere.csv")
    check = verify_manifest(out)
    assert not check.ok and check.symlinks == ("data.csv",)


def test_16_1_old_folder_removed_only_file_by_file(tmp_path, monkeypatch) -> None:
    """A file added to the old run while the new one ran is never deleted."""
    from medistill import runfolder

    out = _run(tmp_path / "run")
    real_check = runfolder.check_destination
    calls = []

    def late_addition(path):
        calls.append(path)
        real_check(path)
        if len(calls) == 2:  # after the final check, before the swap
            (out / "late.txt").write_text("keep me")

    monkeypatch.setattr(runfolder, "check_destination", late_addition)
    _run(out, {"c.txt": "new"})
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(kept) == 1 and (kept[0] / "late.txt").read_text() == "keep me"
    assert sorted(p.name for p in kept[0].iterdir()) == ["late.txt"]


def test_16_10_stale_temporaries_of_dead_processes_are_cleared(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".run.tmp-{dead}-abcd1234"
    stale.mkdir()
    (stale / TMP_MARK).write_text(json.dumps({"pid": int(dead)}))
    foreign = tmp_path / ".notes.tmp-1-xyz"  # no marker: not ours
    foreign.mkdir()
    alive = tmp_path / f".run.tmp-{os.getpid()}-live"
    alive.mkdir()
    (alive / TMP_MARK).write_text(json.dumps({"pid": os.getpid()}))
    assert clear_stale_temporaries(tmp_path) == [stale]
    assert foreign.exists() and alive.exists() and not stale.exists()


def test_16_10_run_folder_follows_umask(tmp_path) -> None:
    old = os.umask(0o077)
    try:
        out = _run(tmp_path / "run")
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(0o700)
    assert oct((out / "a.txt").stat().st_mode & 0o777) == oct(0o600)
    assert oct((out / "manifest.json").stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_16_1_unreadable_destination_is_refused_cleanly(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x").write_text("x")
    locked.chmod(0o000)
    try:
        with pytest.raises(RunFolderError, match="cannot be read"):
            check_destination(locked)
    finally:
        locked.chmod(0o700)
