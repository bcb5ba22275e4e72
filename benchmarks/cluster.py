"""Membership-inference reference models on the demo cohort: local against a Dask cluster.

    python -m benchmarks.cluster --models 16 64 --workers 2 --json runs/bench/cluster.json

The audit's most expensive part is its reference models (LiRA, RMIA): each one re-runs a
model's training on a random half of the attack population. This benchmark builds the
audit's population from the demo cohort (the built-in synthetic FHIR cohort, ingested with
the demo mapping: one row per patient, members and non-members, at most 5,000 a side) and
runs ``medistill.audit.mia_suite.run_attacks`` with R reference models of the teacher kind
(and optionally of a DP-SGD student), twice: with the local backend as the audit uses it
(``audit.n_jobs`` threads) and on a ``LocalCluster`` of ``--workers`` processes (the Dask
backend, ``compute: {backend: dask, scheduler: local}``). It reports the wall time per
reference model and its ratio, the cluster's start-up and per-task overhead, and a model
of the audit's wall time against the number of workers:

    T(w) = T_attacks + ceil(R / w) * t_model + R * t_task

where ``t_model`` is one reference model on one worker (measured on the cluster), ``T_attacks`` the attacks without
reference models, and ``t_task`` the engine's cost per task (a no-op map). The machine is
shared: wall times move with its load, which is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

# As in benchmarks/__main__.py: OpenMP's spin-waiting stalls runs on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

SECOND_NOTE = ("wall seconds; the machine is shared, so the load average (1 min) is shown "
               "beside each figure")


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def population(n_patients: int, seed: int = 0):
    """The audit's attack population on the demo cohort: (features, labels, is_member)."""
    from medistill.config import DataConfig
    from medistill.data.splits import split_patients
    from medistill.data.table import load_sensitive

    data = load_sensitive(DataConfig(source="builtin", builtin={"name": "fhir_cohort",
                                                                "n_patients": n_patients}),
                          seed=seed)
    split = split_patients(data.patient_ids, data.labels, test=0.2, holdout=0.2, seed=seed)
    rng = np.random.default_rng(seed)
    n = min(len(split.train), len(split.holdout), 5000)
    rows = np.r_[rng.choice(split.train, n, replace=False),
                 rng.choice(split.holdout, n, replace=False)]
    X, y, _ = data.rows(rows)
    return data.schema, X.reset_index(drop=True), np.asarray(y), np.arange(2 * n) < n


def teacher_trainer(schema, X, y, seed: int, kind: str = "hist_gradient_boosting"):
    """The audit's teacher reference model: the reference teacher refitted on a half."""
    from sklearn.base import clone

    from medistill.teachers.models import make_teacher

    template = make_teacher(kind, schema, random_state=seed)

    def train(indices: np.ndarray, model_seed: int):
        model = clone(template)
        model.set_params(**{k: model_seed for k in model.get_params()
                            if k.endswith("random_state")})
        model.fit(X.iloc[indices], y[indices])
        return model.predict_proba
    return train


def student_trainer(schema, X, y):
    """A DP-SGD student refitted on a half (preprocessing fitted once, as in the audit)."""
    from medistill.config import StudentConfig
    from medistill.student.preprocess import as_model_input, make_preprocessor
    from medistill.student.train import train_student

    preprocessor = make_preprocessor(schema).fit(as_model_input(X, schema))
    inputs = preprocessor.transform(as_model_input(X, schema)).astype(np.float32)
    config = StudentConfig()

    def train(indices: np.ndarray, model_seed: int):
        import torch

        net, _ = train_student(inputs[indices], y[indices], n_classes=schema.n_classes,
                               config=config, noise_multiplier=0.8, seed=model_seed)

        def predict(rows) -> np.ndarray:
            z = preprocessor.transform(as_model_input(rows, schema)).astype(np.float32)
            with torch.no_grad():
                return torch.softmax(net(torch.as_tensor(z)), 1).numpy()
        return predict
    return train


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu(client) -> float:
    """CPU seconds of this process, plus of the cluster's workers when ``client``."""
    own = _cpu_self()
    return own + (sum(client.run(_cpu_self).values()) if client is not None else 0.0)


