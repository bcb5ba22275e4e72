"""Speed: batch-1 latency and large-batch throughput of the reference teacher, the teacher
ensemble and the student, on 1 thread and on all cores; speed-up ratios; model sizes.

One ``run_pipeline`` run (the demo's configuration on the built-in FHIR cohort in the full
benchmark) with the audit's own speed pass on 1 thread and on all cores; the report does
not time the ensemble, so the benchmark times it after the run with the audit's method
(``medistill.audit.speed._profile``) on the same test rows, taking the ensemble, K and the
split from the run's step artifacts (``run_pipeline(..., observer=...)``); no ensemble is
timed when the plan bought no labels. The run's wall time is the "whole demo pipeline"
figure.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path

from benchmarks.common import Artifacts, fmt, plan_of, prepared_of, run_config, table

ENSEMBLE_MAX_REPEATS = 20
ENSEMBLE_MAX_BATCH = 2000


def ensemble_speed(ensemble, rows, *, threads: int, repeats: int, batch_size: int) -> dict:
    """The audit's method, with at most 20 single-row calls and a 2,000-row batch: the demo's
    ensemble has ~170 teachers and takes seconds per call."""
    from threadpoolctl import threadpool_limits

    from medistill.audit.speed import _profile

    repeats = min(repeats, ENSEMBLE_MAX_REPEATS)
    batch_size = min(batch_size, ENSEMBLE_MAX_BATCH)

    batch = rows.sample(n=batch_size, replace=len(rows) < batch_size, random_state=0)
    batch = batch.reset_index(drop=True)
    frames = [rows.iloc[[i % len(rows)]] for i in range(min(repeats, len(rows)))]
    with threadpool_limits(limits=threads):
        stats = _profile(ensemble.predict_proba, frames, batch, n_rows=len(batch),
                         repeats=repeats)
    buffer = io.BytesIO()
    pickle.dump(ensemble, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    stats["size_bytes"] = buffer.tell()
    return stats


def ensemble_figures(artifacts: Artifacts, *, repeats: int, batch_size: int) -> dict:
    """The ensemble's speed at 1 thread and on all cores, from the run's ``teachers``,
    ``plan`` and ``prepare`` artifacts: ``{"ensemble": {threads: stats}, "n_teachers": K}``;
    no timings when the plan bought no labels (no ensemble was trained)."""
    teachers, plan, prepared = artifacts.get("teachers"), plan_of(artifacts), prepared_of(artifacts)
    ensemble = getattr(teachers, "ensemble", None)
    out: dict = {"ensemble": {}, "n_teachers": plan.n_teachers if plan is not None else None,
                 "ensemble_trained": ensemble is not None}
    if ensemble is None or prepared is None:
        return out
    X_test = prepared.data.rows(prepared.split.test)[0]
    for threads in sorted({1, os.cpu_count() or 1}):
        out["ensemble"][threads] = ensemble_speed(ensemble, X_test, threads=threads,
                                                  repeats=repeats, batch_size=batch_size)
    return out


def run(raw: dict, *, log=print) -> dict:
    from medistill.config import parse_config

    artifacts = Artifacts("prepare", "canaries", "plan", "teachers")
    with tempfile.TemporaryDirectory(prefix="medistill-bench-speed-") as tmp:
        outcome, seconds = run_config(raw, Path(tmp) / "run", all_cores_speed=True,
                                      observer=artifacts)
        report = outcome.report
    log(f"speed run: {seconds:.0f} s")
    audit = parse_config(raw, source="benchmark").audit
    # After the run (not in its wall time), with the run's own ensemble and test rows.
    captured = ensemble_figures(artifacts, repeats=audit.speed_repeats,
                                batch_size=audit.throughput_batch)
    speed = report["speed"]
    passes = {speed["threads"]: speed}
    if "all_cores" in speed:
        passes[speed["all_cores"]["threads"]] = speed["all_cores"]
    return {"seconds": seconds, "passes": {t: {k: p[k] for k in ("teacher", "student", "speedup")}
                                           for t, p in passes.items()},
            "ensemble": captured["ensemble"], "n_teachers": captured["n_teachers"],
            "ensemble_trained": captured["ensemble_trained"],
            "teacher_kind": report["run"]["teacher"]["kind"],
            "dataset": report["run"]["dataset"], "student": report["run"]["student"],
            "auroc": {k: report["utility"].get(k, {}).get("auroc")
                      for k in ("teacher", "ensemble", "student")},
            "epsilon": report["privacy"]["epsilon"], "verdict": report.get("verdict")}


def markdown(res: dict, command: str, versions_line: str) -> str:
    rows = []
    for threads, p in sorted(res["passes"].items()):
        ens = res["ensemble"].get(threads) or res["ensemble"].get(str(threads))
        models = [("reference teacher (" + res["teacher_kind"] + ")", p["teacher"]),
                  (f"ensemble ({res['n_teachers']} teachers)", ens), ("student (ONNX)", p["student"])]
        for who, s in models:
            if not s:
                continue
            rows.append([threads, who, fmt(s["latency_ms_p50"], 3), fmt(s["latency_ms_p95"], 3),
                         f"{s['throughput_rows_per_s']:,.0f}",
                         f"{s.get('size_bytes', 0) / 1024:,.0f}",
                         f"{p['teacher']['latency_ms_p50'] / s['latency_ms_p50']:.1f}×"
                         if who.startswith("student") else "",
                         f"{s['throughput_rows_per_s'] / p['teacher']['throughput_rows_per_s']:.1f}×"
                         if who.startswith("student") else "",
                         (f"{ens['latency_ms_p50'] / s['latency_ms_p50']:.0f}×"
                          if ens and who.startswith("student") else "")])
    out = [table(["threads", "model", "batch-1 p50 ms", "p95 ms", "rows/s (large batch)",
                  "size KiB", "latency speed-up vs teacher", "throughput vs teacher",
                  "latency speed-up vs ensemble"], rows, "rlrrrrrrr")]
    d = res["dataset"]
    out.append(f"\nRun: {d['name']} ({d['n_patients']:,} patients), wall time "
               f"{res['seconds']:.0f} s, ledger ε = {fmt(res['epsilon'])}, AUROC teacher "
               f"{fmt(res['auroc']['teacher'])} / ensemble {fmt(res['auroc']['ensemble'])} / "
               f"student {fmt(res['auroc']['student'])}, verdict {res['verdict']}. "
               f"Command: `{command}`. Versions: {versions_line}.")
    if not res.get("ensemble_trained", True):
        out.append("No teacher ensemble was trained: the plan bought no labels.")
    return "\n".join(out)
