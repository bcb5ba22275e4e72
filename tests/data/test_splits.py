import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medistill.data.splits import keyed_partition, split_patients


@settings(max_examples=40, deadline=None)
@given(n_patients=st.integers(40, 400), max_rows=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_no_patient_in_two_splits(n_patients: int, max_rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, max_rows + 1, size=n_patients)
    ids = np.repeat([f"p{i}" for i in range(n_patients)], rows)
    labels = np.repeat(rng.integers(0, 2, n_patients), rows)
    labels[:3] = 0
    labels[3:6] = 1
    split = split_patients(ids, labels, test=0.2, holdout=0.2, seed=seed)
    parts = [set(ids[split.train]), set(ids[split.test]), set(ids[split.holdout])]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert sorted(np.r_[split.train, split.test, split.holdout]) == list(range(len(ids)))


def test_split_is_seeded_and_stratified() -> None:
    rng = np.random.default_rng(1)
    ids = np.array([f"p{i}" for i in range(1000)])
    labels = (rng.random(1000) < 0.1).astype(int)
    a = split_patients(ids, labels, test=0.2, holdout=0.2, seed=3)
    b = split_patients(ids, labels, test=0.2, holdout=0.2, seed=3)
    c = split_patients(ids, labels, test=0.2, holdout=0.2, seed=4)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
    assert abs(labels[a.test].mean() - labels.mean()) < 0.01
    assert 180 <= len(a.test) <= 220 and 180 <= len(a.holdout) <= 220


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=50, unique=True),
       st.text(min_size=1, max_size=8))
def test_partition_depends_only_on_own_id(ids: list[str], extra: str) -> None:
    """Adding a patient never moves anyone else to another teacher."""
    before = keyed_partition(np.array(ids), 7, key="k")
    after = keyed_partition(np.array(ids + [extra]), 7, key="k")
    assert np.array_equal(before, after[: len(ids)])
