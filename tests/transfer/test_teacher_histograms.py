"""Transfer rows from the DP-EBM teacher's released histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.data.schema import BINARY, CATEGORICAL, NUMERIC, FeatureSpec, TableSchema
from medistill.teachers.dp_ebm import DPEBMSettings, fit_dp_ebm
from medistill.teachers.dp_inputs import OTHER
from medistill.transfer.teacher_histograms import (
    FeatureHistogram,
    TeacherHistogramSampler,
    feature_histograms,
)

SCHEMA = TableSchema(
    features=(FeatureSpec("age", NUMERIC), FeatureSpec("sbp", NUMERIC),
              FeatureSpec("smoker", BINARY),
              FeatureSpec("site", CATEGORICAL, ("east", "north", "south", "west"))),
    label="event", classes=("0", "1"))
BOUNDS = {"age": (18.0, 100.0), "sbp": (60.0, 220.0)}


def _table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    sbp = rng.normal(130, 20, n)
    sbp[rng.random(n) < 0.2] = np.nan
    frame = pd.DataFrame({
        "age": rng.uniform(20, 60, n), "sbp": sbp,
        "smoker": (rng.random(n) < 0.3).astype(float),
        "site": rng.choice(["north", "south", "east"], n, p=[0.6, 0.3, 0.1]).astype(object)})
    labels = (rng.random(n) < 1 / (1 + np.exp(-(frame["age"] - 40) / 10))).astype(np.int64)
    return frame, labels


@pytest.fixture(scope="module")
def teachers():
    frame, labels = _table(4000, seed=1)
    settings = DPEBMSettings(max_rounds=50)
    return {eps: fit_dp_ebm(frame, labels, SCHEMA, epsilon=eps, delta=1e-6,
                            public_rows=len(frame), bounds=BOUNDS,
                            settings=settings) for eps in (1.0, 20.0)}


def test_histograms_are_distributions_over_public_domains(teachers):
    hists = feature_histograms(teachers[1.0])
    assert list(hists) == SCHEMA.feature_names
    for hist in hists.values():
        assert hist.probabilities.min() >= 0
        assert hist.probabilities.sum() == pytest.approx(1.0)
    assert hists["age"].edges[0] < 18.0 and hists["age"].edges[-1] == 100.0
    assert np.all(np.diff(hists["sbp"].edges) > 0)
    assert hists["site"].categories[:4] == ("east", "north", "south", "west")


def test_samples_stay_in_the_declared_domain(teachers):
    rows = TeacherHistogramSampler(teachers[1.0]).sample(5000, np.random.default_rng(0))
    assert list(rows.columns) == SCHEMA.feature_names and len(rows) == 5000
    for name, (lo, hi) in BOUNDS.items():
        present = rows[name].dropna()
        assert present.between(lo, hi).all()
    assert set(rows["smoker"].dropna()) <= {0.0, 1.0}
    assert set(rows["site"].dropna()) <= {"east", "north", "south", "west", OTHER}


def test_sampling_is_seeded(teachers):
    sampler = TeacherHistogramSampler(teachers[1.0])
    a = sampler.sample(300, np.random.default_rng(5))
    b = sampler.sample(300, np.random.default_rng(5))
    c = sampler.sample(300, np.random.default_rng(6))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_large_budget_recovers_the_marginals(teachers):
    """With little noise the released marginals are the data's (bands)."""
    rows = TeacherHistogramSampler(teachers[20.0]).sample(20000, np.random.default_rng(1))
    assert 35 <= rows["age"].mean() <= 45                       # data: uniform 20..60
    assert rows["age"].quantile(0.95) <= 72                    # data: 58; noise bins above 60
    assert 0.12 <= rows["sbp"].isna().mean() <= 0.28            # data: 20 % missing
    assert 115 <= rows["sbp"].median() <= 145
    assert 0.2 <= rows["smoker"].mean() <= 0.4                  # data: 30 %
    assert 0.5 <= (rows["site"] == "north").mean() <= 0.7       # data: 60 %
    # data: east 10 %, west never; interpret may merge the light categories into one bin
    assert 0.05 <= rows["site"].isin(["east", "west"]).mean() <= 0.16
    assert rows["site"].isna().mean() <= 0.02                   # data: never missing


def test_histogram_quantile_and_missing_rate_by_hand():
    hist = FeatureHistogram("x", NUMERIC, np.array([0.5, 0.25, 0.25]),
                            edges=np.array([0.0, 1.0, 2.0, 3.0]), declared_min=1.0)
    assert hist.missing_rate() == pytest.approx(0.5)
    assert hist.quantile(0.5) == pytest.approx(2.0)
    assert hist.quantile(0.0) == pytest.approx(1.0)
    assert hist.quantile(1.0) == pytest.approx(3.0)
    values = hist.sample(4000, np.random.default_rng(0))
    assert 0.45 <= np.isnan(values).mean() <= 0.55
    with pytest.raises(ValueError, match="numeric"):
        FeatureHistogram("s", CATEGORICAL, np.array([1.0]), categories=("a",)).quantile(0.5)


def test_sample_refuses_bad_sizes(teachers):
    with pytest.raises(ValueError, match="n_rows"):
        TeacherHistogramSampler(teachers[1.0]).sample(0, np.random.default_rng(0))


@pytest.mark.slow
def test_free_labels_distil_the_teacher():
    """End to end: DP-EBM on 1,500 cohort patients, 20,000 transfer rows from its own
    histograms labelled with its logits (post-processing), a non-private regressor fitted
    to them tracks the teacher on held-out patients."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPRegressor

    from medistill.data.cohort import OUTCOME, simulate_cohort

    table = simulate_cohort(2000, rng=np.random.default_rng(11))
    labels = table.pop(OUTCOME).to_numpy().astype(np.int64)
    kinds = {"sex": ("female", "male"), "smoking": ("current", "former", "never")}
    binary = ("hypertension", "diabetes", "ckd")
    ranges = {"age": (18, 100), "bmi": (15, 60), "sbp": (70, 250), "dbp": (40, 140),
              "heart_rate": (30, 200), "glucose": (40, 500), "hba1c": (3, 15),
              "cholesterol": (80, 400), "hdl": (10, 120), "creatinine": (0.2, 5),
              "n_encounters": (0, 30), "n_medications": (0, 20)}
    specs = tuple(FeatureSpec(c, CATEGORICAL, kinds[c]) if c in kinds else
                  FeatureSpec(c, BINARY if c in binary else NUMERIC)
                  for c in [*kinds, *binary, *ranges])
    schema = TableSchema(specs, OUTCOME, ("0", "1"))
    train, test = table.iloc[:1500], table.iloc[1500:]
    teacher = fit_dp_ebm(train, labels[:1500], schema, epsilon=3.0, delta=1e-6,
                         public_rows=len(train), bounds=ranges)
    rows = TeacherHistogramSampler(teacher).sample(20_000, np.random.default_rng(0))
    student = MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=60, random_state=0)
    student.fit(teacher.encoding.linear_matrix(rows), teacher.decision_function(rows))
    s = student.predict(teacher.encoding.linear_matrix(test))
    t = teacher.decision_function(test)
    teacher_auroc = roc_auc_score(labels[1500:], t)
    assert 0.72 <= teacher_auroc <= 0.93
    assert abs(roc_auc_score(labels[1500:], s) - teacher_auroc) <= 0.03
    assert 0.9 <= spearmanr(s, t).statistic <= 1.0
