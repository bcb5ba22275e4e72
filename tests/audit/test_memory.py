"""Peak memory of scoring processes, each in a fresh interpreter."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from medistill.audit.memory import peak_scoring_memory, peak_teacher_memory
from medistill.data.schema import FeatureSpec, TableSchema
from medistill.student.export import build_student_onnx
from medistill.student.model import StudentMLP
from medistill.student.preprocess import as_model_input, make_preprocessor
from medistill.teachers.models import make_teacher

SCHEMA = TableSchema(
    features=(FeatureSpec("age", "numeric"), FeatureSpec("smoker", "binary"),
              FeatureSpec("sex", "categorical", ("female", "male"))),
    label="y", classes=("0", "1"))
N_ROWS = 5000


def _frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame({"age": rng.uniform(18, 90, n),
                          "smoker": rng.integers(0, 2, n).astype(float),
                          "sex": rng.choice(["female", "male"], n).astype(object)})
    frame.loc[::9, "age"] = np.nan
    frame.loc[::13, "sex"] = None
    return frame


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(0)
    train = _frame(300, rng)
    y = (rng.random(300) < 0.3).astype(int)
    pre = make_preprocessor(SCHEMA).fit(as_model_input(train, SCHEMA))
    torch.manual_seed(0)
    net = StudentMLP(pre.transform(as_model_input(train.head(2), SCHEMA)).shape[1], 2, (8,)).eval()
    onnx.save(build_student_onnx(pre, net, SCHEMA, {"epsilon": "1"}), str(folder / "student.onnx"))
    teacher = make_teacher("logistic_regression", SCHEMA, random_state=0).fit(train, y)
    (folder / "teacher.pkl").write_bytes(pickle.dumps(teacher))
    _frame(N_ROWS, rng).to_parquet(folder / "rows.parquet")
    return folder / "student.onnx", folder / "teacher.pkl", folder / "rows.parquet"


def _check(result: dict, runtime: str, threads: int) -> None:
    assert result["runtime"] == runtime and result["threads"] == threads
    assert result["n_rows"] == N_ROWS
    assert 10 * 2**20 < result["baseline_rss_bytes"] <= result["peak_rss_bytes"] < 4 * 2**30
    assert result["scoring_rss_bytes"] == result["peak_rss_bytes"] - result["baseline_rss_bytes"]
    assert result["model_bytes"] > 0 and "VmHWM" in result["method"]


@pytest.mark.slow
def test_student_scoring_memory_in_a_fresh_onnxruntime_process(artefacts) -> None:
    student, _, rows = artefacts
    _check(peak_scoring_memory(student, rows, threads=1), "onnxruntime", 1)


@pytest.mark.slow
def test_teacher_scoring_memory_in_a_fresh_scikit_learn_process(artefacts) -> None:
    _, teacher, rows = artefacts
    _check(peak_teacher_memory(teacher, rows, 1), "scikit-learn", 1)


def _own_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_the_parent_peak_is_not_inherited(artefacts) -> None:
    """ru_maxrss of a forked-and-exec'd child starts at the parent's peak on Linux; the
    measurement must report the child's own."""
    student, _, rows = artefacts
    ballast = np.ones(400 * 2**20 // 8)  # the parent touches 400 MB
    assert _own_peak() > 400 * 2**20
    result = peak_scoring_memory(student, rows, threads=1)
    del ballast
    assert result["peak_rss_bytes"] < _own_peak() - 300 * 2**20


@pytest.mark.slow
def test_failures_are_reported(artefacts, tmp_path: Path) -> None:
    student, _, rows = artefacts
    with pytest.raises(FileNotFoundError):
        peak_scoring_memory(tmp_path / "missing.onnx", rows, threads=1)
    broken = tmp_path / "rows.parquet"
    pd.DataFrame({"other": [1.0]}).to_parquet(broken)
    with pytest.raises(RuntimeError, match="memory-measurement process failed"):
        peak_scoring_memory(student, broken, threads=1)
    with pytest.raises(ValueError):
        peak_scoring_memory(student, rows, threads=0)
