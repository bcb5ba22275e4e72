"""Observation values: units, bounds (comparators), valueInteger and non-numeric values."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medistill.data.fhir import ingest_fhir, mapping_from_dict
from medistill.data.fhir.extract import unit_label
from medistill.errors import DataError

WHEN = "2024-06-01T08:00:00Z"


def _mapping(**glucose):
    return mapping_from_dict({
        "index": {"kind": "fixed", "date": "2025-01-01"},
        "observations": [{"name": "glucose", "codes": ["loinc:2345-7"], **glucose},
                         {"name": "n_glucose", "codes": ["loinc:2345-7"], "agg": "count"}]})


def _ingest(build, tmp_path, observations, mapping, **kw):
    patients = sorted({o["subject"]["reference"].split("/")[1] for o in observations})
    folder = build.export(tmp_path / "x", [build.patient(p) for p in patients] + observations)
    result = ingest_fhir(folder, mapping, salt="s", keep_patient_ids=True, **kw)
    return result.table.set_index(pd.Index(result.patient_ids)), result.summary


def test_unit_label_never_prints_free_text():
    assert unit_label("mg/dl", None) == "mg/dL"
    assert unit_label("MGDL", "mg/dL") == "mg/dL"
    assert unit_label("mg/g", None) == "mg/g"
    assert unit_label(None, "see the note from Dr Secretname") == "?"


def test_mixed_units_without_a_declared_unit_are_refused(build, tmp_path):
    observations = [build.obs("p1", "2345-7", 180, "mg/dL", WHEN),
                    build.obs("p2", "2345-7", 10.0, "mmol/L", WHEN)]
    with pytest.raises(DataError) as info:
        _ingest(build, tmp_path, observations, _mapping())
    msg = str(info.value)
    assert "the observation 'glucose' of the mapping declares no unit" in msg
    assert "2 units (mg/dL, mmol/L)" in msg and "'unit: mg/dL'" in msg
    assert "180" not in msg and "10.0" not in msg


def test_one_unit_or_spellings_of_it_need_no_declared_unit(build, tmp_path):
    same = build.obs("p2", "2345-7", 90, None, WHEN)
    same["valueQuantity"] = {"value": 90, "unit": "mg/dl"}
    table, _ = _ingest(build, tmp_path, [build.obs("p1", "2345-7", 180, "mg/dL", WHEN), same],
                       _mapping())
    assert table.loc[["p1", "p2"], "glucose"].tolist() == [180.0, 90.0]


def test_a_bound_is_not_a_value(build, tmp_path):
    bound = build.obs("p1", "2345-7", 600, "mg/dL", WHEN)
    bound["valueQuantity"]["comparator"] = ">"
    table, summary = _ingest(build, tmp_path, [bound], _mapping(unit="mg/dL"))
    assert pd.isna(table.loc["p1", "glucose"]) and table.loc["p1", "n_glucose"] == 1
    assert summary.dropped_values == {
        "glucose: a value with comparator '>' is a bound, not a value": 1}


def test_value_integer_is_a_number_and_other_values_are_counted(build, tmp_path):
    integer = build.obs("p1", "2345-7", None, None, WHEN, valueInteger=95)
    text = build.obs("p2", "2345-7", None, None, WHEN, valueString="7.2")
    absent = build.obs("p3", "2345-7", None, None, WHEN,
                       dataAbsentReason={"coding": [{"code": "error"}]})
    table, summary = _ingest(build, tmp_path, [integer, text, absent], _mapping())
    assert table.loc["p1", "glucose"] == 95.0
    assert table.loc[["p2", "p3"], "glucose"].isna().all()
    assert summary.dropped_values == {"glucose: valueString is not a number": 1}
    _, summary = _ingest(build, tmp_path / "u", [integer], _mapping(unit="mg/dL"))
    assert summary.dropped_values == {
        "glucose: a value without a unit does not convert to mg/dL": 1}


RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
STATIN = {"coding": [{"system": RXNORM, "code": "617312"}]}
MEDICATIONS = mapping_from_dict({
    "index": {"kind": "fixed", "date": "2025-01-01"},
    "medications": [{"name": "n_statins", "codes": ["rxnorm:617312"]}, {"name": "n_any"}]})


def _request(build, pid, r5=False, **medication):
    res = build.medication(pid, "0", "2024-06-01", r5=r5)
    res.pop("medicationCodeableConcept", None)
    res.pop("medication", None)
    return {**res, **medication}


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_medication_references_resolve_through_medication_resources(build, tmp_path, n_jobs):
    requests = [
        _request(build, "p1", medicationReference={"reference": "Medication/atorva"}),
        _request(build, "p2", medicationReference={
            "reference": "https://ehr.example/fhir/Medication/atorva/_history/2"}),
        _request(build, "p3", r5=True,
                 medication={"reference": {"reference": "Medication/atorva"}}),
        _request(build, "p4", medicationReference={"reference": "#m"},
                 contained=[{"resourceType": "Medication", "id": "m", "code": STATIN}]),
        _request(build, "p5", medicationReference={"reference": "Medication/other"}),
        _request(build, "p6", medicationReference={"reference": "Medication/missing"})]
    folder = build.export(tmp_path / "x", [build.patient(f"p{i}") for i in range(1, 7)]
                          + requests + [
        {"resourceType": "Medication", "id": "atorva", "code": STATIN},
        {"resourceType": "Medication", "id": "other",
         "code": {"coding": [{"system": RXNORM, "code": "1"}]}}])
    result = ingest_fhir(folder, MEDICATIONS, salt="s", keep_patient_ids=True, n_jobs=n_jobs,
                         chunk_bytes=300)
    table = result.table.set_index(pd.Index(result.patient_ids)).sort_index()
    assert table["n_statins"].tolist() == [1, 1, 1, 1, 0, 0]
    assert table["n_any"].tolist() == [1] * 6
    assert result.summary.unresolved_references == {
        "MedicationRequest.medication (no such Medication in the export)": 1}


def test_medication_reference_to_a_bundle_entry(build, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": build.patient("p1")},
        {"fullUrl": "urn:uuid:m", "resource": {"resourceType": "Medication", "code": STATIN}},
        {"resource": _request(build, "p1", medicationReference={"reference": "urn:uuid:m"})}]}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    result = ingest_fhir(path, MEDICATIONS, salt="s")
    assert result.table["n_statins"].tolist() == [1]


def test_a_missing_contained_medication_is_bad_input(build, tmp_path):
    folder = build.export(tmp_path / "x", [
        build.patient("p1"), _request(build, "p1", medicationReference={"reference": "#gone"})])
    with pytest.raises(DataError, match="MedicationRequest.000.ndjson line 1: .*contained"):
        ingest_fhir(folder, MEDICATIONS, salt="s", validate="mapped")


@pytest.mark.parametrize("subject, reason", [
    ({"identifier": {"system": "urn:mrn", "value": "MRN-SECRET-1"}}, "a reference by identifier"),
    ({"reference": "Patient?identifier=urn:mrn|MRN-SECRET-1"}, "a conditional reference"),
    ({"reference": "MRN-SECRET-1"}, "not a reference medistill can match")])
def test_unmatchable_patient_references_are_bad_input(build, tmp_path, subject, reason):
    obs = build.obs("p1", "2345-7", 100, "mg/dL", WHEN, subject=subject)
    folder = build.export(tmp_path / "x", [build.patient("p1"), obs])
    with pytest.raises(DataError) as info:
        ingest_fhir(folder, _mapping(unit="mg/dL"), salt="s")
    msg = str(info.value)
    assert msg.startswith("Observation.000.ndjson line 1: Observation.subject") and reason in msg
    assert "MRN-SECRET-1" not in msg
    result = ingest_fhir(folder, _mapping(unit="mg/dL"), salt="s", on_error="skip")
    assert result.summary.n_skipped == 1 and result.summary.n_without_patient == 0


def test_other_subjects_and_typed_bare_ids(build, tmp_path):
    group = build.obs("p1", "2345-7", 100, "mg/dL", WHEN, subject={"reference": "Group/g1"})
    typed = build.obs("p1", "2345-7", 120, "mg/dL", WHEN,
                      subject={"reference": "p1", "type": "Patient"})
    folder = build.export(tmp_path / "t", [build.patient("p1"), typed])
    assert ingest_fhir(folder, _mapping(unit="mg/dL"), salt="s").table["glucose"].tolist() == \
        [120.0]
    folder = build.export(tmp_path / "g", [build.patient("p1"), group])
    assert ingest_fhir(folder, _mapping(unit="mg/dL"), salt="s").summary.n_without_patient == 1


@pytest.mark.parametrize("number", ["1e309", "-1e309", "NaN", "Infinity"])
def test_non_finite_numbers_are_bad_input_in_mapped_mode(build, tmp_path, number):
    line = json.dumps(build.obs("p1", "2345-7", 1.5, "mg/dL", WHEN)).replace("1.5", number)
    folder = build.export(tmp_path / "x", [build.patient("p1")])
    (folder / "Observation.000.ndjson").write_text(line + "\n")
    with pytest.raises(DataError, match="line 1: Observation.valueQuantity.value: expected a "
                                        "finite number"):
        ingest_fhir(folder, _mapping(unit="mg/dL"), salt="s", validate="mapped")
