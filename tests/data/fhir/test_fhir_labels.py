"""Label definitions and index dates, with the edges of their windows."""

from __future__ import annotations

import json

import pytest

from medistill.data.fhir import describe_label, ingest_fhir, mapping_from_dict, patient_key
from medistill.errors import DataError

MI = "22298006"


def _mapping(label, index=None):
    return mapping_from_dict({
        "index": index or {"kind": "fixed", "date": "2025-01-01"},
        "demographics": {"age": True, "sex": False},
        "observations": [{"name": "hba1c", "codes": ["loinc:4548-4"], "unit": "%"}],
        "label": label,
    })


def _labels(result) -> dict[str, int]:
    by_key = dict(zip(result.table["patient_key"], result.table[result.label], strict=True))
    return {pid: int(by_key[patient_key(pid, "s")]) for pid in _PIDS if
            patient_key(pid, "s") in by_key}


_PIDS = [f"p{i}" for i in range(10)]


@pytest.mark.parametrize(("onset", "expected"), [
    ("2025-01-01T09:00:00Z", 0),       # on the index date: a feature-time event, not outcome
    ("2025-01-02", 1),                 # the first day after the index date
    ("2025-12-31", 1),                 # index + 364
    ("2026-01-01T23:59:00+02:00", 1),  # exactly index + 365 days (local date): included
    ("2026-01-02", 0),                 # index + 366: outside the horizon
    ("2024-06-01", 0),                 # before the index date
    ("2025-06", 1),                    # a partial date counts from its first day
])
def test_condition_onset_window_edges(build, tmp_path, onset, expected):
    label = {"name": "mi_1y", "kind": "condition_onset", "codes": [f"snomed:{MI}"],
             "horizon_days": 365}
    folder = build.export(tmp_path / "x", [build.patient("p0"),
                                           build.condition("p0", MI, onset)])
    result = ingest_fhir(folder, _mapping(label), salt="s")
    assert result.label == "mi_1y"
    assert list(result.table.columns)[-1] == "mi_1y"
    assert _labels(result) == {"p0": expected}


def test_condition_label_needs_a_listed_code(build, tmp_path):
    label = {"name": "mi_1y", "kind": "condition_onset", "codes": ["icd10:I21*"],
             "horizon_days": 365}
    folder = build.export(tmp_path / "x", [
        build.patient("p0"), build.patient("p1"), build.patient("p2"),
        build.condition("p0", "I21.4", "2025-03-01", system="http://hl7.org/fhir/sid/icd-10-cm"),
        build.condition("p1", "I10", "2025-03-01", system="http://hl7.org/fhir/sid/icd-10-cm"),
        build.condition("p2", "I21.4", "2025-03-01", system="http://snomed.info/sct")])
    assert _labels(ingest_fhir(folder, _mapping(label), salt="s")) == {"p0": 1, "p1": 0, "p2": 0}


def test_deceased_label(build, tmp_path):
    label = {"name": "death_90d", "kind": "deceased", "horizon_days": 90}
    folder = build.export(tmp_path / "x", [
        build.patient("p0"),                                          # alive
        build.patient("p1", deceasedDateTime="2025-01-01T10:00:00Z"),  # died on index day
        build.patient("p2", deceasedDateTime="2025-02-15"),           # within 90 days
        build.patient("p3", deceasedDateTime="2025-04-01"),           # index + 90: included
        build.patient("p4", deceasedDateTime="2025-04-02"),           # index + 91
        build.patient("p5", deceasedBoolean=True),                    # no date: unlabelable
        build.patient("p6", deceasedBoolean=False)])
    result = ingest_fhir(folder, _mapping(label), salt="s")
    assert _labels(result) == {"p0": 0, "p2": 1, "p3": 1, "p4": 0, "p6": 0}
    assert result.summary.excluded_patients == {
        "deceased on/before the index date, or without a date": 2}
    assert result.summary.n_patients == 5


