"""Who pays for privacy: per-group metrics, small groups flagged, worst-group gates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.audit.fairness import (
    AttackScores,
    JudgingRules,
    auroc,
    calibration_in_the_large,
    fairness_report,
    group_labels,
    is_age,
    paired_intervals,
    sensitive_columns,
    worst_group,
)
from medistill.audit.gates import evaluate_gates, load_policy
from medistill.errors import ConfigError


def _proba(p1: np.ndarray) -> np.ndarray:
    p1 = np.clip(p1, 0.01, 0.99)
    return np.c_[1 - p1, p1]


def _cohort(sizes: dict[str, int], skill: dict[str, float], seed: int = 0):
    """Labels, group labels and teacher/DP-teacher/student probabilities; the student's
    signal in each group is ``skill[group]`` times the teacher's (0: pure noise)."""
    rng = np.random.default_rng(seed)
    groups = np.concatenate([[g] * n for g, n in sizes.items()]).astype(object)
    y = (rng.random(len(groups)) < 0.3).astype(int)
    signal = y - 0.3
    teacher = 0.3 + 0.5 * signal + rng.normal(0, 0.15, len(y))
    scale = np.array([skill[g] for g in groups])
    student = 0.3 + 0.5 * scale * signal + rng.normal(0, 0.15, len(y))
    dp_teacher = 0.3 + 0.4 * signal + rng.normal(0, 0.15, len(y))
    return y, groups, {"teacher": _proba(teacher), "dp_teacher": _proba(dp_teacher),
                       "student": _proba(student)}


def _gates(fairness: dict) -> dict[str, dict]:
    rows, _ = evaluate_gates({"fairness": fairness}, load_policy())
    return {r["name"]: r for r in rows}


# --------------------------------------------------------------------------- formulas


def test_calibration_in_the_large_known_values() -> None:
    y = np.array([0, 1, 1, 1])
    assert calibration_in_the_large(y, _proba(np.full(4, 0.5))) == pytest.approx(0.25)
    assert calibration_in_the_large(y, _proba(np.full(4, 0.9))) == pytest.approx(-0.15)
    three = np.array([[0.2, 0.3, 0.5]] * 4)
    # observed (0, 0.25, 0.75) minus predicted (0.2, 0.3, 0.5): the largest is +0.25
    assert calibration_in_the_large(np.array([1, 2, 2, 2]), three) == pytest.approx(0.25)


def test_auroc_undefined_without_both_classes() -> None:
    assert auroc(np.array([1, 1]), _proba(np.array([0.2, 0.8]))) is None
    assert auroc(np.array([0, 1]), _proba(np.array([0.2, 0.8]))) == 1.0


def test_is_age() -> None:
    assert all(map(is_age, ["age", "Age", "age_years", "patient-age"]))
    assert not any(map(is_age, ["stage", "percentage", "agent", "sex"]))


def test_group_labels_bands_thirds_and_missing() -> None:
    ages = pd.Series([12.0, 39.9, 40.0, 64.0, 65.0, np.nan], name="age")
    assert list(group_labels(ages, "numeric")) == ["<40", "<40", "40-64", "40-64", "65+", "missing"]
    other = pd.Series(np.arange(9, dtype=float), name="bmi")
    labels = group_labels(other, "numeric")
    assert list(labels) == ["lower third"] * 3 + ["middle third"] * 3 + ["upper third"] * 3
    sex = pd.Series(["female", None, "male"], name="sex")
    assert list(group_labels(sex, "categorical")) == ["female", "missing", "male"]


def test_sensitive_columns_found_declared_and_refused() -> None:
    features = ["age", "sex", "bmi", "site"]
    assert sensitive_columns(features) == ["age", "sex"]
    assert sensitive_columns(features, extra=("site",)) == ["age", "sex", "site"]
    assert sensitive_columns(features, declared=("sex",), extra=("site", "sex")) == ["sex", "site"]
    with pytest.raises(ConfigError, match=r"audit.groups: 'sitte' is not a feature.*Did you mean 'site'"):
        sensitive_columns(features, extra=("sitte",))
    with pytest.raises(ConfigError, match="data.sensitive_attributes: 'race'"):
        sensitive_columns(features, declared=("race",))


