"""How small an ECE a test set of a given size can show: the ECE of a perfectly calibrated model.

    python -m benchmarks.ece_floor --tables breast_cancer pbc pima colon nwtco flchain cohort

ECE (10 equal-width bins of the top-label confidence, ``medistill.audit.utility``) is itself
an estimate: on a few hundred test patients it stays well above zero for a model whose risks
are exactly right. For each table this draws outcomes y ~ Bernoulli(p) for ``n_test``
patients, where p are a non-private logistic regression's risks on the table's own rows (a
realistic spread of risks, taken as the truth), and reports the median and 90th percentile
of the ECE over ``--draws`` draws. ``n_test`` is the median test size of the cells of a
``benchmarks.dp_teacher_matrix`` output when ``--cells`` points at one, else a quarter of
the table. A student ECE near the floor cannot be told from perfect calibration on that
table; the issue-14 gate (0.05) is below the floor on the smallest tables.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.datasets import ALL, data_section

DRAWS = 2000


def ece_of_calibrated(probabilities: np.ndarray, n_test: int, draws: int,
                      rng: np.random.Generator) -> np.ndarray:
    """ECEs of the true risks on ``draws`` test sets of ``n_test`` patients drawn from
    ``probabilities`` with outcomes drawn from them."""
    from medistill.audit.utility import expected_calibration_error

    out = np.empty(draws)
    for k in range(draws):
        q = probabilities[rng.choice(len(probabilities), n_test, replace=n_test > len(probabilities))]
        y = (rng.random(n_test) < q).astype(int)
        out[k] = expected_calibration_error(y, np.c_[1 - q, q])
    return out


def table_risks(name: str, folder: Path) -> np.ndarray:
    """A non-private logistic regression's risks on every row of table ``name``."""
    from sklearn.linear_model import LogisticRegression

    from medistill.config import DataConfig
    from medistill.data.table import load_sensitive
    from medistill.student.preprocess import as_model_input, make_preprocessor

    data = load_sensitive(DataConfig(**data_section(name, folder)), seed=0)
    X, y, _ = data.rows(np.arange(data.n_patients))
    x = make_preprocessor(data.schema).fit_transform(as_model_input(X, data.schema))
    return LogisticRegression(max_iter=3000).fit(x, y).predict_proba(x)[:, 1]


def test_size(name: str, cells: Path | None, n_rows: int) -> int:
    sizes = [json.loads(p.read_text()).get("n_test") for p in
             (cells.glob(f"{name}_eps*.json") if cells else [])]
    sizes = [s for s in sizes if s]
    return int(np.median(sizes)) if sizes else max(10, n_rows // 4)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ece_floor", description=__doc__)
    parser.add_argument("--tables", nargs="+", choices=ALL, default=list(ALL))
    parser.add_argument("--cells", type=Path, default=None,
                        help="a dp_teacher_matrix cells/ folder (test sizes read from it)")
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tables:
            risks = table_risks(name, Path(folder))
            n_test = test_size(name, args.cells, len(risks))
            eces = ece_of_calibrated(risks, n_test, args.draws, rng)
            rows.append({"table": name, "n_test": n_test, "median": float(np.median(eces)),
                         "p90": float(np.quantile(eces, 0.9))})
    print("| table | test patients | ECE of perfectly calibrated risks: median | 90th percentile |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['table']} | {r['n_test']} | {r['median']:.3f} | {r['p90']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
