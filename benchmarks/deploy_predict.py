"""Batch scoring benchmark: rows per second and peak memory of ``medistill predict``.

    medistill demo --out /tmp/deploy_demo --patients 3000      # any run folder will do
    python -m benchmarks.deploy_predict --model /tmp/deploy_demo/student.onnx \
        --rows 100000 1000000 --formats csv parquet

For each size and input format it writes a synthetic input drawn from the model's own
schema (numbers with 5 % missing, categories with 3 % missing and 1 % unseen), then scores
it with ``predict_file`` in a fresh process, so peak memory (``ru_maxrss``) belongs to that
run alone. Memory should be flat in the number of rows: the input is streamed in chunks of
``--chunk-rows``. Prints a Markdown table; ``--json`` also saves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_MEASURE = r"""
import json, resource, sys, time
started = time.perf_counter()
from medistill.deploy.model import load_model
from medistill.deploy.predict import predict_file
model = load_model(sys.argv[1])
ready = time.perf_counter()
rss_ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
summary = predict_file(model, sys.argv[2], sys.argv[3], on_error="skip",
                       chunk_rows=int(sys.argv[4]))
done = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rows": summary.n_rows, "scored": summary.n_scored,
                  "startup_s": ready - started, "predict_s": done - ready,
                  "cpu_s": usage.ru_utime + usage.ru_stime,
                  "rss_ready_mib": rss_ready, "peak_rss_mib": usage.ru_maxrss / 1024,
                  "torch_imported": "torch" in sys.modules}))
"""


def write_input(model_path: Path, n_rows: int, fmt: str, path: Path, *, seed: int = 0,
                block: int = 100_000) -> None:
    """A synthetic input of ``n_rows`` following the model's schema, written in blocks."""
    import pyarrow as pa

    from medistill.deploy.model import CATEGORICAL, load_model

    schema = load_model(model_path).schema
    rng = np.random.default_rng(seed)
    fields = [pa.field("patient_key", pa.string())] + [
        pa.field(f.name, pa.string() if f.kind == CATEGORICAL else pa.float64())
        for f in schema.features]
    arrow_schema = pa.schema(fields)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        writer = pacsv.CSVWriter(str(path), arrow_schema)
    else:
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(str(path), arrow_schema)
    with writer:
        for start in range(0, n_rows, block):
            n = min(block, n_rows - start)
            columns = [pa.array([f"P{start + i:09d}" for i in range(n)])]
            for f in schema.features:
                if f.kind == CATEGORICAL:
                    choices = np.array([*f.categories, "unseen-value"], dtype=object)
                    weights = np.r_[np.full(len(f.categories), 0.99 / len(f.categories)), 0.01]
                    values = rng.choice(choices, size=n, p=weights)
                    columns.append(pa.array(values, pa.string(), mask=rng.random(n) < 0.03))
                else:
                    values = (rng.integers(0, 2, n).astype(float) if f.kind == "binary"
                              else np.round(rng.normal(60, 20, n), 1))
                    columns.append(pa.array(values, mask=rng.random(n) < 0.05))
            writer.write_table(pa.Table.from_arrays(columns, schema=arrow_schema))


def measure(model: Path, source: Path, out: Path, chunk_rows: int) -> dict:
    """Run ``predict_file`` in a fresh interpreter; return its figures."""
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(model), str(source), str(out),
                             str(chunk_rows)], capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rows_per_s"] = figures["scored"] / figures["predict_s"]
    figures["load_after"] = os.getloadavg()[0]
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="student.onnx of a run")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"],
                        choices=["csv", "parquet"])
    parser.add_argument("--output", default="same", choices=["same", "csv", "parquet", "fhir"],
                        help="output format (same: as the input)")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args(argv)
    results = []
    suffix = {"csv": ".csv", "parquet": ".parquet", "fhir": ".ndjson"}
    with tempfile.TemporaryDirectory(prefix="medistill-bench-") as tmp:
        for fmt in args.formats:
            for n in args.rows:
                source = Path(tmp) / f"input-{n}.{fmt}"
                write_input(args.model, n, fmt, source)
                out_fmt = fmt if args.output == "same" else args.output
                out = Path(tmp) / f"output-{n}{suffix[out_fmt]}"
                figures = measure(args.model, source, out, args.chunk_rows)
                figures.update(input=fmt, output=out_fmt, n_rows=n,
                               input_mib=source.stat().st_size / 2**20)
                results.append(figures)
                source.unlink()
                out.unlink()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; chunk_rows {args.chunk_rows}\n")
    print("| input | output | rows | input MiB | rows/s | predict s | CPU s | "
          "startup s | RSS after load MiB | peak RSS MiB | torch imported |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['input']} | {r['output']} | {r['n_rows']:,} | {r['input_mib']:.0f} | "
              f"{r['rows_per_s']:,.0f} | {r['predict_s']:.2f} | {r['cpu_s']:.2f} | "
              f"{r['startup_s']:.2f} | {r['rss_ready_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
              f"{r['torch_imported']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
