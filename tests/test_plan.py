"""The run plan: every planning branch as a millisecond-to-second unit test (no training)."""

import math
from dataclasses import replace

import dp_accounting as dpa
import pytest

from medistill.config import parse_config
from medistill.data.schema import BINARY, NUMERIC, FeatureSpec, TableSchema
from medistill.errors import ConfigError, PrivacyBudgetError
from medistill.plan import RunFacts, n_teachers_for, plan_run
from medistill.privacy.ledger import epsilon_of
from medistill.privacy.stages import resolved_shares
from medistill.teachers.ensemble import auto_n_teachers

SCHEMA = TableSchema(features=(FeatureSpec("age", NUMERIC), FeatureSpec("bp", NUMERIC),
                               FeatureSpec("smoker", BINARY)),
                     label="event", classes=("0", "1"))


def _config(**sections) -> object:
    raw = {"data": {"source": "builtin", "builtin": {"name": "cohort"}},
           "privacy": {"target_epsilon": 3.0}, "teachers": {"dp_teacher": "none"}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return parse_config(raw)


def _facts(n: int = 12000, minority: float = 0.2, delta: float = 1e-6) -> RunFacts:
    counts = (int(n * (1 - minority)), int(n * minority))
    spent = (dpa.GaussianDpEvent(50.0),)
    return RunFacts(schema=SCHEMA, class_counts=counts, delta=delta, spent=spent)


def _composed(plan, facts) -> float:
    return epsilon_of([*facts.spent, *(s.event for s in plan.stages)], facts.delta, "pld")


def test_default_plan_spends_the_target_within_two_percent() -> None:
    facts = _facts()
    plan = plan_run(_config(), facts)
    assert 0.98 * 3.0 <= _composed(plan, facts) <= 3.0
    assert plan.schedule.steps > 0 and plan.n_teachers >= 3


def test_small_label_budget_gives_its_share_to_dp_sgd_and_says_so() -> None:
    plan = plan_run(_config(), _facts(n=3000))
    assert plan.n_queries == 0 and plan.alpha == 0.0
    assert "labels" not in {s.name for s in plan.stages}
    assert any("labels.min_queries" in note for note in plan.notes)


def test_labels_bought_when_affordable() -> None:
    plan = plan_run(_config(privacy={"target_epsilon": 8.0}, labels={"min_queries": 100}),
                    _facts(n=20000))
    assert plan.n_queries >= 100 and plan.alpha > 0
    assert {"labels", "student_dp_sgd"} <= {s.name for s in plan.stages}


def test_alpha_one_without_affordable_labels_is_a_budget_error_before_training() -> None:
    with pytest.raises(PrivacyBudgetError, match="nothing else to learn from"):
        plan_run(_config(student={"alpha": 1.0}), _facts(n=2000))


def test_plurality_and_munge_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="plurality"):
        plan_run(_config(labels={"aggregator": "plurality"}), _facts())
    with pytest.raises(ConfigError, match="MUNGE"):
        plan_run(_config(transfer={"source": "munge"}), _facts())


def test_auto_source_falls_back_to_schema_prior_on_tiny_budgets() -> None:
    plan = plan_run(_config(privacy={"target_epsilon": 0.3}), _facts(n=800))
    assert plan.transfer_kinds == ("schema_prior",)
    assert any("schema prior was used instead" in n for n in plan.notes)


def test_partial_shares_keep_the_other_defaults_and_aliases_map_to_one_name() -> None:
    shares = resolved_shares({"student": 0.9})
    assert shares["student_dp_sgd"] == 0.9 and shares["labels"] == 0.35
    with pytest.raises(ConfigError, match="two shares"):
        _config(privacy={"shares": {"student": 0.5, "student_dp_sgd": 0.5}})
    with pytest.raises(ConfigError, match="unknown stage"):
        _config(privacy={"shares": {"teacher": 0.5}})


