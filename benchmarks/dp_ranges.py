"""The DP teacher's numeric ranges: release settings compared on the same splits, by what
the DP-EBM teacher makes of them (issue #14, small tables).

    python -m benchmarks.dp_ranges --tables breast_cancer pbc pima colon --epsilons 1 \\
        --seeds 0 1 2 ... 23 --out DIR [--resume]

Each run (table, ε, seed) is the matrix's minimal pipeline document
(``benchmarks/dp_teacher_matrix.py``), stopped when the step ``teachers`` starts: its
training patients, the plan's noise multiplier for ``dp_teacher_ranges`` and the DP
teacher's planned ε are kept. Every variant in ``VARIANTS`` then releases ranges of the same
columns at that noise (fresh OS entropy, as in a run: the mechanism's own spread is part of
what is compared), a DP-EBM is fitted with them at the planned ε and scored on the run's
test patients. Per column the benchmark also records — here only, never in a run — whether
the range overlaps the data, holds its central 90 %, and its width over the data's central
98 %.

Writes ``DIR/runs/<table>_eps<ε>_seed<seed>.json`` as each run ends, then
``DIR/dp_ranges.md``: the teacher's mean test AUROC per table, ε and variant, each variant's
paired difference to ``published`` (mean and standard error over runs), and the column
figures.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import (
    describe_variants,
    paired_variants,
    plan_of,
    prepared_of,
    replay_and_report,
    replay_parser,
    run_until,
    variant_names,
)
from medistill.teachers.dp_ranges import PUBLISHED, RangeSettings, equal_rounds

VARIANTS: dict[str, RangeSettings] = {
    "published": PUBLISHED,
    # the release until 2026-12-01: a fine locating grid, two equal rounds, every zoom taken
    "2026-11-30": RangeSettings(locate_bins=232, weights=equal_rounds(2), zoom_kept_mass=0.0,
                                zoom_stray_bins=0.005, widen_located=True),
    "published, located widened": RangeSettings(widen_located=True),
}
REFERENCE = "published"


@dataclass(frozen=True)
class Captured:
    """What the DP teacher of one run sees."""

    train: object               # pandas frame, one row per training patient
    labels: np.ndarray
    test: object
    test_labels: np.ndarray
    schema: object
    columns: list[str]          # numeric columns without a declared range
    noise: float                # the plan's dp_teacher_ranges noise multiplier
    teacher_epsilon: float
    delta: float
    max_bins: int               # the plan's DP-EBM bins (medistill.teachers.dp_ebm.public_max_bins)


def capture(document: dict, work: Path) -> Captured:
    """Run ``document`` up to the DP teacher and return its inputs."""
    from medistill.steps.teachers import _planned_epsilon

    observer = run_until(document, work, "teachers", "prepare", "canaries", "plan")
    prepared, plan = prepared_of(observer), plan_of(observer)
    if plan.dp_teacher is None or not plan.marginal_columns:
        raise RuntimeError("the plan buys no DP teacher ranges for this run")
    X_test, y_test, _ = prepared.data.rows(prepared.split.test)
    return Captured(prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True),
                    prepared.train_y[prepared.dp_rows], X_test, np.asarray(y_test),
                    prepared.data.schema, list(plan.marginal_columns),
                    plan.noise("dp_teacher_ranges"),
                    _planned_epsilon(plan, prepared.ledger, "dp_teacher"),
                    prepared.ledger.delta, plan.dp_ebm_max_bins)


def column_figures(captured: Captured, ranges: dict) -> dict[str, float]:
    """Share of columns whose range overlaps the data / holds its central 90 %, and the
    median range width over the data's central 98 % (benchmark only)."""
    overlaps, holds, widths = [], [], []
    for column, found in ranges.items():
        values = np.asarray(captured.train[column], dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        q01, q05, q95, q99 = np.quantile(values, [0.01, 0.05, 0.95, 0.99])
        overlaps.append(found.high > values.min() and found.low < values.max())
        holds.append(found.low <= q05 and found.high >= q95)
        widths.append((found.high - found.low) / max(q99 - q01, 1e-12))
    return {"overlap": float(np.mean(overlaps)), "holds_central_90": float(np.mean(holds)),
            "median_width": float(np.median(widths))}


def score_variants(captured: Captured, variants: dict[str, RangeSettings]) -> dict[str, dict]:
    """Each variant's ranges (fresh entropy) and the test AUROC of a DP-EBM fitted with
    them at the planned ε."""
    from sklearn.metrics import roc_auc_score

    from medistill.privacy.randomness import secure_generator
    from medistill.teachers.dp_ebm import fit_dp_ebm
    from medistill.teachers.dp_ranges import bounds_of, release_ranges

    out = {}
    for name, settings in variants.items():
        ranges = release_ranges(captured.train, captured.columns, noise_multiplier=captured.noise,
                                rng=secure_generator(), settings=settings)
        teacher = fit_dp_ebm(captured.train, captured.labels, captured.schema,
                             public_rows=len(captured.train),
                             epsilon=captured.teacher_epsilon, delta=captured.delta,
                             bounds=bounds_of(ranges))
        auroc = roc_auc_score(captured.test_labels, teacher.predict_proba(captured.test)[:, 1])
        out[name] = {"auroc": float(auroc), **column_figures(captured, ranges)}
    return out


def markdown(runs: list[dict], command: str) -> str:
    """Mean teacher AUROC per (table, ε) and variant, paired differences to ``REFERENCE``
    per cell and overall, and the column figures."""
    variants = variant_names(runs, VARIANTS)
    cells: dict[tuple[str, float], list[dict]] = {}
    for run in runs:
        cells.setdefault((run["table"], run["epsilon"]), []).append(run)
    lines = [f"Command: `{command}`", "",
             *paired_variants(runs, variants, REFERENCE, what="DP-EBM teacher test AUROC")]
    lines += ["", "Columns (benchmark only): share of ranges that overlap their column / hold "
              "its central 90 %, median width over its central 98 %:", "",
              "| table | ε | " + " | ".join(variants) + " |",
              "| --- | --- | " + " | ".join("---" for _ in variants) + " |"]
    for (table, epsilon), mine in sorted(cells.items()):
        parts = []
        for v in variants:
            got = [r["variants"][v] for r in mine]
            parts.append(f"{np.mean([g['overlap'] for g in got]):.2f} / "
                         f"{np.mean([g['holds_central_90'] for g in got]):.2f} / "
                         f"{np.median([g['median_width'] for g in got]):.1f}")
        lines.append(f"| {table} | {epsilon:g} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = replay_parser("python -m benchmarks.dp_ranges", __doc__, epsilons=[1.0],
                           seeds=list(range(24)))
    args = parser.parse_args(argv)
    command = "python -m benchmarks.dp_ranges " + shlex.join(
        sys.argv[1:] if argv is None else argv)

    def measure(document: dict, work: Path, *_: object) -> dict:
        captured = capture(document, work)
        return {"columns": len(captured.columns), "train": len(captured.train),
                "noise_multiplier": captured.noise, "teacher_epsilon": captured.teacher_epsilon,
                "variants": score_variants(captured, VARIANTS)}

    return replay_and_report(args, prefix="medistill-bench-ranges-", measure=measure,
                             describe=describe_variants, markdown=markdown, command=command,
                             filename="dp_ranges.md")


if __name__ == "__main__":
    main()
