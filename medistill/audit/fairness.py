"""Who pays for privacy: utility, calibration and attack success per group of each sensitive
attribute, for the non-private teacher, the DP teacher and the student, side by side.

DP training is known to cost small groups more than large ones (Bagdasaryan et al. 2019;
Suriyakumar et al. 2021). Per group this module gives each model's AUROC with a paired
cluster-bootstrap interval, the AUROC retention (student ÷ teacher) with its interval, the
student's calibration-in-the-large and ECE, and the membership attack's AUC; then the worst
group's retention and the largest retention gap between groups of one attribute, the figures
the audit policy gates. A group too small to judge is reported with ``judged: false`` and a
reason and takes no part in the worst-group figures: it is flagged, never silently gated.

Everything here is a pure function of arrays held in memory. The output holds counts and
aggregate metrics per group only (the internal report), never a row or a patient's score.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medistill.audit.bootstrap import cluster_resampler
from medistill.audit.utility import expected_calibration_error
from medistill.data.schema import CATEGORICAL
from medistill.errors import ConfigError

MODELS = ("teacher", "dp_teacher", "student")
AGE_EDGES = (40, 65)
AGE_BANDS = ("<40", "40-64", "65+")
TERTILES = ("lower third", "middle third", "upper third")
MISSING_GROUP = "missing"
WORST_GROUP = "worst_group"
SEX_NAMES = ("sex", "gender")


@dataclass(frozen=True)
class AttackScores:
    """The membership attack on its population: each row's group per attribute, whether
    it is a member, and the attack's score (higher = more likely a member). In memory only."""

    groups: Mapping[str, np.ndarray]
    is_member: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class JudgingRules:
    """When a group is large enough to judge: enough test patients, and enough of them in
    the rarest outcome class for an AUROC that means something."""

    min_patients: int = 100
    min_events: int = 10


def is_age(name: str) -> bool:
    """Whether a column is an age (sliced into the fixed bands <40, 40-64, 65+)."""
    return "age" in name.lower().replace("_", " ").replace("-", " ").split()


def sensitive_columns(features: list[str], *, declared: tuple[str, ...] = (),
                      extra: tuple[str, ...] = ()) -> list[str]:
    """The feature columns to slice by: ``declared`` (``data.sensitive_attributes``), or the
    sex/gender and age columns found when none is declared, then ``extra``
    (``audit.groups``). A named column that is not a feature is a :class:`ConfigError`."""
    for field, names in (("data.sensitive_attributes", declared), ("audit.groups", extra)):
        unknown = [n for n in names if n not in features]
        if unknown:
            close = difflib.get_close_matches(unknown[0], features, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{field}: '{unknown[0]}' is not a feature column of the table; fairness "
                f"slices are cut from feature columns ({', '.join(features[:30])}).{hint}",
                hint="Name a feature column, or remove it from the list.")
    found = list(declared) or [f for f in features if f.lower() in SEX_NAMES or is_age(f)]
    return list(dict.fromkeys([*found, *extra]))


def group_labels(values: pd.Series, kind: str) -> np.ndarray:
    """One group label per row: categories as they are, an age in fixed bands (<40, 40-64,
    65+), another numeric column in thirds named by rank, never by a data-derived cut.
    Missing values form the group ``missing``."""
    if kind == CATEGORICAL:
        out = values.astype(object).where(values.notna(), MISSING_GROUP).astype(str)
        return out.to_numpy(dtype=object)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    out = np.full(len(numbers), MISSING_GROUP, dtype=object)
    known = ~np.isnan(numbers)
    if is_age(str(values.name or "")):
        out[known] = np.asarray(AGE_BANDS, dtype=object)[np.digitize(numbers[known], AGE_EDGES)]
    elif known.any():
        cuts = np.nanpercentile(numbers, [100 / 3, 200 / 3])
        out[known] = np.asarray(TERTILES, dtype=object)[np.digitize(numbers[known], cuts)]
    return out


