"""The DP-teacher path against the direct DP-SGD student at the same total ε (issue #14).

``python -m benchmarks.dp_teacher_path [--sizes 5000] [--epsilons 1 3] [--seeds 0 1 2]``
runs the whole pipeline with ``teachers.dp_teacher: dp_ebm`` on the built-in cohort and
prints one Markdown row per (size, ε): the non-private reference teacher, the DP teacher,
the student, the direct DP-SGD student (the pipeline's own baseline at the same total ε,
``audit.baseline_seeds`` trainings), the student's ECE, and the gaps with their spread over
pipeline seeds. Every privacy draw is fresh, so seeds differ in noise as well as in split.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from medistill.config import parse_config
from medistill.pipeline import run_pipeline


def one_run(n: int, epsilon: float, seed: int) -> dict:
    raw = {"data": {"source": "builtin", "builtin": {"name": "cohort", "n_patients": n}},
           "privacy": {"target_epsilon": epsilon}, "seed": seed,
           "teachers": {"dp_teacher": "dp_ebm"},
           "audit": {"reference_models": 0, "baseline_seeds": 2, "speed_repeats": 20,
                     "bootstrap": 0, "memory": False}}
    with tempfile.TemporaryDirectory(prefix="medistill-bench-dpt-") as tmp:
        report = run_pipeline(parse_config(raw), Path(tmp) / "run",
                              console=Console(quiet=True)).report
    u = report["utility"]
    return {"teacher": u["teacher"]["auroc"], "dp_teacher": u["dp_teacher"]["auroc"],
            "student": u["student"]["auroc"], "direct": u["baselines"]["dp_sgd_direct"]["auroc"],
            "ece": u["student"]["ece"], "teacher_ece": u["dp_teacher"]["ece"],
            "epsilon": report["privacy"]["epsilon"]}


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    print("| patients | ε | seeds | teacher | DP teacher | student | direct DP-SGD | student − DP teacher | student − direct | student ECE | DP teacher ECE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for eps in args.epsilons:
            start = time.time()
            runs = [one_run(n, eps, s) for s in args.seeds]
            col = {k: [r[k] for r in runs] for k in runs[0]}
            print(f"| {n} | {eps:g} | {len(runs)} | {_ms(col['teacher'])} | {_ms(col['dp_teacher'])} | "
                  f"{_ms(col['student'])} | {_ms(col['direct'])} | "
                  f"{_ms([s - t for s, t in zip(col['student'], col['dp_teacher'])])} | "
                  f"{_ms([s - d for s, d in zip(col['student'], col['direct'])])} | "
                  f"{_ms(col['ece'])} | {_ms(col['teacher_ece'])} |  <!-- {time.time() - start:.0f} s -->",
                  flush=True)


if __name__ == "__main__":
    main()
