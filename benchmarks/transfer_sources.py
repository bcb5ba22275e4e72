"""Transfer sources compared (issue 5): fidelity and the student they teach, at fixed total ε.

    python -m benchmarks.transfer_sources                       # cohort + flchain, ε ∈ {1, 3, 8}
    python -m benchmarks.transfer_sources --quick               # small cohort, ε = 3, minutes
    python -m benchmarks.transfer_sources --datasets flchain --epsilons 3 --seeds 0 1

For every dataset, total ε and source, one ``run_pipeline`` run (same seed, same everything
else) reports: the student's AUROC on the sensitive test split, the reference teacher's and
the retention; the direct DP-SGD student (no teacher, same ε) of the same run; the transfer
stage's own ε; and the source's fidelity to the test split (mean KS of numeric columns, mean
TV of the others, pairwise-correlation error).

Sources: ``schema_prior`` (declared priors + DP one-way marginals), ``dp_synthesizer``
(tree of DP 2-way marginals), ``public_table`` (another hospital's release: for the cohort a
second simulated cohort from another seed; for ``flchain`` the people not in the sensitive
half) and ``mix`` (half synthesizer, half public).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SOURCES = ("schema_prior", "dp_synthesizer", "public_table", "mix")
N_ROWS = 5000


def _flchain(folder: Path, seed: int) -> tuple[dict, Path]:
    """Half of flchain as the sensitive table, the other half as the 'public' release."""
    from benchmarks.datasets import flchain_frame

    frame = flchain_frame()
    order = np.random.default_rng(seed).permutation(len(frame))
    half = len(frame) // 2
    sensitive, public = frame.iloc[order[:half]], frame.iloc[order[half:]]
    sensitive.to_csv(folder / "flchain_sensitive.csv", index=False)
    public.drop(columns=["death", "person_id"]).to_csv(folder / "flchain_public.csv", index=False)
    section = {"source": "csv", "path": str(folder / "flchain_sensitive.csv"), "label": "death",
               "id_column": "person_id",
               "feature_types": {"sex": "categorical", "mgus": "binary", "flc_grp": "numeric"}}
    return section, folder / "flchain_public.csv"


def _cohort(folder: Path, n_patients: int, seed: int) -> tuple[dict, Path]:
    """The built-in cohort; the 'other hospital' is the same simulator at another seed."""
    from medistill.data.builtin import builtin_table

    table, label, id_column, identifiers = builtin_table("cohort", n_patients=n_patients,
                                                         seed=seed + 1000)
    public = table.drop(columns=[label, id_column, *identifiers], errors="ignore")
    public.to_csv(folder / "cohort_public.csv", index=False)
    return ({"source": "builtin", "builtin": {"name": "cohort", "n_patients": n_patients}},
            folder / "cohort_public.csv")


def _transfer(source: str, public: Path) -> dict:
    table = {"path": str(public), "missing": "impute"}
    if source == "public_table":
        return {"source": "public_table", "n_rows": N_ROWS, "public": table}
    if source == "mix":
        n_public = min(N_ROWS // 2, len(pd.read_csv(public)))
        return {"source": "mix", "mix": {"dp_synthesizer": N_ROWS - n_public,
                                         "public_table": n_public}, "public": table}
    return {"source": source, "n_rows": N_ROWS}


def run_one(data: dict, public: Path, source: str, epsilon: float, seed: int, out: Path, *,
            min_queries: int = 20) -> dict:
    """One pipeline run; what the report says about this source.

    ``labels.min_queries`` is lowered (default 20) so that the teachers label transfer rows
    wherever the budget affords a few: the point is to compare the sources *through*
    distillation, which the pipeline's default (200) skips on tables of this size."""
    from benchmarks.common import run_config

    # run_config skips the report's all-cores speed pass: speed is not measured here.
    outcome, seconds = run_config({
        "data": data, "privacy": {"target_epsilon": epsilon}, "transfer": _transfer(source, public),
        "labels": {"min_queries": min_queries},
        # The PATE path: the sources compared here are what its teachers label.
        "teachers": {"dp_teacher": "none"},
        "audit": {"reference_models": 0, "bootstrap": 0, "memory": False, "speed_repeats": 30,
                  "throughput_batch": 2000},
        "seed": seed}, out)
    report = outcome.report
    utility, transfer = report["utility"], report["run"]["transfer"]
    fidelity = [p["fidelity"] for p in transfer["sources"] if p.get("fidelity")]

    def mean_of(key: str) -> float | None:
        values = [f[key] for f in fidelity if f.get(key) is not None]
        return float(np.mean(values)) if values else None

    direct = utility.get("baselines", {}).get("dp_sgd_direct")
    return {"source": source, "resolved": transfer["resolved"], "epsilon": epsilon, "seed": seed,
            "n_labelled": transfer["n_labelled"],
            "teacher": utility["teacher"]["auroc"], "student": utility["student"]["auroc"],
            "retention": utility["retention"]["auroc"],
            "direct": direct["auroc"] if direct else None,
            "transfer_epsilon": transfer["epsilon_cost"], "total_epsilon": report["privacy"]["epsilon"],
            "public_epsilon": (report["privacy"]["transfer_ledger"] or {}).get("epsilon"),
            "mean_ks": mean_of("mean_ks"), "mean_tv": mean_of("mean_tv"),
            "correlation_error": mean_of("correlation_error"),
            "seconds": round(seconds, 1)}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean (and spread over seeds) per dataset, ε and source."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["epsilon"], row["source"]), []).append(row)
    out = []
    for (dataset, epsilon, source), items in groups.items():
        def m(key: str, items: list[dict] = items) -> float | None:
            values = [r[key] for r in items if r[key] is not None]
            return statistics.fmean(values) if values else None

        students = [r["student"] for r in items]
        out.append({"dataset": dataset, "epsilon": epsilon, "source": source,
                    "seeds": len(items), **{k: m(k) for k in (
                        "n_labelled", "teacher", "student", "retention", "direct", "transfer_epsilon",
                        "public_epsilon", "mean_ks", "mean_tv", "correlation_error", "seconds")},
                    "student_sd": statistics.stdev(students) if len(students) > 1 else None})
    return out


