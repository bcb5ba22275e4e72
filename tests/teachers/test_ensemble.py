import numpy as np
import pytest

from medistill.config import DataConfig
from medistill.data.table import load_sensitive
from medistill.errors import TrainingError
from medistill.teachers.aggregators import GNMax
from medistill.teachers.ensemble import PartitionedEnsemble


@pytest.fixture(scope="module")
def data():
    return load_sensitive(DataConfig(source="builtin", builtin={"n_patients": 1200}), seed=0)


def test_neighbouring_datasets_change_votes_by_at_most_sqrt2(data) -> None:
    """Empirical sensitivity: add one patient, the vote histograms move ≤ √2 in L2."""
    X, y, ids = data.features, data.labels, data.patient_ids
    queries = X.sample(200, random_state=1).reset_index(drop=True)
    rng = np.random.default_rng(0)
    for trial in range(3):
        drop = rng.integers(len(ids))
        keep = np.arange(len(ids)) != drop
        full = PartitionedEnsemble(n_teachers=6, kind="logistic_regression", schema=data.schema,
                                   random_state=trial).fit(X, y, ids)
        less = PartitionedEnsemble(n_teachers=6, kind="logistic_regression", schema=data.schema,
                                   random_state=trial).fit(X[keep].reset_index(drop=True),
                                                           y[keep], ids[keep])
        diff = full.vote_histogram(queries) - less.vote_histogram(queries)
        assert np.linalg.norm(diff, axis=1).max() <= np.sqrt(2) + 1e-12


def test_too_small_partitions_are_refused(data) -> None:
    with pytest.raises(TrainingError, match="too small to train"):
        PartitionedEnsemble(n_teachers=200, kind="logistic_regression", schema=data.schema,
                            random_state=0).fit(data.features, data.labels, data.patient_ids)


def test_gnmax_is_seeded_and_noisy() -> None:
    votes = np.tile([[30.0, 20.0]], (2000, 1))
    a = GNMax(sigma=10.0, rng=np.random.default_rng(1)).aggregate(votes)
    b = GNMax(sigma=10.0, rng=np.random.default_rng(1)).aggregate(votes)
    assert np.array_equal(a, b)
    # P(noisy argmax flips) = P(N(0, 2σ²) > 10) ≈ 0.24.
    assert 0.20 <= a.mean() <= 0.28
    with pytest.raises(ValueError, match="sigma"):
        GNMax(sigma=-1.0, rng=np.random.default_rng(0))