def calibration_in_the_large(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Observed minus mean predicted risk (positive: the model under-predicts). Binary:
    for the positive class; multi-class: the class with the largest absolute difference."""
    n_classes = probabilities.shape[1]
    observed = np.bincount(labels, minlength=n_classes) / len(labels)
    gaps = observed - probabilities.mean(axis=0)
    if n_classes == 2:
        return float(gaps[1])
    return float(gaps[np.argmax(np.abs(gaps))])


def auroc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """AUROC (one-vs-rest macro for multi-class), ``None`` when a class is absent."""
    n_classes = probabilities.shape[1]
    if len(np.unique(labels)) < n_classes:
        return None
    if n_classes == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro",
                               labels=list(range(n_classes))))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else float(a / b)


def paired_intervals(labels: np.ndarray, probabilities: Mapping[str, np.ndarray], *,
                     patient_ids: np.ndarray | None, n_boot: int, rng: np.random.Generator,
                     confidence: float = 0.95) -> dict[str, list[float | None]]:
    """Percentile intervals of each model's AUROC and of ``retention`` (student ÷ teacher),
    all on the same patient-level bootstrap replicates, so that the ratio's interval reflects
    that both models are scored on the same patients. Replicates missing a class are redrawn
    (up to 20 × ``n_boot`` draws); what stays undefined is ``[None, None]``."""
    names = list(probabilities)
    draws: dict[str, list[float]] = {name: [] for name in [*names, "retention"]}
    draw = cluster_resampler(patient_ids, len(labels), rng)
    attempts, kept = 0, 0
    while kept < n_boot and attempts < 20 * n_boot:
        attempts += 1
        rows = draw()
        values = {name: auroc(labels[rows], probabilities[name][rows]) for name in names}
        if any(v is None for v in values.values()):
            continue
        kept += 1
        for name, value in values.items():
            draws[name].append(value)
        ratio = _ratio(values.get("student"), values.get("teacher"))
        if ratio is not None:
            draws["retention"].append(ratio)
    tail = 100.0 * (1.0 - confidence) / 2.0
    return {name: ([float(np.percentile(v, tail)), float(np.percentile(v, 100.0 - tail))]
                   if v else [None, None]) for name, v in draws.items()}


def _judge(n_patients: int, class_counts: np.ndarray, teacher_auroc: float | None,
           student_auroc: float | None, rules: JudgingRules) -> str | None:
    """Why a group cannot be judged, or ``None`` if it can."""
    if n_patients < rules.min_patients:
        return (f"{n_patients} test patients, fewer than audit.fairness_min_patients = "
                f"{rules.min_patients}")
    rarest = int(class_counts.min())
    if rarest < rules.min_events:
        return (f"{rarest} test rows in the rarest outcome class, fewer than "
                f"audit.fairness_min_events = {rules.min_events}")
    if teacher_auroc is None or student_auroc is None:
        return "the teacher's or the student's AUROC is undefined in this group"
    return None


def group_metrics(labels: np.ndarray, probabilities: Mapping[str, np.ndarray | None], *,
                  patient_ids: np.ndarray | None, rules: JudgingRules, n_boot: int,
                  rng: np.random.Generator) -> dict:
    """The fairness entry of one group (test rows of that group only)."""
    n_classes = next(p for p in probabilities.values() if p is not None).shape[1]
    present = {name: p for name, p in probabilities.items() if p is not None}
    n_patients = len(np.unique(patient_ids)) if patient_ids is not None else len(labels)
    counts = np.bincount(labels, minlength=n_classes)
    scores = {name: auroc(labels, p) for name, p in present.items()}
    entry: dict = {"n": int(len(labels)), "n_patients": int(n_patients)}
    for name in MODELS:
        entry[f"{name}_auroc"] = scores.get(name)
    entry["auroc"] = scores.get("student")  # report.json contract: the student's AUROC
    entry["retention"] = _ratio(scores.get("student"), scores.get("teacher"))
    student = present.get("student")
    entry["calibration_in_the_large"] = (calibration_in_the_large(labels, student)
                                         if student is not None else None)
    entry["ece"] = (expected_calibration_error(labels, student)
                    if student is not None else None)
    teacher = present.get("teacher")
    entry["teacher_calibration_in_the_large"] = (calibration_in_the_large(labels, teacher)
                                                 if teacher is not None else None)
    entry["teacher_ece"] = (expected_calibration_error(labels, teacher)
                            if teacher is not None else None)
    if n_boot and all(v is not None for v in scores.values()) and scores:
        intervals = paired_intervals(labels, present, patient_ids=patient_ids, n_boot=n_boot,
                                     rng=rng)
        for name in MODELS:
            entry[f"{name}_auroc_ci"] = intervals.get(name, [None, None])
        entry["retention_ci"] = intervals["retention"]
    else:
        for name in MODELS:
            entry[f"{name}_auroc_ci"] = [None, None]
        entry["retention_ci"] = [None, None]
    reason = _judge(n_patients, counts, scores.get("teacher"), scores.get("student"), rules)
    entry["judged"] = reason is None
    entry["reason"] = reason
    entry["small_group"] = n_patients < rules.min_patients
    return entry


def _attack_auc(attack: AttackScores | None, attribute: str, group: str) -> tuple[float | None, int]:
    if attack is None or attribute not in attack.groups:
        return None, 0
    mask = np.asarray(attack.groups[attribute]) == group
    members = np.asarray(attack.is_member, dtype=bool)[mask]
    if not members.any() or members.all():
        return None, int(mask.sum())
    return float(roc_auc_score(members, np.asarray(attack.scores)[mask])), int(mask.sum())


def worst_group(fairness: Mapping[str, Mapping[str, Mapping]]) -> dict:
    """The gated figures: the judged group with the lowest AUROC retention, and the largest
    gap in retention between two judged groups of one attribute. ``None`` (not measured)
    when no group, or no attribute with two groups, could be judged."""
    fairness = attributes_of(fairness)
    judged = [(attribute, group, e) for attribute, groups in fairness.items()
              for group, e in groups.items() if e.get("judged") and e.get("retention") is not None]
    unjudged = [{"attribute": attribute, "group": group, "reason": e.get("reason")}
                for attribute, groups in fairness.items() for group, e in groups.items()
                if not e.get("judged")]
    out: dict = {"judged_groups": len(judged), "unjudged": unjudged,
                 "attribute": None, "group": None, "auroc_retention": None,
                 "auroc_retention_ci": [None, None], "student_auroc": None, "teacher_auroc": None,
                 "retention_gap": None, "gap_attribute": None, "gap_groups": None}
    if not judged:
        out["reason"] = ("no sensitive attribute was found" if not fairness else
                         "no group was large enough to judge")
        return out
    attribute, group, entry = min(judged, key=lambda t: t[2]["retention"])
    out.update(attribute=attribute, group=group, auroc_retention=entry["retention"],
               auroc_retention_ci=entry.get("retention_ci", [None, None]),
               student_auroc=entry.get("student_auroc"), teacher_auroc=entry.get("teacher_auroc"),
               reason=None)
    gaps = []
    for name in fairness:
        rows = [(g, e["retention"]) for a, g, e in judged if a == name]
        if len(rows) >= 2:
            low, high = min(rows, key=lambda r: r[1]), max(rows, key=lambda r: r[1])
            gaps.append((high[1] - low[1], name, [low[0], high[0]]))
    if gaps:
        gap, name, pair = max(gaps, key=lambda t: t[0])
        out.update(retention_gap=float(gap), gap_attribute=name, gap_groups=pair)
    return out


def fairness_report(labels: np.ndarray, groups: Mapping[str, np.ndarray],
                    probabilities: Mapping[str, np.ndarray | None], *,
                    patient_ids: np.ndarray | None = None, attack: AttackScores | None = None,
                    rules: JudgingRules = JudgingRules(), n_boot: int = 200,
                    rng: np.random.Generator) -> dict:
    """``report.json``'s ``fairness`` section: ``{attribute: {group: entry}}`` for every
    attribute in ``groups`` (one label per test row), plus ``worst_group``.

    ``probabilities`` maps ``teacher`` (the non-private reference), ``dp_teacher`` (may be
    ``None``) and ``student`` to test-set probability matrices, rows aligned with ``labels``.
    """
    labels = np.asarray(labels)
    if "student" not in probabilities or probabilities["student"] is None:
        raise ValueError("fairness_report needs the student's test probabilities.")
    for name, p in probabilities.items():
        if name not in MODELS:
            raise ValueError(f"Unknown model '{name}'; expected one of {', '.join(MODELS)}.")
        if p is not None and len(p) != len(labels):
            raise ValueError(f"{name}: {len(p)} probability rows for {len(labels)} test rows.")
    out: dict = {}
    for attribute, column in groups.items():
        column = np.asarray(column, dtype=object)
        if len(column) != len(labels):
            raise ValueError(f"{attribute}: {len(column)} group labels for {len(labels)} rows.")
        names = set(column)
        if attack is not None and attribute in attack.groups:
            names |= set(np.asarray(attack.groups[attribute], dtype=object))
        out[attribute] = {}
        for group in sorted(names, key=_group_order):
            mask = column == group
            if mask.any():
                entry = group_metrics(
                    labels[mask], {k: (None if p is None else p[mask])
                                   for k, p in probabilities.items()},
                    patient_ids=None if patient_ids is None else np.asarray(patient_ids)[mask],
                    rules=rules, n_boot=n_boot, rng=rng)
            else:
                entry = _empty_entry(rules)
            entry["mia_auc"], entry["mia_n"] = _attack_auc(attack, attribute, group)
            out[attribute][group] = entry
    out[WORST_GROUP] = worst_group(out)
    return out


def _empty_entry(rules: JudgingRules) -> dict:
    """A group seen only in the attack population (no test rows)."""
    entry: dict = {"n": 0, "n_patients": 0, "auroc": None, "retention": None,
                   "retention_ci": [None, None], "calibration_in_the_large": None, "ece": None,
                   "teacher_calibration_in_the_large": None, "teacher_ece": None,
                   "judged": False, "reason": "no test patients in this group",
                   "small_group": True}
    for name in MODELS:
        entry[f"{name}_auroc"] = None
        entry[f"{name}_auroc_ci"] = [None, None]
    return entry


def _group_order(name: str) -> tuple[int, str]:
    """Age bands and thirds in their natural order, then the rest alphabetically, missing last."""
    for order in (AGE_BANDS, TERTILES):
        if name in order:
            return order.index(name), name
    return (99 if name == MISSING_GROUP else 10), name


def attributes_of(fairness: Mapping) -> dict[str, Mapping]:
    """The per-attribute part of a ``fairness`` section (without ``worst_group``)."""
    return {k: v for k, v in fairness.items() if k != WORST_GROUP and isinstance(v, Mapping)}


__all__ = ["AGE_BANDS", "MODELS", "AttackScores", "JudgingRules", "attributes_of", "auroc",
           "calibration_in_the_large", "fairness_report", "group_labels", "group_metrics",
           "is_age", "paired_intervals", "sensitive_columns", "worst_group"]
