"""The OMOP source on a tiny CDM with known answers: cohort, label, covariates, backends."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from medistill.config import DataConfig, OmopConfig
from medistill.data.omop import loader, read_omop
from medistill.data.omop.selection import select_concepts
from medistill.data.table import load_sensitive
from medistill.errors import DataError

from .conftest import (
    COND_ROOT,
    LAB,
    OTHER_DRUG,
    OUTCOME_ROOT,
    PROCEDURE,
    TARGET_ROOT,
)

DECLARED = {"condition": [COND_ROOT], "drug": [OTHER_DRUG], "procedure": [PROCEDURE],
            "measurement": [LAB]}


def _config(database, **covariates) -> OmopConfig:
    return OmopConfig.model_validate({
        "database": str(database), "target": {"concepts": [TARGET_ROOT], "washout_days": 365},
        "outcome": {"concepts": [OUTCOME_ROOT]},
        "time_at_risk": {"start_days": 1, "end_days": 365},
        "covariates": {"concepts": DECLARED, **covariates}})


def test_population_label_and_covariates(cdm_duckdb):
    """1: new user, outcome in the time at risk; 2: no outcome, observed to its end;
    3: too little prior observation; 4: outcome before index; 5: not observed to the end of
    the time at risk, no outcome; 6: same but with the outcome (kept); 7: never exposed."""
    table = read_omop(_config(cdm_duckdb)).table
    assert table["person_key"].tolist() == ["1", "2", "6"]
    assert table["outcome"].tolist() == [1, 0, 1]
    assert table["age"].tolist() == [52.0, 61.0, 42.0]
    assert table["sex_female"].tolist()[:2] == [1.0, 0.0] and np.isnan(table["sex_female"][2])
    # condition 3001 (a descendant of 3000) 12 days before index; 3000 itself 273 days before
    assert table["condition_3000_365d"].tolist() == [1, 1, 0]
    assert table["condition_3000_30d"].tolist() == [1, 0, 0]
    assert table["drug_4000_30d"].tolist() == [0, 1, 0]
    assert table["procedure_5000_30d"].tolist() == [1, 0, 0]  # the index day counts
    assert table["measurement_6000_365d"].tolist() == [1, 0, 0]
    assert table["measurement_6000_365d_value"].tolist()[0] == 7.0  # the latest value
    assert np.isnan(table["measurement_6000_30d_value"]).all()  # 31 days before index
    assert list(table.columns)[-1] == "outcome"


def test_no_source_value_is_read(cdm_duckdb):
    table = read_omop(_config(cdm_duckdb)).table
    assert not table.astype(str).apply(lambda c: c.str.contains("SECRET")).any().any()


def test_time_at_risk_moves_the_label(cdm_duckdb):
    config = _config(cdm_duckdb).model_copy(update={"time_at_risk": OmopConfig.model_validate(
        {"database": "x", "target": {"concepts": [1]}, "outcome": {"concepts": [1]},
         "time_at_risk": {"start_days": 100, "end_days": 365}}).time_at_risk})
    table = read_omop(config).table
    # person 1's outcome is 61 days after index: outside [100, 365]; person 6 is no longer
    # observed to the end of the time at risk without the outcome in it
    assert table["person_key"].tolist() == ["1", "2"]
    assert table["outcome"].tolist() == [0, 0]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_folder_of_tables_gives_the_same_table(cdm_duckdb, cdm_tables, tmp_path, fmt):
    for name, frame in cdm_tables.items():
        if fmt == "parquet":
            frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        else:
            frame.to_csv(tmp_path / f"{name.upper()}.csv", index=False)
    pd.testing.assert_frame_equal(read_omop(_config(tmp_path)).table,
                                  read_omop(_config(cdm_duckdb)).table)


def test_concepts_chosen_by_dp_count_are_charged(cdm_duckdb, monkeypatch):
    monkeypatch.setattr(loader, "select_concepts", functools.partial(
        select_concepts, rng=np.random.default_rng(0)))
    config = OmopConfig.model_validate({
        "database": str(cdm_duckdb), "target": {"concepts": [TARGET_ROOT]},
        "outcome": {"concepts": [OUTCOME_ROOT]},
        "covariates": {"windows": [365], "selection": {
            "min_persons": 0.5, "noise_multiplier": 1e-3, "max_concepts_per_person": 4}}})
    result = read_omop(config)
    concept_columns = [c for c in result.table.columns if c.endswith("d")]
    # carried by someone in the window: 3001, 3000, 4000, 5000, 6000 (not target/outcome)
    assert sorted(concept_columns) == ["condition_3000_365d", "condition_3001_365d",
                                       "drug_4000_365d", "measurement_6000_365d",
                                       "procedure_5000_365d"]
    ((stage, event, what),) = result.privacy_events
    assert stage == "feature_selection" and event.noise_multiplier == 1e-3
    assert "at most 4 concepts counted per person" in what


def test_load_sensitive_dispatches_omop(cdm_duckdb, monkeypatch):
    # A three-person CDM: below the input checks' minimum table (#16.4), lifted here.
    monkeypatch.setattr("medistill.data.checks.MIN_PATIENTS", 1)
    monkeypatch.setattr("medistill.data.checks.MIN_PER_CLASS", 1)
    config = DataConfig.model_validate({"source": "omop", "label": "bleed",
                                        "omop": _config(cdm_duckdb).model_dump()})
    data = load_sensitive(config, seed=0)
    assert data.labels.tolist() == [1, 0, 1]
    assert data.schema.id_column == "person_key"
    assert "person_key" not in data.features.columns and "bleed" not in data.features.columns
    assert data.privacy_events == ()  # declared concepts cost nothing


def test_17_a_covariate_no_one_has_stays_a_feature(cdm_duckdb, monkeypatch):
    """The latest value of LAB 30 days before index is missing for every person; the
    column stays a feature (which covariates reach the model follows from the declared or
    charged concept list, never from their values), with the operator's note."""
    monkeypatch.setattr("medistill.data.checks.MIN_PATIENTS", 1)
    monkeypatch.setattr("medistill.data.checks.MIN_PER_CLASS", 1)
    config = DataConfig.model_validate({"source": "omop", "label": "bleed",
                                        "omop": _config(cdm_duckdb).model_dump()})
    data = load_sensitive(config, seed=0)
    table = read_omop(_config(cdm_duckdb)).table
    assert data.schema.feature_names == [c for c in table.columns
                                         if c not in ("person_key", "outcome")]
    notes = {n.column: n.kind for n in data.notes}
    assert notes["measurement_6000_30d_value"] == "kept_empty"


