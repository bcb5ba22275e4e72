"""The public API of medistill.data.fhir."""

from __future__ import annotations

import dataclasses
import json

import pytest

import medistill.data.fhir as fhir


@pytest.mark.parametrize("name", fhir.__all__)
def test_every_public_name_imports(name):
    assert getattr(fhir, name) is not None


def test_result_is_frozen_and_summary_is_json_ready(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.patient("p1"),
                                           build.obs("p1", "8867-4", 70, "/min", "2024-05-01")])
    result = fhir.ingest_fhir(folder, fhir.demo_mapping(), salt="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.label = "other"  # type: ignore[misc]
    data = json.loads(json.dumps(result.summary.to_dict()))
    assert data["n_patients"] == 1 and data["n_resources"] == 2
    assert data["index_date"] == "2025-01-01" and data["validate"] == "full"
    assert data["resource_counts"] == {"Observation": 1, "Patient": 1}


def test_default_mapping_is_used_when_none_is_given(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.patient("p1"),
                                           build.obs("p1", "8867-4", 70, "/min", "2024-05-01")])
    result = fhir.ingest_fhir(folder, salt="s")
    assert result.label is None
    assert result.table["heart_rate"].tolist() == [70.0]
    assert result.summary.index_date.isoformat() == "2024-05-01"  # the latest date read
