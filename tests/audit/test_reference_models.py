"""Reference-model planning (balanced random halves) and training (in-process or fanned out)."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from medistill.audit.reference_models import (
    EstimatorTrainer,
    FittedPredictor,
    plan_reference_inclusion,
    reference_predictions,
    train_reference_models,
)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), pairs=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_plan_is_balanced_random_halves(n: int, pairs: int, seed: int) -> None:
    inclusion = plan_reference_inclusion(n, 2 * pairs, np.random.default_rng(seed))
    assert inclusion.shape == (2 * pairs, n) and inclusion.dtype == bool
    assert set(inclusion.sum(axis=1)) <= {n // 2, n - n // 2}  # every model: half the points
    assert np.all(inclusion.sum(axis=0) == pairs)                # every point: IN for half
    assert np.all(inclusion[0::2] ^ inclusion[1::2])             # complementary pairs


def test_plan_is_seeded_random_and_handles_odd_counts() -> None:
    a = plan_reference_inclusion(101, 5, np.random.default_rng(0))
    b = plan_reference_inclusion(101, 5, np.random.default_rng(0))
    c = plan_reference_inclusion(101, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[4].sum() in (50, 51)
    assert np.all(a[:4].sum(axis=0) == 2)
    # Different pairs draw different halves: the IN-sets are not all the same.
    assert len({tuple(np.flatnonzero(row)) for row in a}) == 5
    with pytest.raises(ValueError):
        plan_reference_inclusion(1, 4, np.random.default_rng(0))
    with pytest.raises(ValueError):
        plan_reference_inclusion(10, 0, np.random.default_rng(0))


def test_one_job_trains_in_process_with_the_planned_rows_and_seeds(monkeypatch) -> None:
    def no_spawn(*args, **kwargs):
        raise AssertionError("n_jobs=1 must not start worker processes")

    monkeypatch.setattr(joblib, "Parallel", no_spawn)
    calls = []

    def train_fn(indices: np.ndarray, seed: int):  # a closure: fine without processes
        calls.append((indices.copy(), seed))
        return lambda rows: np.full((len(rows), 2), seed, dtype=float)

    inclusion = plan_reference_inclusion(20, 4, np.random.default_rng(0))
    models = train_reference_models(train_fn, inclusion, n_jobs=1, seeds=[7, 8, 9, 10])
    assert [seed for _, seed in calls] == [7, 8, 9, 10]
    for (indices, _), row in zip(calls, inclusion, strict=True):
        np.testing.assert_array_equal(indices, np.flatnonzero(row))
    assert reference_predictions(models, np.arange(3)).shape == (4, 3, 2)
    assert reference_predictions(models, np.arange(3))[2, 0, 0] == 9
    with pytest.raises(ValueError):
        train_reference_models(train_fn, inclusion, n_jobs=1, seeds=[1, 2])


@pytest.mark.slow
def test_processes_give_the_same_models_as_one_job() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    trainer = EstimatorTrainer(LogisticRegression(max_iter=200), X, y)
    inclusion = plan_reference_inclusion(200, 4, np.random.default_rng(1))
    serial = train_reference_models(trainer, inclusion, n_jobs=1, seeds=range(4))
    parallel = train_reference_models(trainer, inclusion, n_jobs=2, seeds=range(4))
    assert all(isinstance(m, FittedPredictor) for m in parallel)
    everyone = np.arange(200)
    np.testing.assert_allclose(reference_predictions(parallel, everyone),
                               reference_predictions(serial, everyone))
    # Each model really was fitted on its own half.
    coefs = [m.model.coef_.ravel() for m in serial]
    assert not np.allclose(coefs[0], coefs[1])


def test_estimator_trainer_sets_the_seed_and_works_on_frames() -> None:
    pd = pytest.importorskip("pandas")
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    y = (frame["a"] > 0).to_numpy().astype(int)
    trainer = EstimatorTrainer(RandomForestClassifier(n_estimators=5), frame, y)
    model = trainer(np.arange(40), 123)
    assert model.model.random_state == 123
    assert model(np.array([0, 50, 79])).shape == (3, 2)
