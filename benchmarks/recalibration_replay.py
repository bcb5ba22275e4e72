"""The DP recalibration replayed on the same students: which fit of the noisy reliability
histogram gives calibrated risks (issue #14, calibration).

    python -m benchmarks.recalibration_replay --tables cohort breast_cancer flchain pbc pima \\
        colon nwtco --epsilons 1 3 --seeds 0 1 2 3 4 [--draws 5] [--priors 0.25 0.5 1]
        [--bins 6] --out DIR [--resume]

Each run (table, ε, seed) is the matrix's minimal pipeline document
(``benchmarks/dp_teacher_matrix.py``), stopped when the step ``recalibrate`` starts: the
fine-tuned student, its transfer rows, the training patients and the plan's bins and noise
multiplier are kept. From there every variant fits the *same* noisy releases of the
histogram (``--draws`` of them, seeded: this is a benchmark) and is scored on the run's test
patients, so the split, the teacher and the student cancel in the differences:

- ``none``: no recalibration; ``noiseless``: the plain fit on the exact statistic (not
  releasable: how much of the error is the noise's);
- ``plain``: :func:`~medistill.student.recalibration.platt_from_release` (before 2026-12-01);
- ``shrunk τ``: :func:`~medistill.student.recalibration.shrunk_platt` with prior standard
  deviation τ (``--priors``); the pipeline uses ``SLOPE_PRIOR_SD``;
- ``plain B bins`` / ``shrunk B bins``: the same at ``--bins`` B instead of the plan's.

Writes ``DIR/runs/<table>_eps<ε>_seed<seed>.json`` as each run ends, then
``DIR/recalibration_replay.md``: mean test ECE per table and ε, and each variant's paired
difference to ``plain`` (mean and standard error over runs).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import (
    plan_of,
    prepared_of,
    replay_and_report,
    replay_parser,
    run_until,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Captured:
    """What the recalibration of one run sees, as logit differences of its student."""

    transfer: np.ndarray        # on the synthetic transfer rows (where the bins come from)
    train: np.ndarray           # one row per training patient
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    bins: int | None            # the plan's; None when it plans no recalibration
    noise: float | None


def capture(document: dict, work: Path) -> Captured:
    """Run ``document`` up to the recalibration and return its inputs."""
    from medistill.steps.student import SYNTHETIC_KINDS, _logit_difference

    observer = run_until(document, work, "recalibrate", "prepare", "canaries", "plan",
                         "labels", "student")
    prepared, plan = prepared_of(observer), plan_of(observer)
    student, labelled = observer.get("student"), observer.get("labels")
    schema = prepared.data.schema

    def logits(rows) -> np.ndarray:
        return _logit_difference(student.network, student.preprocessor, rows, schema)

    synthetic = labelled.rows[np.isin(labelled.sources, SYNTHETIC_KINDS)]
    train_rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
    X_test, y_test, _ = prepared.data.rows(prepared.split.test)
    bins = plan.recalibration_bins
    return Captured(logits(synthetic), logits(train_rows), prepared.train_y[prepared.dp_rows],
                    logits(X_test), np.asarray(y_test),
                    bins, plan.noise("recalibration") if bins is not None else None)


def test_ece(captured: Captured, slope: float, intercept: float) -> float:
    """Test ECE of the student's risks after folding (slope, intercept) into its logit."""
    from scipy.special import expit

    from medistill.audit.utility import expected_calibration_error

    p1 = expit(slope * captured.test + intercept)
    return expected_calibration_error(captured.test_labels, np.c_[1 - p1, p1])


