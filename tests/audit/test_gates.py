"""Audit policy loading and the gate verdict."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medistill.audit.gates import (
    DEFAULT_POLICY_PATH,
    AuditPolicy,
    evaluate_gates,
    get_path,
    load_policy,
    policy_from_dict,
    privacy_bug,
    rejudge,
)
from medistill.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def good_report() -> dict[str, Any]:
    """A run that passes the default policy."""
    return {
        "schema_version": "1",
        "utility": {"teacher": {"auroc": 0.85}, "student": {"auroc": 0.82, "ece": 0.03},
                    "retention": {"auroc": 0.96, "accuracy": 0.98, "auroc_skill": 0.92}},
        "speed": {"speedup": {"latency": 40.0, "throughput": 12.0}},
        "privacy": {"unit": "patient", "formal_guarantee": True, "epsilon": 2.98, "delta": 5e-6,
                    "target_epsilon": 3.0, "accountant": "pld",
                    "caveats": ["Transfer rows are synthetic."]},
        "mia": {"student": {"auc": 0.51, "auc_ci": [0.49, 0.53], "tpr_at_fpr": {"0.01": 0.011, "0.001": 0.0},
                            "epsilon_lower_bound": 0.2},
                "teacher": {"auc": 0.70, "epsilon_lower_bound": 1.7}},
        "fairness": {"worst_group": {"auroc_retention": 0.95, "retention_gap": 0.04}},
    }


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


@pytest.fixture(scope="module")
def policy() -> AuditPolicy:
    return load_policy()


# --------------------------------------------------------------------------- the policy file


def test_default_policy_is_the_audits_policy_file() -> None:
    assert DEFAULT_POLICY_PATH.read_text(encoding="utf-8") == (REPO / "audits" / "policy.yaml").read_text(encoding="utf-8")
    assert load_policy(REPO / "audits" / "policy.yaml") == load_policy()


def test_default_policy_gates(policy: AuditPolicy) -> None:
    gates = {g.name: g for g in policy.gates}
    assert list(gates) == ["auroc_retention", "latency_speedup", "epsilon_within_target",
                           "student_calibration", "mia_auc", "mia_power", "empirical_epsilon",
                           "formal_guarantee", "worst_group_retention", "retention_gap"]
    assert (gates["student_calibration"].op, gates["student_calibration"].threshold) == ("<=", 0.05)
    assert gates["worst_group_retention"].metric == "fairness.worst_group.auroc_retention"
    assert (gates["worst_group_retention"].op, gates["worst_group_retention"].threshold) == (">=", 0.85)
    assert (gates["retention_gap"].op, gates["retention_gap"].threshold) == ("<=", 0.10)
    assert gates["mia_auc"].metric == "mia.student.auc_ci.1"  # the interval's upper end
    assert (gates["auroc_retention"].op, gates["auroc_retention"].threshold) == (">=", 0.90)
    assert (gates["latency_speedup"].threshold, gates["latency_speedup"].severity) == (26.0, "review")
    assert gates["epsilon_within_target"].threshold_from == "privacy.target_epsilon"
    assert gates["epsilon_within_target"].severity == "reject"
    assert gates["empirical_epsilon"].threshold_from == "privacy.epsilon"
    assert gates["formal_guarantee"].threshold is True and gates["formal_guarantee"].op == "=="
    assert all(g.description for g in policy.gates)


def test_policy_is_frozen(policy: AuditPolicy) -> None:
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        policy.gates[0].threshold = 0.1  # type: ignore[misc]


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    text = (REPO / "audits" / "policy.yaml").read_text(encoding="utf-8")
    text = text.replace("    threshold_from: privacy.target_epsilon", "    threshhold: 3.0", 1)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "unknown key 'threshhold' in gates[2]; did you mean 'threshold'?" in message
    assert str(path) in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "gatez: []\n")
    with pytest.raises(ConfigError, match=r"unknown key 'gatez' in the policy; did you mean 'gates'\?"):
        load_policy(path)


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ("{name: a, metric: x.y, op: '=>', threshold: 1, severity: review}", r"gates\[0\]\.op: '=>' is not allowed.*did you mean '>='"),
        ("{name: a, metric: x.y, op: '>=', threshold: 1, severity: block}", r"gates\[0\]\.severity"),
        ("{name: a, metric: x.y, op: '>=', severity: review}", r"gates\[0\]: give exactly one of"),
        ("{name: a, metric: x.y, op: '>=', threshold: 1, threshold_from: a.b, severity: review}", "exactly one"),
        ("{name: a, metric: x.y, op: '>=', threshold: true, severity: review}", "needs a number"),
        ("{name: a, metric: x.y, op: '>=', threshold: ledger_epsilon, severity: review}", "threshold_from"),
        ("{name: a, metric: 'x..y', op: '>=', threshold: 1, severity: review}", "dotted path"),
        ("{name: a, op: '>=', threshold: 1, severity: review}", r"missing key 'metric' in gates\[0\]"),
        ("{name: 'builtin:x', metric: x.y, op: '>=', threshold: 1, severity: review}", "reserved"),
        ("not-a-mapping", r"gates\[0\] must be a mapping"),
    ],
)
def test_bad_gates_name_the_field(tmp_path: Path, gate: str, expected: str) -> None:
    path = write(tmp_path, f"gates:\n  - {gate}\n")
    with pytest.raises(ConfigError, match=expected) as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_duplicate_gate_names(tmp_path: Path) -> None:
    gate = "{name: a, metric: x.y, op: '>=', threshold: 1, severity: review}"
    with pytest.raises(ConfigError, match="unique; repeated: a"):
        load_policy(write(tmp_path, f"gates:\n  - {gate}\n  - {gate}\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gates: [\n  {name: a\n", r"line \d+, column \d+: YAML syntax error"),
        ("gates:\n  - name: a\n    name: b\n", "duplicate key 'name'"),
        ("- just\n- a list\n", "must be a mapping with a 'gates' list, got list"),
        ("", "got NoneType"),
        ("gates: []\n", "gates"),
        ("gates: 3\n", "gates must be a list"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_policy(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read audit policy .*nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
gate_like = st.fixed_dictionaries(
    {"name": st.text(max_size=5), "metric": st.text(max_size=12), "op": st.sampled_from([">=", "<", "==", "=>", 1])},
    optional={"threshold": json_values, "threshold_from": json_values, "severity": json_values, "extra": json_values},
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "gates", "description", "gatez"]),
                       json_values | st.lists(gate_like, max_size=3), max_size=3))
def test_only_config_errors_escape(data: dict[str, Any]) -> None:
    try:
        policy = policy_from_dict(data, source="fuzz.yaml")
    except ConfigError as exc:
        assert "fuzz.yaml" in str(exc)
    else:
        evaluate_gates(good_report(), policy)


# --------------------------------------------------------------------------- paths


def test_get_path_handles_dotted_keys_and_indices() -> None:
    report = good_report()
    assert get_path(report, "mia.student.tpr_at_fpr.0.01") == 0.011
    assert get_path(report, "mia.student.tpr_at_fpr.0.001") == 0.0
    assert get_path(report, "mia.student.auc_ci.1") == 0.53
    assert get_path(report, "mia.student.auc_ci.7") is None
    assert get_path(report, "privacy.nothing.here", "—") == "—"


# --------------------------------------------------------------------------- the verdict


def test_good_run_is_released(policy: AuditPolicy) -> None:
    rows, verdict = evaluate_gates(good_report(), policy)
    assert verdict == "release"
    assert all(r["passed"] for r in rows) and len(rows) == 10
    row = by_name(rows)["epsilon_within_target"]
    assert (row["value"], row["threshold"], row["op"], row["severity"]) == (2.98, 3.0, "<=", "reject")
    assert set(row) >= {"name", "value", "threshold", "op", "passed", "severity", "metric", "note"}


def test_review_gate_failure_gives_review(policy: AuditPolicy) -> None:
    report = good_report()
    report["utility"]["retention"]["auroc"] = 0.85
    rows, verdict = evaluate_gates(report, policy)
    assert verdict == "review"
    assert [r["name"] for r in rows if not r["passed"]] == ["auroc_retention"]


def test_reject_gate_failure_gives_reject(policy: AuditPolicy) -> None:
    report = good_report()
    report["privacy"]["epsilon"] = 3.2
    report["speed"]["speedup"]["latency"] = 3.0
    rows, verdict = evaluate_gates(report, policy)
    assert verdict == "reject"
    assert {r["name"] for r in rows if not r["passed"]} == {"epsilon_within_target", "latency_speedup"}


def test_boundaries_are_inclusive(policy: AuditPolicy) -> None:
    report = good_report()
    report["privacy"]["epsilon"] = 3.0
    report["utility"]["retention"]["auroc"] = 0.90
    report["speed"]["speedup"]["latency"] = 26
    assert evaluate_gates(report, policy)[1] == "release"


@pytest.mark.parametrize("missing", [None, "drop"])
def test_missing_metric_fails_never_passes(policy: AuditPolicy, missing: str | None) -> None:
    report = good_report()
    if missing == "drop":
        del report["mia"]
    else:
        report["mia"]["student"]["auc_ci"] = None
    rows = by_name(evaluate_gates(report, policy)[0])
    assert rows["mia_auc"]["passed"] is False
    assert rows["mia_auc"]["value"] is None
    assert "not measured" in rows["mia_auc"]["note"]


def test_nan_metric_fails(policy: AuditPolicy) -> None:
    report = good_report()
    report["utility"]["retention"]["auroc"] = math.nan
    row = by_name(evaluate_gates(report, policy)[0])["auroc_retention"]
    assert row["passed"] is False and row["value"] is None and "NaN" in row["note"]


def test_missing_threshold_reference_fails(policy: AuditPolicy) -> None:
    report = good_report()
    del report["privacy"]["target_epsilon"]
    rows, verdict = evaluate_gates(report, policy)
    row = by_name(rows)["epsilon_within_target"]
    assert row["passed"] is False and row["threshold"] is None
    assert "privacy.target_epsilon" in row["note"]
    assert verdict == "reject"


def test_threshold_from_follows_the_report(policy: AuditPolicy) -> None:
    report = good_report()
    report["privacy"]["target_epsilon"] = 2.5
    row = by_name(evaluate_gates(report, policy)[0])["epsilon_within_target"]
    assert row["passed"] is False and row["threshold"] == 2.5


def test_infinite_epsilon_is_rejected(policy: AuditPolicy) -> None:
    report = good_report()
    report["privacy"].update(epsilon="inf", formal_guarantee=False)
    rows, verdict = evaluate_gates(report, policy)
    assert verdict == "reject"
    assert by_name(rows)["epsilon_within_target"]["passed"] is False


def test_null_epsilon_without_guarantee_reads_as_infinite(policy: AuditPolicy) -> None:
    report = good_report()
    report["privacy"].update(epsilon=None, formal_guarantee=False)  # how strict JSON stores ∞
    rows, verdict = evaluate_gates(report, policy)
    rows_by_name = by_name(rows)
    assert verdict == "reject"
    eps = rows_by_name["epsilon_within_target"]
    assert eps["passed"] is False and eps["value"] is None and "infinite" in eps["note"]
    assert rows_by_name["empirical_epsilon"]["passed"] is True
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    report["privacy"]["formal_guarantee"] = True  # a null ε with a claimed guarantee is just missing
    assert "not measured" in by_name(evaluate_gates(report, policy)[0])["epsilon_within_target"]["note"]


def test_no_formal_guarantee_is_at_best_review() -> None:
    lenient = policy_from_dict({"gates": [{"name": "auroc", "metric": "utility.student.auroc", "op": ">=",
                                           "threshold": 0.5, "severity": "review"}]})
    report = good_report()
    report["privacy"]["formal_guarantee"] = False
    rows, verdict = evaluate_gates(report, lenient)
    assert verdict == "review"
    builtin = by_name(rows)["builtin:formal_guarantee"]
    assert builtin["passed"] is False and "Transfer rows are synthetic." in builtin["note"]
    assert evaluate_gates(good_report(), lenient) == ([by_name(rows)["auroc"]], "release")


def test_formal_guarantee_gate_needs_a_boolean(policy: AuditPolicy) -> None:
    report = good_report()
    report["privacy"]["formal_guarantee"] = "yes"
    rows, verdict = evaluate_gates(report, policy)
    assert by_name(rows)["formal_guarantee"]["passed"] is False
    assert verdict == "review"


def test_empirical_epsilon_above_ledger_is_a_privacy_bug(policy: AuditPolicy) -> None:
    report = good_report()
    report["mia"]["student"]["epsilon_lower_bound"] = 4.1
    rows, verdict = evaluate_gates(report, policy)
    assert verdict == "reject"
    row = by_name(rows)["empirical_epsilon"]
    assert row["passed"] is False and "possible privacy bug" in row["note"]
    assert not any(r["name"].startswith("builtin:") for r in rows)


@pytest.mark.parametrize("severity", ["review", None])
def test_privacy_bug_rejects_whatever_the_policy(severity: str | None) -> None:
    gates = [{"name": "auroc", "metric": "utility.student.auroc", "op": ">=", "threshold": 0.5, "severity": "review"}]
    if severity:
        gates.append({"name": "emp", "metric": "mia.student.epsilon_lower_bound", "op": "<=",
                      "threshold_from": "privacy.epsilon", "severity": severity})
    report = good_report()
    report["mia"]["student"]["attacks"] = [{"name": "canary", "epsilon_lower_bound": 3.5}]
    rows, verdict = evaluate_gates(report, policy_from_dict({"gates": gates}))
    assert verdict == "reject"
    builtin = by_name(rows)["builtin:empirical_epsilon"]
    assert "possible privacy bug" in builtin["note"] and "mia.student.attacks.0.epsilon_lower_bound" in builtin["note"]
    assert privacy_bug(good_report()) is None


def test_rejudge_replaces_verdict_without_mutating(policy: AuditPolicy) -> None:
    report = good_report()
    report.update(verdict="release", passed=True, gates=[])
    report["utility"]["retention"]["auroc"] = 0.5
    original = copy.deepcopy(report)
    judged = rejudge(report, policy)
    assert report == original
    assert judged["verdict"] == "review" and judged["passed"] is False
    assert len(judged["gates"]) == 10 and judged["policy"] == {"name": "default"}
    assert judged["utility"] == original["utility"]


def test_stricter_policy_with_paths_into_lists_and_rates(tmp_path: Path) -> None:
    path = write(tmp_path, """\
name: strict
gates:
  - name: mia_auc_upper_ci
    metric: mia.student.auc_ci.1
    op: "<="
    threshold: 0.52
    severity: reject
  - name: tpr_at_1pct
    metric: mia.student.tpr_at_fpr.0.01
    op: "<"
    threshold: 0.02
    severity: reject
""")
    strict = load_policy(path)
    rows, verdict = evaluate_gates(good_report(), strict)
    assert verdict == "reject"
    assert by_name(rows)["mia_auc_upper_ci"]["value"] == 0.53
    assert by_name(rows)["tpr_at_1pct"]["passed"] is True


def test_14_6_a_miscalibrated_student_goes_to_review(policy: AuditPolicy) -> None:
    report = good_report()
    report["utility"]["student"]["ece"] = 0.09
    rows, verdict = evaluate_gates(report, policy)
    assert verdict == "review" and not by_name(rows)["student_calibration"]["passed"]
