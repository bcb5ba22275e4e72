"""``read_omop``: an OMOP CDM in, one row per person of the target cohort out.

1. Concept sets (target, outcome, declared covariates) are expanded through
   ``concept_ancestor``.
2. Only the needed rows are read from the backend: the target entries, then the person,
   observation-period and event rows of the persons in them. Every value is converted to its
   CDM type by one strict rule (:mod:`medistill.data.omop.convert`): an unreadable value is
   an error naming the table, column and expected format, never a silent NULL.
3. The rows are staged in an in-process DuckDB with canonical names and types, and
   :mod:`medistill.data.omop.sql` computes the population, the label and the covariates.

The person id stays in memory (the ``person_key`` column, dropped from every artifact like
any patient id); source values are never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.config import OmopConfig
from medistill.data.omop import convert, sql
from medistill.data.omop.selection import STAGE, select_concepts
from medistill.data.omop.source import CdmSource, _missing_table, open_source
from medistill.errors import DataError

PERSON_KEY = "person_key"
DEFAULT_LABEL = "outcome"

# domain -> (CDM table, concept column, date column, value column, vocabulary domain_id)
DOMAINS: dict[str, tuple[str, str, str, str | None, str]] = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date",
                  None, "Condition"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date", None, "Drug"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date", None,
                  "Procedure"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date",
                    "value_as_number", "Measurement"),
    "observation": ("observation", "observation_concept_id", "observation_date",
                    "value_as_number", "Observation"),
}


PERSON_TYPES = {"person_id": "BIGINT", "gender_concept_id": "BIGINT",
                "year_of_birth": "INTEGER"}


@dataclass(frozen=True)
class OmopTable:
    """What :func:`medistill.data.table.load_sensitive` needs from an OMOP source.

    ``privacy_events``: (stage, dp-accounting event, description) of every charged
    data-derived choice, for the run's ledger."""

    table: pd.DataFrame
    label: str
    id_column: str
    source: str
    caveats: tuple[str, ...]
    privacy_events: tuple[tuple[str, dpa.DpEvent, str], ...]


def _unreadable(src: CdmSource, table: str, column: str, cdm_type: str,
                date_format: str | None) -> DataError:
    """A value of ``table.column`` is present but not ``cdm_type``: where, and the format."""
    where = src.file_of(table)
    if where is not None:
        line = src.first_line(table, column, convert.unreadable_sql("v", "VARCHAR", cdm_type,
                                                                    date_format))
        where = f" (file {where}" + (f", first at line {line})" if line else ")")
    if cdm_type == "DATE":
        hint = ("Check data.omop.date_format against the export (it applies to every date "
                "stored as text)." if date_format else
                "Write dates as YYYY-MM-DD, or declare the format the export uses with "
                "data.omop.date_format (e.g. '%m/%d/%Y' for US dates).")
    elif cdm_type == "DOUBLE":
        hint = "Export numbers with '.' as the decimal separator and no thousands separator."
    else:
        hint = "Check that the export wrote this column unchanged."
    return DataError(f"{src.name}: column {column} of the CDM table '{table}'{where or ''} "
                     f"holds values that cannot be read as "
                     f"{convert.expected(cdm_type, date_format)}.", hint=hint)


def _quoted(column: str) -> str:
    return f'"{column}"'


def _read_typed(src: CdmSource, con, table: str, types: dict[str, str],
                where: tuple[str, Sequence[int]] | None = None,
                date_format: str | None = None) -> pd.DataFrame:
    """``types`` (column -> CDM type) of ``table``, every value converted by
    :mod:`medistill.data.omop.convert`; an unreadable value (also of the ``where`` column,
    whose unreadable values a text source keeps) is a :class:`DataError`."""
    checked = types | ({where[0]: "BIGINT"} if where and where[0] not in types else {})
    rows = src.read(table, list(checked), where)
    con.register("_raw", rows)
    try:
        raw = {r[0]: r[1] for r in con.execute("DESCRIBE _raw").fetchall()}
        checks = ", ".join(
            f"bool_or({convert.unreadable_sql(_quoted(c), raw[c], t, date_format)})"
            for c, t in checked.items())
        (bad,) = con.execute(f"SELECT {checks} FROM _raw").fetchall()
        for (column, cdm_type), unreadable in zip(checked.items(), bad, strict=True):
            if unreadable:
                raise _unreadable(src, table, column, cdm_type, date_format)
        select = ", ".join(f"{convert.value_sql(_quoted(c), raw[c], t, date_format)} AS "
                           f"{_quoted(c)}" for c, t in types.items())
        return con.execute(f"SELECT {select} FROM _raw").df()
    finally:
        con.unregister("_raw")


