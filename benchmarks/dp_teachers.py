"""DP teachers on their own: test AUROC of the DP-EBM and the DP linear teacher against
non-private EBM / gradient boosting, on the built-in cohort and breast cancer.

    nice -n 10 python -m benchmarks.dp_teachers [--seeds 0 1 2] [--epsilons 1 3]

Patient-level 75/25 split per seed (one row per patient in both tables). Numeric ranges:
the cohort's are declared clinical ranges (``COHORT_RANGES``); breast cancer has no
declared ranges, so 10 % of each cell's ε buys noisy one-way marginals
(``release_marginals``) and the ranges are their 0.5–99.5 % quantiles
(``bounds_from_marginals``); the teacher gets the other 90 %. Every ε shown is the
composed ledger ε at δ = 1e-6 (PLD).
"""

from __future__ import annotations

import argparse
import secrets
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
from medistill.teachers.dp_inputs import bounds_from_marginals
from medistill.teachers.dp_linear import fit_dp_linear
from medistill.transfer.dp_marginals import marginals_event, release_marginals

DELTA = 1e-6
COHORT_RANGES = {"age": (18, 100), "bmi": (15, 60), "sbp": (70, 250), "dbp": (40, 140),
                 "heart_rate": (30, 200), "glucose": (40, 500), "hba1c": (3, 15),
                 "cholesterol": (80, 400), "hdl": (10, 120), "creatinine": (0.2, 5),
                 "n_encounters": (0, 30), "n_medications": (0, 20)}
COHORT_CATEGORIES = {"sex": ("female", "male"), "smoking": ("current", "former", "never")}
MARGINAL_SHARE = 0.1


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
        events, share = [], eps
        if name == "cohort":
            bounds = COHORT_RANGES
        else:
            numeric = [f.name for f in schema.features if f.kind == "numeric"]
            marginal_eps = MARGINAL_SHARE * eps
            from medistill.privacy.planner import calibrate_noise
            z = calibrate_noise(marginals_event, marginal_eps, DELTA, "pld")
            released = release_marginals(xtr, schema, numeric, noise_multiplier=z,
                                         rng=np.random.default_rng(secrets.randbits(128)))
            bounds = bounds_from_marginals(released)
            events.append(marginals_event(z))
            share = eps - marginal_eps
        for kind, fit in (("DP-EBM", fit_dp_ebm), ("DP linear", fit_dp_linear)):
            t = time.time()
            # each teacher gets the whole teacher share: two separate cells, not one run
            teacher = fit(xtr, ytr, schema, epsilon=share, delta=DELTA, bounds=bounds)
            spent = epsilon_of([*events, teacher.event], DELTA, "pld")
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
