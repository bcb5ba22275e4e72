"""DP teachers on their own: test AUROC of the DP-EBM and the DP linear teacher against
non-private EBM / gradient boosting, on the built-in cohort and breast cancer.

    nice -n 10 python -m benchmarks.dp_teachers [--seeds 0 1 2] [--epsilons 1 3]

Patient-level 75/25 split per seed (one row per patient in both tables). Numeric ranges:
the cohort's are declared clinical ranges (``COHORT_RANGES``); breast cancer's are
[0, 1.2 × the maxima printed in the dataset's documentation] (``published_ranges``; public,
though the documentation took them from the data). Charged marginals cannot bound it
cheaply: on 426 training rows × 30 columns, marginals bought with ε = 0.1–0.3 give no range
for half the columns and spurious ones for others (3,017–30,743 for a feature in 0.05–0.16);
only at ε ≈ 1 for the marginals alone are the ranges usable. Every ε shown is
the teacher's ledger ε at δ = 1e-6 (PLD); each teacher gets the whole ε (separate cells).
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import pandas as pd
from interpret.glassbox import ExplainableBoostingClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from medistill.data.builtin import builtin_table
from medistill.data.schema import CATEGORICAL, FeatureSpec, TableSchema, infer_kind
from medistill.privacy.ledger import epsilon_of
from medistill.teachers.dp_ebm import fit_dp_ebm
from medistill.teachers.dp_linear import fit_dp_linear

DELTA = 1e-6
COHORT_RANGES = {"age": (18, 100), "bmi": (15, 60), "sbp": (70, 250), "dbp": (40, 140),
                 "heart_rate": (30, 200), "glucose": (40, 500), "hba1c": (3, 15),
                 "cholesterol": (80, 400), "hdl": (10, 120), "creatinine": (0.2, 5),
                 "n_encounters": (0, 30), "n_medications": (0, 20)}
COHORT_CATEGORIES = {"sex": ("female", "male"), "smoking": ("current", "former", "never")}


def load(name: str) -> tuple[pd.DataFrame, np.ndarray, TableSchema]:
    frame, label, id_col, identifiers = builtin_table(name, n_patients=5000, seed=0)
    labels = frame.pop(label).to_numpy().astype(np.int64)
    frame = frame.drop(columns=[id_col, *identifiers])
    specs = []
    for column in frame.columns:
        kind = infer_kind(frame[column])
        specs.append(FeatureSpec(column, kind, COHORT_CATEGORIES.get(column, ())
                                 if kind == CATEGORICAL else ()))
    return frame, labels, TableSchema(tuple(specs), label, ("0", "1"))


def published_ranges() -> dict[str, tuple[float, float]]:
    """Breast cancer: [0, 1.2 × the maximum printed in the dataset's documentation]."""
    from sklearn.datasets import load_breast_cancer

    text = load_breast_cancer().DESCR
    ranges = {}
    for line in text[text.index(":Summary Statistics:"):text.index(":Missing")].splitlines():
        match = re.match(r"\s*([a-z ]+) \((mean|standard error|worst)\):\s+\S+\s+(\S+)", line)
        if match:
            base, part, high = match.group(1).replace(" ", "_"), match.group(2), match.group(3)
            column = {"mean": f"mean_{base}", "standard error": f"{base}_error",
                      "worst": f"worst_{base}"}[part]
            ranges[column] = (0.0, 1.2 * float(high))
    return ranges


def _encode_plain(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    out = frame.copy()
    for spec in schema.features:
        if spec.kind == CATEGORICAL:
            out[spec.name] = pd.Categorical(out[spec.name], categories=spec.categories).codes
    return out.astype(float)


def run_cell(name: str, frame, labels, schema, seed: int, epsilons) -> list[dict]:
    train, test = train_test_split(np.arange(len(labels)), test_size=0.25,
                                   stratify=labels, random_state=seed)
    xtr, ytr = frame.iloc[train].reset_index(drop=True), labels[train]
    xte, yte = frame.iloc[test].reset_index(drop=True), labels[test]
    rows = []
    plain_tr, plain_te = _encode_plain(xtr, schema), _encode_plain(xte, schema)
    for model_name, model in (
            ("EBM (non-private)", ExplainableBoostingClassifier(n_jobs=1, random_state=seed)),
            ("HGB (non-private)", HistGradientBoostingClassifier(random_state=seed))):
        t = time.time()
        model.fit(plain_tr, ytr)
        rows.append({"table": name, "seed": seed, "epsilon": None, "model": model_name,
                     "auroc": roc_auc_score(yte, model.predict_proba(plain_te)[:, 1]),
                     "seconds": time.time() - t})
    for eps in epsilons:
        bounds = COHORT_RANGES if name == "cohort" else published_ranges()
        for kind, fit in (("DP-EBM", fit_dp_ebm), ("DP linear", fit_dp_linear)):
            t = time.time()
            # each teacher gets the whole teacher share: two separate cells, not one run
            teacher = fit(xtr, ytr, schema, epsilon=eps, delta=DELTA, bounds=bounds)
            spent = epsilon_of([teacher.event], DELTA, "pld")
            rows.append({"table": name, "seed": seed, "epsilon": eps, "model": kind,
                         "auroc": roc_auc_score(yte, teacher.predict_proba(xte)[:, 1]),
                         "ledger_epsilon": spent, "seconds": time.time() - t})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--tables", nargs="+", default=["cohort", "breast_cancer"])
    args = parser.parse_args(argv)
    rows = []
    for name in args.tables:
        frame, labels, schema = load(name)
        for seed in args.seeds:
            rows += run_cell(name, frame, labels, schema, seed, args.epsilons)
            print(pd.DataFrame(rows).tail(6).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    summary = (table.groupby(["table", "model", "epsilon"], dropna=False)
               .agg(auroc_mean=("auroc", "mean"), auroc_sd=("auroc", "std"),
                    ledger_epsilon=("ledger_epsilon", "max"), n=("auroc", "size"),
                    seconds=("seconds", "mean")).reset_index())
    print(summary.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
