"""The built-in synthetic cohort: valid FHIR, faithful to the latent table, no identifiers
in the ingested table, same result whatever n_jobs, streaming memory."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from medistill.data.cohort import OUTCOME, simulate_cohort
from medistill.data.fhir import (
    demo_mapping,
    ingest_fhir,
    patient_key,
    write_synthetic_fhir_export,
)
from medistill.data.fhir.version import ResourceValidator

SEED = 20250101  # the session export of conftest.py
N = 300
SALT = "test-salt"
# Latest values in the export are the latent values, rounded as the export writes them;
# molar units (2 decimals) converted back to mg/dL differ by at most these amounts.
TOLERANCE = {"age": 0.01, "bmi": 1e-9, "sbp": 1e-9, "dbp": 1e-9, "heart_rate": 1e-9,
             "glucose": 0.005 * 18.016 + 1e-9, "hba1c": 1e-9,
             "cholesterol": 0.005 * 38.67 + 1e-9, "hdl": 0.005 * 38.67 + 1e-9,
             "creatinine": 0.05 * 11.312 / 1000 + 1e-9}
EXACT = ["sex", "smoking", "hypertension", "diabetes", "ckd", "n_encounters", "n_medications",
         OUTCOME]


@pytest.fixture(scope="module")
def latent() -> pd.DataFrame:
    table = simulate_cohort(N, rng=np.random.default_rng(SEED))
    table["patient_key"] = [patient_key(p, SALT) for p in table["patient_id"]]
    return table


@pytest.fixture(scope="module")
def ingested(synthetic_export):
    return ingest_fhir(synthetic_export, demo_mapping(), salt=SALT, keep_patient_ids=True)


def test_every_resource_passes_full_validation(synthetic_export, ingested):
    summary = ingested.summary
    assert summary.n_skipped == 0 and summary.dropped_values == {}
    assert summary.fhir_versions == {"R4": summary.n_resources}
    manifest = json.loads((synthetic_export / "manifest.json").read_text())
    assert manifest["transactionTime"] == "2027-01-01T00:00:00Z"
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == summary.resource_counts
    assert set(counts) == {"Patient", "Encounter", "Condition", "Observation",
                           "MedicationRequest"}
    assert counts["Patient"] == N


def test_resources_are_us_core_shaped(synthetic_export):
    patient = json.loads((synthetic_export / "Patient.000.ndjson").open().readline())
    assert patient["meta"]["profile"][0].endswith("us-core-patient")
    assert {"name", "identifier", "telecom", "address", "birthDate", "gender"} <= set(patient)
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    validator = ResourceValidator("R4")
    for name in ("Observation", "Condition", "Encounter", "MedicationRequest"):
        with open(synthetic_export / f"{name}.000.ndjson") as f:
            first = json.loads(f.readline())
        assert first["meta"]["profile"][0].startswith(
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-")
        assert validator.validate(first) == ("R4", None)


def test_table_carries_the_latent_information(latent, ingested):
    table = ingested.table
    assert len(table) == N
    merged = latent.merge(table, on="patient_key", suffixes=("_latent", ""), validate="1:1")
    assert len(merged) == N
    for column, tol in TOLERANCE.items():
        truth, got = merged[f"{column}_latent"].to_numpy(float), merged[column].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(truth), err_msg=column)
        ok = ~np.isnan(truth)
        assert np.abs(got[ok] - truth[ok]).max() <= tol, column
    for column in EXACT:
        assert (merged[f"{column}_latent"].astype(str) == merged[column].astype(str)).all(), \
            column
    assert table[OUTCOME].mean() == latent[OUTCOME].mean()
    assert 0 < table[OUTCOME].mean() < 0.5


def test_unit_conversion_mattered(synthetic_export):
    units = {"mmol/L": 0, "[lb_av]": 0, "[in_i]": 0, "umol/L": 0}
    with open(synthetic_export / "Observation.000.ndjson") as f:
        for line in f:
            code = json.loads(line).get("valueQuantity", {}).get("code")
            if code in units:
                units[code] += 1
    assert all(n > 0 for n in units.values()), units


def test_no_identifier_reaches_the_table(synthetic_export, latent, ingested):
    table = ingested.table
    keys = table["patient_key"].tolist()
    assert all(re.fullmatch("[0-9a-f]{64}", k) for k in keys)  # a digest, nothing else
    text_columns = [c for c in table.columns
                    if c != "patient_key" and not pd.api.types.is_numeric_dtype(table[c])]
    assert text_columns == ["sex", "smoking"]  # every other column holds numbers only
    cells = {str(v) for column in text_columns for v in table[column].tolist()}
    cells |= set(map(str, table.columns))
    secrets: set[str] = set()
    for part in ("name", "mrn", "phone", "patient_id"):
        secrets |= set(latent[part])
    secrets |= {w for name in latent["name"] for w in name.split()}
    with open(synthetic_export / "Patient.000.ndjson") as f:
        for line in f:
            p = json.loads(line)
            secrets |= {p["address"][0]["line"][0], p["address"][0]["postalCode"],
                        p["birthDate"], p["text"]["div"]}
    for name in ("Observation", "Encounter"):
        with open(synthetic_export / f"{name}.000.ndjson") as f:
            secrets |= {json.loads(line)["id"] for line in f}
    assert [s for s in secrets for c in cells if s in c] == []
    assert secrets.isdisjoint(keys)
    assert sorted(ingested.patient_ids) == sorted(latent["patient_id"])  # only when asked


def test_parallel_and_sequential_ingestion_agree(synthetic_export, ingested):
    parallel = ingest_fhir(synthetic_export, demo_mapping(), salt=SALT, n_jobs=2,
                           validate="mapped", chunk_bytes=1 << 20)
    pd.testing.assert_frame_equal(parallel.table, ingested.table)
    assert parallel.summary.resource_counts == ingested.summary.resource_counts


def test_same_seed_same_files_and_file_rollover(tmp_path):
    a = write_synthetic_fhir_export(tmp_path / "a", 20, rng=np.random.default_rng(1),
                                    max_lines_per_file=50)
    b = write_synthetic_fhir_export(tmp_path / "b", 20, rng=np.random.default_rng(1),
                                    max_lines_per_file=50, chunk_size=7)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert "Observation.001.ndjson" in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    result = ingest_fhir(a, demo_mapping(), salt=SALT)
    assert len(result.table) == 20
    # Writing again into the same folder replaces the export instead of mixing two.
    write_synthetic_fhir_export(a, 5, rng=np.random.default_rng(2), max_lines_per_file=50)
    assert len(ingest_fhir(a, demo_mapping(), salt=SALT).table) == 5