def markdown(summary: list[dict]) -> str:
    def f(x, digits=3):
        return "–" if x is None else f"{x:.{digits}f}"

    lines = [("| dataset | ε | source | labels | student AUROC | teacher | retention | "
              "direct DP-SGD | transfer ε | public ε | mean KS | mean TV | corr. err | s/run |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        spread = f" ± {r['student_sd']:.3f}" if r["student_sd"] is not None else ""
        lines.append(f"| {r['dataset']} | {r['epsilon']:g} | {r['source']} | "
                     f"{f(r['n_labelled'], 0)} | {f(r['student'])}{spread} | {f(r['teacher'])} | {f(r['retention'])} | "
                     f"{f(r['direct'])} | {f(r['transfer_epsilon'])} | {f(r['public_epsilon'])} | "
                     f"{f(r['mean_ks'])} | {f(r['mean_tv'])} | {f(r['correlation_error'])} | "
                     f"{f(r['seconds'], 0)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer_sources",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cohort", "flchain"],
                        choices=["cohort", "flchain"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cohort-patients", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true",
                        help="cohort of 2,000, ε = 3, one seed")
    parser.add_argument("--min-queries", type=int, default=20,
                        help="labels.min_queries for every run (pipeline default 200)")
    parser.add_argument("--json", type=Path, help="also write every run's row here")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.epsilons, args.cohort_patients = ["cohort"], [3.0], 2000
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for dataset in args.datasets:
            for seed in args.seeds:
                data, public = (_cohort(folder, args.cohort_patients, seed) if dataset == "cohort"
                                else _flchain(folder, seed))
                for epsilon in args.epsilons:
                    for source in args.sources:
                        out = folder / f"{dataset}-{epsilon}-{source}-{seed}"
                        row = {"dataset": dataset, **run_one(data, public, source, epsilon,
                                                             seed, out,
                                                             min_queries=args.min_queries)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    summary = summarise(rows)
    print(markdown(summary))
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2))
    return summary


if __name__ == "__main__":
    main()


__all__ = ["main", "markdown", "run_one", "summarise"]
