"""The transfer-source benchmark runs end to end on a tiny configuration (not its numbers)."""

import pytest

from benchmarks.transfer_sources import main, markdown


@pytest.mark.slow
def test_transfer_source_benchmark_runs_on_a_tiny_cohort(capsys) -> None:
    summary = main(["--datasets", "cohort", "--epsilons", "3", "--sources", "mix",
                    "--cohort-patients", "400"])
    (row,) = summary
    assert row["source"] == "mix" and 0.0 <= row["student"] <= 1.0
    assert row["transfer_epsilon"] > 0 and row["mean_ks"] is not None
    table = markdown(summary)
    assert table.count("\n") == 2 and "| cohort | 3 | mix |" in table
    assert "| dataset | ε | source | labels |" in capsys.readouterr().out