def expand(concepts: Iterable[int], ancestors: pd.DataFrame) -> set[int]:
    """The concepts and all their descendants (``concept_ancestor`` rows)."""
    wanted = {int(c) for c in concepts}
    mine = ancestors[ancestors["ancestor_concept_id"].isin(wanted)]
    return wanted | set(mine["descendant_concept_id"].astype("int64").tolist())


@dataclass(frozen=True)
class _Cdm:
    """The backend, the in-process DuckDB the rows are converted and staged in, and the
    declared format of text dates."""

    src: CdmSource
    con: object
    date_format: str | None

    @property
    def name(self) -> str:
        return self.src.name

    def read(self, table: str, types: dict[str, str],
             where: tuple[str, Sequence[int]] | None = None) -> pd.DataFrame:
        return _read_typed(self.src, self.con, table, types, where, self.date_format)


def _covariate_domains(config: OmopConfig) -> tuple[str, ...]:
    """The covariate domains whose tables are read: all listed ones for a DP choice, only
    those with declared concepts otherwise."""
    cov = config.covariates
    if cov.concepts is None:
        return cov.domains
    return tuple(d for d in cov.domains if cov.concepts.get(d))


def _required_tables(config: OmopConfig) -> dict[str, tuple[str, str | None]]:
    """Each event/cohort table the configuration reads -> (the field that makes it read, the
    domain named in that field, if any)."""
    need: dict[str, tuple[str, str | None]] = {}
    if config.target.cohort_id is not None:
        need["cohort"] = ("data.omop.target.cohort_id", None)
    else:
        need[DOMAINS["drug"][0]] = ("data.omop.target.concepts", None)
    for domain in config.outcome.domains:
        need.setdefault(DOMAINS[domain][0], ("data.omop.outcome.domains", domain))
    field = ("data.omop.covariates.domains" if config.covariates.concepts is None
             else "data.omop.covariates.concepts")
    for domain in _covariate_domains(config):
        need.setdefault(DOMAINS[domain][0], (field, domain))
    return need


def _check_tables(src: CdmSource, config: OmopConfig) -> None:
    """Every table the configuration uses exists, before anything is read; a missing one
    names the configuration field that uses it."""
    for table in ("person", "observation_period"):
        if not src.has_table(table):
            raise _missing_table(src.name, table)
    for table, (field, domain) in _required_tables(config).items():
        if src.has_table(table):
            continue
        if domain is None:
            other = ("data.omop.target.concepts" if field.endswith("cohort_id")
                     else "data.omop.target.cohort_id")
            hint = f"Load the table into the CDM, or define the target with {other} instead."
        else:
            hint = f"Remove '{domain}' from {field}, or load the table into the CDM."
        raise DataError(f"{src.name}: the OMOP CDM has no '{table}' table, which {field} "
                        "uses.", hint=hint)


def _ancestors(cdm: _Cdm, roots: set[int]) -> pd.DataFrame:
    if not roots:
        return pd.DataFrame({"ancestor_concept_id": [], "descendant_concept_id": []})
    if not cdm.src.has_table("concept_ancestor"):
        raise DataError(f"{cdm.name}: concept sets are expanded through the vocabulary's "
                        "'concept_ancestor' table, which this CDM lacks.",
                        hint="Load the OHDSI vocabulary tables into the CDM.")
    rows = cdm.read("concept_ancestor", {"ancestor_concept_id": "BIGINT",
                                         "descendant_concept_id": "BIGINT"},
                    ("ancestor_concept_id", sorted(roots)))
    return rows.dropna().astype("int64")


