"""``package_run``: members and their hashes, reproducibility, refusals, and a bundle that
deploys on its own."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest

from medistill.deploy.model import load_model
from medistill.deploy.package import package_run
from medistill.deploy.predict import predict_file
from medistill.errors import RunFolderError


def test_members_hashes_and_reproducible(tmp_path, run_dir) -> None:
    out = tmp_path / "student.tar.gz"
    result = package_run(run_dir, out)
    with tarfile.open(out) as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert set(contents) == {f"student/{n}" for n in (
        "student.onnx", "report.json", "pipeline.yaml", "ledger.json", "model_card.json",
        "bundle_manifest.json", "SHA256SUMS")}
    manifest = json.loads(contents["student/bundle_manifest.json"])
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256(contents[f"student/{name}"]).hexdigest() == digest
    assert manifest["sha256"] == result["members"]
    sums = contents["student/SHA256SUMS"].decode().splitlines()
    assert f"{manifest['sha256']['student.onnx']}  student.onnx" in sums
    card = json.loads(contents["student/model_card.json"])
    assert card["privacy"]["epsilon"] == pytest.approx(2.4987)
    (tmp_path / "again").mkdir()
    again = package_run(run_dir, tmp_path / "again" / "student.tar.gz")
    assert again["sha256"] == result["sha256"]  # same run in, same bytes out


def test_bundle_deploys_on_its_own(tmp_path, run_dir, cohort) -> None:
    model_dir = tmp_path / "with_mapping"
    shutil.copytree(run_dir, model_dir)
    (model_dir / "mapping.yaml").write_text("version: 1\n")
    out = tmp_path / "deploy.tgz"
    package_run(model_dir, out)
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    bundle = tmp_path / "unpacked" / "deploy"
    assert (bundle / "mapping.yaml").read_text() == "version: 1\n"
    model = load_model(bundle)
    assert model.card["model"]["integrity"] == "ok"
    assert model.card["privacy"]["source"] == "report.json"
    source = tmp_path / "in.csv"
    cohort.head(30).to_csv(source, index=False)
    predict_file(bundle, source, tmp_path / "a.csv")
    predict_file(run_dir, source, tmp_path / "b.csv")
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv"))


def test_refusals(tmp_path, run_dir) -> None:
    with pytest.raises(RunFolderError, match=r"does not exist"):
        package_run(tmp_path / "nowhere", tmp_path / "x.tar.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunFolderError, match=r"has no student\.onnx"):
        package_run(empty, tmp_path / "x.tar.gz")
    edited = tmp_path / "edited"
    shutil.copytree(run_dir, edited)
    report = json.loads((edited / "report.json").read_text())
    report["verdict"] = "release (edited)"
    (edited / "report.json").write_text(json.dumps(report))
    with pytest.raises(RunFolderError, match=r"report\.json differ"):
        package_run(edited, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()
    assert not list(tmp_path.glob(".x.tar.gz.tmp-*"))
