"""Every aggregation, window and unit conversion of a mapping against hand-computed values.

Index date 2025-01-01, look-back 365 days: the window is [2024-01-02, 2025-01-01].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.data.fhir import ingest_fhir, mapping_from_dict, patient_key
from medistill.data.fhir.aggregate import Events, final_values, reduce_events
from medistill.data.fhir.plan import AGGS

GLUCOSE = ["loinc:2339-0", "loinc:15074-8"]
SMOKING = {"never": ["snomed:266919005"], "former": ["snomed:8517006"],
           "current": ["snomed:449868002"]}
MAPPING = {
    "index": {"kind": "fixed", "date": "2025-01-01"},
    "lookback_days": 365,
    "demographics": {"age": True, "sex": True, "deceased": True, "race": True,
                     "ethnicity": True},
    "observations": [
        {"name": f"glucose_{agg}", "codes": GLUCOSE, "agg": agg, "unit": "mg/dL",
         "analyte": "glucose"} for agg in ("latest", "mean", "min", "max", "count")
    ] + [
        {"name": "weight", "codes": ["loinc:29463-7"], "unit": "kg"},
        {"name": "height", "codes": ["loinc:8302-2"], "unit": "cm"},
        {"name": "sbp", "codes": ["loinc:8480-6"], "unit": "mm[Hg]"},
        {"name": "smoking", "codes": ["loinc:72166-2"], "value": "coded",
         "categories": SMOKING},
        {"name": "hr_ever_max", "codes": ["loinc:8867-4"], "agg": "max", "lookback_days": "all"},
    ],
    "conditions": [
        {"name": "hypertension", "codes": ["icd10:I10*", "snomed:38341003"],
         "lookback_days": "all"},
        {"name": "n_diagnoses", "codes": ["snomed:38341003", "snomed:44054006"], "agg": "count",
         "lookback_days": "all"},
    ],
    "encounters": [{"name": "n_encounters"}, {"name": "n_ambulatory", "classes": ["AMB"]},
                   {"name": "any_emergency", "classes": ["actcode:EMER"], "agg": "flag"}],
    "medications": [{"name": "n_meds"}, {"name": "n_amlodipine", "codes": ["rxnorm:197361"]}],
    "procedures": [{"name": "n_procedures", "lookback_days": 30}],
}


@pytest.fixture(scope="module")
def result(tmp_path_factory, build):
    b = build
    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/"
    race = {"url": f"{us_core}us-core-race", "extension": [
        {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                               "code": "2106-3"}}]}
    resources = [
        b.patient("p1", "female", "1965-01-01", extension=[race]),
        b.patient("p2", "male", "1980", deceasedDateTime="2024-06-01"),
        b.patient("p3", "other", "2000-07-01", deceasedDateTime="2025-06-01"),
        # glucose of p1: 2024-01-01 is one day too early, 2025-01-02 one day too late
        b.obs("p1", "2339-0", 200, "mg/dL", "2024-01-01T12:00:00Z"),
        b.obs("p1", "2339-0", 90, "mg/dL", "2024-01-02"),
        b.obs("p1", "15074-8", 5.0, "mmol/L", "2024-06-01T08:00:00Z"),          # 90.08 mg/dL
        b.obs("p1", "2339-0", 110, "mg/dL", "2024-12-31T23:00:00-05:00"),
        b.obs("p1", "2339-0", 120, "mg/dL", "2025-01-01T10:00:00Z"),            # index day
        b.obs("p1", "2339-0", 300, "mg/dL", "2025-01-02T10:00:00Z"),
        b.obs("p1", "2339-0", 95, "mg/g", "2024-07-01"),                         # not convertible
        b.obs("p1", "2339-0", 999, "mg/dL", "2024-08-01", status="entered-in-error"),
        # p2: one measurement, two observations at the same instant (ties: larger value)
        b.obs("p2", "2339-0", 5.5, "mmol/L", "2024-03-01T09:00:00Z"),           # 99.088 mg/dL
        b.obs("p2", "29463-7", 154.3236, "[lb_av]", "2024-03-01"),              # 70.0 kg
        b.obs("p2", "8302-2", 70, "[in_i]", "2024-03-01"),                      # 177.8 cm
        b.obs("p1", "29463-7", 68.5, "kg", "2024-03-01"),
        b.obs("p1", "8867-4", 80, "/min", "2024-02-01T10:00:00Z"),
        b.obs("p1", "8867-4", 71, "/min", "2024-02-01T10:00:00Z"),
        b.obs("p1", "8867-4", 150, "/min", "2001-02-01"),                       # 'all' window
        {**b.obs("p1", "85354-9", None, None, "2024-10-01"), "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 131, "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 85, "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}}]},
        b.coded_obs("p1", "72166-2", "266919005", "2024-05-01"),
        b.coded_obs("p1", "72166-2", "449868002", "2024-09-01"),
        b.coded_obs("p2", "72166-2", "230059006", "2024-09-01"),                 # other
        # conditions
        b.condition("p1", "I10", "2010-05-01", system="http://hl7.org/fhir/sid/icd-10-cm"),
        b.condition("p1", "44054006", "2015-01-01"),
        b.condition("p1", "38341003", "2025-02-01"),                             # after index
        b.condition("p2", "38341003", "2020-01-01", verificationStatus={"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
             "code": "refuted"}]}),
        b.condition("p3", "38341003", None, recordedDate="2024-02-02"),          # recorded only
        # encounters
        b.encounter("p1", "AMB", "2024-05-05T10:00:00Z"),
        b.encounter("p1", "AMB", "2023-05-05T10:00:00Z"),                        # too early
        b.encounter("p1", "EMER", "2024-11-11T10:00:00Z", r5=True),
        b.encounter("p1", "IMP", "2025-03-01T10:00:00Z"),                        # after index
        {**b.encounter("p1", "AMB", "2024-05-06T10:00:00Z"), "status": "cancelled"},
        # medications and procedures
        b.medication("p1", "197361", "2024-04-01"),
        b.medication("p1", "314076", "2024-04-01"),
        b.medication("p2", "197361", "2023-04-01"),                              # too early
        b.procedure("p1", "80146002", "2024-12-15"),
        b.procedure("p1", "80146002", "2024-11-15"),                             # > 30 days
    ]
    folder = b.export(tmp_path_factory.mktemp("agg") / "export", resources)
    return ingest_fhir(folder, mapping_from_dict(MAPPING), salt="pepper", on_error="skip")


def _row(result, pid: str) -> pd.Series:
    table = result.table
    return table.loc[table["patient_key"] == patient_key(pid, "pepper")].iloc[0]


def test_nothing_was_skipped_and_one_row_per_patient(result):
    assert result.summary.n_skipped == 0
    assert len(result.table) == 3
    assert result.summary.resource_counts["Patient"] == 3
    assert result.summary.index_date.isoformat() == "2025-01-01"


def test_glucose_aggregations_with_window_and_unit_conversion(result):
    p1 = _row(result, "p1")
    in_window = [90.0, 5.0 * 18.016, 110.0, 120.0]
    assert p1["glucose_latest"] == pytest.approx(120.0)
    assert p1["glucose_mean"] == pytest.approx(sum(in_window) / 4)       # 102.52
    assert p1["glucose_min"] == pytest.approx(90.0)
    assert p1["glucose_max"] == pytest.approx(120.0)
    assert p1["glucose_count"] == 5     # counts observations, with or without a usable value
    assert result.summary.dropped_values == {
        "glucose_latest: unit 'mg/g' does not convert to mg/dL": 1,
        "glucose_mean: unit 'mg/g' does not convert to mg/dL": 1,
        "glucose_min: unit 'mg/g' does not convert to mg/dL": 1,
        "glucose_max: unit 'mg/g' does not convert to mg/dL": 1}


def test_mmol_glucose_pounds_and_inches_convert(result):
    p2 = _row(result, "p2")
    assert p2["glucose_latest"] == pytest.approx(99.088)
    assert p2["glucose_count"] == 1
    assert p2["weight"] == pytest.approx(70.0, abs=1e-4)
    assert p2["height"] == pytest.approx(177.8)
    assert _row(result, "p1")["weight"] == pytest.approx(68.5)


def test_missing_values_are_nan_and_counts_zero(result):
    p3 = _row(result, "p3")
    assert np.isnan(p3["glucose_latest"]) and np.isnan(p3["glucose_mean"])
    assert p3["glucose_count"] == 0 and p3["n_encounters"] == 0
    assert pd.isna(p3["smoking"])


def test_components_ties_and_unbounded_window(result):
    p1 = _row(result, "p1")
    assert p1["sbp"] == 131                      # a component of the blood-pressure panel
    assert p1["hr_ever_max"] == 150              # 'all': 2001 counts


def test_latest_tie_takes_the_larger_value():
    agg = np.array([AGGS.index("latest")])
    ev = Events(np.array([0, 0]), np.array([0, 0], np.int16), np.array([5, 5], np.int32),
                np.array([1.0, 1.0]), np.array([71.0, 80.0]), np.ones(2))
    assert final_values(reduce_events(ev, agg), agg).tolist() == [80.0]


def test_reducing_twice_gives_the_same_result():
    rng = np.random.default_rng(0)
    n = 500
    agg = np.arange(len(AGGS))
    ev = Events(rng.integers(0, 20, n), rng.integers(0, len(AGGS), n).astype(np.int16),
                rng.integers(0, 50, n).astype(np.int32), rng.random(n), rng.normal(size=n),
                np.ones(n))
    once = reduce_events(ev, agg)
    halves = reduce_events(Events.concat([reduce_events(ev.take(np.arange(0, 250)), agg),
                                          reduce_events(ev.take(np.arange(250, n)), agg)]), agg)
    np.testing.assert_allclose(final_values(halves, agg), final_values(once, agg))


def test_coded_values_map_to_categories(result):
    assert _row(result, "p1")["smoking"] == "current"   # the later of never / current
    assert _row(result, "p2")["smoking"] == "other"     # an answer in no category


def test_condition_flags_and_counts(result):
    p1, p2, p3 = (_row(result, p) for p in ("p1", "p2", "p3"))
    assert p1["hypertension"] == 1          # ICD-10 I10 by prefix
    assert p1["n_diagnoses"] == 1           # 44054006; the 2025 38341003 is after the index
    assert p2["hypertension"] == 0                              # refuted
    assert p3["hypertension"] == 1                              # dated by recordedDate


def test_encounter_medication_and_procedure_counts(result):
    p1, p2 = _row(result, "p1"), _row(result, "p2")
    assert p1["n_encounters"] == 2          # AMB + EMER (R5 shape); not 2023, 2025, cancelled
    assert p1["n_ambulatory"] == 1
    assert p1["any_emergency"] == 1 and p2["any_emergency"] == 0
    assert p1["n_meds"] == 2 and p1["n_amlodipine"] == 1
    assert p2["n_meds"] == 0                # 2023 is outside the window
    assert p1["n_procedures"] == 1          # 30-day window


def test_demographics(result):
    p1, p2, p3 = (_row(result, p) for p in ("p1", "p2", "p3"))
    assert p1["age"] == pytest.approx(21915 / 365.25)    # 60.0 years
    assert p2["age"] == pytest.approx(45.0, abs=0.01)     # birthDate "1980" = 1980-01-01
    assert p3["age"] == pytest.approx(24.5, abs=0.01)
    assert (p1["sex"], p2["sex"], p3["sex"]) == ("female", "male", "other")
    assert (p1["deceased"], p2["deceased"], p3["deceased"]) == (0, 1, 0)  # p3 dies after index
    assert (p1["race"], p2["race"], p1["ethnicity"]) == ("white", "unknown", "unknown")


def test_rows_are_keyed_by_salted_hash_in_key_order(result):
    keys = result.table["patient_key"].tolist()
    assert keys == sorted(keys)
    assert set(keys) == {patient_key(p, "pepper") for p in ("p1", "p2", "p3")}
    assert patient_key("p1", "pepper") != patient_key("p1", "salt")
    assert result.patient_ids is None


def test_columns_follow_the_mapping_order(result):
    assert list(result.table.columns) == ["patient_key", *mapping_from_dict(
        MAPPING).column_names()]
