"""The report states how many runs touched the same data and their summed ε (#15.8)."""

from __future__ import annotations

from medistill.audit.report import render_html, render_markdown

RUNS = {"registry": "/srv/runs/medistill-runs.jsonl", "n_runs": 3, "summed_epsilon": 7.5,
        "summed_delta": 3e-6, "composition": "basic composition: the sum of ε", "note": None}


def _report(runs):
    return {"schema_version": "1",
            "privacy": {"unit": "patient", "formal_guarantee": True, "epsilon": 2.5,
                        "delta": 1e-6, "accountant": "pld", "ledger": [],
                        "runs_on_same_data": runs}}


def test_15_8_report_states_runs_and_summed_epsilon() -> None:
    md = render_markdown(_report(RUNS))
    line = next(l for l in md.splitlines() if "Runs on the same data" in l)
    assert ": 3, summed ε 7.500" in line and "basic composition" in line
    assert 'id="runs-on-same-data">3, summed ε 7.500' in render_html(_report(RUNS))
    infinite = render_markdown(_report({**RUNS, "summed_epsilon": None}))
    assert "summed ε ∞" in infinite


def test_15_8_no_registry_no_line() -> None:
    assert "Runs on the same data" not in render_markdown(_report(None))
