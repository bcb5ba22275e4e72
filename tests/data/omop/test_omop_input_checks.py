"""Bad CDM input is a clear error before long work, naming the table, column, file and line
and the expected format (never a value or a person id); tables the configuration does not
use may be missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medistill.config import OmopConfig, parse_config
from medistill.data.omop import loader, read_omop
from medistill.errors import ConfigError, DataError

from .conftest import COND_ROOT, LAB, OTHER_DRUG, OUTCOME_ROOT, TARGET_ROOT, write_duckdb

DECLARED = {"condition": [COND_ROOT], "drug": [OTHER_DRUG], "measurement": [LAB]}


def _config(database, *, declared=DECLARED, **extra) -> OmopConfig:
    covariates = extra.pop("covariates", {})
    if declared is not None:
        covariates = {"concepts": declared, **covariates}
    return OmopConfig.model_validate({
        "database": str(database), "target": {"concepts": [TARGET_ROOT], "washout_days": 365},
        "outcome": {"concepts": [OUTCOME_ROOT]}, "covariates": covariates, **extra})


def _csv_folder(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def _dates_as(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if column.endswith("_date"):
            frame[column] = pd.to_datetime(frame[column]).dt.strftime(fmt)
    return frame


def _us_measurements(cdm_tables) -> dict[str, pd.DataFrame]:
    """Person 1's latest measurement (value 9) on 10 May 2012, 22 days before the index date;
    written 05/10/2012, it would be 5 October (after the index date) if read as DD/MM."""
    tables = dict(cdm_tables)
    tables["measurement"] = pd.DataFrame({
        "measurement_id": [1, 2], "person_id": [1, 1], "measurement_concept_id": [LAB, LAB],
        "measurement_date": ["01/01/2012", "05/10/2012"], "value_as_number": [5.0, 9.0]})
    return tables


def test_a_duplicated_person_row_is_an_error(cdm_tables, tmp_path):
    tables = dict(cdm_tables)
    person = cdm_tables["person"]
    tables["person"] = pd.concat([person, person.iloc[[0, 1]]], ignore_index=True)
    with pytest.raises(DataError, match=r"person_id of the CDM table 'person'.*not unique: "
                                        r"2 person id") as info:
        read_omop(_config(write_duckdb(tables, tmp_path / "cdm.duckdb")))
    assert "MRN" not in str(info.value)


def test_us_dates_in_a_csv_file_are_refused_with_file_column_and_line(cdm_tables, tmp_path):
    folder = _csv_folder(_us_measurements(cdm_tables), tmp_path)
    with pytest.raises(DataError, match=r"measurement_date .*'measurement' \(file "
                                        r"measurement\.csv, first at line 2\).*YYYY-MM-DD") as info:
        read_omop(_config(folder))
    assert "date_format" in str(info.value) and "05/10" not in str(info.value)


def test_a_declared_date_format_reads_every_text_date(cdm_tables, tmp_path):
    tables = {name: _dates_as(frame, "%m/%d/%Y") for name, frame in cdm_tables.items()}
    tables["measurement"] = _us_measurements(cdm_tables)["measurement"]
    table = read_omop(_config(_csv_folder(tables, tmp_path), date_format="%m/%d/%Y")).table
    assert table["person_key"].tolist() == ["1", "2", "6"]
    assert table["measurement_6000_30d"].tolist() == [1, 0, 0]   # 10 May, not 5 October
    assert table["measurement_6000_30d_value"].tolist()[0] == 9.0


def test_a_declared_date_format_is_the_only_rule(cdm_tables, tmp_path):
    with pytest.raises(DataError, match="cannot be read as a date written as '%m/%d/%Y'"):
        read_omop(_config(_csv_folder(cdm_tables, tmp_path), date_format="%m/%d/%Y"))


@pytest.mark.parametrize("fmt", ["%Y%m%d", "%d/%m/%Y"])
def test_non_iso_dates_name_the_column_not_an_empty_cohort(cdm_tables, tmp_path, fmt):
    tables = {name: _dates_as(frame, fmt) for name, frame in cdm_tables.items()}
    with pytest.raises(DataError, match=r"drug_exposure_start_date of the CDM table "
                                        r"'drug_exposure' \(file drug_exposure\.csv"):
        read_omop(_config(_csv_folder(tables, tmp_path)))


def _decimal_commas(cdm_tables, tmp_path):
    tables = dict(cdm_tables)
    tables["measurement"] = cdm_tables["measurement"].assign(value_as_number=["5,0", "7,0"])
    return _csv_folder(tables, tmp_path)


def test_a_decimal_comma_is_refused(cdm_tables, tmp_path):
    with pytest.raises(DataError, match=r"value_as_number of the CDM table 'measurement' "
                                        r"\(file measurement\.csv, first at line 2\).*decimal"):
        read_omop(_config(_decimal_commas(cdm_tables, tmp_path)))


def test_unused_values_are_not_read(cdm_tables, tmp_path):
    config = _config(_decimal_commas(cdm_tables, tmp_path),
                     covariates={"measurement_values": False})
    assert "measurement_6000_365d" in read_omop(config).table


def test_text_dates_in_a_database_follow_the_same_rule(cdm_tables, tmp_path):
    tables = dict(cdm_tables)
    tables["observation_period"] = _dates_as(cdm_tables["observation_period"], "%d.%m.%Y")
    with pytest.raises(DataError, match=r"observation_period_start_date of the CDM table "
                                        r"'observation_period' holds"):
        read_omop(_config(write_duckdb(tables, tmp_path / "cdm.duckdb")))


def test_an_unreadable_person_id_is_reported_not_dropped(cdm_tables, tmp_path):
    tables = dict(cdm_tables)
    conditions = cdm_tables["condition_occurrence"].astype({"person_id": str})
    conditions.loc[0, "person_id"] = "P-1"
    tables["condition_occurrence"] = conditions
    with pytest.raises(DataError, match=r"person_id of the CDM table 'condition_occurrence' "
                                        r"\(file condition_occurrence\.csv, first at line 2\)"):
        read_omop(_config(_csv_folder(tables, tmp_path)))


def test_an_empty_vocabulary_is_refused_before_anything_is_charged(cdm_tables, tmp_path,
                                                                   monkeypatch):
    def charged(*args, **kwargs):
        raise AssertionError("the DP count ran")

    monkeypatch.setattr(loader, "select_concepts", charged)
    tables = dict(cdm_tables)
    tables["concept"] = cdm_tables["concept"].iloc[0:0]
    with pytest.raises(DataError, match="no standard concept .* condition, drug, procedure, "
                                        "measurement") as info:
        read_omop(_config(write_duckdb(tables, tmp_path / "cdm.duckdb"), declared=None))
    assert "covariates.domains" in str(info.value)


def test_a_missing_table_that_is_not_used_is_fine(cdm_tables, tmp_path):
    tables = {k: v for k, v in cdm_tables.items() if k != "procedure_occurrence"}
    table = read_omop(_config(write_duckdb(tables, tmp_path / "cdm.duckdb"))).table
    assert table["person_key"].tolist() == ["1", "2", "6"]


def test_a_missing_table_names_the_field_that_uses_it(cdm_tables, tmp_path):
    tables = {k: v for k, v in cdm_tables.items() if k != "procedure_occurrence"}
    database = write_duckdb(tables, tmp_path / "cdm.duckdb")
    with pytest.raises(DataError, match=r"no 'procedure_occurrence' table.*Remove 'procedure' "
                                        r"from data\.omop\.covariates\.domains"):
        read_omop(_config(database, declared=None))
    config = _config(database, outcome={"concepts": [OUTCOME_ROOT],
                                        "domains": ["condition", "observation"]})
    with pytest.raises(DataError, match=r"no 'observation' table.*Remove 'observation' from "
                                        r"data\.omop\.outcome\.domains"):
        read_omop(config)


def _parse(omop: dict):
    return parse_config({"data": {"source": "omop", "omop": omop},
                         "privacy": {"target_epsilon": 3.0}}, source="p.yaml")


OMOP = {"database": "cdm.duckdb", "target": {"concepts": [1]}, "outcome": {"concepts": [2]}}


def test_declared_concepts_outside_the_domains_are_refused():
    with pytest.raises(ConfigError, match="covariates.*'measurement'.*domains"):
        _parse({**OMOP, "covariates": {"domains": ["condition"],
                                       "concepts": {"condition": [3], "measurement": [4]}}})


@pytest.mark.parametrize("fmt", ["%m/%Y", "dd/mm/yyyy", 20120101])
def test_a_date_format_must_read_a_full_date(fmt):
    with pytest.raises(ConfigError, match="date_format"):
        _parse({**OMOP, "date_format": fmt})
    assert _parse({**OMOP, "date_format": "%d.%m.%Y"}).data.omop.date_format == "%d.%m.%Y"


def test_an_unreadable_concept_id_is_not_taken_for_the_target(cdm_tables, tmp_path):
    tables = dict(cdm_tables)
    drugs = cdm_tables["drug_exposure"].astype({"drug_concept_id": str})
    drugs.loc[drugs["person_id"] == 7, "drug_concept_id"] = "RX-4000"
    tables["drug_exposure"] = drugs
    with pytest.raises(DataError, match=r"drug_concept_id of the CDM table 'drug_exposure' "
                                        r"\(file drug_exposure\.csv, first at line 10\)"):
        read_omop(_config(_csv_folder(tables, tmp_path)))
