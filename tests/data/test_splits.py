import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medistill.data.splits import keyed_partition, one_row_per_patient, split_patients


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


def test_split_is_keyed_and_proportional() -> None:
    ids = np.array([f"p{i}" for i in range(4000)])
    a = split_patients(ids, test=0.2, holdout=0.2, key=b"k1")
    b = split_patients(ids, test=0.2, holdout=0.2, key=b"k1")
    c = split_patients(ids, test=0.2, holdout=0.2, key=b"k2")
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
    # Binomial(4000, 0.2): mean 800, sd 25.3; ±5 sd.
    assert 673 <= len(a.test) <= 927 and 673 <= len(a.holdout) <= 927


def test_15_5_adding_a_patient_changes_only_its_own_split() -> None:
    """Issue #15 item 5: adding one patient moves no other patient in or out of training."""
    ids = np.repeat([f"p{i}" for i in range(500)], 2)
    before = split_patients(ids, test=0.2, holdout=0.2, key=b"secret")
    after = split_patients(np.r_[ids, ["new", "new"]], test=0.2, holdout=0.2, key=b"secret")
    for part in ("train", "test", "holdout"):
        old = set(ids[getattr(before, part)])
        new = set(np.r_[ids, ["new", "new"]][getattr(after, part)]) - {"new"}
        assert old == new


def test_15_5_one_row_per_patient_depends_on_own_rows_only() -> None:
    ids = np.array(["a", "a", "b", "c", "c", "c"])
    chosen = one_row_per_patient(ids, key=b"k")
    assert sorted(ids[chosen]) == ["a", "b", "c"]
    more = np.r_[ids, ["d", "d"]]
    again = one_row_per_patient(more, key=b"k")
    assert list(again[:3]) == list(chosen)
    # A different key picks differently for some patient with several rows (over many keys).
    picks = {tuple(one_row_per_patient(ids, key=f"k{i}".encode())) for i in range(20)}
    assert len(picks) > 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=50, unique=True),
       st.text(min_size=1, max_size=8))
def test_partition_depends_only_on_own_id(ids: list[str], extra: str) -> None:
    """Adding a patient never moves anyone else to another teacher."""
    before = keyed_partition(np.array(ids), 7, key="k")
    after = keyed_partition(np.array(ids + [extra]), 7, key="k")
    assert np.array_equal(before, after[: len(ids)])
