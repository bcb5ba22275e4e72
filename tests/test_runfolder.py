import json

import pytest

from medistill.errors import RunFolderError
from medistill.runfolder import AtomicRunFolder


def test_success_moves_into_place_with_manifest(tmp_path) -> None:
    out = tmp_path / "run"
    with AtomicRunFolder(out) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "x"
    assert set(json.loads((out / "manifest.json").read_text())["sha256"]) == {"a.txt"}


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


def test_foreign_folder_is_refused(tmp_path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("k")
    with pytest.raises(RunFolderError, match="refusing to overwrite"):
        with AtomicRunFolder(tmp_path / "x"):
            pass