def test_paired_intervals_cover_the_point_and_the_ratio() -> None:
    y, _, probas = _cohort({"a": 600}, {"a": 0.7})
    ids = np.repeat(np.arange(300), 2)  # two rows per patient
    ci = paired_intervals(y, probas, patient_ids=ids, n_boot=80, rng=np.random.default_rng(1))
    for name in ("teacher", "dp_teacher", "student"):
        assert ci[name][0] <= auroc(y, probas[name]) <= ci[name][1]
    retention = auroc(y, probas["student"]) / auroc(y, probas["teacher"])
    assert ci["retention"][0] <= retention <= ci["retention"][1] < 1.0


# --------------------------------------------------------------------------- the report


def test_entry_keys_and_values() -> None:
    y, groups, probas = _cohort({"f": 500, "m": 500}, {"f": 1.0, "m": 1.0})
    out = fairness_report(y, {"sex": groups}, probas, n_boot=30, rng=np.random.default_rng(0))
    entry = out["sex"]["f"]
    assert set(entry) >= {"teacher_auroc", "dp_teacher_auroc", "student_auroc", "retention",
                          "calibration_in_the_large", "ece", "mia_auc", "n", "retention_ci",
                          "teacher_auroc_ci", "dp_teacher_auroc_ci", "student_auroc_ci", "judged"}
    mask = groups == "f"
    assert entry["n"] == 500 and entry["judged"] is True and entry["reason"] is None
    assert entry["student_auroc"] == pytest.approx(auroc(y[mask], probas["student"][mask]))
    assert entry["auroc"] == entry["student_auroc"]
    assert entry["retention"] == pytest.approx(entry["student_auroc"] / entry["teacher_auroc"])
    assert entry["calibration_in_the_large"] == pytest.approx(
        y[mask].mean() - probas["student"][mask][:, 1].mean())
    assert entry["mia_auc"] is None  # no attack given
    assert 0.9 <= out["worst_group"]["auroc_retention"] <= 1.1


def test_collapsed_group_fails_the_gates() -> None:
    y, groups, probas = _cohort({"a": 800, "b": 800, "c": 800}, {"a": 1.0, "b": 1.0, "c": 0.0})
    out = fairness_report(y, {"site": groups}, probas, n_boot=0, rng=np.random.default_rng(0))
    worst = out["worst_group"]
    assert (worst["attribute"], worst["group"]) == ("site", "c")
    assert 0.45 <= worst["auroc_retention"] <= 0.70  # a coin flip against a ~0.85 teacher
    assert worst["retention_gap"] >= 0.3 and worst["gap_groups"][0] == "c"
    gates = _gates(out)
    assert not gates["worst_group_retention"]["passed"]
    assert not gates["retention_gap"]["passed"]
    # The same cohort without the collapse passes both gates.
    y, groups, probas = _cohort({"a": 800, "b": 800, "c": 800}, {"a": 1.0, "b": 1.0, "c": 1.0})
    healthy = fairness_report(y, {"site": groups}, probas, n_boot=0, rng=np.random.default_rng(0))
    gates = _gates(healthy)
    assert gates["worst_group_retention"]["passed"] and gates["retention_gap"]["passed"]