def test_a_missing_table_names_it(cdm_tables, tmp_path):
    for name, frame in cdm_tables.items():
        if name != "observation_period":
            frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    with pytest.raises(DataError, match="no 'observation_period' table"):
        read_omop(_config(tmp_path))


def test_an_empty_target_is_an_error(cdm_duckdb):
    config = _config(cdm_duckdb).model_copy(update={"target": OmopConfig.model_validate(
        {"database": "x", "target": {"concepts": [424242]}, "outcome": {"concepts": [1]}}).target})
    with pytest.raises(DataError, match="target cohort is empty"):
        read_omop(config)


def test_cohort_table_as_target(cdm_tables, tmp_path):
    tables = dict(cdm_tables)
    tables["cohort"] = pd.DataFrame({
        "cohort_definition_id": [7, 7, 8], "subject_id": [1, 2, 6],
        "cohort_start_date": pd.to_datetime(["2012-06-01", "2011-03-01", "2012-01-01"]).date,
        "cohort_end_date": pd.to_datetime(["2012-06-01", "2011-03-01", "2012-01-01"]).date})
    for name, frame in tables.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    config = OmopConfig.model_validate({
        "database": str(tmp_path), "target": {"cohort_id": 7},
        "outcome": {"concepts": [OUTCOME_ROOT]}, "covariates": {"concepts": DECLARED}})
    table = read_omop(config).table
    assert table["person_key"].tolist() == ["1", "2"]
    assert table["outcome"].tolist() == [1, 0]


def test_a_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_omop(_config(tmp_path / "nope.duckdb"))


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    config = _config("x").model_copy(
        update={"database": "postgresql://reader:hunter2@127.0.0.1:1/cdm"})
    with pytest.raises(DataError, match="Cannot connect to the CDM database") as info:
        read_omop(config)
    assert "hunter2" not in str(info.value)


def test_target_needs_exactly_one_definition():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="either 'cohort_id'"):
        OmopConfig.model_validate({"database": "x", "outcome": {"concepts": [1]},
                                   "target": {"cohort_id": 1, "concepts": [2]}})
