"""The charged DP choice of covariate concepts: sensitivity, noise, event, entropy."""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest

from medistill.data.omop.selection import (
    capped_person_counts,
    select_concepts,
    selection_event,
)
from medistill.privacy.ledger import epsilon_of


def _pairs(rows):
    return pd.DataFrame(rows, columns=["person_id", "candidate", "n_records"])


def test_counts_distinct_persons_and_caps_each_person():
    pairs = _pairs([(1, 0, 5), (1, 0, 1), (1, 1, 3), (1, 2, 1), (2, 2, 1), (2, 3, 9)])
    assert capped_person_counts(pairs, 5, 10).tolist() == [1, 1, 2, 1, 0]
    # with a cap of 2, person 1 keeps its two most recorded concepts (0: 6 records, 1: 3)
    assert capped_person_counts(pairs, 5, 2).tolist() == [1, 1, 1, 1, 0]


@pytest.mark.parametrize("k", [1, 3, 8])
def test_one_person_moves_the_counts_by_at_most_root_k(k):
    rng = np.random.default_rng(k)
    rows = [(p, int(c), int(rng.integers(1, 5))) for p in range(40)
            for c in rng.choice(30, size=int(rng.integers(1, 20)), replace=False)]
    pairs = _pairs(rows)
    full = capped_person_counts(pairs, 30, k)
    for person in range(40):
        without = capped_person_counts(pairs[pairs.person_id != person], 30, k)
        assert np.linalg.norm(full - without) <= np.sqrt(k) + 1e-12


def test_threshold_top_features_and_noise_scale():
    pairs = _pairs([(p, c, 1) for p in range(100) for c in range(4) if p < 25 * (c + 1)])
    chosen = select_concepts(pairs, 6, min_persons=30, noise_multiplier=1e-3,
                             max_per_person=4, max_features=2, rng=np.random.default_rng(0))
    assert chosen.selected == (3, 2)        # counts 100, 75, 50, 25, 0, 0: top 2 above 30
    assert chosen.noise_std == pytest.approx(1e-3 * 2.0)
    assert chosen.sensitivity == 2.0
    assert chosen.event == dpa.GaussianDpEvent(1e-3)


def test_noise_is_really_added():
    pairs = _pairs([(p, 0, 1) for p in range(50)])
    hits = [len(select_concepts(pairs, 1, min_persons=50, noise_multiplier=5.0,
                                max_per_person=1, max_features=1,
                                rng=np.random.default_rng(s)).selected) for s in range(200)]
    assert 60 < sum(hits) < 140   # the true count sits on the threshold: a coin flip


def test_default_noise_is_fresh_entropy_not_a_seed():
    pairs = _pairs([(p, c, 1) for p in range(10) for c in range(200)])
    runs = {select_concepts(pairs, 200, min_persons=10, noise_multiplier=1.0,
                            max_per_person=200, max_features=200).selected for _ in range(3)}
    assert len(runs) == 3


def test_epsilon_of_the_release_is_pinned():
    assert epsilon_of([selection_event(10.0)], 1e-6, "rdp") == pytest.approx(0.4300, abs=5e-4)
    assert epsilon_of([selection_event(10.0)], 1e-6, "pld") == pytest.approx(0.3969, abs=2e-3)
    assert epsilon_of([selection_event(20.0)], 1e-6, "pld") < \
        epsilon_of([selection_event(10.0)], 1e-6, "pld")


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_bad_noise_is_refused(bad):
    with pytest.raises(ValueError, match="'noise_multiplier' parameter"):
        selection_event(bad)
