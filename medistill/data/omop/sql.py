"""The prediction problem in one DuckDB SQL, run in process on the staged CDM rows.

Staged tables (lower-case, canonical types; see :mod:`medistill.data.omop.loader`):
``target_rows(person_id, start_date)``, ``observation_period(person_id, start_date,
end_date)``, ``person(person_id, gender_concept_id, year_of_birth)``,
``events(domain, person_id, concept_id, event_date, value)``, ``outcome_concepts(concept_id)``
and ``feature_concepts(name, kind, domain, concept_id, window_days)``.

The study population follows PatientLevelPrediction's defaults: the first target entry per
person is the index date; it must lie in an observation period with at least the washout of
prior observation; persons with the outcome before the index date are removed; persons must
be observed to the end of the time at risk unless they have the outcome in it.
"""

from __future__ import annotations

import pandas as pd

POPULATION_SQL = """
WITH first_entry AS (
    SELECT person_id, min(start_date) AS index_date FROM target_rows GROUP BY person_id
), eligible AS (
    SELECT f.person_id, f.index_date, max(op.end_date) AS observed_until
    FROM first_entry f
    JOIN observation_period op
      ON op.person_id = f.person_id AND f.index_date BETWEEN op.start_date AND op.end_date
    WHERE date_diff('day', op.start_date, f.index_date) >= $washout
    GROUP BY f.person_id, f.index_date
), outcomes AS (
    SELECT e.person_id, e.event_date
    FROM events e JOIN outcome_concepts oc ON oc.concept_id = e.concept_id
    WHERE e.domain IN (SELECT unnest($outcome_domains::VARCHAR[]))
), labelled AS (
    SELECT g.person_id, g.index_date, g.observed_until,
           coalesce(max(o.event_date < g.index_date), false) AS prior_outcome,
           coalesce(max(o.event_date BETWEEN g.index_date + $tar_start
                                         AND g.index_date + $tar_end), false) AS in_tar
    FROM eligible g LEFT JOIN outcomes o ON o.person_id = g.person_id
    GROUP BY g.person_id, g.index_date, g.observed_until
)
SELECT l.person_id, l.index_date,
       year(l.index_date) - p.year_of_birth AS age,
       CASE p.gender_concept_id WHEN 8532 THEN 1 WHEN 8507 THEN 0 END AS sex_female,
       CAST(l.in_tar AS INTEGER) AS outcome
FROM labelled l JOIN person p ON p.person_id = l.person_id
WHERE NOT l.prior_outcome
  AND (l.in_tar OR l.observed_until >= l.index_date + $tar_end)
ORDER BY l.person_id
"""

COVARIATES_SQL = """
SELECT pop.person_id, f.name,
       CASE WHEN any_value(f.kind) = 'flag' THEN 1.0
            ELSE arg_max(e.value, e.event_date) FILTER (WHERE e.value IS NOT NULL) END AS value
FROM population pop
JOIN events e ON e.person_id = pop.person_id
JOIN feature_concepts f ON f.domain = e.domain AND f.concept_id = e.concept_id
WHERE e.event_date BETWEEN pop.index_date - f.window_days AND pop.index_date
GROUP BY pop.person_id, f.name
"""

CANDIDATE_PAIRS_SQL = """
SELECT pop.person_id, e.domain, e.concept_id, count(*) AS n_records
FROM population pop JOIN events e ON e.person_id = pop.person_id
WHERE e.event_date BETWEEN pop.index_date - $window AND pop.index_date
  AND e.domain IN (SELECT unnest($domains::VARCHAR[]))
GROUP BY pop.person_id, e.domain, e.concept_id
"""


def population(con, *, washout_days: int, tar_start: int, tar_end: int,
               outcome_domains: tuple[str, ...]) -> pd.DataFrame:
    """One row per eligible person: ``person_id, index_date, age, sex_female, outcome``;
    also kept in ``con`` as the table ``population``."""
    con.execute("CREATE OR REPLACE TEMP TABLE population AS " + POPULATION_SQL,
                {"washout": washout_days, "tar_start": tar_start, "tar_end": tar_end,
                 "outcome_domains": list(outcome_domains)})
    return con.execute("SELECT * FROM population ORDER BY person_id").df()


def candidate_pairs(con, *, window_days: int, domains: tuple[str, ...]) -> pd.DataFrame:
    """(person, domain, concept, record count) for the population in the look-back window."""
    return con.execute(CANDIDATE_PAIRS_SQL, {"window": window_days,
                                             "domains": list(domains)}).df()


def covariates(con) -> pd.DataFrame:
    """The ``feature_concepts`` covariates of the population, long: person_id, name, value."""
    return con.execute(COVARIATES_SQL).df()


__all__ = ["candidate_pairs", "covariates", "population"]