def _target_rows(cdm: _Cdm, config: OmopConfig, target_concepts: set[int]) -> pd.DataFrame:
    target = config.target
    if target.cohort_id is not None:
        rows = cdm.read("cohort", {"subject_id": "BIGINT", "cohort_start_date": "DATE"},
                        ("cohort_definition_id", [target.cohort_id]))
        what = f"cohort_definition_id {target.cohort_id} of the cohort table"
    else:
        table, concept, date, _, _ = DOMAINS["drug"]
        rows = cdm.read(table, {"person_id": "BIGINT", date: "DATE"},
                        (concept, sorted(target_concepts)))
        what = "exposures to the target concept set"
    rows.columns = ["person_id", "start_date"]
    rows = rows.dropna()
    if rows.empty:
        raise DataError(f"{cdm.name}: the target cohort is empty (no {what}).",
                        hint="Check data.omop.target against the CDM.")
    return rows


def _persons(cdm: _Cdm, persons: list[int]) -> pd.DataFrame:
    """The ``person`` rows of ``persons``; a person with two rows is an error (it would be
    two rows of the output table)."""
    rows = cdm.read("person", PERSON_TYPES, ("person_id", persons))
    counts = rows["person_id"].dropna().value_counts()
    duplicated = int((counts > 1).sum())
    if duplicated:
        file = cdm.src.file_of("person")
        raise DataError(f"{cdm.name}: column person_id of the CDM table 'person'"
                        f"{f' (file {file})' if file else ''} is not unique: {duplicated} "
                        "person id(s) of the target cohort have more than one row.",
                        hint="Each person has one row in 'person'; remove the duplicated rows "
                             "(e.g. overlapping parts of an export) and run again.")
    return rows


def _events(cdm: _Cdm, domains: Iterable[str], persons: list[int],
            values: Iterable[str] = ()) -> pd.DataFrame:
    """The records of ``persons`` in ``domains``; the value column only for ``values``."""
    parts = []
    for domain in domains:
        table, concept, date, value, _ = DOMAINS[domain]
        value = value if domain in values else None
        types = {"person_id": "BIGINT", concept: "BIGINT", date: "DATE"}
        rows = cdm.read(table, types | ({value: "DOUBLE"} if value else {}),
                        ("person_id", persons))
        parts.append(pd.DataFrame({
            "domain": domain, "person_id": rows["person_id"], "concept_id": rows[concept],
            "event_date": rows[date],
            "value": rows[value] if value else np.nan}))
    return pd.concat(parts, ignore_index=True)


