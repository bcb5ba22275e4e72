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


def _profile(predict: Callable[[object], object], singles: list, batch: object, *,
             n_rows: int, repeats: int) -> dict[str, float]:
    """Latency over prepared single-row inputs, then throughput on one large batch."""
    it = iter(range(10**9))
    lat = _latencies(lambda: predict(singles[next(it) % len(singles)]), repeats) * 1e3
    predict(batch)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        predict(batch)
        runs.append(time.perf_counter() - start)
    return {"latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "throughput_rows_per_s": float(n_rows / min(runs))}


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
    # Each model gets its input in its own native form, prepared before timing: a one-row
    # DataFrame for the scikit-learn teacher, a dict of [1, 1] arrays for onnxruntime.
    frames = [rows.iloc[[i % len(rows)]] for i in range(min(repeats, len(rows)))]
    feeds = [onnx_feeds(f, schema) for f in frames]
    with threadpool_limits(limits=threads):
        teacher_stats = _profile(teacher.predict_proba, frames, batch,
                                 n_rows=len(batch), repeats=repeats)
        student_stats = _profile(lambda f: session.run(None, f), feeds,
                                 onnx_feeds(batch, schema), n_rows=len(batch), repeats=repeats)
    buffer = io.BytesIO()
    pickle.dump(teacher, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    teacher_stats.update(size_bytes=buffer.tell(), runtime="scikit-learn")
    student_stats.update(size_bytes=student_path.stat().st_size, runtime="onnxruntime")
    return {"threads": threads, "batch_size": batch_size, "repeats": repeats,
            "method": "after warm-up; inputs prepared in each runtime's native form",
            "teacher": teacher_stats, "student": student_stats,
            "speedup": {"latency": teacher_stats["latency_ms_p50"] / student_stats["latency_ms_p50"],
                        "throughput": student_stats["throughput_rows_per_s"]
                        / teacher_stats["throughput_rows_per_s"]}}


__all__ = ["measure_speed", "onnx_session"]
