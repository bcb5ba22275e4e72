"""Bulk Data export folders as servers and bulk clients write them: manifest, split parts,
error files, client logs and gzip."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from medistill.data.fhir import ingest_fhir
from medistill.data.fhir.bulk import resource_type_of
from medistill.data.fhir.reader import discover
from medistill.errors import DataError

BASE = "https://fhir.hospital.example/bulk/files/job-7"
OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "processing",
                      "diagnostics": "Observation/SECRET-42 of patient Hidden failed"}]}
CLIENT_LOG = {"eventId": "kickoff", "timestamp": "2026-01-01T00:00:00Z",
              "eventDetail": {"exportUrl": "https://fhir.hospital.example/$export"}}


def _lines(resources: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in resources) + "\n").encode()


def _write(path: Path, resources: list[dict], gz: bool = False) -> str:
    data = _lines(resources)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path.name


@pytest.fixture
def client_export(build, tmp_path) -> Path:
    """A client's download folder: manifest, Patient and Observation in two parts each (one
    gzipped), an error file, the client's own log.ndjson and a README."""
    folder = tmp_path / "export"
    folder.mkdir()
    patients = [build.patient(f"p{i}") for i in range(4)]
    obs = [build.obs(f"p{i}", "8867-4", 60 + i, "/min", "2024-05-01", oid=f"o{i}")
           for i in range(4)]
    outputs = [("Patient", _write(folder / "Patient.000.ndjson", patients[:2])),
               ("Patient", _write(folder / "Patient.001.ndjson.gz", patients[2:], gz=True)),
               ("Observation", _write(folder / "Observation.000.ndjson", obs[:3])),
               ("Observation", _write(folder / "Observation.001.ndjson", obs[3:]))]
    error = _write(folder / "OperationOutcome.000.ndjson", [OUTCOME, OUTCOME])
    _write(folder / "log.ndjson", [CLIENT_LOG])
    (folder / "README.txt").write_text("downloaded by the bulk client")
    manifest = {"transactionTime": "2026-01-01T00:00:00Z", "request": "x",
                "requiresAccessToken": True,
                "output": [{"type": t, "url": f"{BASE}/{n}"} for t, n in outputs],
                "error": [{"type": "OperationOutcome", "url": f"{BASE}/{error}"}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("name, rtype", [
    ("Patient.ndjson", "Patient"), ("Patient.000.ndjson", "Patient"),
    ("Observation.012.ndjson.gz", "Observation"), ("1.Patient.ndjson", "Patient"),
    ("Condition-2.jsonl", "Condition"), ("log.ndjson", None), ("patients.ndjson", None),
    ("Patient.csv", None)])
def test_resource_type_of_file_names(name, rtype):
    assert resource_type_of(name) == rtype


def test_a_client_export_needs_no_option_and_reports_what_it_skipped(client_export):
    result = ingest_fhir(client_export, salt="s")
    summary = result.summary
    assert summary.n_patients == 4
    assert summary.resource_counts == {"Observation": 4, "Patient": 4}
    assert sorted(result.table["heart_rate"]) == [60.0, 61.0, 62.0, 63.0]
    assert summary.files == ("Observation.000.ndjson", "Observation.001.ndjson",
                             "Patient.000.ndjson", "Patient.001.ndjson.gz")
    skipped = dict(summary.skipped_files)
    assert set(skipped) == {"README.txt", "log.ndjson"}
    assert "not listed in the export manifest manifest.json" in skipped["log.ndjson"]
    assert summary.index_date.isoformat() == "2026-01-01"
    errors = summary.export_errors
    assert errors.files == ("OperationOutcome.000.ndjson",)
    assert errors.n_outcomes == 2 and errors.issues == {"error/processing": 2}


def test_the_summary_never_quotes_error_diagnostics(client_export):
    text = json.dumps(ingest_fhir(client_export, salt="s").summary.to_dict())
    assert "SECRET" not in text and "Hidden" not in text
    assert '"error/processing": 2' in text


def test_without_a_manifest_type_named_files_are_read(client_export):
    (client_export / "manifest.json").unlink()
    result = ingest_fhir(client_export, salt="s")
    assert result.summary.n_patients == 4
    assert set(dict(result.summary.skipped_files)) == {"README.txt", "log.ndjson"}
    assert result.summary.export_errors.n_outcomes == 2  # OperationOutcome.*: an error file
    assert result.summary.index_date.isoformat() == "2024-05-01"


def test_client_renamed_downloads_are_matched_by_type(client_export):
    """bulk clients may save output k of type T as ``k.T.ndjson``, not as the URL's name."""
    for k, old in enumerate(["Patient.000.ndjson", "Observation.000.ndjson",
                             "Observation.001.ndjson"], 1):
        (client_export / old).rename(client_export / f"{k}.{old.split('.')[0]}.ndjson")
    result = ingest_fhir(client_export, salt="s")
    assert result.summary.n_patients == 4
    assert result.summary.resource_counts == {"Observation": 4, "Patient": 4}


def test_a_file_listed_in_the_manifest_but_missing_is_an_error(client_export):
    (client_export / "Observation.001.ndjson").unlink()
    with pytest.raises(DataError, match="lists 2 output file.s. of type Observation, but the "
                                        "folder holds 1"):
        discover(client_export)


def test_a_folder_of_only_logs_names_what_it_skipped(tmp_path):
    _write(tmp_path / "log.ndjson", [CLIENT_LOG])
    with pytest.raises(DataError, match=r"skipped: log.ndjson \(not named after"):
        discover(tmp_path)


@pytest.mark.parametrize("manifest", [True, False])
def test_cli_ingests_a_client_export_without_flags(client_export, tmp_path, manifest):
    if not manifest:
        (client_export / "manifest.json").unlink()
    out = tmp_path / "t.parquet"
    proc = subprocess.run([sys.executable, "-m", "medistill.cli", "ingest-fhir",
                           str(client_export), "--out", str(out), "--salt", "k"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["n_patients"] == 4
    assert [s[0] for s in summary["skipped_files"]] == ["README.txt", "log.ndjson"]
    assert summary["export_errors"]["n_outcomes"] == 2


def _manifest_folder(build, tmp_path: Path, n_outputs: int) -> Path:
    folder = tmp_path / "big"
    folder.mkdir()
    _write(folder / "Patient.000.ndjson", [build.patient("p1")])
    outputs = [{"type": "Patient", "url": f"{BASE}/Patient.000.ndjson"}]
    outputs += [{"type": "Observation", "url": f"{BASE}/Observation.{i:05d}.ndjson", "count": 1}
                for i in range(n_outputs)]
    _write(folder / "Observation.00000.ndjson",
           [build.obs("p1", "8867-4", 70, "/min", "2024-05-01")])
    (folder / "manifest.json").write_text(json.dumps(
        {"transactionTime": "2026-05-01T10:00:00Z", "request": "x", "output": outputs[:2],
         "error": [], "extension": {"padding": "x" * (2 << 20)}}))
    return folder


def test_a_manifest_over_one_mib_is_still_the_manifest(build, tmp_path):
    folder = _manifest_folder(build, tmp_path, 1)
    assert (folder / "manifest.json").stat().st_size > 1 << 20
    export = discover(folder)
    assert export.transaction_time.isoformat() == "2026-05-01"
    assert [f.name for f in export.files] == ["Observation.00000.ndjson", "Patient.000.ndjson"]


def test_a_manifest_over_the_cap_is_an_error(build, tmp_path, monkeypatch):
    from medistill.data.fhir import bulk
    folder = _manifest_folder(build, tmp_path, 1)
    monkeypatch.setattr(bulk.read_manifest, "__defaults__", (1 << 20,))
    with pytest.raises(DataError, match=r"manifest.json: this Bulk Data manifest is 2 MiB, "
                                        r"over the 1 MiB medistill reads"):
        discover(folder)


def test_a_large_bundle_is_not_parsed_as_a_manifest(build, tmp_path):
    folder = tmp_path / "bundles"
    folder.mkdir()
    entries = [{"resource": build.obs("p1", "8867-4", 70, "/min", "2024-05-01")}
               for _ in range(6000)]
    (folder / "big.json").write_text(json.dumps(
        {"resourceType": "Bundle", "type": "collection",
         "entry": [{"resource": build.patient("p1")}, *entries]}))
    assert (folder / "big.json").stat().st_size > 1 << 20
    export = discover(folder)
    assert [f.name for f in export.files] == ["big.json"] and export.transaction_time is None