def _stage(con, name: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
    """``frame`` (already converted, see :func:`_read_typed`) as table ``name``."""
    con.register("_staged", frame)
    select = ", ".join(f'CAST("{c}" AS {t}) AS {c}' for c, t in types.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select} FROM _staged")
    con.unregister("_staged")


def _candidates(cdm: _Cdm, domains: tuple[str, ...], exclude: set[int]) -> pd.DataFrame:
    """The public candidate list: standard concepts of the vocabulary, per domain. A covariate
    domain without any is an error (the vocabulary is not loaded), before anything is
    charged."""
    if not cdm.src.has_table("concept"):
        raise DataError(f"{cdm.name}: choosing covariate concepts needs the vocabulary's "
                        "'concept' table (the public list of candidates).",
                        hint="Load the vocabulary, or declare data.omop.covariates.concepts.")
    concepts = cdm.read("concept", {"concept_id": "BIGINT", "domain_id": "VARCHAR",
                                    "standard_concept": "VARCHAR"})
    by_domain = {DOMAINS[d][4]: d for d in domains}
    concepts = concepts[concepts["domain_id"].isin(by_domain)
                        & (concepts["standard_concept"] == "S")].dropna()
    concepts = concepts[~concepts["concept_id"].astype("int64").isin(exclude)]
    out = pd.DataFrame({"domain": concepts["domain_id"].map(by_domain),
                        "concept_id": concepts["concept_id"].astype("int64")})
    empty = [d for d in domains if d not in set(out["domain"])]
    if empty:
        raise DataError(f"{cdm.name}: the vocabulary's 'concept' table has no standard concept "
                        f"(standard_concept 'S') in the covariate domain(s) "
                        f"{', '.join(empty)}: there is nothing to choose covariates from.",
                        hint="Load the OHDSI vocabulary into the CDM, remove the domain(s) "
                             "from data.omop.covariates.domains, or declare "
                             "data.omop.covariates.concepts.")
    return out.sort_values(["domain", "concept_id"]).reset_index(drop=True)


def _feature_rows(chosen: list[tuple[str, int]], windows: tuple[int, ...],
                  ancestors: pd.DataFrame | None, values: bool) -> pd.DataFrame:
    """Feature definitions: a presence flag per concept and window, and for measurements
    (with ``values``) the latest value in the window."""
    rows = []
    for domain, concept in chosen:
        members = expand([concept], ancestors) if ancestors is not None else {concept}
        kinds = ("flag", "value") if domain == "measurement" and values else ("flag",)
        for window in windows:
            for kind in kinds:
                name = f"{domain}_{concept}_{window}d" + ("_value" if kind == "value" else "")
                rows += [(name, kind, domain, m, window) for m in sorted(members)]
    return pd.DataFrame(rows, columns=["name", "kind", "domain", "concept_id", "window_days"])


def read_omop(config: OmopConfig, *, label: str | None = None) -> OmopTable:
    """One row per person of the target cohort: ``person_key`` (in memory only), ``age``,
    ``sex_female``, the concept covariates and the label."""
    import duckdb

    src = open_source(config.database, config.cdm_schema)
    try:
        cdm = _Cdm(src, duckdb.connect(":memory:"), config.date_format)
        return _read(cdm, config, label or DEFAULT_LABEL)
    finally:
        src.close()


def _population(cdm: _Cdm, config: OmopConfig, target: pd.DataFrame,
                outcome_concepts: set[int]) -> pd.DataFrame:
    """Stage the rows of the target's persons and compute the study population."""
    con = cdm.con
    persons = sorted(set(target["person_id"].astype("int64").tolist()))
    _stage(con, "target_rows", target, {"person_id": "BIGINT", "start_date": "DATE"})
    _stage(con, "person", _persons(cdm, persons), PERSON_TYPES)
    periods = cdm.read("observation_period", {"person_id": "BIGINT",
                                              "observation_period_start_date": "DATE",
                                              "observation_period_end_date": "DATE"},
                       ("person_id", persons))
    periods.columns = ["person_id", "start_date", "end_date"]
    _stage(con, "observation_period", periods,
           {"person_id": "BIGINT", "start_date": "DATE", "end_date": "DATE"})
    cov = config.covariates
    covariate_domains = _covariate_domains(config)
    domains = tuple(dict.fromkeys((*covariate_domains, *config.outcome.domains)))
    values = ("measurement",) if cov.measurement_values and "measurement" in covariate_domains \
        else ()
    _stage(con, "events", _events(cdm, domains, persons, values),
           {"domain": "VARCHAR", "person_id": "BIGINT", "concept_id": "BIGINT",
            "event_date": "DATE", "value": "DOUBLE"})
    _stage(con, "outcome_concepts", pd.DataFrame({"concept_id": sorted(outcome_concepts)}),
           {"concept_id": "BIGINT"})
    tar = config.time_at_risk
    pop = sql.population(con, washout_days=config.target.washout_days,
                         tar_start=tar.start_days, tar_end=tar.end_days,
                         outcome_domains=config.outcome.domains)
    if pop.empty:
        raise DataError(f"{cdm.name}: no person of the target cohort is eligible (washout, "
                        "prior outcome, observation to the end of the time at risk).",
                        hint="Check data.omop.target.washout_days and time_at_risk.")
    return pop


def _read(cdm: _Cdm, config: OmopConfig, label: str) -> OmopTable:
    _check_tables(cdm.src, config)
    cov = config.covariates
    declared = cov.concepts
    roots = set(config.target.concepts) | set(config.outcome.concepts)
    if declared is not None:
        roots |= {c for ids in declared.values() for c in ids}
    ancestors = _ancestors(cdm, roots)
    target_concepts = expand(config.target.concepts, ancestors)
    outcome_concepts = expand(config.outcome.concepts, ancestors)
    candidates = (None if declared is not None else
                  _candidates(cdm, cov.domains, target_concepts | outcome_concepts))
    target = _target_rows(cdm, config, target_concepts)
    pop = _population(cdm, config, target, outcome_concepts)

    caveats: list[str] = []
    events: list[tuple[str, dpa.DpEvent, str]] = []
    if candidates is None:
        chosen = [(d, int(c)) for d in cov.domains for c in declared.get(d, ())]
        features = _feature_rows(chosen, cov.windows, ancestors, cov.measurement_values)
        caveats.append("OMOP covariate concepts were declared in the pipeline file (public).")
    else:
        features, caveat, event = _dp_features(cdm.con, cov, candidates)
        caveats += caveat
        events.append(event)
    _stage(cdm.con, "feature_concepts", features,
           {"name": "VARCHAR", "kind": "VARCHAR", "domain": "VARCHAR", "concept_id": "BIGINT",
            "window_days": "INTEGER"})
    table = _assemble(pop, sql.covariates(cdm.con), features, label)
    return OmopTable(table, label, PERSON_KEY, f"OMOP CDM {cdm.name}", tuple(caveats),
                     tuple(events))


def _dp_features(con, cov, candidates: pd.DataFrame
                 ) -> tuple[pd.DataFrame, list[str], tuple[str, dpa.DpEvent, str]]:
    """Covariate concepts chosen by the charged DP count: their feature rows, caveats and the
    ledger event."""
    pairs = sql.candidate_pairs(con, window_days=max(cov.windows), domains=cov.domains)
    index = pd.Series(np.arange(len(candidates)), index=pd.MultiIndex.from_frame(candidates))
    keys = pd.MultiIndex.from_frame(pairs[["domain", "concept_id"]].astype(
        {"concept_id": "int64"}))
    position = index.reindex(keys).to_numpy()
    known = ~np.isnan(position)
    pairs = pd.DataFrame({"person_id": pairs["person_id"].to_numpy()[known],
                          "candidate": position[known].astype(np.int64),
                          "n_records": pairs["n_records"].to_numpy()[known]})
    sel = cov.selection
    selection = select_concepts(pairs, len(candidates), min_persons=sel.min_persons,
                                noise_multiplier=sel.noise_multiplier,
                                max_per_person=sel.max_concepts_per_person,
                                max_features=sel.max_features)
    caveats = []
    if sel.min_persons < 3 * selection.noise_std:
        caveats.append(f"The OMOP concept threshold ({sel.min_persons:g} persons) is below "
                       f"3 noise standard deviations ({selection.noise_std:.3g}): some "
                       "chosen concepts may be carried by no one (noise only).")
    chosen = [(str(candidates["domain"].iat[i]), int(candidates["concept_id"].iat[i]))
              for i in selection.selected]
    features = _feature_rows(chosen, cov.windows, None, cov.measurement_values)
    caveats.append("OMOP covariate concepts were chosen by a DP noisy count of persons "
                   f"per concept (charged in the ledger as '{STAGE}'); the candidates are "
                   "the vocabulary's standard concepts, which are public.")
    return features, caveats, (STAGE, selection.event,
                               "OMOP covariate concepts: " + selection.describe())


def _assemble(pop: pd.DataFrame, long: pd.DataFrame, features: pd.DataFrame,
              label: str) -> pd.DataFrame:
    names = list(dict.fromkeys(features["name"]))
    kinds = features.drop_duplicates("name").set_index("name")["kind"]
    wide = long.pivot(index="person_id", columns="name", values="value") if len(long) else \
        pd.DataFrame(index=pd.Index([], name="person_id"))
    wide = wide.reindex(index=pop["person_id"], columns=names)
    columns: dict[str, object] = {
        PERSON_KEY: pop["person_id"].astype("int64").astype(str).to_numpy(),
        "age": pop["age"].astype(float).to_numpy(),
        "sex_female": pop["sex_female"].astype(float).to_numpy(),
    }
    for name in names:
        values = wide[name].to_numpy(dtype=float)
        columns[name] = (np.nan_to_num(values, nan=0.0).astype(np.int64)
                         if kinds[name] == "flag" else values)
    columns[label] = pop["outcome"].astype(np.int64).to_numpy()
    return pd.DataFrame(columns)


__all__ = ["DOMAINS", "OmopTable", "expand", "read_omop"]