@pytest.mark.parametrize(("kind", "values", "expected"), [
    ("observation_above", [6.4, 6.5], 0),     # strictly above 6.5
    ("observation_above", [6.4, 6.6], 1),
    ("observation_below", [6.6, 6.5], 0),
    ("observation_below", [6.6, 6.4], 1),
])
def test_observation_threshold_labels(build, tmp_path, kind, values, expected):
    label = {"name": "y", "kind": kind, "codes": ["loinc:4548-4"], "horizon_days": 180,
             "threshold": 6.5, "unit": "%", "analyte": "hba1c"}
    obs = [build.obs("p0", "4548-4", v, "%", f"2025-0{i + 2}-01", oid=f"o{i}")
           for i, v in enumerate(values)]
    # A high value on the index day is a feature, and one after the horizon is too late.
    obs += [build.obs("p0", "4548-4", 50.0 if kind.endswith("above") else 1.0, "%", d)
            for d in ("2025-01-01", "2025-07-01")]
    folder = build.export(tmp_path / "x", [build.patient("p0"), *obs])
    result = ingest_fhir(folder, _mapping(label), salt="s")
    assert _labels(result) == {"p0": expected}
    assert result.table["hba1c"].iloc[0] == (50.0 if kind.endswith("above") else 1.0)


def test_observation_threshold_converts_units(build, tmp_path):
    label = {"name": "hyperglycaemia", "kind": "observation_above", "codes": ["loinc:15074-8"],
             "horizon_days": 30, "threshold": 200, "unit": "mg/dL", "analyte": "glucose"}
    folder = build.export(tmp_path / "x", [
        build.patient("p0"), build.patient("p1"),
        build.obs("p0", "15074-8", 11.2, "mmol/L", "2025-01-10"),   # 201.8 mg/dL
        build.obs("p1", "15074-8", 11.0, "mmol/L", "2025-01-10")])  # 198.2 mg/dL
    assert _labels(ingest_fhir(folder, _mapping(label), salt="s")) == {"p0": 1, "p1": 0}


def test_first_encounter_index(build, tmp_path):
    label = {"name": "mi_30d", "kind": "condition_onset", "codes": [f"snomed:{MI}"],
             "horizon_days": 30}
    index = {"kind": "first_encounter", "encounter_classes": ["IMP"]}
    folder = build.export(tmp_path / "x", [
        build.patient("p0", birth="1950-03-01"), build.patient("p1"), build.patient("p2"),
        build.encounter("p0", "AMB", "2019-01-01T10:00:00Z"),     # not an admission
        build.encounter("p0", "IMP", "2020-03-01T10:00:00Z"),     # index of p0
        build.encounter("p0", "IMP", "2021-01-01T10:00:00Z"),
        build.condition("p0", MI, "2020-03-31"),                  # index + 30
        build.encounter("p1", "IMP", "2022-05-01T10:00:00Z"),
        build.condition("p1", MI, "2022-06-01"),                  # index + 31
        build.encounter("p2", "AMB", "2022-05-01T10:00:00Z")])    # no admission: no row
    result = ingest_fhir(folder, _mapping(label, index), salt="s")
    assert _labels(result) == {"p0": 1, "p1": 0}
    assert result.summary.excluded_patients == {"no index date (no qualifying encounter)": 1}
    p0 = result.table.loc[result.table["patient_key"] == patient_key("p0", "s")].iloc[0]
    assert p0["age"] == pytest.approx(70.0, abs=0.01)
    assert result.summary.index_date is None


