"""The DP-EBM teacher's settings (bins, rounds, learning rate) compared on the same splits
and the same ranges (issue #14).

    python -m benchmarks.dp_ebm_settings --tables breast_cancer pbc pima colon \\
        --epsilons 1 3 --seeds 0 1 2 ... --out DIR [--repeats 3] [--resume] \\
        [--variants bins|learning]

Each run (table, ε, seed) is the matrix's minimal pipeline document, stopped when the step
``teachers`` starts (``benchmarks.dp_ranges.capture``): its training patients, the plan's
ranges noise and the DP teacher's planned ε. One range release (the published settings,
fresh OS entropy) is then shared by every variant of ``VARIANTS``, so the variants differ
only in the DP-EBM's settings; each is fitted ``--repeats`` times at the planned ε (fresh
noise each time, as in a run) and its mean test AUROC is kept. Every variant costs the same
ε: the ledger event is two Gaussians whose composition does not depend on the rounds or the
bins (``medistill.teachers.dp_ebm.dp_ebm_event``).

Writes ``DIR/runs/<table>_eps<ε>_seed<seed>.json`` as each run ends, then
``DIR/dp_ebm_settings.md``: the mean per table, ε and variant, and each variant's paired
difference to the reference. ``--variants bins`` (``VARIANTS``, reference interpret's
default 32 bins) compares bin counts; ``--variants learning`` (``LEARNING_VARIANTS``,
reference the published settings at the plan's own bins,
``medistill.teachers.dp_ebm.public_max_bins``) compares how far the boosting goes: the
learning rate and the number of rounds, at the plan's bins.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (
    describe_variants,
    paired_variants,
    replay_and_report,
    replay_parser,
    variant_names,
)
from benchmarks.dp_ranges import Captured, capture
from medistill.teachers.dp_ebm import DPEBMSettings

VARIANTS: dict[str, DPEBMSettings] = {
    "32 bins": DPEBMSettings(max_bins=32),     # interpret's default
    "16 bins": DPEBMSettings(max_bins=16),
    "8 bins": DPEBMSettings(max_bins=8),
    "16 bins, 100 rounds, learning rate 0.03": DPEBMSettings(max_bins=16, max_rounds=100,
                                                            learning_rate=0.03),
}
REFERENCE = "32 bins"
# Relative to the plan's bins: each is the published settings with these fields replaced.
LEARNING_VARIANTS: dict[str, dict] = {
    "published": {},
    "learning rate 0.03": {"learning_rate": 0.03},
    "learning rate 0.1": {"learning_rate": 0.1},
    "1,000 rounds": {"max_rounds": 1000},
}
LEARNING_REFERENCE = "published"


def learning_variants(max_bins: int) -> dict[str, DPEBMSettings]:
    """``LEARNING_VARIANTS`` at the plan's ``max_bins``."""
    return {name: DPEBMSettings(max_bins=max_bins, **fields)
            for name, fields in LEARNING_VARIANTS.items()}


def score_settings(captured: Captured, variants: dict[str, DPEBMSettings],
                   repeats: int) -> dict[str, dict]:
    """One range release shared by all variants; each variant's test AUROC over
    ``repeats`` fits at the planned ε."""
    from sklearn.metrics import roc_auc_score

    from medistill.privacy.randomness import secure_generator
    from medistill.teachers.dp_ebm import fit_dp_ebm
    from medistill.teachers.dp_ranges import bounds_of, release_ranges

    ranges = release_ranges(captured.train, captured.columns, noise_multiplier=captured.noise,
                            rng=secure_generator())
    out = {}
    for name, settings in variants.items():
        draws = []
        for _ in range(repeats):
            teacher = fit_dp_ebm(captured.train, captured.labels, captured.schema,
                                 public_rows=len(captured.train),
                                 epsilon=captured.teacher_epsilon, delta=captured.delta,
                                 bounds=bounds_of(ranges), settings=settings)
            proba = teacher.predict_proba(captured.test)[:, 1]
            draws.append(float(roc_auc_score(captured.test_labels, proba)))
        out[name] = {"auroc": float(np.mean(draws)), "draws": draws}
    return out


def markdown(runs: list[dict], command: str) -> str:
    learning = any(LEARNING_REFERENCE in r["variants"] for r in runs)
    known, reference = ((LEARNING_VARIANTS, LEARNING_REFERENCE) if learning
                        else (VARIANTS, REFERENCE))
    lines = [f"Command: `{command}`", "",
             *paired_variants(runs, variant_names(runs, known), reference,
                              what="DP-EBM teacher test AUROC (mean of the repeated fits)")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = replay_parser("python -m benchmarks.dp_ebm_settings", __doc__,
                           epsilons=[1.0, 3.0], seeds=list(range(12)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", choices=("bins", "learning"), default="bins",
                        help="bins: 32/16/8 bins (reference 32); learning: learning rate and "
                             "rounds at the plan's bins (reference the published settings)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    command = "python -m benchmarks.dp_ebm_settings " + shlex.join(
        sys.argv[1:] if argv is None else argv)

    def measure(document: dict, work: Path, *_: object) -> dict:
        captured = capture(document, work)
        variants = (learning_variants(captured.max_bins) if args.variants == "learning"
                    else VARIANTS)
        return {"train": len(captured.train), "teacher_epsilon": captured.teacher_epsilon,
                "repeats": args.repeats, "max_bins": captured.max_bins,
                "variants": score_settings(captured, variants, args.repeats)}

    return replay_and_report(args, prefix="medistill-bench-ebm-", measure=measure,
                             describe=describe_variants, markdown=markdown, command=command,
                             filename="dp_ebm_settings.md")


if __name__ == "__main__":
    main()
