"""HTTP service benchmark on loopback: latency (p50, p99) and requests/s at batch 1 and 100.

    medistill demo --out /tmp/deploy_demo --patients 3000      # any run folder will do
    python -m benchmarks.deploy_serve --model /tmp/deploy_demo/student.onnx

Starts ``create_app`` under uvicorn in a subprocess bound to 127.0.0.1 (a free port), waits
for ``/health``, then sends ``POST /predict`` from ``--concurrency`` client threads (one
keep-alive httpx client each). Every scenario is bounded both in count (``--requests``)
and in time (``--max-seconds``); the server is stopped at the end whatever happens. Client
and server share the machine, so on a small box the figures are a floor. Prints a Markdown
table; ``--json`` also saves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

_SERVER = r"""
import sys, uvicorn
from medistill.deploy.service import create_app
app = create_app(sys.argv[1], token=sys.argv[3] or None, threads=int(sys.argv[4]) or None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=sys.argv[5] == "1")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_rows(model_path: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` JSON rows drawn from the model's schema (some missing values)."""
    from medistill.deploy.model import CATEGORICAL, load_model

    schema = load_model(model_path).schema
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row: dict = {"patient_key": f"P{i:07d}"}
        for f in schema.features:
            if rng.random() < 0.05:
                row[f.name] = None
            elif f.kind == CATEGORICAL:
                row[f.name] = str(rng.choice(list(f.categories) or ["x"]))
            elif f.kind == "binary":
                row[f.name] = int(rng.integers(0, 2))
            else:
                row[f.name] = round(float(rng.normal(60, 20)), 1)
        rows.append(row)
    return rows


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready in time")


def run_scenario(url: str, rows: list[dict], batch: int, *, requests: int, seconds: float,
                 concurrency: int, headers: dict[str, str]) -> dict:
    """Send up to ``requests`` requests of ``batch`` rows within ``seconds``."""
    import httpx

    bodies = [json.dumps({"rows": rows[i:i + batch]}).encode()
              for i in range(0, len(rows) - batch + 1, batch)]
    headers = {**headers, "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = [0]
    counter = iter(range(requests))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
            for _ in range(5):  # warm-up of this connection
                client.post("/predict", content=bodies[0])
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                response = client.post("/predict", content=bodies[i % len(bodies)])
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors[0] += response.status_code != 200

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies) * 1e3
    return {"batch": batch, "requests": len(lat), "errors": errors[0], "seconds": wall,
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99)),
            "requests_per_s": len(lat) / wall, "rows_per_s": len(lat) * batch / wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="student.onnx of a run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--requests", type=int, default=3000, help="cap per scenario")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="cap per scenario")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--token", default="bench-token", help="'' for no auth")
    parser.add_argument("--access-log", action="store_true", help="server access log on")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args(argv)
    rows = synthetic_rows(args.model, max(args.batches) * 50)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(args.model), str(port), args.token,
         str(args.threads), "1" if args.access_log else "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        _wait_ready(url, server)
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        for batch in args.batches:
            results.append(run_scenario(url, rows, batch, requests=args.requests,
                                        seconds=args.max_seconds,
                                        concurrency=args.concurrency, headers=headers))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; uvicorn 1 worker, onnxruntime {args.threads} "
          f"thread(s); {args.concurrency} client threads on the same machine; "
          f"auth {'on' if args.token else 'off'}\n")
    print("| batch | requests | errors | p50 ms | p99 ms | requests/s | rows/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['batch']} | {r['requests']:,} | {r['errors']} | {r['latency_ms_p50']:.2f} "
              f"| {r['latency_ms_p99']:.2f} | {r['requests_per_s']:,.0f} | "
              f"{r['rows_per_s']:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
