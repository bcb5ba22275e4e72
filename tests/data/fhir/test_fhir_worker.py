"""Bundles inside Bundles or NDJSON lines, and transaction entries without ids."""

from __future__ import annotations

import json

import pytest

from medistill.data.fhir import ingest_fhir, mapping_from_dict
from medistill.errors import DataError

MAPPING = mapping_from_dict({
    "index": {"kind": "fixed", "date": "2025-01-01"},
    "observations": [{"name": "glucose", "codes": ["loinc:2345-7"], "unit": "mg/dL"}]})


def _bundle(btype, resources):
    return {"resourceType": "Bundle", "type": btype,
            "entry": [{"resource": r} for r in resources]}


def _page(build, pid, value):
    return _bundle("searchset", [build.patient(pid),
                                 build.obs(pid, "2345-7", value, "mg/dL", "2024-06-01")])


def test_bundles_nested_in_a_collection_are_read(build, tmp_path):
    path = tmp_path / "outer.json"
    path.write_text(json.dumps(_bundle("collection", [_page(build, "p1", 120),
                                                      _page(build, "p2", 140)])))
    result = ingest_fhir(path, MAPPING, salt="s")
    assert sorted(result.table["glucose"]) == [120.0, 140.0]
    assert result.summary.resource_counts == {"Observation": 2, "Patient": 2}


def test_a_bundle_per_ndjson_line_is_read(build, tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "Bundle.ndjson").write_text(
        json.dumps(_page(build, "p1", 120)) + "\n" + json.dumps(_page(build, "p2", 140)) + "\n")
    result = ingest_fhir(folder, MAPPING, salt="s")
    assert sorted(result.table["glucose"]) == [120.0, 140.0]


def test_bundles_nested_too_deep_are_bad_input(build, tmp_path):
    inner = _page(build, "p1", 120)
    for _ in range(10):
        inner = _bundle("collection", [inner])
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(inner))
    with pytest.raises(DataError, match="deep.json line 1: Bundles nested more than 8 deep"):
        ingest_fhir(path, MAPPING, salt="s")


def test_transaction_entries_without_ids_are_known_by_their_full_url(build, tmp_path):
    patient = build.patient("x")
    del patient["id"]
    obs = build.obs("x", "2345-7", 99, "mg/dL", "2024-06-01",
                    subject={"reference": "urn:uuid:1111"})
    del obs["id"]
    path = tmp_path / "transaction.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1111", "resource": patient,
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:2222", "resource": obs,
         "request": {"method": "POST", "url": "Observation"}}]}))
    assert ingest_fhir(path, MAPPING, salt="s").table["glucose"].tolist() == [99.0]