def variant_eces(captured: Captured, draws: int, priors: list[float], extra_bins: list[int],
                 rng: np.random.Generator) -> dict[str, list[float]]:
    """Test ECE of each variant, one value per noisy release (``none`` and ``noiseless``:
    one value). Variants at one bin count share each release."""
    from medistill.student.recalibration import (
        SLOPE_PRIOR_SD,
        LogitBins,
        platt_from_release,
        release,
        shrunk_platt,
    )

    out: dict[str, list[float]] = {"none": [test_ece(captured, 1.0, 0.0)]}
    for n_bins in [captured.bins, *extra_bins]:
        bins = LogitBins.from_transfer(captured.transfer, n_bins)
        statistic = bins.statistic(captured.train, captured.train_labels)
        suffix = "" if n_bins == captured.bins else f" {n_bins} bins"
        if not suffix:
            exact = platt_from_release(bins, statistic)
            out["noiseless"] = [test_ece(captured, *((exact.slope, exact.intercept)
                                                     if exact else (1.0, 0.0)))]
        for _ in range(draws):
            released = release(statistic, captured.noise, rng)
            plain = platt_from_release(bins, released)
            out.setdefault("plain" + suffix, []).append(
                test_ece(captured, *((plain.slope, plain.intercept) if plain else (1.0, 0.0))))
            for prior in (priors if not suffix else [SLOPE_PRIOR_SD]):
                fit = shrunk_platt(bins, released, captured.noise, rng, prior_sd=prior)
                out.setdefault(f"shrunk {prior:g}" + suffix, []).append(
                    test_ece(captured, *((fit.slope, fit.intercept) if fit else (1.0, 0.0))))
    return out


def summarize(runs: list[dict]) -> tuple[list[str], dict[tuple[str, float], dict[str, float]],
                                           dict[str, tuple[float, float, int]]]:
    """Variants (in order), mean ECE per (table, ε) and variant, and each variant's paired
    difference to ``plain`` over runs (mean, standard error, runs)."""
    variants: list[str] = []
    for run in runs:
        variants += [v for v in run["ece"] if v not in variants]
    cells: dict[tuple[str, float], dict[str, list[float]]] = {}
    differences: dict[str, list[float]] = {v: [] for v in variants}
    for run in runs:
        means = {v: float(np.mean(values)) for v, values in run["ece"].items()}
        cell = cells.setdefault((run["table"], run["epsilon"]), {})
        for v, m in means.items():
            cell.setdefault(v, []).append(m)
            differences[v].append(m - means["plain"])
    table = {key: {v: float(np.mean(ms)) for v, ms in cell.items()} for key, cell in cells.items()}
    paired = {v: (float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1
                  else float("nan"), len(d)) for v, d in differences.items() if d}
    return variants, table, paired


def markdown(runs: list[dict], command: str) -> str:
    variants, table, paired = summarize(runs)
    lines = [f"Command: `{command}`", "",
             "Mean test ECE per table and ε (each run's releases averaged, then runs):", "",
             "| table | ε | runs | patients per bin | " + " | ".join(variants) + " |",
             "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in variants) + " |"]
    for (name, epsilon), means in sorted(table.items()):
        mine = [r for r in runs if r["table"] == name and r["epsilon"] == epsilon]
        per_bin = np.mean([r["patients_per_bin"] for r in mine])
        lines.append(f"| {name} | {epsilon:g} | {len(mine)} | {per_bin:.0f} | "
                     + " | ".join(f"{means[v]:.3f}" if v in means else "–" for v in variants)
                     + " |")
    lines += ["", "Paired by run, against `plain`:", "", "| variant | ECE − plain | se | runs |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {v} | {m:+.4f} | {se:.4f} | {n} |" for v, (m, se, n) in paired.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = replay_parser("python -m benchmarks.recalibration_replay", __doc__,
                           epsilons=[1.0, 3.0], seeds=[0, 1, 2, 3, 4])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--priors", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    parser.add_argument("--bins", nargs="*", type=int, default=[])
    args = parser.parse_args(argv)
    command = "python -m benchmarks.recalibration_replay " + shlex.join(
        sys.argv[1:] if argv is None else argv)

    def measure(document: dict, work: Path, name: str, epsilon: float,
                seed: int) -> dict | None:
        captured = capture(document, work)
        if captured.bins is None:        # no recalibration planned
            return None
        rng = np.random.default_rng([seed, int(round(epsilon * 1000))])
        return {"bins": captured.bins, "noise_multiplier": captured.noise,
                "patients_per_bin": len(captured.train) / captured.bins,
                "test_patients": len(captured.test),
                "ece": variant_eces(captured, args.draws, args.priors, args.bins, rng)}

    return replay_and_report(args, prefix="medistill-bench-recal-", measure=measure,
                             describe=lambda run: ", ".join(f"{v} {np.mean(e):.3f}"
                                                            for v, e in run["ece"].items()),
                             markdown=markdown, command=command,
                             filename="recalibration_replay.md")


if __name__ == "__main__":
    main()
