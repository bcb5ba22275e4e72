"""Shared fixtures: small tables written to disk, and one end-to-end run reused by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medistill.data.cohort import simulate_cohort


@pytest.fixture(scope="session")
def cohort_table() -> pd.DataFrame:
    """3,000 simulated patients with fake identifiers (name, mrn, phone)."""
    return simulate_cohort(3000, rng=np.random.default_rng(7))


@pytest.fixture(scope="session")
def cohort_csv(tmp_path_factory: pytest.TempPathFactory, cohort_table: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("data") / "records.csv"
    cohort_table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def write_pipeline():
    """Factory: a pipeline file for a CSV with the cohort's identifiers declared."""
    return _write_pipeline


def _write_pipeline(folder: Path, csv: Path, **sections: str) -> Path:
    text = (f"data:\n  source: csv\n  path: {csv}\n  label: cv_event_1y\n"
            "  id_column: patient_id\n  identifiers: [name, mrn, phone]\n"
            "privacy:\n  target_epsilon: 3.0\n")
    for name, body in sections.items():
        text += f"{name}:\n" + "".join(f"  {line}\n" for line in body.strip().splitlines())
    path = folder / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def divisors(monkeypatch) -> list[float]:
    """Every divisor Opacus's optimizers scale a noisy gradient sum by (one per step)."""
    from opacus.optimizers.optimizer import DPOptimizer

    seen: list[float] = []
    original = DPOptimizer.scale_grad

    def spy(self) -> None:
        seen.append(float(self.expected_batch_size))
        original(self)

    monkeypatch.setattr(DPOptimizer, "scale_grad", spy)
    return seen