def test_15_4_k_is_unchanged_by_adding_a_patient_when_declared() -> None:
    """Issue #15 item 4: K comes from the pipeline file or from charged noisy counts."""
    config = _config(teachers={"n_teachers": 40})
    assert n_teachers_for(config, _facts(n=10000)) == n_teachers_for(config, _facts(n=10001)) == 40
    # auto: a function of the noisy counts only (the facts), never of the data itself.
    facts = _facts(n=10000)
    assert n_teachers_for(_config(), facts) == auto_n_teachers(facts.n_train,
                                                               min(facts.class_counts))


def test_15_8_schedule_comes_from_the_plan_not_from_answered_queries() -> None:
    """The DP-SGD schedule is fixed by the plan from planned sizes, so how many queries
    Confident-GNMax answers cannot move the sample rate."""
    config = _config(privacy={"target_epsilon": 8.0}, labels={"min_queries": 100,
                                                               "aggregator": "confident_gnmax"})
    plan = plan_run(config, _facts(n=20000))
    n_examples = plan.schedule.n_examples
    assert n_examples == max(1, 20000 - plan.n_canaries // 2) + plan.repeats * plan.n_queries


def test_budget_spent_before_planning_is_left_out() -> None:
    facts = _facts()
    heavy = RunFacts(schema=SCHEMA, class_counts=facts.class_counts, delta=1e-6,
                     spent=(dpa.GaussianDpEvent(3.0),))
    plan = plan_run(_config(), heavy)
    assert _composed(plan, heavy) <= 3.0
    with pytest.raises(PrivacyBudgetError, match="already spent"):
        plan_run(_config(privacy={"target_epsilon": 0.5}), heavy)


def test_dp_teacher_path_plans_the_teacher_and_the_histograms_for_ranges() -> None:
    facts = _facts(n=5000)
    plan = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}), facts)
    assert [s.name for s in plan.stages] == ["dp_teacher_ranges", "dp_teacher", "student_dp_sgd",
                                             "recalibration"]
    assert plan.n_teacher_rows == 20_000 and plan.n_queries == 0 and plan.alpha == 1.0
    # distillation needs no noise; only the fine-tuning on sensitive rows is DP-SGD
    assert not plan.student_touches_sensitive and plan.student_noise == 0.0
    assert plan.student.epochs == 40 and 0.98 * 3.0 <= _composed(plan, facts) <= 3.0
    declared = _config(teachers={"dp_teacher": "dp_ebm"}, student={"epochs": 5,
                                                                  "recalibrate": False,
                                                                  "fine_tune": False},
                       transfer={"priors": {n: {"min": 0, "max": 1} for n in ("age", "bp")}})
    plan = plan_run(declared, facts)
    assert [s.name for s in plan.stages] == ["dp_teacher"] and plan.student.epochs == 5


def _part(plan, facts, name: str, without: tuple[str, ...] = ()) -> float:
    """ε of stage ``name`` alone over the ε of every planned stage alone but ``without``."""
    alone = {s.name: epsilon_of([s.event], facts.delta, "pld") for s in plan.stages
             if s.name not in without}
    return alone[name] / sum(alone.values())


def _ranges_fraction(plan, facts) -> float:
    """The ranges' part of everything but the fine-tuning (they are sized on the teacher's
    side; the fine-tuning takes its own part of the total)."""
    return _part(plan, facts, "dp_teacher_ranges", without=("student_dp_sgd",))


