"""Scale: the whole pipeline on the simulated cohort (tabular) at growing numbers of
patients; wall time and peak memory per stage (benchmarks/stages.py), each size in its own
subprocess with a time limit. A size that does not finish in time is reported with the
stages it completed (the child writes its clock every few seconds).

    python -m benchmarks.scale --child 10000 --json out.json   # one size (used internally)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import LIGHT_AUDIT, fmt, table

ROOT = Path(__file__).resolve().parents[1]


def scale_config(n_patients: int, *, quick: bool) -> dict:
    audit = ({**LIGHT_AUDIT, "n_jobs": 1} if quick else
             {"reference_models": 2, "bootstrap": 0, "memory": False, "speed_repeats": 100})
    return {"data": {"source": "builtin", "builtin": {"name": "cohort", "n_patients": n_patients}},
            "privacy": {"target_epsilon": 3.0},
            "teachers": {"reference": "hist_gradient_boosting"},
            "audit": audit}


def child(n_patients: int, json_path: Path, quick: bool) -> None:
    import warnings

    from benchmarks.common import run_config
    from benchmarks.stages import instrument

    warnings.filterwarnings("ignore")
    state = {"n_patients": n_patients, "finished": False, "config": scale_config(n_patients, quick=quick)}
    started = time.perf_counter()

    def dump() -> None:
        state["seconds"] = time.perf_counter() - started
        state["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tmp = json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(json_path)

    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="medistill-bench-scale-") as tmp:
        with instrument() as clock:
            def loop():
                while not stop.wait(5):
                    state["stages"] = clock.result()
                    state["current"] = clock.stack[-1]
                    dump()
            threading.Thread(target=loop, daemon=True).start()
            outcome, seconds = run_config(state["config"], Path(tmp) / "run")
        stop.set()
        state["stages"] = clock.result()
    state.update(finished=True, pipeline_seconds=seconds,
                 auroc_student=outcome.report["utility"]["student"]["auroc"],
                 auroc_teacher=outcome.report["utility"]["teacher"]["auroc"],
                 epsilon=outcome.report["privacy"]["epsilon"])
    state.pop("current", None)
    dump()


def run(sizes: list[int], *, quick: bool, timeout: float, log=print) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="medistill-bench-scale-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"{n}.json"
            cmd = [sys.executable, "-m", "benchmarks.scale", "--child", str(n), "--json", str(path)]
            if quick:
                cmd.append("--quick")
            started = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                      timeout=timeout, check=False)
                error = None if proc.returncode == 0 else proc.stderr.strip()[-1500:]
            except subprocess.TimeoutExpired:
                error = f"did not finish within {timeout:.0f} s (stopped)"
            wall = time.perf_counter() - started
            state = json.loads(path.read_text()) if path.exists() else {"n_patients": n}
            state.update(wall_seconds=wall, error=error)
            results[n] = state
            log(f"scale {n:,}: {wall:.0f} s" + (f" — {error.splitlines()[-1]}" if error else ""))
            if error and "did not finish" in error:
                break  # larger sizes would not finish either
    return results


def markdown(results: dict, command: str, versions_line: str) -> str:
    sizes = list(results)
    stages: list[str] = []
    for r in results.values():
        for s in r.get("stages", {}):
            if s not in stages:
                stages.append(s)
    rows = []
    for s in stages:
        row = [s]
        for n in sizes:
            st = results[n].get("stages", {}).get(s)
            row.append("–" if st is None else
                       f"{st['seconds']:.1f} s / {st['peak_rss_mib']:,.0f} MiB")
        rows.append(row)
    totals = ["**whole run (wall) / max RSS**"]
    for n in sizes:
        r = results[n]
        status = "" if r.get("finished") else (" — **unfinished**: " + (r.get("error") or "")
                                                 .splitlines()[-1][:120])
        totals.append(f"{r.get('wall_seconds', 0):.0f} s / {r.get('max_rss_mib', 0):,.0f} MiB"
                      + status)
    rows.append(totals)
    aurocs = ["AUROC student / teacher"] + [
        f"{fmt(results[n].get('auroc_student'))} / {fmt(results[n].get('auroc_teacher'))}"
        for n in sizes]
    rows.append(aurocs)
    out = [table(["stage (time / peak RSS of the main process)",
                  *[f"{int(n):,} patients" for n in sizes]], rows)]
    out.append(f"\nCommand: `{command}`. Versions: {versions_line}.")
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    a = parser.parse_args()
    child(a.child, a.json, a.quick)
