"""Duplicate resources: identical copies are read once, different ones are bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medistill.data.fhir import ingest_fhir, mapping_from_dict
from medistill.data.fhir.dedup import (
    DIFFERENT,
    NEW,
    SAME,
    SeenResources,
    pack_where,
    resource_hashes,
    unpack_where,
)
from medistill.errors import DataError

MAPPING = mapping_from_dict({
    "index": {"kind": "fixed", "date": "2025-01-01"},
    "observations": [
        {"name": "glucose_mean", "codes": ["loinc:2345-7"], "agg": "mean", "unit": "mg/dL"},
        {"name": "n_glucose", "codes": ["loinc:2345-7"], "agg": "count"}],
    "encounters": [{"name": "n_inpatient", "classes": ["IMP"]}]})


def test_hashes_ignore_meta_and_key_order():
    a = {"resourceType": "Observation", "id": "x", "status": "final", "meta": {"versionId": "1"}}
    b = {"status": "final", "id": "x", "resourceType": "Observation",
         "meta": {"versionId": "2", "lastUpdated": "2025-01-01"}}
    c = {**a, "status": "amended"}
    assert resource_hashes(a) == resource_hashes(b)
    assert resource_hashes(a)[0] == resource_hashes(c)[0]
    assert resource_hashes(a)[1] != resource_hashes(c)[1]
    assert resource_hashes({"resourceType": "Encounter", "id": "x"})[0] != resource_hashes(a)[0]
    assert resource_hashes({"resourceType": "Observation"}) == (0, 0)


def test_where_round_trips():
    assert unpack_where(pack_where(7, 123_456_789)) == (7, 123_456_789)


def test_seen_resources_classifies_within_and_across_batches():
    seen = SeenResources()
    v = seen.check(np.array([5, 6, 5, 5, 0, 0]), np.array([1, 1, 1, 2, 9, 9]),
                   np.array([10, 11, 12, 13, 14, 15]))
    assert v.status.tolist() == [NEW, NEW, SAME, DIFFERENT, NEW, NEW]
    assert v.first.tolist()[2:4] == [10, 10]
    v = seen.check(np.array([6, 7, 6]), np.array([2, 1, 1]), np.array([20, 21, 22]))
    assert v.status.tolist() == [DIFFERENT, NEW, SAME]   # both compared with 11, not 20
    assert v.first.tolist() == [11, 0, 11]
    assert len(seen) == 3


def test_seen_resources_matches_a_dict_over_many_batches():
    rng = np.random.default_rng(0)
    seen, reference = SeenResources(), {}
    for batch in range(60):
        keys = rng.integers(1, 3000, 200).astype(np.uint64)
        contents = (keys % 7 + (rng.random(200) < 0.05)).astype(np.uint64)
        wheres = np.arange(200, dtype=np.uint64) + batch * 1000
        v = seen.check(keys, contents, wheres)
        for k, c, w, status, first in zip(keys.tolist(), contents.tolist(), wheres.tolist(),
                                          v.status.tolist(), v.first.tolist(), strict=True):
            if k not in reference:
                assert status == NEW
                reference[k] = (c, w)
            else:
                assert (status, first) == (SAME if c == reference[k][0] else DIFFERENT,
                                           reference[k][1])
    assert len(seen) == len(reference)


def _export(build, tmp_path):
    o1 = build.obs("p1", "2345-7", 100, "mg/dL", "2024-06-01T08:00:00Z", oid="obs-1")
    folder = build.export(tmp_path / "x", [
        build.patient("p1"), build.patient("p2"), o1,
        build.obs("p1", "2345-7", 200, "mg/dL", "2024-07-01T08:00:00Z", oid="obs-2"),
        build.obs("p2", "2345-7", 150, "mg/dL", "2024-07-01T08:00:00Z", oid="obs-3"), o1])
    enc = build.encounter("p1", "IMP", "2024-06-01")
    (folder / "Observation.001.ndjson").write_text(json.dumps(o1) + "\n")
    for name in ("Encounter.000.ndjson", "Encounter.001.ndjson"):
        (folder / name).write_text(json.dumps(enc) + "\n")
    return folder


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_identical_copies_in_one_file_and_across_files_count_once(build, tmp_path, n_jobs):
    result = ingest_fhir(_export(build, tmp_path), MAPPING, salt="s", keep_patient_ids=True,
                         n_jobs=n_jobs, chunk_bytes=200)
    table = result.table.set_index(pd.Index(result.patient_ids))
    assert table.loc["p1", "glucose_mean"] == 150.0
    assert table.loc["p1", "n_glucose"] == 2
    assert table.loc["p1", "n_inpatient"] == 1
    assert result.summary.resource_counts == {"Encounter": 1, "Observation": 3, "Patient": 2}
    assert sum(result.summary.fhir_versions.values()) == 6


def test_different_copies_stop_naming_both_lines(build, tmp_path):
    folder = _export(build, tmp_path)
    changed = build.obs("p1", "2345-7", 999, "mg/dL", "2024-06-01T08:00:00Z", oid="obs-1")
    (folder / "Observation.001.ndjson").write_text(json.dumps(changed) + "\n")
    with pytest.raises(DataError) as info:
        ingest_fhir(folder, MAPPING, salt="s")
    msg = str(info.value)
    assert msg.startswith("Observation.001.ndjson line 1: a second Observation with the same "
                          "id and different content (the first is at Observation.000.ndjson "
                          "line 1)")
    assert "999" not in msg and "obs-1" not in msg
    result = ingest_fhir(folder, MAPPING, salt="s", on_error="skip", keep_patient_ids=True)
    assert result.summary.n_skipped == 1
    table = result.table.set_index(pd.Index(result.patient_ids))
    assert table.loc["p1", "glucose_mean"] == 150.0      # the first copy counts


def _page(entries):
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def test_searchset_pages_including_the_same_patient_read_it_once(build, tmp_path):
    patient = {"fullUrl": "https://ehr.example/fhir/Patient/p1", "resource": build.patient("p1"),
               "search": {"mode": "include"}}
    restamped = json.loads(json.dumps(patient))
    restamped["resource"]["meta"] = {"lastUpdated": "2025-01-01T00:00:00Z"}
    folder = tmp_path / "pages"
    folder.mkdir()
    for i, p in enumerate((patient, restamped)):
        obs = build.obs("p1", "2345-7", 100 + 100 * i, "mg/dL", f"2024-0{6 + i}-01")
        (folder / f"page{i}.json").write_text(json.dumps(_page(
            [{"resource": obs, "search": {"mode": "match"}}, p])))
    result = ingest_fhir(folder, MAPPING, salt="s")
    assert result.summary.n_patients == 1
    assert result.table["glucose_mean"].tolist() == [150.0]
    different = json.loads(json.dumps(patient))
    different["resource"]["birthDate"] = "1970-01-01"
    (folder / "page1.json").write_text(json.dumps(_page([different])))
    with pytest.raises(DataError, match="page1.json line 1: a second Patient with the same id "
                                        "and different content"):
        ingest_fhir(folder, MAPPING, salt="s")


def test_identical_patient_copy_keeps_its_full_url(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.patient("p1")])
    obs = build.obs("p1", "2345-7", 100, "mg/dL", "2024-06-01",
                    subject={"reference": "urn:uuid:1111"})
    (folder / "bundle.json").write_text(json.dumps(_page([
        {"fullUrl": "urn:uuid:1111", "resource": build.patient("p1")},
        {"resource": obs}])))
    result = ingest_fhir(folder, MAPPING, salt="s")
    assert result.table["glucose_mean"].tolist() == [100.0]