def test_fine_tuning_takes_its_fraction_next_to_the_teacher_and_is_sized_from_the_patients() -> None:
    from medistill.plan import (
        ANCHORED_FINE_TUNE_FRACTION,
        FINE_TUNE_ANCHOR_RATIO,
        FINE_TUNE_FRACTION,
        NOISY_FINE_TUNE,
        QUIET_FINE_TUNE_LEARNING_RATE,
    )

    config = _config(teachers={"dp_teacher": "dp_ebm"})
    for n, anchored in ((400, True), (5000, False), (200_000, False)):
        facts = _facts(n=n)
        plan = plan_run(config, facts)
        alone = {s.name: epsilon_of([s.event], facts.delta, "pld") for s in plan.stages}
        part = alone["student_dp_sgd"] / sum(alone.values())
        fraction = ANCHORED_FINE_TUNE_FRACTION if anchored else FINE_TUNE_FRACTION
        assert fraction * 0.9 <= part <= fraction * 1.1
        assert plan.fine_tune_anchor_ratio == (FINE_TUNE_ANCHOR_RATIO if anchored else 0.0)
        # the step size: the default where anchored, the quieter one where not
        assert plan.student.fine_tune_learning_rate == (
            config.student.fine_tune_learning_rate if anchored else QUIET_FINE_TUNE_LEARNING_RATE)
        # the rule: the noise per averaged row at the unanchored split
        noise_per_row = plan.noise("student_dp_sgd") / plan.fine_tune_schedule.batch_size
        assert (noise_per_row > NOISY_FINE_TUNE) == anchored
        schedule = plan.fine_tune_schedule
        # sized on the patients it sees: the canary audit leaves half its canaries out
        assert plan.n_canaries == min(1000, n // 10)
        assert schedule.n_examples == n - plan.n_canaries // 2
        assert schedule.steps == plan.student.fine_tune_epochs * round(1 / schedule.sample_rate)
        budget = next(s for s in plan.stages if s.name == "student_dp_sgd")
        assert budget.event == schedule.event(budget.noise)
        assert 0.98 * 3.0 <= _composed(plan, facts) <= 3.0
    off = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}, student={"fine_tune": False}),
                   _facts(n=5000))
    assert off.fine_tune_schedule is None and off.noise("student_dp_sgd") is None
    # a share the user gives is used as given
    facts = _facts(n=5000)
    mine = plan_run(_config(teachers={"dp_teacher": "dp_ebm"},
                            privacy={"target_epsilon": 3.0,
                                     "shares": {"student_dp_sgd": 0.1}}), facts)
    assert next(s.share for s in mine.stages if s.name == "student_dp_sgd") == 0.1
    assert mine.noise("student_dp_sgd") > plan_run(config, facts).noise("student_dp_sgd")
    # a learning rate the user gives is kept where the plan would lower it
    rate = plan_run(_config(teachers={"dp_teacher": "dp_ebm"},
                            student={"fine_tune_learning_rate": 0.02}), facts)
    assert rate.fine_tune_anchor_ratio == 0.0 and rate.student.fine_tune_learning_rate == 0.02


def test_ranges_share_grows_with_fewer_patients_and_is_bounded() -> None:
    from medistill.plan import RANGES_FRACTION

    config = _config(teachers={"dp_teacher": "dp_ebm"})
    fractions = [_ranges_fraction(plan_run(config, f), f)
                 for f in (_facts(n=400), _facts(n=3000), _facts(n=200_000))]
    assert fractions[0] > fractions[1] > fractions[2]
    low, high = RANGES_FRACTION
    assert high * 0.8 <= fractions[0] <= high * 1.05 and low * 0.8 <= fractions[2] <= low * 1.2
    noises = [plan_run(config, f).noise("dp_teacher_ranges") for f in (_facts(n=400),
                                                                       _facts(n=3000))]
    assert noises[0] < noises[1]
    for facts in (_facts(n=400), _facts(n=200_000)):
        assert 0.98 * 3.0 <= _composed(plan_run(config, facts), facts) <= 3.0


def test_recalibration_share_grows_with_fewer_patients_and_is_bounded() -> None:
    from medistill.plan import RECALIBRATION_FRACTION

    config = _config(teachers={"dp_teacher": "dp_ebm"})

    def part(plan, facts) -> float:
        return _part(plan, facts, "recalibration")

    small, large = _facts(n=400), _facts(n=200_000)
    parts = [part(plan_run(config, f), f) for f in (small, large)]
    low, high = RECALIBRATION_FRACTION
    assert parts[0] > parts[1] and low * 0.8 <= parts[1] and parts[0] <= high * 1.05
    # At 400 patients (4 bins of ~100) the noise std per count stays below a third of a bin.
    plan = plan_run(config, small)
    assert plan.recalibration_bins == 4
    assert math.sqrt(2) * plan.noise("recalibration") <= 400 / 4 / 3


