"""A tiny OMOP CDM with known answers, written as a DuckDB file and as table folders."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

TARGET_ROOT, TARGET_DRUG = 1000, 1001
OUTCOME_ROOT, OUTCOME_CHILD = 2000, 2001
COND_ROOT, COND_CHILD = 3000, 3001
OTHER_DRUG, PROCEDURE, LAB = 4000, 5000, 6000
FEMALE, MALE = 8532, 8507


def _d(text: str) -> date:
    return date.fromisoformat(text)


def tiny_cdm() -> dict[str, pd.DataFrame]:
    """Persons 1, 2, 6 are eligible (see docstrings of the tests); 3, 4, 5, 7 are not."""
    person = pd.DataFrame({
        "person_id": [1, 2, 3, 4, 5, 6, 7],
        "gender_concept_id": [FEMALE, MALE, FEMALE, MALE, FEMALE, 0, MALE],
        "year_of_birth": [1960, 1950, 1980, 1970, 1975, 1970, 1990],
        "person_source_value": [f"MRN-SECRET-{i}" for i in range(7)]})
    periods = [(1, "2010-01-01", "2015-12-31"), (2, "2010-01-01", "2015-12-31"),
               (3, "2012-01-01", "2015-12-31"), (4, "2010-01-01", "2015-12-31"),
               (5, "2010-01-01", "2012-03-01"), (6, "2010-01-01", "2012-03-01"),
               (7, "2010-01-01", "2015-12-31")]
    observation_period = pd.DataFrame(
        [(i + 1, p, _d(s), _d(e)) for i, (p, s, e) in enumerate(periods)],
        columns=["observation_period_id", "person_id", "observation_period_start_date",
                 "observation_period_end_date"])
    drugs = [(1, TARGET_DRUG, "2012-06-01"), (1, TARGET_DRUG, "2013-01-01"),
             (2, TARGET_ROOT, "2011-03-01"), (2, OTHER_DRUG, "2011-02-20"),
             (3, TARGET_DRUG, "2012-03-01"), (4, TARGET_DRUG, "2012-01-01"),
             (5, TARGET_DRUG, "2012-01-01"), (6, TARGET_DRUG, "2012-01-01"),
             (7, OTHER_DRUG, "2012-01-01")]
    drug_exposure = pd.DataFrame(
        [(i + 1, p, c, _d(d), "SECRET-SRC") for i, (p, c, d) in enumerate(drugs)],
        columns=["drug_exposure_id", "person_id", "drug_concept_id",
                 "drug_exposure_start_date", "drug_source_value"])
    conditions = [(1, COND_CHILD, "2012-05-20"), (1, OUTCOME_CHILD, "2012-08-01"),
                  (2, COND_ROOT, "2010-06-01"), (4, OUTCOME_ROOT, "2011-01-01"),
                  (6, OUTCOME_CHILD, "2012-02-01")]
    condition_occurrence = pd.DataFrame(
        [(i + 1, p, c, _d(d)) for i, (p, c, d) in enumerate(conditions)],
        columns=["condition_occurrence_id", "person_id", "condition_concept_id",
                 "condition_start_date"])
    procedure_occurrence = pd.DataFrame(
        [(1, 1, PROCEDURE, _d("2012-06-01"))],
        columns=["procedure_occurrence_id", "person_id", "procedure_concept_id",
                 "procedure_date"])
    measurement = pd.DataFrame(
        [(1, 1, LAB, _d("2012-01-01"), "5.0"), (2, 1, LAB, _d("2012-05-01"), "7.0")],
        columns=["measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                 "value_as_number"])
    ancestors = [(TARGET_ROOT, TARGET_ROOT), (TARGET_ROOT, TARGET_DRUG),
                 (OUTCOME_ROOT, OUTCOME_ROOT), (OUTCOME_ROOT, OUTCOME_CHILD),
                 (COND_ROOT, COND_ROOT), (COND_ROOT, COND_CHILD)]
    concept_ancestor = pd.DataFrame(ancestors, columns=["ancestor_concept_id",
                                                        "descendant_concept_id"])
    concepts = [(TARGET_ROOT, "Drug"), (TARGET_DRUG, "Drug"), (OUTCOME_ROOT, "Condition"),
                (OUTCOME_CHILD, "Condition"), (COND_ROOT, "Condition"),
                (COND_CHILD, "Condition"), (OTHER_DRUG, "Drug"), (PROCEDURE, "Procedure"),
                (LAB, "Measurement"), (9999, "Condition")]
    concept = pd.DataFrame([(c, f"concept {c}", d, "S") for c, d in concepts],
                           columns=["concept_id", "concept_name", "domain_id",
                                    "standard_concept"])
    return {"person": person, "observation_period": observation_period,
            "drug_exposure": drug_exposure, "condition_occurrence": condition_occurrence,
            "procedure_occurrence": procedure_occurrence, "measurement": measurement,
            "concept_ancestor": concept_ancestor, "concept": concept}


def write_duckdb(tables: dict[str, pd.DataFrame], path: Path, *, upper: bool = True) -> Path:
    """The tables in a DuckDB file; upper-case names, as some CDM exports have them."""
    import duckdb

    con = duckdb.connect(str(path))
    for name, frame in tables.items():
        frame = frame.rename(columns=str.upper) if upper else frame
        con.register("_frame", frame)
        con.execute(f"CREATE TABLE {name.upper() if upper else name} AS SELECT * FROM _frame")
        con.unregister("_frame")
    con.close()
    return path


@pytest.fixture(scope="session")
def cdm_tables() -> dict[str, pd.DataFrame]:
    return tiny_cdm()


@pytest.fixture(scope="session")
def cdm_duckdb(tmp_path_factory, cdm_tables) -> Path:
    return write_duckdb(cdm_tables, tmp_path_factory.mktemp("cdm") / "cdm.duckdb")
