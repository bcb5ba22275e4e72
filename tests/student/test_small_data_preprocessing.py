"""Issue #14 item 5, "preprocessing that survives small data", on the DP-teacher path.

600 patients; ``year`` is a calendar year (1975–1995) and ``marker`` is heavy-tailed
(lognormal, σ = 1.5); the outcome depends on both. The pipeline runs at ε = 3 with the DP-EBM
teacher, with declared ranges (``transfer.priors``) and without (charged DP marginals). The
exported ``student.onnx`` is scored on 4,000 fresh patients of the same table.

- **Informative**: permuting a column changes the student's risks (mean |Δp|) and lowers its
  AUROC, and the student uses the column about as much as its teacher does.
- **Not flattened**: few real values sit on the student's input clamp beyond those the
  teacher clips to its own ranges, and the real values keep a spread (IQR) in its inputs.

The runs that compare the student with its teacher column by column switch the DP-SGD
fine-tuning off (``student.fine_tune: false``): it reads the same preprocessed inputs, but
then changes what the student learnt from the teacher on purpose; one more run keeps the
default and checks that both columns stay informative in that student too.

Every privacy draw is fresh, so the bands hold for any draw. Without declared ranges the
ranges come from the charged zooming histograms (``medistill/teachers/dp_ranges.py``); the
marginals they replaced missed whole columns at 600 patients (a calendar year sat in one
72-year bin), and this test was an expected failure then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from rich.console import Console
from sklearn.metrics import roc_auc_score

from benchmarks.common import Artifacts
from medistill.config import parse_config
from medistill.data.schema import TableSchema
from medistill.pipeline import run_pipeline
from medistill.student.export import OUTPUT_NAME, onnx_feeds
from medistill.student.preprocess import as_model_input

COLUMNS = ("year", "marker")
# Public ranges: a reporting range for the marker (0.5 % of values lie above it).
PRIORS = {"year": {"min": 1970, "max": 2000}, "marker": {"min": 0, "max": 150},
          "age": {"min": 18, "max": 100}, "sbp": {"min": 70, "max": 230}}


def small_table(n: int, seed: int) -> pd.DataFrame:
    """Patients whose risk rises with the calendar year and with log(marker)."""
    rng = np.random.default_rng(seed)
    year = rng.integers(1975, 1996, n)
    marker = rng.lognormal(np.log(3.0), 1.5, n)
    age = rng.normal(60, 12, n).round(1)
    sbp = rng.normal(135, 18, n).round()
    sbp[rng.random(n) < 0.1] = np.nan              # imputed from transfer rows
    outcome = (rng.random(n) < true_risk({"year": year, "marker": marker, "age": age}))
    return pd.DataFrame({"patient_id": np.arange(n), "year": year, "marker": marker.round(3),
                         "age": age, "sbp": sbp, "sex": rng.choice(["female", "male"], n),
                         "outcome": outcome.astype(int)})


def true_risk(columns: Mapping) -> np.ndarray:
    """The generating model's risk (the Bayes classifier of this table)."""
    logit = (-0.5 + 0.2 * (np.asarray(columns["year"]) - 1985)
             + np.log(np.asarray(columns["marker"]) / 3.0) + 0.02 * (np.asarray(columns["age"]) - 60))
    return 1 / (1 + np.exp(-logit))


@dataclass(frozen=True)
class Run:
    """One finished run, scored on fresh patients."""

    epsilon: float
    bounds: dict[str, tuple[float, float]]        # the DP teacher's numeric ranges
    auroc: float
    teacher_auroc: float
    use: dict[str, tuple[float, float]]           # column -> (mean |Δp|, AUROC drop)
    teacher_use: dict[str, tuple[float, float]]
    saturated: dict[str, float]                   # real values on the student's clamp
    outside: dict[str, float]                     # real values outside the teacher's range
    spread: dict[str, float]                      # IQR of the student's input, real rows


def _column_use(predict, X: pd.DataFrame, y: np.ndarray) -> tuple[float, dict]:
    p = predict(X)
    auroc = roc_auc_score(y, p)
    rng = np.random.default_rng(2)
    use = {}
    for column in COLUMNS:
        q = predict(X.assign(**{column: rng.permutation(X[column].to_numpy())}))
        use[column] = (float(np.mean(np.abs(q - p))), float(auroc - roc_auc_score(y, q)))
    return float(auroc), use