def test_ranges_share_given_by_the_user_is_kept() -> None:
    facts = _facts(n=400)
    mine = plan_run(_config(teachers={"dp_teacher": "dp_ebm"},
                            privacy={"target_epsilon": 3.0,
                                     "shares": {"dp_teacher_ranges": 0.01}}), facts)
    auto = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}), facts)
    assert next(s.share for s in mine.stages if s.name == "dp_teacher_ranges") == 0.01
    assert mine.noise("dp_teacher_ranges") > 3 * auto.noise("dp_teacher_ranges")


def test_recalibration_is_a_charged_stage_by_default() -> None:
    facts = _facts(n=5000)
    plan = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}), facts)
    assert "recalibration" in [s.name for s in plan.stages] and plan.recalibration_bins == 12
    assert 0.98 * 3.0 <= _composed(plan, facts) <= 3.0


def test_auto_teacher_is_the_dp_ebm_for_binary_outcomes_and_pate_otherwise() -> None:
    from medistill.plan import resolved_dp_teacher

    binary = _facts(n=5000)
    auto = parse_config({"data": {"source": "builtin", "builtin": {"name": "cohort"}},
                         "privacy": {"target_epsilon": 3.0}})
    assert resolved_dp_teacher(auto, binary) == "dp_ebm"
    assert plan_run(auto, binary).dp_teacher == "dp_ebm"
    three = replace(binary, schema=replace(SCHEMA, classes=("a", "b", "c")),
                    class_counts=(3000, 1000, 1000))
    assert resolved_dp_teacher(auto, three) == "none"
    explicit = _config(teachers={"dp_teacher": "dp_ebm"})
    with pytest.raises(ConfigError, match="teachers.dp_teacher.*binary outcome.*3 classes"):
        plan_run(explicit, three)


def test_select_plans_both_candidates_and_the_selection_within_target() -> None:
    facts = _facts(n=5000)
    plan = plan_run(_config(teachers={"dp_teacher": "select"}), facts)
    names = [s.name for s in plan.stages]
    assert {"dp_teacher", "dp_linear_teacher", "teacher_selection"} <= set(names)
    assert plan.selection_validation_share == 0.2 and plan.linear_teacher_schedule is not None
    assert 0.98 * 3.0 <= _composed(plan, facts) <= 3.0


def test_sizing_a_tiny_table_asks_rdp_about_bounded_noise(monkeypatch) -> None:
    """A few dozen noisy patients over many columns would ask the PLD accountant about a
    Gaussian of noise ≈ 0.1 (a 1 GB PLD, seen in a benchmark run); sizing reads RDP at
    noise ≥ 1 instead."""
    import medistill.privacy.ledger as ledger
    from medistill.plan import RANGES_FRACTION, ranges_fraction, recalibration_fraction

    asked = []
    real = ledger.epsilon_of

    def spy(events, delta, accountant="pld"):
        asked.append((accountant, events))
        return real(events, delta, accountant)

    monkeypatch.setattr(ledger, "epsilon_of", spy)
    facts = _facts(n=60)
    config = _config(teachers={"dp_teacher": "dp_ebm"})
    assert ranges_fraction(config, facts, 40) == RANGES_FRACTION[1]
    assert 0 < recalibration_fraction(config, facts, 4)
    assert [a for a, _ in asked] == ["rdp", "rdp"]
    ranges_events = asked[0][1][0].events
    assert min(e.noise_multiplier for e in ranges_events) >= 1.0
    assert asked[1][1][0].noise_multiplier >= 1.0


