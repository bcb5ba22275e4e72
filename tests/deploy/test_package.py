"""``package_run``: members and their hashes, reproducibility, refusals, and a bundle that
deploys on its own."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest

from medistill.deploy.model import load_model
from medistill.deploy.package import bundle_name, package_run
from medistill.deploy.predict import predict_file
from medistill.errors import RunFolderError
from medistill.runfolder import write_manifest


def _members(out) -> dict[str, bytes]:
    with tarfile.open(out) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_members_hashes_and_reproducible(tmp_path, run_dir) -> None:
    out = tmp_path / "student.tar.gz"
    result = package_run(run_dir, out)
    contents = _members(out)
    assert set(contents) == {f"student/{n}" for n in (
        "student.onnx", "ledger.json", "model_card.json", "model_card.md",
        "bundle_manifest.json", "SHA256SUMS")}
    manifest = json.loads(contents["student/bundle_manifest.json"])
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256(contents[f"student/{name}"]).hexdigest() == digest
    assert manifest["sha256"] == result["members"]
    sums = contents["student/SHA256SUMS"].decode().splitlines()
    assert f"{manifest['sha256']['student.onnx']}  student.onnx" in sums
    card = json.loads(contents["student/model_card.json"])
    assert card["privacy"]["epsilon"] == pytest.approx(2.4987)
    assert card["evaluation"]["training_patients_order_of_magnitude"] == "100–1,000"
    (tmp_path / "again").mkdir()
    again = package_run(run_dir, tmp_path / "again" / "student.tar.gz")
    assert again["sha256"] == result["sha256"]  # same run in, same bytes out


def test_15_7_package_holds_the_model_card_and_no_report(tmp_path, run_dir) -> None:
    names = {n.split("/", 1)[1] for n in _members(package_run(run_dir, tmp_path / "p.tgz")["out"])}
    assert {"model_card.json", "model_card.md"} <= names
    assert not any(n.startswith("report") for n in names)
    assert "pipeline.yaml" not in names and "mia_scores.parquet" not in names


def test_package_releases_no_pipeline_hash_and_no_audit_figure(tmp_path, run_dir) -> None:
    """pipeline.yaml is withheld (local paths, seed), so neither its hash nor the audit's
    figures on sensitive patients travel in the card or the model's metadata."""
    import onnx

    contents = _members(package_run(run_dir, tmp_path / "student.tar.gz")["out"])
    pipeline_sha = hashlib.sha256((run_dir / "pipeline.yaml").read_bytes()).hexdigest()
    for name in ("model_card.json", "model_card.md", "student.onnx"):
        data = contents[f"student/{name}"]
        assert pipeline_sha.encode() not in data and b"pipeline_sha256" not in data, name
    model = onnx.load_from_string(contents["student/student.onnx"])
    assert not [p.key for p in model.metadata_props if "pipeline" in p.key]
    card = json.loads(contents["student/model_card.json"])
    assert card["evaluation"]["figures"]["in_card"] is False
    assert "student_auroc" not in json.dumps(card)


def test_bundle_deploys_on_its_own(tmp_path, run_dir, cohort) -> None:
    model_dir = tmp_path / "with_mapping"
    shutil.copytree(run_dir, model_dir)
    (model_dir / "mapping.yaml").write_text("version: 1\n")
    write_manifest(model_dir)
    out = tmp_path / "deploy.tgz"
    package_run(model_dir, out)
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    bundle = tmp_path / "unpacked" / "deploy"
    assert (bundle / "mapping.yaml").read_text() == "version: 1\n"
    model = load_model(bundle)
    assert model.card["model"]["integrity"].startswith("ok: matches bundle_manifest.json")
    assert model.card["privacy"]["source"] == "model_card.json"
    assert "patient_id" in model.id_columns  # from the card: pipeline.yaml is not shipped
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
    card = json.loads((edited / "model_card.json").read_text())
    card["privacy"]["epsilon"] = 0.5
    (edited / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(RunFolderError, match=r"model_card\.json differs"):
        package_run(edited, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()
    assert not list(tmp_path.glob(".x.tar.gz.tmp-*"))


def test_16_3_package_refuses_missing_manifest_and_symlinks(tmp_path, run_dir) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / "manifest.json").unlink()
    with pytest.raises(RunFolderError, match="no manifest.json"):
        package_run(bare, tmp_path / "x.tgz")
    linked = tmp_path / "linked"
    shutil.copytree(run_dir, linked)
    (tmp_path / "raw.csv").write_text("patient_id,name\n1,Jane Doe\n")
    (linked / "mapping.yaml").write_text("version: 1\n")
    write_manifest(linked)
    (linked / "mapping.yaml").unlink()
    (linked / "mapping.yaml").symlink_to(tmp_path / "raw.csv")
    with pytest.raises(RunFolderError, match="symbolic link"):
        package_run(linked, tmp_path / "x.tgz")
    assert not (tmp_path / "x.tgz").exists()


def test_16_3_unlisted_files_are_not_packaged(tmp_path, run_dir) -> None:
    extra = tmp_path / "extra"
    shutil.copytree(run_dir, extra)
    (extra / "mapping.yaml").write_text("added after the run\n")  # not in the manifest
    names = _members(package_run(extra, tmp_path / "p.tgz")["out"])
    assert "p/mapping.yaml" not in names


@pytest.mark.parametrize("name", ["...tar.gz", "..tgz", ".tar.gz", "a/../b.tar.gz"])
def test_16_10_package_never_has_dotdot_members(tmp_path, run_dir, name) -> None:
    out = tmp_path / "sub" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    result = package_run(run_dir, out)
    for member in _members(result["out"]):
        assert ".." not in member.split("/") and not member.startswith(("/", "."))
    assert bundle_name(tmp_path / "...tar.gz") == "student"


def test_16_10_package_follows_umask(tmp_path, run_dir) -> None:
    old = os.umask(0o077)
    try:
        out = package_run(run_dir, tmp_path / "private.tgz")["out"]
    finally:
        os.umask(old)
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o600)
    with tarfile.open(out) as tar:
        assert {m.mode for m in tar.getmembers()} == {0o600}
