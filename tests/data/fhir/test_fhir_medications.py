"""Medication references resolved once every chunk is merged, in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.data.fhir import ingest_fhir, mapping_from_dict
from medistill.data.fhir.medications import MedicationReferences
from medistill.errors import ConfigError

from .conftest import RXNORM


def test_references_become_one_event_per_matched_slot_whatever_the_order():
    refs = MedicationReferences()
    refs.add_references(np.array([0, 1, 2]), ["Medication/a", "Medication/b", "Medication/x"],
                        np.array([10, 11, 12]), np.array([1.0, 2.0, 3.0]))
    refs.add_medications([("Medication/a", (3, 5)), ("Medication/b", ()),
                          ("Medication/a", (9,))])          # a later copy does not override
    refs.add_references(np.array([4]), ["Medication/a"], np.array([13]), np.array([4.0]))
    events, unresolved = refs.resolve()
    assert unresolved == 1
    assert list(zip(events.owner.tolist(), events.slot.tolist(), events.day.tolist(),
                    strict=True)) == [(0, 3, 10), (0, 5, 10), (4, 3, 13), (4, 5, 13)]
    assert events.value.tolist() == [1.0] * 4 and events.weight.tolist() == [1.0] * 4
    assert len(refs.resolve()[0]) == 0


# MedicationStatement: read only for the features that opt in with `resources:`.

STATIN = {"coding": [{"system": RXNORM, "code": "617312"}]}
BOTH = ["MedicationRequest", "MedicationStatement"]


def _statement(pid, sid, status="completed", r5=False, **extra):
    res = {"resourceType": "MedicationStatement", "id": sid,
           "status": "recorded" if r5 and status == "completed" else status,
           "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2024-05-01",
           **extra}
    if "medicationReference" not in extra:
        if r5:
            res["medication"] = {"concept": STATIN}
        else:
            res["medicationCodeableConcept"] = STATIN
    return res


def _medication_mapping(*features):
    return mapping_from_dict({"index": {"kind": "fixed", "date": "2025-01-01"},
                              "medications": list(features)})


def _table(build, tmp_path, resources, mapping, **kw):
    folder = build.export(tmp_path / "x", [build.patient(p) for p in ("p1", "p2", "p3")]
                          + resources)
    result = ingest_fhir(folder, mapping, salt="s", keep_patient_ids=True, **kw)
    return result.table.set_index(pd.Index(result.patient_ids)).sort_index(), result.summary


@pytest.mark.parametrize("validate", ["full", "mapped"])
def test_statements_count_only_for_features_that_opt_in(build, tmp_path, validate):
    resources = [build.medication("p1", "617312", "2024-06-01"),
                 _statement("p1", "s1"), _statement("p2", "s2"),
                 _statement("p3", "s3", status="not-taken"),
                 _statement("p3", "s4", status="entered-in-error")]
    mapping = _medication_mapping(
        {"name": "n_orders", "codes": ["rxnorm:617312"]},
        {"name": "n_both", "codes": ["rxnorm:617312"], "resources": BOTH},
        {"name": "n_reported", "resources": ["MedicationStatement"]})
    table, summary = _table(build, tmp_path, resources, mapping, validate=validate)
    assert table["n_orders"].tolist() == [1, 0, 0]
    assert table["n_both"].tolist() == [2, 1, 0]
    assert table["n_reported"].tolist() == [1, 1, 0]
    assert summary.resource_counts["MedicationStatement"] == 4


def test_statements_are_not_read_by_default(build, tmp_path):
    mapping = _medication_mapping({"name": "n_meds"})
    table, summary = _table(build, tmp_path, [_statement("p1", "s1")], mapping)
    assert table["n_meds"].tolist() == [0, 0, 0]
    assert summary.resource_counts["MedicationStatement"] == 1  # counted, not read


def test_r5_statements_and_medication_references_per_type(build, tmp_path):
    resources = [
        _statement("p1", "s1", r5=True),
        _statement("p2", "s2", medicationReference={"reference": "Medication/atorva"}),
        {**build.medication("p3", "0", "2024-06-01"),
         "medicationReference": {"reference": "Medication/atorva"}},
        {"resourceType": "Medication", "id": "atorva", "code": STATIN}]
    del resources[2]["medicationCodeableConcept"]
    mapping = _medication_mapping(
        {"name": "n_reported", "codes": ["rxnorm:617312"], "resources": ["MedicationStatement"]},
        {"name": "n_orders", "codes": ["rxnorm:617312"]})
    table, summary = _table(build, tmp_path, resources, mapping, validate="mapped")
    assert table["n_reported"].tolist() == [1, 1, 0]
    assert table["n_orders"].tolist() == [0, 0, 1]
    assert summary.unresolved_references == {}


@pytest.mark.parametrize(("resources", "expected"), [
    ([], "needs at least one of MedicationRequest, MedicationStatement"),
    (["MedicationStatement", "MedicationStatement"], "lists a resource type twice"),
    (["MedicationAdministration"], "medications[0] (n).resources"),
])
def test_medication_resources_are_checked(resources, expected):
    with pytest.raises(ConfigError) as info:
        _medication_mapping({"name": "n", "resources": resources})
    assert expected in str(info.value)