def test_dp_ebm_bins_follow_its_binning_noise_and_the_charged_patients() -> None:
    """Few patients: 16 bins and a note; thousands at ε = 3: interpret's 32 — each exactly
    where 31 bins' merge target n / 31 falls below the binning noise interpret will draw."""
    from medistill.teachers.dp_ebm import (
        DPEBMSettings,
        calibrate_dp_ebm,
        interpret_noise_multipliers,
    )

    config = _config(teachers={"dp_teacher": "dp_ebm"})
    small, large = _facts(n=400, delta=1e-4), _facts(n=12000)
    few, many = plan_run(config, small), plan_run(config, large)
    assert few.dp_ebm_max_bins == 16 and many.dp_ebm_max_bins == 32
    assert any("at most 16 bins" in note for note in few.notes)
    assert not any("bins each feature" in note for note in many.notes)
    for plan, facts in ((few, small), (many, large)):
        teacher = next(s for s in plan.stages if s.name == "dp_teacher")
        nominal = calibrate_dp_ebm(epsilon=epsilon_of([teacher.event], facts.delta, "pld"),
                                   delta=facts.delta, n_features=len(SCHEMA.features))
        s_bin, _ = interpret_noise_multipliers(epsilon=nominal, delta=facts.delta,
                                               n_features=len(SCHEMA.features),
                                               settings=DPEBMSettings())
        seen = facts.without_excluded_canaries(plan.n_canaries).n_train   # what it fits on
        assert (plan.dp_ebm_max_bins == 32) == (seen / 31 >= s_bin)


def test_selection_sizes_the_dp_ebm_bins_on_the_patients_it_is_fitted_on() -> None:
    """At 1,800 patients all of them would allow 32 bins; the 80 % the DP-EBM is fitted on
    under "select" do not."""
    from medistill.plan import SELECTION_VALIDATION_SHARE
    from medistill.teachers.dp_ebm import public_max_bins

    facts = _facts(n=1800)
    plan = plan_run(_config(teachers={"dp_teacher": "select"}), facts)
    teacher = next(s for s in plan.stages if s.name == "dp_teacher")
    kwargs = {"epsilon": epsilon_of([teacher.event], facts.delta, "pld"),
              "delta": facts.delta, "n_features": len(SCHEMA.features)}
    assert public_max_bins(n_patients=facts.n_train, **kwargs) == 32
    seen = facts.without_excluded_canaries(plan.n_canaries).n_train
    n_fit = round(seen * (1 - SELECTION_VALIDATION_SHARE))
    assert plan.dp_ebm_max_bins == public_max_bins(n_patients=n_fit, **kwargs) == 16


def test_the_dp_ebm_merges_its_bins_on_the_planned_not_the_exact_row_count() -> None:
    """interpret's bin-merging target reads ``plan.dp_ebm_rows``: the charged count of the
    patients the DP-EBM is fitted on (canaries left out; 80 % under "select")."""
    from medistill.plan import SELECTION_VALIDATION_SHARE

    facts = _facts(n=1800)
    seen = facts.without_excluded_canaries(plan_run(_config(), facts).n_canaries).n_train
    alone = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}), facts)
    chosen = plan_run(_config(teachers={"dp_teacher": "select"}), facts)
    assert alone.dp_ebm_rows == seen
    assert chosen.dp_ebm_rows == round(seen * (1 - SELECTION_VALIDATION_SHARE))


def test_dp_teacher_path_audits_canaries_and_sizes_on_the_patients_left() -> None:
    """The DP-teacher path draws the one-run audit's canaries (a tenth of the patients, at
    most 1,000, none below 20) and sizes its steps on the patients the DP stages see, about
    half the canaries fewer; ``audit.canaries: 0`` turns the audit off."""
    config = _config(teachers={"dp_teacher": "dp_ebm"})
    for n, expected in ((150, 0), (400, 40), (5000, 500), (50_000, 1000)):
        plan = plan_run(config, _facts(n=n))
        assert plan.n_canaries == expected
        assert any("canary audit" in note for note in plan.notes) == bool(expected)
        assert plan.fine_tune_schedule.n_examples == n - expected // 2
    off = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}, audit={"canaries": 0}),
                   _facts(n=5000))
    assert off.n_canaries == 0 and off.fine_tune_schedule.n_examples == 5000
    assert not any("canary audit" in note for note in off.notes)
    fixed = plan_run(_config(teachers={"dp_teacher": "dp_ebm"}, audit={"canaries": 60}),
                     _facts(n=5000))
    assert fixed.n_canaries == 60 and fixed.fine_tune_schedule.n_examples == 4970


