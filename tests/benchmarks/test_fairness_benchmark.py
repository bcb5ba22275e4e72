"""The fairness benchmark's table and arguments (the runs themselves are in docs/benchmarks.md)."""

from __future__ import annotations

from benchmarks.__main__ import parse_args
from benchmarks.fairness import markdown


def _cell(epsilon: float, seed: int, student: float, direct: float | None) -> dict:
    return {"epsilon": epsilon, "seed": seed, "seconds": 1.0, "n_queries": 200, "alpha": 0.1,
            "teacher": 0.85, "student": 0.80, "direct": 0.81, "judged_groups": 4, "unjudged": 1,
            "student_worst": student, "student_worst_group": "age=65+", "student_gap": 0.05,
            "direct_worst": direct, "direct_worst_group": "sex=male", "direct_gap": 0.04,
            "dp_teacher_worst": 0.97, "groups": {}}


def test_markdown_rows_per_dataset_and_epsilon() -> None:
    results = {"n_queries": 200, "cohort_patients": 3000, "datasets": {
        "cohort": [_cell(1, 0, 0.90, 0.88), _cell(1, 1, 0.92, None), _cell(3, 0, 0.95, 0.94)],
        "pbc": [{"epsilon": 1, "seed": 0, "error": "PrivacyBudgetError: too small"}]}}
    text = markdown(results, "python -m benchmarks fairness", "numpy 2")
    lines = text.splitlines()
    assert "labels.n_queries = 200" in lines[0]
    rows = [line for line in lines if line.startswith("| cohort") or line.startswith("| pbc")]
    assert len(rows) == 3
    assert "| cohort | 1 | 2 | 200 | 4 / 1 |" in rows[0] and "0.900, 0.920" in rows[0]
    assert "0.880, –" in rows[0]  # a seed without a direct student shows a dash
    assert "run failed: PrivacyBudgetError" in rows[2]


def test_fairness_is_an_opt_in_part() -> None:
    assert "fairness" not in parse_args([]).parts
    assert parse_args(["fairness"]).parts == ["fairness"]
