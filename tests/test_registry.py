"""The run registry beside the run folders (#15.8)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from medistill.config import parse_config
from medistill.registry import KEY_NAME, REGISTRY_NAME, data_fingerprint, record_run


def _config(path, seed=0):
    return parse_config({"data": {"source": "csv", "path": str(path), "label": "y"},
                         "privacy": {"target_epsilon": 3.0}, "seed": seed})


def _report(eps):
    return {"privacy": {"epsilon": eps, "delta": 1e-6, "formal_guarantee": eps is not None}}


def test_15_8_registry_counts_runs_on_same_data_and_sums_epsilon(tmp_path) -> None:
    data = tmp_path / "records.csv"
    data.write_text("patient_id,name,y\n1,Jane Doe,0\n")
    other = tmp_path / "other.csv"
    other.write_text("patient_id,name,y\n2,John Roe,1\n")
    runs = tmp_path / "runs"
    first = record_run(runs / "a", _config(data), _report(2.5))
    assert first["n_runs"] == 1 and first["summed_epsilon"] == 2.5
    before = (runs / REGISTRY_NAME).read_bytes()
    assert record_run(runs / "b", _config(other), _report(3.0))["n_runs"] == 1
    third = record_run(runs / "c", _config(data, seed=7), _report(1.0))
    assert third["n_runs"] == 2 and third["summed_epsilon"] == pytest.approx(3.5)
    assert third["summed_delta"] == pytest.approx(2e-6) and "basic composition" in third["composition"]
    text = (runs / REGISTRY_NAME).read_bytes()
    assert text.startswith(before)  # append-only
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["run_folder"] for line in lines] == [str(runs / n) for n in "abc"]
    for raw in (b"Jane Doe", b"John Roe", b"records.csv", hashlib.sha256(data.read_bytes()).hexdigest().encode()):
        assert raw not in text
    assert oct(os.stat(runs / KEY_NAME).st_mode & 0o777) == oct(0o600)
    assert not [p for p in runs.iterdir() if ".tmp-" in p.name]


def test_15_8_infinite_epsilon_makes_the_sum_infinite(tmp_path) -> None:
    data = tmp_path / "records.csv"
    data.write_text("y\n0\n")
    record_run(tmp_path / "runs" / "a", _config(data), _report(None))
    summary = record_run(tmp_path / "runs" / "b", _config(data), _report(1.0))
    assert summary["n_runs"] == 2 and summary["summed_epsilon"] is None and summary["note"]


def test_15_8_fingerprint_is_keyed(tmp_path) -> None:
    data = tmp_path / "records.csv"
    data.write_text("y\n0\n")
    config = _config(data)
    assert data_fingerprint(config, b"k" * 32) == data_fingerprint(config, b"k" * 32)
    assert data_fingerprint(config, b"k" * 32) != data_fingerprint(config, b"j" * 32)


def test_15_8_unreadable_registry_lines_are_kept_and_noted(tmp_path) -> None:
    data = tmp_path / "records.csv"
    data.write_text("y\n0\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / REGISTRY_NAME).write_text("not json")
    summary = record_run(runs / "a", _config(data), _report(1.0))
    assert summary["n_runs"] == 1 and "1 line(s)" in summary["note"]
    assert (runs / REGISTRY_NAME).read_text().startswith("not json\n{")


def test_15_8_register_into_restates_the_report_files(tmp_path) -> None:
    from medistill.registry import register_into

    data = tmp_path / "records.csv"
    data.write_text("y\n0\n")
    folder = tmp_path / "runs" / ".a.tmp-1-x"
    folder.mkdir(parents=True)
    report = register_into(folder, tmp_path / "runs" / "a", _config(data), _report(2.0))
    written = json.loads((folder / "report.json").read_text())
    assert written["privacy"]["runs_on_same_data"]["n_runs"] == 1 == report["privacy"]["runs_on_same_data"]["n_runs"]
    assert "Runs on the same data" in (folder / "report.md").read_text()
    assert "runs-on-same-data" in (folder / "report.html").read_text()
    line = json.loads((tmp_path / "runs" / REGISTRY_NAME).read_text())
    assert line["run_folder"] == str(tmp_path / "runs" / "a")


def test_15_8_database_server_is_fingerprinted_by_its_address() -> None:
    from types import SimpleNamespace

    def config(database):
        omop = SimpleNamespace(database=database)
        return SimpleNamespace(data=SimpleNamespace(source="omop", path=None, omop=omop), seed=0)

    a = data_fingerprint(config("postgresql://cdm.hospital/omop"), b"k" * 32)
    assert a == data_fingerprint(config("postgresql://cdm.hospital/omop"), b"k" * 32)
    assert a != data_fingerprint(config("postgresql://other/omop"), b"k" * 32)
    assert "cdm.hospital" not in a