def test_export_date_index_from_manifest_or_latest_date(build, tmp_path):
    mapping = mapping_from_dict({"index": {"kind": "export_date"},
                                 "observations": [{"name": "hba1c", "codes": ["loinc:4548-4"]}]})
    folder = build.export(tmp_path / "x", [build.patient("p0", birth="2000-01-01"),
                                           build.obs("p0", "4548-4", 6.1, "%", "2024-01-01")])
    assert ingest_fhir(folder, mapping, salt="s").summary.index_date.isoformat() == "2024-01-01"
    outputs = [{"type": t, "url": f"https://fhir.example/files/{t}.000.ndjson"}
               for t in ("Patient", "Observation")]
    (folder / "manifest.json").write_text(json.dumps(
        {"transactionTime": "2026-01-01T00:00:00Z", "request": "x", "output": outputs}))
    result = ingest_fhir(folder, mapping, salt="s")
    assert result.summary.index_date.isoformat() == "2026-01-01"
    assert result.table["age"].iloc[0] == pytest.approx(26.0, abs=0.01)


def test_export_date_without_any_date_is_an_error(build, tmp_path):
    mapping = mapping_from_dict({"index": {"kind": "export_date"}})
    folder = build.export(tmp_path / "x", [build.patient("p0")])
    with pytest.raises(DataError, match="index is the export date"):
        ingest_fhir(folder, mapping, salt="s")


def test_planned_resources_and_last_updated_do_not_move_the_export_date(build, tmp_path):
    mapping = mapping_from_dict({"index": {"kind": "export_date"},
                                 "encounters": [{"name": "n_encounters"}]})
    planned = build.encounter("p0", "AMB", "2031-03-01")
    planned["status"] = "planned"
    folder = build.export(tmp_path / "x", [
        build.patient("p0"), build.encounter("p0", "AMB", "2024-12-01"), planned,
        {**build.encounter("p0", "AMB", "2024-11-01"),
         "meta": {"lastUpdated": "2030-01-01T00:00:00Z"}}])
    result = ingest_fhir(folder, mapping, salt="s")
    assert result.summary.index_date.isoformat() == "2024-12-01"
    assert result.table["n_encounters"].tolist() == [2]
    assert result.summary.notes == ()


def test_an_inferred_export_date_far_after_the_data_gets_a_note(build, tmp_path):
    mapping = mapping_from_dict({"index": {"kind": "export_date"},
                                 "encounters": [{"name": "n_encounters"}]})
    folder = build.export(tmp_path / "x", [build.patient("p0")] + [
        build.encounter("p0", "AMB", f"2024-{m:02d}-01") for m in range(1, 13)] + [
        build.encounter("p0", "AMB", "2042-01-01")])   # a mistyped year
    result = ingest_fhir(folder, mapping, salt="s")
    (note,) = result.summary.notes
    assert "days after 99% of the dated events" in note and "2042" not in note


def test_describe_label():
    text = describe_label(_mapping({"name": "y", "kind": "observation_above",
                                    "codes": ["loinc:4548-4"], "horizon_days": 90,
                                    "threshold": 6.5, "unit": "%"}).label)
    assert text == ("1 if an Observation with one of 1 codes is above 6.5 % in the 90 days "
                    "after the index date (index day excluded)")


def test_impossible_ages_are_missing_and_counted(build, tmp_path):
    mapping = mapping_from_dict({"index": {"kind": "fixed", "date": "2025-01-01"}})
    births = {"ok": "1960-01-01", "placeholder": "0001-01-01", "far": "9999-12-31",
              "after": "2025-06-01", "oldest": "1905-01-02", "newborn": "2025-01-01"}
    folder = build.export(tmp_path / "x", [build.patient(p, birth=b) for p, b in births.items()])
    result = ingest_fhir(folder, mapping, salt="s", keep_patient_ids=True)
    ages = dict(zip(result.patient_ids, result.table["age"], strict=True))
    assert ages["ok"] == pytest.approx(65.0, abs=0.01) and ages["newborn"] == 0.0
    assert ages["oldest"] == pytest.approx(120.0, abs=0.01)
    assert all(ages[p] != ages[p] for p in ("placeholder", "far", "after"))   # NaN
    assert result.summary.dropped_values == {
        "age: birthDate after the index date or more than 120 years before it": 3}
