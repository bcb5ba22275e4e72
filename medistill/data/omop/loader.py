"""``read_omop``: an OMOP CDM in, one row per person of the target cohort out.

1. Concept sets (target, outcome, declared covariates) are expanded through
   ``concept_ancestor``.
2. Only the needed rows are read from the backend: the target entries, then the person,
   observation-period and event rows of the persons in them.
3. The rows are staged in an in-process DuckDB with canonical names and types, and
   :mod:`medistill.data.omop.sql` computes the population, the label and the covariates.

The person id stays in memory (the ``person_key`` column, dropped from every artifact like
any patient id); source values are never read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.config import OmopConfig
from medistill.data.omop import sql
from medistill.data.omop.selection import STAGE, select_concepts
from medistill.data.omop.source import CdmSource, open_source
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


def expand(concepts: Iterable[int], ancestors: pd.DataFrame) -> set[int]:
    """The concepts and all their descendants (``concept_ancestor`` rows)."""
    wanted = {int(c) for c in concepts}
    mine = ancestors[ancestors["ancestor_concept_id"].isin(wanted)]
    return wanted | set(mine["descendant_concept_id"].astype("int64").tolist())


def _ancestors(src: CdmSource, roots: set[int]) -> pd.DataFrame:
    if not roots:
        return pd.DataFrame({"ancestor_concept_id": [], "descendant_concept_id": []})
    if not src.has_table("concept_ancestor"):
        raise DataError(f"{src.name}: concept sets are expanded through the vocabulary's "
                        "'concept_ancestor' table, which this CDM lacks.",
                        hint="Load the OHDSI vocabulary tables into the CDM.")
    rows = src.read("concept_ancestor", ["ancestor_concept_id", "descendant_concept_id"],
                    ("ancestor_concept_id", sorted(roots)))
    return rows.astype("int64")


def _target_rows(src: CdmSource, config: OmopConfig, target_concepts: set[int]) -> pd.DataFrame:
    target = config.target
    if target.cohort_id is not None:
        rows = src.read("cohort", ["subject_id", "cohort_start_date"],
                        ("cohort_definition_id", [target.cohort_id]))
        rows.columns = ["person_id", "start_date"]
        what = f"cohort_definition_id {target.cohort_id} of the cohort table"
    else:
        table, concept, date, _, _ = DOMAINS["drug"]
        rows = src.read(table, ["person_id", date], (concept, sorted(target_concepts)))
        rows.columns = ["person_id", "start_date"]
        what = "exposures to the target concept set"
    if rows.empty:
        raise DataError(f"{src.name}: the target cohort is empty (no {what}).",
                        hint="Check data.omop.target against the CDM.")
    return rows


def _events(src: CdmSource, domains: Iterable[str], persons: list[int]) -> pd.DataFrame:
    parts = []
    for domain in domains:
        table, concept, date, value, _ = DOMAINS[domain]
        columns = ["person_id", concept, date] + ([value] if value else [])
        rows = src.read(table, columns, ("person_id", persons))
        parts.append(pd.DataFrame({
            "domain": domain, "person_id": rows["person_id"], "concept_id": rows[concept],
            "event_date": rows[date],
            "value": rows[value] if value else np.nan}))
    return pd.concat(parts, ignore_index=True)


def _stage(con, name: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
    """``frame`` as table ``name`` with canonical types (TRY_CAST: CDMs exported as text)."""
    con.register("_staged", frame)
    select = ", ".join(f'TRY_CAST("{c}" AS {t}) AS {c}' for c, t in types.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select} FROM _staged")
    con.unregister("_staged")


def _candidates(src: CdmSource, domains: tuple[str, ...], exclude: set[int]) -> pd.DataFrame:
    """The public candidate list: standard concepts of the vocabulary, per domain."""
    if not src.has_table("concept"):
        raise DataError(f"{src.name}: choosing covariate concepts needs the vocabulary's "
                        "'concept' table (the public list of candidates).",
                        hint="Load the vocabulary, or declare data.omop.covariates.concepts.")
    concepts = src.read("concept", ["concept_id", "domain_id", "standard_concept"])
    by_domain = {DOMAINS[d][4]: d for d in domains}
    concepts = concepts[concepts["domain_id"].isin(by_domain)
                        & (concepts["standard_concept"] == "S")]
    concepts = concepts[~concepts["concept_id"].astype("int64").isin(exclude)]
    out = pd.DataFrame({"domain": concepts["domain_id"].map(by_domain),
                        "concept_id": concepts["concept_id"].astype("int64")})
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
        return _read(src, config, label or DEFAULT_LABEL, duckdb.connect(":memory:"))
    finally:
        src.close()


def _read(src: CdmSource, config: OmopConfig, label: str, con) -> OmopTable:
    cov = config.covariates
    declared = cov.concepts
    roots = set(config.target.concepts) | set(config.outcome.concepts)
    if declared is not None:
        roots |= {c for ids in declared.values() for c in ids}
    ancestors = _ancestors(src, roots)
    target_concepts = expand(config.target.concepts, ancestors)
    outcome_concepts = expand(config.outcome.concepts, ancestors)
    target = _target_rows(src, config, target_concepts)
    persons = sorted(set(target["person_id"].astype("int64").tolist()))
    domains = tuple(dict.fromkeys((*cov.domains, *config.outcome.domains)))
    _stage(con, "target_rows", target, {"person_id": "BIGINT", "start_date": "DATE"})
    periods = src.read("observation_period", ["person_id", "observation_period_start_date",
                                              "observation_period_end_date"],
                       ("person_id", persons))
    periods.columns = ["person_id", "start_date", "end_date"]
    _stage(con, "observation_period", periods,
           {"person_id": "BIGINT", "start_date": "DATE", "end_date": "DATE"})
    _stage(con, "person", src.read("person", ["person_id", "gender_concept_id", "year_of_birth"],
                                   ("person_id", persons)),
           {"person_id": "BIGINT", "gender_concept_id": "BIGINT", "year_of_birth": "INTEGER"})
    _stage(con, "events", _events(src, domains, persons),
           {"domain": "VARCHAR", "person_id": "BIGINT", "concept_id": "BIGINT",
            "event_date": "DATE", "value": "DOUBLE"})
    _stage(con, "outcome_concepts", pd.DataFrame({"concept_id": sorted(outcome_concepts)}),
           {"concept_id": "BIGINT"})
    tar = config.time_at_risk
    pop = sql.population(con, washout_days=config.target.washout_days,
                         tar_start=tar.start_days, tar_end=tar.end_days,
                         outcome_domains=config.outcome.domains)
    if pop.empty:
        raise DataError(f"{src.name}: no person of the target cohort is eligible (washout, "
                        "prior outcome, observation to the end of the time at risk).",
                        hint="Check data.omop.target.washout_days and time_at_risk.")

    caveats: list[str] = []
    events: list[tuple[str, dpa.DpEvent, str]] = []
    if declared is not None:
        chosen = [(d, int(c)) for d in cov.domains for c in declared.get(d, ())]
        features = _feature_rows(chosen, cov.windows, ancestors, cov.measurement_values)
        caveats.append("OMOP covariate concepts were declared in the pipeline file (public).")
    else:
        candidates = _candidates(src, cov.domains, target_concepts | outcome_concepts)
        pairs = sql.candidate_pairs(con, window_days=max(cov.windows), domains=cov.domains)
        index = pd.Series(np.arange(len(candidates)),
                          index=pd.MultiIndex.from_frame(candidates))
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
        if sel.min_persons < 3 * selection.noise_std:
            caveats.append(f"The OMOP concept threshold ({sel.min_persons:g} persons) is below "
                           f"3 noise standard deviations ({selection.noise_std:.3g}): some "
                           "chosen concepts may be carried by no one (noise only).")
        chosen = [(str(candidates["domain"].iat[i]), int(candidates["concept_id"].iat[i]))
                  for i in selection.selected]
        features = _feature_rows(chosen, cov.windows, None, cov.measurement_values)
        events.append((STAGE, selection.event, "OMOP covariate concepts: "
                       + selection.describe()))
        caveats.append("OMOP covariate concepts were chosen by a DP noisy count of persons "
                       f"per concept (charged in the ledger as '{STAGE}'); the candidates are "
                       "the vocabulary's standard concepts, which are public.")
    _stage(con, "feature_concepts", features,
           {"name": "VARCHAR", "kind": "VARCHAR", "domain": "VARCHAR", "concept_id": "BIGINT",
            "window_days": "INTEGER"})
    table = _assemble(pop, sql.covariates(con), features, label)
    return OmopTable(table, label, PERSON_KEY, f"OMOP CDM {src.name}", tuple(caveats),
                     tuple(events))


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