def _max_risk_change() -> dict[str, float]:
    """Upper bound on a column's mean |Δp|: twice what permuting it moves the true risk
    (year 0.22, marker 0.26 on the fresh patients). The student's risk scale is set by the
    DP recalibration, whose slope is noisy (year 0.115-0.309 over 8 local runs of the
    declared fixture, 0.358 in one CI run), so only a gross overstatement is a failure; how much
    the ranking uses a column is held by the AUROC-drop bands and against the teacher."""
    fresh = small_table(4000, seed=1)
    _, use = _column_use(true_risk, fresh, fresh["outcome"].to_numpy())
    return {column: 2 * change for column, (change, _) in use.items()}


MAX_RISK_CHANGE = _max_risk_change()


def _score(tmp: Path, declared: bool, fine_tune: bool = False) -> Run:
    csv = tmp / "records.csv"
    small_table(600, seed=0).to_csv(csv, index=False)
    raw = {"data": {"source": "csv", "path": str(csv), "label": "outcome",
                    "id_column": "patient_id"},
           "privacy": {"target_epsilon": 3.0}, "teachers": {"dp_teacher": "dp_ebm"},
           "student": {"fine_tune": fine_tune},
           "audit": {"reference_models": 0, "baselines": False, "bootstrap": 0,
                     "memory": False, "speed_repeats": 10}}
    if declared:
        raw["transfer"] = {"priors": PRIORS}
    keep = Artifacts("prepare", "teachers", "student")
    outcome = run_pipeline(parse_config(raw), tmp / "run", console=Console(quiet=True),
                           observer=keep)
    schema: TableSchema = keep.get("prepare").data.schema
    teachers, student = keep.get("teachers"), keep.get("student")
    fresh = small_table(4000, seed=1)
    X, y = fresh[list(schema.feature_names)], fresh["outcome"].to_numpy()
    session = ort.InferenceSession(str(outcome.run_dir / "student.onnx"),
                                   providers=["CPUExecutionProvider"])
    auroc, use = _column_use(
        lambda frame: session.run([OUTPUT_NAME], onnx_feeds(frame, schema))[0][:, 1], X, y)
    teacher_auroc, teacher_use = _column_use(
        lambda frame: teachers.dp_teacher.predict_proba(frame)[:, 1], X, y)
    inputs = student.preprocessor.transform(as_model_input(X, schema))
    names = list(student.preprocessor.get_feature_names_out())
    lower, upper = student.network.lower.numpy(), student.network.upper.numpy()
    saturated, outside, spread = {}, {}, {}
    for column in COLUMNS:
        j = names.index(f"num__{column}")
        x = np.clip(inputs[:, j], lower[j], upper[j])
        saturated[column] = float(np.mean((x <= lower[j] + 1e-6) | (x >= upper[j] - 1e-6)))
        lo, hi = teachers.dp_bounds[column]
        outside[column] = float(np.mean((X[column] < lo) | (X[column] > hi)))
        spread[column] = float(np.subtract(*np.percentile(x, [75, 25])))
    return Run(outcome.report["privacy"]["epsilon"], dict(teachers.dp_bounds), auroc,
               teacher_auroc, use, teacher_use, saturated, outside, spread)