def attack_seconds(train_fn, X, y, is_member, n_models: int, n_jobs: int,
                   client=None) -> tuple[float, float]:
    """Wall and CPU seconds (this process and the workers) of the attacks."""
    from medistill.audit.mia_suite import run_attacks

    target = train_fn(np.flatnonzero(is_member), 0)
    cpu, started = _cpu(client), time.perf_counter()
    run_attacks(target, X, y, np.arange(len(y)), is_member, train_fn=train_fn,
                n_reference=n_models, delta=1e-5, rng=np.random.default_rng(1), seed=0,
                n_jobs=n_jobs)
    return time.perf_counter() - started, _cpu(client) - cpu


def _noop(x: int) -> int:
    return x


def _warm(_: int) -> bool:
    """Import what a reference model needs, once per worker (not part of the timing)."""
    import sklearn.ensemble  # noqa: F401
    import torch  # noqa: F401

    import medistill.audit.mia_suite  # noqa: F401
    import medistill.student.train  # noqa: F401
    return True


def run(n_patients: int, models: list[int], workers: int, kinds: list[str],
        log=print, teacher_kind: str = "hist_gradient_boosting") -> dict:
    from medistill.compute import compute_backend
    from medistill.config import ComputeConfig

    started = time.perf_counter()
    schema, X, y, is_member = population(n_patients)
    log(f"population: {len(y)} patients ({int(is_member.sum())} members) from a "
        f"{n_patients}-patient demo cohort in {time.perf_counter() - started:.0f} s")
    out: dict = {"n_patients": n_patients, "population": int(len(y)), "workers": workers,
                 "cores": os.cpu_count(), "models": models, "kinds": {}, "note": SECOND_NOTE,
                 "load_start": _load()}
    out["teacher_kind"] = teacher_kind
    trainers = {"teacher": lambda: teacher_trainer(schema, X, y, 0, teacher_kind),
                "student": lambda: student_trainer(schema, X, y)}
    local: dict[str, dict[int, tuple]] = {}
    for kind in kinds:  # local first, as the audit runs today (audit.n_jobs threads)
        train_fn = trainers[kind]()
        local[kind] = {0: (*attack_seconds(train_fn, X, y, is_member, 0, workers), _load())}
        for r in models:
            local[kind][r] = (*attack_seconds(train_fn, X, y, is_member, r, workers), _load())
            log(f"{kind}: {r} reference models, local threads: {local[kind][r][0]:.1f} s, "
                f"CPU {local[kind][r][1]:.1f} s (load {local[kind][r][2]})")
    config = ComputeConfig(backend="dask", scheduler="local", n_workers=workers)
    with tempfile.TemporaryDirectory(prefix="medistill-bench-") as tmp:
        t = time.perf_counter()
        with compute_backend(config, Path(tmp)) as backend:
            out["cluster_start_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            list(backend.map(_warm, range(4 * workers), label="warm-up"))
            out["warm_up_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            list(backend.map(_noop, range(256), label="noop"))
            out["task_overhead_ms"] = round((time.perf_counter() - t) / 256 * 1000, 2)
            for kind in kinds:
                train_fn = trainers[kind]()
                base_wall, base_cpu = local[kind][0][:2]
                rows = []
                for r in models:
                    dask_s, dask_cpu = attack_seconds(train_fn, X, y, is_member, r, workers,
                                                      client=backend.client)
                    load_dask = _load()
                    local_s, local_cpu, load_local = local[kind][r]
                    log(f"{kind}: {r} reference models, Dask {workers} workers: {dask_s:.1f} s, "
                        f"CPU {dask_cpu:.1f} s (load {load_dask})")
                    rows.append({
                        "models": r, "local_s": round(local_s, 2), "dask_s": round(dask_s, 2),
                        "local_per_model_s": round((local_s - base_wall) / r, 3),
                        "dask_per_model_s": round((dask_s - base_wall) / r, 3),
                        "ratio": round((dask_s - base_wall) / max(local_s - base_wall, 1e-9), 3),
                        "local_cpu_per_model_s": round((local_cpu - base_cpu) / r, 3),
                        "dask_cpu_per_model_s": round((dask_cpu - base_cpu) / r, 3),
                        "cpu_ratio": round((dask_cpu - base_cpu) / max(local_cpu - base_cpu,
                                                                       1e-9), 3),
                        "load_local": load_local, "load_dask": load_dask})
                out["kinds"][kind] = {"attacks_without_models_s": round(base_wall, 2),
                                      "rows": rows,
                                      "model": wall_model(base_wall, rows, workers,
                                                          out["task_overhead_ms"] / 1000)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_end"] = _load()
    return out


def wall_model(base: float, rows: list[dict], workers: int, task_s: float,
               counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)) -> dict:
    """T(w) for 64 reference models, from the largest measured run's per-model time on the
    cluster (times its workers: one model on one worker, each worker on its own core)."""
    last = rows[-1]
    t_model = last["dask_per_model_s"] * min(workers, os.cpu_count() or 1)
    r = 64
    return {"t_model_s": round(t_model, 3), "t_task_s": task_s,
            "seconds_64_models": {w: round(base + math.ceil(r / w) * t_model + r * task_s, 1)
                                  for w in counts}}


def _kind_label(res: dict, kind: str) -> str:
    if kind == "teacher":
        return f"teacher ({res.get('teacher_kind', 'hist_gradient_boosting')})"
    return "student (DP-SGD)"


def markdown(res: dict) -> str:
    lines = [f"Demo cohort of {res['n_patients']} patients, attack population "
             f"{res['population']}; {res['workers']} workers on {res['cores']} cores. "
             f"Dask LocalCluster start {res['cluster_start_s']} s, first imports on its "
             f"workers {res['warm_up_s']} s, {res['task_overhead_ms']} ms per task (no-op "
             f"map). Load average {res['load_start']} at the start, {res['load_end']} at "
             f"the end; {res['seconds']} s in all.", "",
             "| reference models | kind | local s | Dask s | local s/model | Dask s/model "
             "| ratio | CPU s/model local / Dask | CPU ratio | load (local / Dask) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for kind, block in res["kinds"].items():
        for row in block["rows"]:
            lines.append(f"| {row['models']} | {_kind_label(res, kind)} | {row['local_s']} | {row['dask_s']} | "
                         f"{row['local_per_model_s']} | {row['dask_per_model_s']} | "
                         f"{row['ratio']} | {row.get('local_cpu_per_model_s', '–')} / "
                         f"{row.get('dask_cpu_per_model_s', '–')} | {row.get('cpu_ratio', '–')} | "
                         f"{row['load_local']} / {row['load_dask']} |")
    lines += ["", "Model of the audit's wall time for 64 reference models against workers:",
              "", "| kind | t_model s | " + " | ".join(
                  f"{w} w" for w in next(iter(res["kinds"].values()))["model"]
                  ["seconds_64_models"]) + " |",
              "|---|---:|" + "---:|" * len(next(iter(res["kinds"].values()))["model"]
                                         ["seconds_64_models"])]
    for kind, block in res["kinds"].items():
        m = block["model"]
        lines.append(f"| {_kind_label(res, kind)} | {m['t_model_s']} | " + " | ".join(
            str(v) for v in m["seconds_64_models"].values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--models", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", choices=("teacher", "student"),
                        default=["teacher"])
    parser.add_argument("--teacher-kind", default="hist_gradient_boosting",
                        help="teacher kind of the teacher reference models")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    res = run(args.patients, args.models, args.workers, args.kinds,
              teacher_kind=args.teacher_kind)
    print(markdown(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
