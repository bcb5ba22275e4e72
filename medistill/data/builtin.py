"""Built-in datasets: the simulated clinical cohort, and scikit-learn's breast-cancer table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medistill.data.cohort import OUTCOME, simulate_cohort

COHORT_IDENTIFIERS = ("name", "mrn", "phone")


def builtin_table(name: str, *, n_patients: int, seed: int) -> tuple[pd.DataFrame, str, str, tuple[str, ...]]:
    """Return (table, label column, patient-id column, identifier columns) of a built-in set."""
    if name == "cohort":
        table = simulate_cohort(n_patients, rng=np.random.default_rng(seed))
        return table, OUTCOME, "patient_id", COHORT_IDENTIFIERS
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer(as_frame=True)
        table = bunch.frame.copy()
        table.columns = [c.replace(" ", "_") for c in table.columns]
        table.insert(0, "patient_id", [f"BC{i:05d}" for i in range(len(table))])
        # 0 = malignant, 1 = benign in scikit-learn; make 1 the event of interest.
        table["malignant"] = 1 - table.pop("target")
        return table, "malignant", "patient_id", ()
    raise ValueError(f"unknown built-in dataset {name!r}")


__all__ = ["COHORT_IDENTIFIERS", "builtin_table"]