def test_small_group_is_flagged_not_gated() -> None:
    y, groups, probas = _cohort({"a": 800, "b": 800, "tiny": 40}, {"a": 1.0, "b": 1.0, "tiny": -1.0})
    ids = np.arange(len(y))
    out = fairness_report(y, {"site": groups}, probas, patient_ids=ids, n_boot=20,
                          rng=np.random.default_rng(0))
    tiny = out["site"]["tiny"]
    assert tiny["judged"] is False and tiny["small_group"] is True
    assert tiny["reason"] == "40 test patients, fewer than audit.fairness_min_patients = 100"
    assert tiny["student_auroc"] is not None and tiny["retention"] < 0.7  # shown, not hidden
    worst = out["worst_group"]
    assert worst["group"] != "tiny" and worst["judged_groups"] == 2
    assert worst["unjudged"] == [{"attribute": "site", "group": "tiny", "reason": tiny["reason"]}]
    gates = _gates(out)
    assert gates["worst_group_retention"]["passed"] and gates["retention_gap"]["passed"]
    # A lower bar judges it, and then it is gated.
    rules = JudgingRules(min_patients=30, min_events=5)
    judged = fairness_report(y, {"site": groups}, probas, patient_ids=ids, rules=rules,
                             n_boot=0, rng=np.random.default_rng(0))
    assert judged["worst_group"]["group"] == "tiny"
    assert not _gates(judged)["worst_group_retention"]["passed"]


def test_rare_outcome_is_not_judged() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(300, int), np.ones(5, int)]
    p = _proba(rng.random(len(y)))
    out = fairness_report(y, {"sex": np.array(["f"] * len(y), dtype=object)},
                          {"teacher": p, "student": p}, n_boot=0, rng=rng)
    assert out["sex"]["f"]["reason"] == ("5 test rows in the rarest outcome class, fewer than "
                                         "audit.fairness_min_events = 10")
    assert out["sex"]["f"]["dp_teacher_auroc"] is None  # no DP teacher given
    assert out["worst_group"]["auroc_retention"] is None
    assert out["worst_group"]["reason"] == "no group was large enough to judge"


def test_nothing_to_judge_fails_the_gates_as_not_measured() -> None:
    y, _, probas = _cohort({"a": 200}, {"a": 1.0})
    out = fairness_report(y, {}, probas, n_boot=0, rng=np.random.default_rng(0))
    assert out == {"worst_group": worst_group({})}
    assert out["worst_group"]["reason"] == "no sensitive attribute was found"
    gates = _gates(out)
    assert not gates["worst_group_retention"]["passed"]
    assert "not measured" in gates["worst_group_retention"]["note"]


def test_attack_auc_per_group() -> None:
    y, groups, probas = _cohort({"a": 300, "b": 300}, {"a": 1.0, "b": 1.0})
    member = np.tile([True, False], 300)
    # The attack separates members perfectly in group a, not at all in group b.
    scores = np.where(groups == "a", member.astype(float), 0.5)
    attack = AttackScores(groups={"site": groups}, is_member=member, scores=scores)
    out = fairness_report(y, {"site": groups}, probas, attack=attack, n_boot=0,
                          rng=np.random.default_rng(0))
    assert out["site"]["a"]["mia_auc"] == 1.0 and out["site"]["b"]["mia_auc"] == 0.5
    assert out["site"]["a"]["mia_n"] == 300


def test_bad_inputs_are_refused() -> None:
    y, groups, probas = _cohort({"a": 50}, {"a": 1.0})
    with pytest.raises(ValueError, match="student"):
        fairness_report(y, {"g": groups}, {"teacher": probas["teacher"]}, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Unknown model 'ensemble'"):
        fairness_report(y, {"g": groups}, {**probas, "ensemble": probas["teacher"]},
                        rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="3 group labels for 50 rows"):
        fairness_report(y, {"g": groups[:3]}, probas, rng=np.random.default_rng(0))


def test_three_classes() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 900)
    logits = np.eye(3)[y] * 1.5 + rng.normal(0, 1, (900, 3))
    good = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    flat = np.full((900, 3), 1 / 3) + rng.normal(0, 0.01, (900, 3)).clip(-0.3, 0.3)
    flat /= flat.sum(axis=1, keepdims=True)
    groups = np.array(["a", "b"] * 450, dtype=object)
    out = fairness_report(y, {"g": groups}, {"teacher": good, "student": flat}, n_boot=10,
                          rng=rng)
    entry = out["g"]["a"]
    assert entry["judged"] and 0.75 <= entry["teacher_auroc"] <= 0.95
    assert 0.4 <= entry["student_auroc"] <= 0.6 and entry["retention"] < 0.8
    assert abs(entry["calibration_in_the_large"]) < 0.1
