"""``medistill audit``: verify first, never rewrite hashes over unverified content (#16.2)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medistill.audit.rejudge import rejudge_run
from medistill.errors import RunFolderError
from medistill.runfolder import AtomicRunFolder, verify_manifest

REPORT = {"schema_version": "1", "verdict": "release", "passed": True, "gates": [],
          "run": {"created_at": "2026-01-02T03:04:05Z", "pipeline_sha256": "ab"},
          "utility": {"student": {"auroc": 0.8}, "teacher": {"auroc": 0.85}},
          "privacy": {"unit": "patient", "formal_guarantee": True, "epsilon": 2.98,
                      "delta": 1e-5, "accountant": "pld", "ledger": []}}


def _run_folder(path: Path) -> Path:
    with AtomicRunFolder(path) as tmp:
        (tmp / "report.json").write_text(json.dumps(REPORT))
        (tmp / "report.md").write_text("old")
        (tmp / "student.onnx").write_bytes(b"model")
        (tmp / "extras").mkdir()
        (tmp / "extras" / "plot.txt").write_text("p")
    return path


def test_16_2_edited_report_is_refused_and_manifest_untouched(tmp_path) -> None:
    run = _run_folder(tmp_path / "run")
    manifest = (run / "manifest.json").read_bytes()
    edited = json.loads((run / "report.json").read_text())
    edited["privacy"]["epsilon"] = 0.5
    (run / "report.json").write_text(json.dumps(edited))
    with pytest.raises(RunFolderError, match="'report.json'") as info:
        rejudge_run(run, None)
    assert info.value.exit_code == 2
    assert (run / "manifest.json").read_bytes() == manifest
    assert not verify_manifest(run).ok


def test_16_2_symlinked_file_is_refused_not_copied(tmp_path) -> None:
    run = _run_folder(tmp_path / "run")
    (tmp_path / "raw.csv").write_text("patient,outcome\n")
    (run / "mapping.yaml").symlink_to(tmp_path / "raw.csv")
    with pytest.raises(RunFolderError, match="symbolic links"):
        rejudge_run(run, None)
    assert (run / "mapping.yaml").is_symlink()


def test_16_2_rejudge_keeps_subfolders_and_history(tmp_path) -> None:
    run = _run_folder(tmp_path / "run")
    policy = tmp_path / "lenient.yaml"
    policy.write_text("name: lenient\ngates:\n  - name: auc\n    metric: utility.student.auroc\n"
                      "    op: '>='\n    threshold: 0.5\n    severity: review\n")
    first = rejudge_run(run, policy)
    second = rejudge_run(run, None)
    assert (run / "extras" / "plot.txt").read_text() == "p"
    assert (run / "student.onnx").read_bytes() == b"model"
    assert verify_manifest(run).ok
    history = json.loads((run / "report.json").read_text())["rejudgements"]
    assert first["verdict"] == "release" and second["verdict"] == "reject"
    assert [h["previous_verdict"] for h in history] == ["release", "release"]
    assert history[0]["policy"]["sha256"] == hashlib.sha256(policy.read_bytes()).hexdigest()
    assert history[0]["policy"]["file"] == str(policy.absolute())
    assert history[1]["policy"]["file"] == "default" and history[1]["verdict"] == second["verdict"]
    assert json.loads((run / "report.json").read_text())["privacy"]["epsilon"] == 2.98
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenient.yaml", "run"]