def test_facts_without_excluded_canaries_take_half_of_them_from_each_class_in_proportion() -> None:
    facts = _facts(n=1000)   # 800 and 200 patients
    assert facts.without_excluded_canaries(100).class_counts == (760, 190)
    assert facts.without_excluded_canaries(1).class_counts == (800, 200)


def test_more_canaries_than_half_the_patients_is_refused_before_training() -> None:
    config = _config(teachers={"dp_teacher": "dp_ebm"}, audit={"canaries": 600})
    with pytest.raises(ConfigError, match=r"audit\.canaries.*at most half of them \(500\)"):
        plan_run(config, _facts(n=1000))
    assert plan_run(config, _facts(n=1200)).n_canaries == 600
    with pytest.raises(ConfigError, match=r"field 'audit\.canaries' must be 'auto' or .* 0 or more"):
        _config(audit={"canaries": -1})


def test_select_falls_back_to_the_dp_ebm_alone_when_its_candidate_is_unaffordable() -> None:
    """At ε = 1 on 700 patients the DP linear candidate would need a noise multiplier above
    its useful 50: "select" then plans the DP-EBM alone (every patient, no candidate, no
    selection charged) and says why, instead of refusing the run. At ε = 3 the choice is
    affordable and kept; a stage the fallback needs as well still refuses the run."""
    from medistill.errors import StageNoiseError

    facts = _facts(n=700, delta=1e-5)
    select = _config(teachers={"dp_teacher": "select"}, privacy={"target_epsilon": 1.0})
    plan = plan_run(select, facts)
    alone = plan_run(_config(teachers={"dp_teacher": "dp_ebm"},
                             privacy={"target_epsilon": 1.0}), facts)
    assert plan.dp_teacher == "dp_ebm" and plan.selection_validation_share == 0.0
    assert [s.name for s in plan.stages] == [s.name for s in alone.stages]
    assert [s.noise for s in plan.stages] == [s.noise for s in alone.stages]
    assert any("'select'" in note and "DP logistic-regression candidate" in note
               for note in plan.notes)
    assert 0.98 <= _composed(plan, facts) <= 1.0
    kept = plan_run(_config(teachers={"dp_teacher": "select"}, privacy={"target_epsilon": 3.0}),
                    facts)
    assert kept.dp_teacher == "select"
    assert {"dp_linear_teacher", "teacher_selection"} <= {s.name for s in kept.stages}
    with pytest.raises(StageNoiseError) as refused:
        plan_run(_config(teachers={"dp_teacher": "select"}, privacy={"target_epsilon": 0.2}),
                 facts)
    assert refused.value.stage not in ("dp_linear_teacher", "teacher_selection")


def test_the_linear_candidates_batch_is_a_tenth_of_its_patients_up_to_its_settings() -> None:
    """On a few hundred patients the DP linear candidate samples about a tenth of them per
    step (at its settings' 256 the rate would near ½, where DP-SGD gains nothing from
    sampling); from 2,560 fitted patients on it keeps 256."""
    from medistill.plan import linear_batch_size
    from medistill.teachers.dp_linear import DPLinearSettings

    settings = DPLinearSettings()
    assert [linear_batch_size(n, settings) for n in (100, 532, 2560, 9200)] == [32, 53, 256, 256]
    plan = plan_run(_config(teachers={"dp_teacher": "select"}, privacy={"target_epsilon": 3.0}),
                    _facts(n=700, delta=1e-5))
    schedule = plan.linear_teacher_schedule
    assert schedule.batch_size == linear_batch_size(schedule.n_examples, settings)
    assert 0.08 <= schedule.sample_rate <= 0.12
