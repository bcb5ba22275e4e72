"""Who pays for privacy, against ε (issue 20): the worst group's AUROC retention of the
medistill student and of the direct DP-SGD student, on the benchmark tables and the cohort.

``python -m benchmarks fairness --datasets cohort flchain pbc --epsilons 1 3 8 --seeds 0 1``

Per dataset, ε and seed, one ``run_pipeline`` run (light audit, one DP-SGD seed per arm)
whose ``report.json`` gives the student's per-group figures (``fairness``); the direct
DP-SGD baseline the same run trains (same ε, same architecture, no teacher) is captured and
scored on the same test rows and groups, against the same per-group teacher AUROC, with the
same judging rules (medistill.audit.fairness); the baseline's network is read from the
run's step artifacts (``benchmarks.common.Artifacts``). ``labels.n_queries`` is fixed (default 200;
the planner calibrates the GNMax noise to the label share of ε) so that the student does
distil at every ε: with automatic queries the small tables buy fewer than
``labels.min_queries`` labels at ε ≤ 3, and the student then *is* a direct DP-SGD student.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from benchmarks import datasets
from benchmarks.common import LIGHT_AUDIT, Artifacts, fmt, merge, run_config, table
from benchmarks.privacy_utility import DIRECT_STEPS, _torch_proba, direct_baseline_box
from medistill.errors import PrivacyBudgetError

N_QUERIES = 200
FEWER_QUERIES = (50, 20)
OVERRIDES = {"teachers": {"reference": "hist_gradient_boosting", "n_jobs": 1},
             "audit": {**LIGHT_AUDIT, "n_jobs": 1, "baseline_seeds": 1}}


def direct_fairness(box: dict, fairness: dict) -> dict | None:
    """The direct DP-SGD student's per-group retention (against the report's per-group
    teacher AUROC, judged as the report judged each group) and its worst-group figures."""
    if not box:
        return None
    from medistill.audit.fairness import attributes_of, auroc, group_labels, worst_group
    from medistill.student.preprocess import as_model_input

    data, split, pre = box["data"], box["split"], box["preprocessor"]
    X_test, y_test, _ = data.rows(split.test)
    proba = _torch_proba(box["network"], pre.transform(as_model_input(X_test, data.schema)))
    out: dict = {}
    for attribute, groups in attributes_of(fairness).items():
        labels = group_labels(X_test[attribute], data.schema.feature(attribute).kind)
        out[attribute] = {}
        for group, entry in groups.items():
            mask = labels == group
            score = auroc(y_test[mask], proba[mask]) if mask.any() else None
            teacher = entry.get("teacher_auroc")
            out[attribute][group] = {
                "judged": entry.get("judged"), "reason": entry.get("reason"),
                "student_auroc": score, "teacher_auroc": teacher,
                "retention": (score / teacher if score is not None and teacher else None)}
    return worst_group(out)


def _dp_teacher_worst(fairness: dict) -> float | None:
    """The lowest DP-teacher (PATE ensemble) ÷ teacher AUROC over the judged groups."""
    from medistill.audit.fairness import attributes_of

    values = [e["dp_teacher_auroc"] / e["teacher_auroc"]
              for groups in attributes_of(fairness).values() for e in groups.values()
              if e.get("judged") and e.get("dp_teacher_auroc") and e.get("teacher_auroc")]
    return min(values) if values else None


def cell(section: dict, epsilon: float, seed: int, folder: Path, *,
         n_queries: int = N_QUERIES, teacher: str = "pate") -> dict:
    """One pipeline run at ``epsilon`` and ``seed``: worst-group figures of both students.

    ``teacher``: ``pate`` (the partitioned ensemble, ``n_queries`` noisy labels) or
    ``dp_ebm`` (``teachers.dp_teacher: dp_ebm``: a DP-EBM teacher whose labels are free)."""
    # Fewer labels when the label share of a small ε cannot pay for n_queries at a useful
    # noise (the planner refuses): each tried count is recorded in the table.
    counts = [n_queries, *FEWER_QUERIES] if teacher == "pate" else [None]
    for queries in dict.fromkeys(counts):
        extra = ({"labels": {"n_queries": queries}} if queries is not None
                 else {"teachers": {"dp_teacher": teacher}})
        raw = merge(merge({"data": section, "privacy": {"target_epsilon": epsilon},
                           "seed": seed}, OVERRIDES), extra)
        try:
            artifacts = Artifacts(*DIRECT_STEPS)
            outcome, seconds = run_config(raw, folder / f"run-{epsilon}-{seed}",
                                          observer=artifacts)
            box = direct_baseline_box(artifacts)
            del artifacts
            break
        except PrivacyBudgetError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # noqa: BLE001 - the table says which run failed and why
            return {"epsilon": epsilon, "seed": seed, "error": f"{type(exc).__name__}: {exc}"[:300]}
    else:
        return {"epsilon": epsilon, "seed": seed, "error": error}
    report = outcome.report
    shutil.rmtree(outcome.run_dir, ignore_errors=True)
    fairness = report["fairness"]
    worst = fairness["worst_group"]
    direct = direct_fairness(box, fairness)
    return {
        "epsilon": epsilon, "seed": seed, "seconds": seconds,
        "n_queries": report["run"]["transfer"]["n_labelled"],
        "alpha": report["run"]["student"]["alpha"],
        "teacher": report["utility"]["teacher"]["auroc"],
        "student": report["utility"]["student"]["auroc"],
        "direct": (report["utility"]["baselines"].get("dp_sgd_direct") or {}).get("auroc"),
        "judged_groups": worst["judged_groups"], "unjudged": len(worst["unjudged"]),
        "student_worst": worst["auroc_retention"],
        "student_worst_group": (f"{worst['attribute']}={worst['group']}"
                                if worst["attribute"] else None),
        "student_gap": worst["retention_gap"],
        "direct_worst": direct["auroc_retention"] if direct else None,
        "direct_worst_group": (f"{direct['attribute']}={direct['group']}"
                               if direct and direct["attribute"] else None),
        "direct_gap": direct["retention_gap"] if direct else None,
        "dp_teacher_worst": _dp_teacher_worst(fairness),
        "groups": {a: {g: {k: e.get(k) for k in ("n_patients", "judged", "retention",
                                                  "teacher_auroc", "student_auroc")}
                       for g, e in gs.items()}
                   for a, gs in fairness.items() if a != "worst_group"},
    }


def run(names: list[str], epsilons: list[float], seeds: list[int], *, folder: Path,
        cohort_patients: int = 3000, n_queries: int = N_QUERIES, teacher: str = "pate",
        log=print, on_dataset=None) -> dict:
    """Every cell; ``on_dataset(results)`` after each cell (partial results are kept)."""
    results: dict = {"n_queries": n_queries, "cohort_patients": cohort_patients,
                     "teacher": teacher, "datasets": {}}
    for name in names:
        section = datasets.data_section(name, folder, n_patients=cohort_patients)
        rows = results["datasets"].setdefault(name, [])
        for epsilon in epsilons:
            for seed in seeds:
                rows.append(cell(section, epsilon, seed, folder, n_queries=n_queries,
                                 teacher=teacher))
                r = rows[-1]
                log(f"fairness {name} ε={epsilon:g} seed={seed}: " + (
                    r["error"] if "error" in r else
                    f"worst retention student {fmt(r['student_worst'])} "
                    f"({r['student_worst_group']}), direct {fmt(r['direct_worst'])} "
                    f"({r['direct_worst_group']}); {r['judged_groups']} judged, "
                    f"{r['unjudged']} not; {r['n_queries']} labels; {r['seconds']:.0f} s"))
                if on_dataset is not None:  # after every cell: partial results are kept
                    on_dataset(results)
    return results


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _span(values: list[int]) -> str:
    """``4`` or ``4–5``: the range of a count over seeds."""
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def _per_seed(values: list) -> str:
    return ", ".join(fmt(v) for v in values)


def markdown(results: dict, command: str, versions_line: str) -> str:
    """One table: per dataset and ε, worst-group retention and largest gap, both students."""
    rows = []
    for name, cells in results["datasets"].items():
        for epsilon in dict.fromkeys(c["epsilon"] for c in cells):
            ok = [c for c in cells if c["epsilon"] == epsilon and "error" not in c]
            failed = [c for c in cells if c["epsilon"] == epsilon and "error" in c]
            if not ok:
                rows.append([name, f"{epsilon:g}", "run failed: " + failed[0]["error"][:80]]
                            + [None] * 10)
                continue
            rows.append([
                name, f"{epsilon:g}", len(ok),
                "–".join(str(v) for v in sorted({c["n_queries"] for c in ok})),
                f"{_span([c['judged_groups'] for c in ok])} / "
                f"{_span([c['unjudged'] for c in ok])}",
                fmt(_mean([c["student"] for c in ok])), fmt(_mean([c["direct"] for c in ok])),
                _per_seed([c["student_worst"] for c in ok]),
                _per_seed([c["direct_worst"] for c in ok]),
                _per_seed([c["student_gap"] for c in ok]),
                _per_seed([c["direct_gap"] for c in ok]),
                ", ".join(sorted({c["student_worst_group"] or "–" for c in ok})),
                fmt(_mean([c["dp_teacher_worst"] for c in ok]))])
    teacher = results.get("teacher", "pate")
    dp_column = ("PATE ensemble mean vote (noiseless): worst retention" if teacher == "pate"
                 else f"DP teacher ({teacher}): worst retention")
    header = ["table", "ε", "seeds", "teacher labels", "groups judged / not",
              "student AUROC", "direct AUROC", "worst-group retention: student (per seed)",
              "direct DP-SGD (per seed)", "largest gap: student", "direct DP-SGD",
              "student's worst group", dp_column]
    labels = (f"labels.n_queries = {results['n_queries']}" if teacher == "pate"
              else f"teachers.dp_teacher = {teacher}, its labels free")
    return (f"Command: `{command}` ({labels}, cohort of {results['cohort_patients']} "
            f"patients). Versions: {versions_line}.\n\n" + table(header, rows))


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.fairness [--teacher dp_ebm] ...``: the same table for either
    teacher (``python -m benchmarks fairness`` runs the PATE one)."""
    import argparse
    import json
    import tempfile

    from benchmarks.common import command_line, versions_line

    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness", description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["cohort", "flchain"],
                        choices=datasets.ALL)
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--teacher", choices=("pate", "dp_ebm"), default="pate")
    parser.add_argument("--cohort-patients", type=int, default=3000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = command_line(argv).replace("python -m benchmarks ", "python -m benchmarks.fairness ")

    def save(results: dict) -> None:
        (args.out / "fairness.json").write_text(json.dumps(results, indent=1, default=str))
        (args.out / "fairness.md").write_text(markdown(results, command, versions_line()) + "\n")

    with tempfile.TemporaryDirectory(prefix="medistill-fairness-") as tmp:
        run(args.datasets, args.epsilons, args.seeds, folder=Path(tmp),
            cohort_patients=args.cohort_patients, teacher=args.teacher, on_dataset=save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["cell", "direct_fairness", "markdown", "run"]
