import dp_accounting as dpa
import pytest

from medistill.errors import PrivacyBudgetError
from medistill.privacy.ledger import epsilon_of
from medistill.privacy.planner import StagePlan, calibrate_noise, plan_budget
from medistill.student.train import DpSgdSchedule
from medistill.teachers.aggregators import GNMax


def _stages():
    schedule = DpSgdSchedule.for_data(12000, 512, 10)
    return [StagePlan("schema_statistics", 0.05, dpa.GaussianDpEvent, 1e4, "marginals"),
            StagePlan("labels", 0.35, lambda s: GNMax.event_for(s, 50), 1e4, "GNMax"),
            StagePlan("student", 0.6, schedule.event, 50, "DP-SGD")]


@pytest.mark.parametrize(("target", "accountant"), [(3.0, "pld"), (1.0, "rdp"), (8.0, "pld")])
def test_plan_lands_within_two_percent_below_target(target: float, accountant: str) -> None:
    stages = _stages()
    noises = plan_budget(stages, target_epsilon=target, delta=1e-6, accountant=accountant)
    total = epsilon_of([s.event_for(noises[s.name]) for s in stages], 1e-6, accountant)
    assert 0.98 * target <= total <= target


def test_calibrated_noise_spends_the_budget() -> None:
    noise = calibrate_noise(dpa.GaussianDpEvent, 1.0, 1e-5, "pld")
    assert epsilon_of([dpa.GaussianDpEvent(noise)], 1e-5, "pld") <= 1.0
    assert epsilon_of([dpa.GaussianDpEvent(noise * 0.99)], 1e-5, "pld") > 1.0


def test_impossible_plan_is_an_error_with_numbers() -> None:
    stage = StagePlan("labels", 1.0, lambda s: GNMax.event_for(s, 100000), 50.0, "GNMax on 100000 queries")
    with pytest.raises(PrivacyBudgetError, match=r"stage 'labels'.*noise multiplier of (more than )?[\d.]+, above the 50"):
        plan_budget([stage], target_epsilon=0.5, delta=1e-6, accountant="rdp")


def test_plan_for_what_is_left_after_spent_events() -> None:
    spent = (dpa.GaussianDpEvent(5.0),)
    schedule = DpSgdSchedule.for_data(5000, 250, 5)
    stage = StagePlan("student", 1.0, schedule.event, 50, "DP-SGD")
    noises = plan_budget([stage], target_epsilon=2.0, delta=1e-5, accountant="pld", spent=spent)
    total = epsilon_of([*spent, schedule.event(noises["student"])], 1e-5, "pld")
    assert 0.98 * 2.0 <= total <= 2.0
    with pytest.raises(PrivacyBudgetError, match="already spent"):
        plan_budget([stage], target_epsilon=0.1, delta=1e-5, accountant="pld", spent=spent)
