"""Peak memory of a scoring process: the student in onnxruntime, the teacher in scikit-learn.

Each measurement runs in a fresh interpreter (``python -c``) so nothing of this process —
torch, the training data, earlier models — is counted. The child reads the rows, loads the
model, scores every row once and reports its own peak resident set size (``VmHWM`` of
``/proc/self/status`` on Linux, where ``ru_maxrss`` would inherit the parent's peak across
fork and exec; ``ru_maxrss`` elsewhere). A second fresh interpreter that only
imports the runtime and the Parquet reader (pyarrow, ~100 MB on its own) gives the
baseline, so ``scoring_rss_bytes`` = peak − baseline is what the model and the data add.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TIMEOUT_S = 600

# The peak resident set size of the child itself. On Linux, getrusage's ru_maxrss is NOT
# that: the kernel carries the parent's high-water mark over fork and exec, so a child of a
# 2 GB process reports at least 2 GB. /proc/self/status VmHWM is the high-water mark of the
# child's own address space (reset by exec); ru_maxrss (kB on Linux, bytes on macOS) is the
# fallback where /proc is missing.
_RSS = ("import resource, sys\n"
        "def _peak():\n"
        "    try:\n"
        "        with open('/proc/self/status') as status:\n"
        "            for line in status:\n"
        "                if line.startswith('VmHWM:'):\n"
        "                    return int(line.split()[1]) * 1024\n"
        "    except OSError:\n"
        "        pass\n"
        "    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    return int(v if sys.platform == 'darwin' else v * 1024)\n")

_ONNX_BASELINE = "import onnxruntime, pyarrow.parquet\n" + _RSS + "import json\nprint(json.dumps({'peak': _peak()}))\n"

_ONNX_SCORE = _RSS + """
import json
import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

model, rows, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
table = pq.read_table(rows)
feeds = {}
for spec in session.get_inputs():
    column = table.column(spec.name)
    if spec.type == "tensor(string)":
        values = ["" if v is None else str(v) for v in column.to_pylist()]
        feeds[spec.name] = np.array(values, dtype=object).reshape(-1, 1)
    else:
        values = column.to_numpy(zero_copy_only=False)
        feeds[spec.name] = np.asarray(values, dtype=np.float32).reshape(-1, 1)
outputs = session.run(None, feeds)
print(json.dumps({"peak": _peak(), "n_rows": table.num_rows,
                  "n_outputs": int(len(outputs[0]))}))
"""

_TEACHER_BASELINE = ("import pandas, pyarrow.parquet, sklearn, threadpoolctl\n" + _RSS
                     + "import json\nprint(json.dumps({'peak': _peak()}))\n")

_TEACHER_SCORE = _RSS + """
import json
import pickle
import pandas as pd
from threadpoolctl import threadpool_limits

model_path, rows, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(model_path, "rb") as handle:
    model = pickle.load(handle)
frame = pd.read_parquet(rows)
with threadpool_limits(limits=threads):
    probabilities = model.predict_proba(frame)
print(json.dumps({"peak": _peak(), "n_rows": int(len(frame)),
                  "n_outputs": int(len(probabilities))}))
"""


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def _run(code: str, args: list[str], threads: int) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=_child_env(threads), timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError("The memory-measurement process failed (exit "
                           f"{done.returncode}): " + " | ".join(tail))
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(runtime: str, baseline_code: str, score_code: str, model_path: Path,
             rows_parquet: Path, threads: int) -> dict:
    if threads < 1:
        raise ValueError(f"threads must be at least 1. Got {threads}.")
    for path in (model_path, rows_parquet):
        if not Path(path).is_file():
            raise FileNotFoundError(f"No such file: {path}")
    baseline = _run(baseline_code, [], threads)
    scored = _run(score_code, [str(model_path), str(rows_parquet), str(threads)], threads)
    return {"runtime": runtime, "threads": threads, "n_rows": scored["n_rows"],
            "peak_rss_bytes": scored["peak"], "baseline_rss_bytes": baseline["peak"],
            "scoring_rss_bytes": max(0, scored["peak"] - baseline["peak"]),
            "model_bytes": Path(model_path).stat().st_size,
            "method": f"peak RSS (VmHWM, else ru_maxrss) of a fresh Python process that loads the model "
                      f"and scores all rows once with {threads} thread(s); baseline = a fresh "
                      f"process that only imports {runtime} and the Parquet reader (pyarrow)"}


def peak_scoring_memory(model_path: Path, rows_parquet: Path, *, threads: int) -> dict:
    """Peak RSS of scoring the rows of ``rows_parquet`` with the ONNX student.

    The Parquet file holds the feature columns by their ONNX input names (string inputs
    from text columns, numeric inputs cast to float32), as ``medistill predict`` reads them.
    """
    return _measure("onnxruntime", _ONNX_BASELINE, _ONNX_SCORE, Path(model_path),
                    Path(rows_parquet), threads)


def peak_teacher_memory(pickle_path: Path, rows_parquet: Path, threads: int) -> dict:
    """Peak RSS of scoring the rows with a pickled scikit-learn teacher (``predict_proba``
    on the DataFrame read from ``rows_parquet``); the baseline imports pandas, pyarrow and
    scikit-learn."""
    return _measure("scikit-learn", _TEACHER_BASELINE, _TEACHER_SCORE, Path(pickle_path),
                    Path(rows_parquet), threads)


__all__ = ["peak_scoring_memory", "peak_teacher_memory"]
