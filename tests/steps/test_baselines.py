"""The direct DP-SGD baseline's budget (steps/baselines.py): the run's total ε, whatever the
path — no training, dp-accounting recomputes each case."""

from __future__ import annotations

import dp_accounting as dpa
import pytest

from medistill.config import parse_config
from medistill.data.schema import BINARY, NUMERIC, FeatureSpec, TableSchema
from medistill.plan import RunFacts, plan_run
from medistill.privacy.ledger import PrivacyLedger, epsilon_of
from medistill.steps.baselines import direct_budget
from medistill.teachers.dp_ranges import ranges_event

SCHEMA = TableSchema(features=(FeatureSpec("age", NUMERIC), FeatureSpec("bp", NUMERIC),
                               FeatureSpec("year", NUMERIC), FeatureSpec("smoker", BINARY)),
                     label="event", classes=("0", "1"))
COUNTS = dpa.GaussianDpEvent(60.0)


def _run(n: int, epsilon: float, **sections):
    raw = {"data": {"source": "builtin", "builtin": {"name": "cohort"}},
           "privacy": {"target_epsilon": epsilon}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    config = parse_config(raw)
    ledger = PrivacyLedger(delta=1e-5)
    ledger.record("patient_counts", COUNTS, "noisy per-class counts")
    facts = RunFacts(schema=SCHEMA, class_counts=(int(0.7 * n), n - int(0.7 * n)), delta=1e-5,
                     spent=(COUNTS,))
    return config, plan_run(config, facts), ledger, facts


@pytest.mark.parametrize(("n", "epsilon"), [(400, 1.0), (600, 3.0), (8000, 1.0)])
def test_on_the_dp_teacher_path_it_buys_its_ranges_within_the_target(n: int, epsilon: float) -> None:
    config, plan, ledger, facts = _run(n, epsilon)
    assert plan.dp_teacher == "dp_ebm"
    budget = direct_budget(config, plan, ledger, facts, n)
    assert budget.own_preprocessing and budget.columns == ("age", "bp", "year")
    # recomputed from the events alone: counts, the DP-SGD, the ranges
    events = [COUNTS, budget.schedule.event(budget.noise), ranges_event(budget.ranges_noise)]
    total = epsilon_of(events, ledger.delta, "pld")
    assert total == pytest.approx(epsilon_of(budget.events(), ledger.delta, "pld"))
    assert 0.98 * epsilon <= total <= epsilon
    # the ranges take a bounded part: the DP-SGD alone costs most of it
    alone = epsilon_of([budget.schedule.event(budget.noise)], ledger.delta, "pld")
    assert 0.5 * epsilon <= alone < total


def test_declared_ranges_leave_all_of_it_to_dp_sgd() -> None:
    priors = {c: {"min": 0, "max": 300} for c in ("age", "bp", "year")}
    config, plan, ledger, facts = _run(600, 3.0, transfer={"priors": priors})
    budget = direct_budget(config, plan, ledger, facts, 600)
    assert budget.own_preprocessing and budget.columns == () and budget.ranges_noise is None
    assert 0.98 * 3.0 <= epsilon_of(budget.events(), ledger.delta, "pld") <= 3.0


def test_off_the_dp_teacher_path_it_pays_the_transfer_stages_and_reuses_the_student_s() -> None:
    config, plan, ledger, facts = _run(12000, 3.0, teachers={"dp_teacher": "none"})
    ledger.record("transfer_synthesizer", dpa.GaussianDpEvent(8.0), "DP marginals")
    ledger.record("labels", dpa.GaussianDpEvent(3.0), "not paid by the baseline")
    budget = direct_budget(config, plan, ledger, facts, 12000)
    assert not budget.own_preprocessing and budget.columns == ()
    assert len(budget.spent) == 2                          # counts and synthesizer, not labels
    assert 0.98 * 3.0 <= epsilon_of(budget.events(), ledger.delta, "pld") <= 3.0
