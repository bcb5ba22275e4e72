"""FHIR ingestion benchmark: resources per second and peak memory on synthetic exports.

    python -m benchmarks.fhir_ingest --patients 1000 10000 100000

For each size it writes the built-in synthetic US Core export, then ingests it with the demo
mapping, once per validation mode (``full``: every resource the mapping reads validated with
fhir.resources; ``mapped``: only the fields the mapping reads). Each ingestion runs in a
fresh process so peak memory (``ru_maxrss``) belongs to that run alone: the calling process
and, with ``--n-jobs`` > 1, the largest worker. Wall-clock resources/s depend on what else
the machine runs; resources per CPU-second (all processes, user + system) much less so, and
the load average after each run shows whether the machine was busy. Prints a Markdown
table; ``--json`` also saves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _measure_one(folder: Path, validate: str, n_jobs: int) -> dict[str, float]:
    """Ingest ``folder`` in this process; stop worker processes so their peak is counted."""
    from medistill.data.fhir import demo_mapping, ingest_fhir

    mapping = demo_mapping()
    cpu, started = _cpu_s(), time.perf_counter()
    result = ingest_fhir(folder, mapping, salt="benchmark", validate=validate, n_jobs=n_jobs)
    seconds = time.perf_counter() - started
    if n_jobs != 1:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    cpu = _cpu_s() - cpu
    n = result.summary.n_resources
    return {"resources": n, "patients": result.summary.n_patients, "seconds": seconds,
            "resources_per_s": n / seconds, "cpu_s": cpu, "resources_per_cpu_s": n / cpu,
            "peak_mib_main": _peak_mib(resource.RUSAGE_SELF),
            "peak_mib_worker": _peak_mib(resource.RUSAGE_CHILDREN),
            "load_after": os.getloadavg()[0]}


def _measure(folder: Path, validate: str, n_jobs: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.fhir_ingest", "--one", str(folder),
         "--validate", validate, "--n-jobs", str(n_jobs)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(patients: list[int], validate: list[str], n_jobs: int, workdir: Path, keep: bool,
        seed: int) -> list[dict[str, object]]:
    from medistill.data.fhir import write_synthetic_fhir_export

    rows: list[dict[str, object]] = []
    for n in patients:
        folder = workdir / f"synthetic_{n}"
        started = time.perf_counter()
        write_synthetic_fhir_export(folder, n, rng=np.random.default_rng(seed))
        write_s = time.perf_counter() - started
        size_mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        for mode in validate:
            m = _measure(folder, mode, n_jobs)
            row = {"patients": n, "validate": mode, "n_jobs": n_jobs,
                   "export_mib": round(size_mib, 1), "write_s": round(write_s, 1), **m}
            rows.append(row)
            print(f"{n:>9,} patients  {mode:<6}  {m['resources']:>10,.0f} resources  "
                  f"{m['seconds']:8.1f} s  {m['resources_per_s']:>8,.0f} res/s  "
                  f"{m['resources_per_cpu_s']:>8,.0f} res/CPU-s  peak {m['peak_mib_main']:.0f} "
                  f"MiB (+ worker {m['peak_mib_worker']:.0f} MiB)  load {m['load_after']:.1f}",
                  file=sys.stderr, flush=True)
        if not keep:
            shutil.rmtree(folder)
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    head = ("| patients | export | resources | validate | n_jobs | time | resources/s "
            "| resources per CPU-s | peak RSS main | peak RSS worker | load avg after |\n"
            "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['patients']:,} | {r['export_mib']:,.0f} MiB | {r['resources']:,.0f} | "
        f"{r['validate']} | {r['n_jobs']} | {r['seconds']:,.1f} s | "
        f"{r['resources_per_s']:,.0f} | {r['resources_per_cpu_s']:,.0f} | "
        f"{r['peak_mib_main']:,.0f} MiB | {r['peak_mib_worker']:,.0f} MiB | "
        f"{r['load_after']:.1f} |\n" for r in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fhir_ingest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--validate", nargs="+", choices=["full", "mapped"],
                        default=["full", "mapped"])
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where exports are written (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the exports")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--one", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(_measure_one(args.one, args.validate[0], args.n_jobs)))
        return
    import fhir.resources

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = args.workdir if args.keep and args.workdir else Path(tmp)
        rows = run(args.patients, args.validate, args.n_jobs, workdir, args.keep, args.seed)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, Python "
          f"{platform.python_version()}, fhir.resources {fhir.resources.__version__}; "
          f"demo mapping; peak RSS from getrusage.\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