@pytest.fixture(scope="module")
def declared(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _score(tmp_path_factory.mktemp("declared"), declared=True)


@pytest.fixture(scope="module")
def charged(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _score(tmp_path_factory.mktemp("charged"), declared=False)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _score(tmp_path_factory.mktemp("fine_tuned"), declared=True, fine_tune=True)


def _tracks_its_teacher(run: Run) -> None:
    """The student ranks like its teacher and each column costs it about as much AUROC
    when permuted: its preprocessing lost nothing the teacher knew (nor invented anything).
    Risk changes are not compared: the DP recalibration rescales the student's logits."""
    assert abs(run.auroc - run.teacher_auroc) <= 0.06, run
    for column in COLUMNS:
        student, teacher = run.use[column][1], run.teacher_use[column][1]
        if teacher >= 0.02:                          # the teacher uses it materially
            assert 0.5 * teacher - 0.02 <= student <= 1.5 * teacher + 0.02, (column, run)


def test_small_table_has_the_intended_signal() -> None:
    fresh = small_table(4000, seed=1)
    y = fresh["outcome"]
    assert 0.70 <= roc_auc_score(y, fresh["year"]) <= 0.76
    assert 0.73 <= roc_auc_score(y, fresh["marker"]) <= 0.80
    assert fresh["marker"].max() / fresh["marker"].median() > 100     # heavy tail
    assert (fresh["marker"] > PRIORS["marker"]["max"]).mean() < 0.01
    assert 0.3 <= y.mean() <= 0.55


@pytest.mark.slow
def test_declared_ranges_keep_year_and_marker_informative(declared: Run) -> None:
    run = declared
    assert 0.98 * 3.0 <= run.epsilon <= 3.0
    assert 0.68 <= run.auroc <= 0.87, run            # Bayes 0.86 on this table
    _tracks_its_teacher(run)
    delta_p, drop = run.use["year"]
    assert 0.015 <= delta_p <= MAX_RISK_CHANGE["year"] and 0.05 <= drop <= 0.40, run
    delta_p, drop = run.use["marker"]
    assert 0.005 <= delta_p <= MAX_RISK_CHANGE["marker"] and 0.02 <= drop <= 0.40, run
    for column in COLUMNS:
        assert run.outside[column] < 0.01 and run.saturated[column] < 0.05, (column, run)
        assert run.spread[column] >= 0.05, (column, run)   # not squeezed to a point


@pytest.mark.slow
def test_the_default_fine_tuned_student_keeps_year_and_marker_informative(fine_tuned: Run) -> None:
    """With the default DP-SGD fine-tuning after distillation (on the same preprocessed
    inputs) both columns still move the exported student's risks and ranking; it need not
    track its teacher column by column any more (the patients correct the teacher)."""
    run = fine_tuned
    assert 0.98 * 3.0 <= run.epsilon <= 3.0
    assert 0.68 <= run.auroc <= 0.87, run
    for column in COLUMNS:
        delta_p, drop = run.use[column]
        assert 0.005 <= delta_p <= MAX_RISK_CHANGE[column] and 0.01 <= drop <= 0.40, (column, run)
        assert run.outside[column] < 0.01 and run.saturated[column] < 0.05, (column, run)
        assert run.spread[column] >= 0.05, (column, run)


def _year_range_usable(bounds: tuple[float, float]) -> bool:
    """The charged year range holds 1976–1994 and is at most 100 years wide: the DP-EBM's
    32 bins then resolve the year. At this table's planned noise about 1 release in 10 is
    not (a noise-only bin stretches it; tests/teachers/test_dp_ranges.py measures it)."""
    low, high = bounds
    return low <= 1976 and high >= 1994 and high - low <= 100


@pytest.mark.slow
def test_charged_ranges_student_adds_no_flattening(charged: Run) -> None:
    run = charged
    assert 0.98 * 3.0 <= run.epsilon <= 3.0
    assert 0.55 <= run.auroc <= 0.87, run
    _tracks_its_teacher(run)
    for column in COLUMNS:
        # The teacher clips to its ranges; the student may not clip much more.
        assert run.saturated[column] <= run.outside[column] + 0.05, (column, run)


@pytest.mark.slow
def test_charged_ranges_keep_year_and_marker_informative(charged: Run) -> None:
    run = charged
    assert run.bounds["marker"][0] <= 1.0 and run.bounds["marker"][1] >= 15, run
    # The charged marker range's upper end varies a lot at this noise (median 334, 5-95 %
    # 45-908 over 400 releases at the planned noise, 17 % above 500); the student's inputs
    # are standardised on transfer rows drawn over that range, so a 900-wide range squeezes
    # the real values (one CI run: IQR 0.034, risks moved by 0.003 when it was permuted;
    # at an upper end of 429 the IQR was 0.052-0.055). Held like the year: informative
    # when the range is usable, else not invented beyond the teacher.
    if run.bounds["marker"][1] <= 500:
        delta_p, drop = run.use["marker"]
        assert 0.005 <= delta_p <= MAX_RISK_CHANGE["marker"] and 0.01 <= drop <= 0.40, run
        assert run.spread["marker"] >= 0.03, run
    else:
        assert run.use["marker"][1] <= run.teacher_use["marker"][1] + 0.03, run
    if _year_range_usable(run.bounds["year"]):
        assert 0.6 <= run.auroc <= 0.87, run
        delta_p, drop = run.use["year"]
        assert 0.01 <= delta_p <= MAX_RISK_CHANGE["year"] and 0.03 <= drop <= 0.40, run
        assert run.spread["year"] >= 0.05, run
    else:   # the teacher could not resolve the year: the student must not invent it
        assert run.use["year"][1] <= run.teacher_use["year"][1] + 0.03, run
