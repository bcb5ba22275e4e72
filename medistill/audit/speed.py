"""CPU speed of teacher and student on one machine, same thread count, after warm-up."""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
from threadpoolctl import threadpool_limits

from medistill.data.schema import TableSchema
from medistill.student.export import onnx_feeds


def _latencies(call: Callable[[], object], repeats: int) -> np.ndarray:
    for _ in range(max(5, repeats // 10)):
        call()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    return times


def _profile(predict: Callable[[pd.DataFrame], object], rows: pd.DataFrame, *, repeats: int,
             batch: pd.DataFrame) -> dict[str, float]:
    singles = [rows.iloc[[i % len(rows)]] for i in range(repeats)]
    it = iter(range(10**9))
    lat = _latencies(lambda: predict(singles[next(it) % repeats]), repeats) * 1e3
    predict(batch)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        predict(batch)
        runs.append(time.perf_counter() - start)
    return {"latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "throughput_rows_per_s": float(len(batch) / min(runs))}


def onnx_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def measure_speed(teacher, student_path: Path, schema: TableSchema, rows: pd.DataFrame, *,
                  threads: int, repeats: int, batch_size: int) -> dict:
    """Batch-1 latency (p50, p95), large-batch throughput and size of both models."""
    batch = rows.sample(n=batch_size, replace=len(rows) < batch_size, random_state=0)
    batch = batch.reset_index(drop=True)
    session = onnx_session(student_path, threads)
    with threadpool_limits(limits=threads):
        teacher_stats = _profile(teacher.predict_proba, rows, repeats=repeats, batch=batch)
        student_stats = _profile(lambda f: session.run(None, onnx_feeds(f, schema)), rows,
                                 repeats=repeats, batch=batch)
    buffer = io.BytesIO()
    pickle.dump(teacher, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    teacher_stats.update(size_bytes=buffer.tell(), runtime="scikit-learn")
    student_stats.update(size_bytes=student_path.stat().st_size, runtime="onnxruntime")
    return {"threads": threads, "batch_size": batch_size, "repeats": repeats,
            "teacher": teacher_stats, "student": student_stats,
            "speedup": {"latency": teacher_stats["latency_ms_p50"] / student_stats["latency_ms_p50"],
                        "throughput": student_stats["throughput_rows_per_s"]
                        / teacher_stats["throughput_rows_per_s"]}}


__all__ = ["measure_speed", "onnx_session"]
