"""Noisy aggregators: parameters, behaviour, sensitivity and their privacy events."""

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st

from medistill.config import DataConfig
from medistill.data.table import load_sensitive
from medistill.errors import NotFittedError
from medistill.privacy.ledger import PrivacyLedger, epsilon_of
from medistill.teachers.aggregators import (
    ABSTAIN,
    AGGREGATORS,
    ConfidentGNMax,
    GNMax,
    LNMax,
    NoisySoftVotes,
    PluralityVote,
    make_aggregator,
)
from medistill.teachers.ensemble import PartitionedEnsemble

ORDERS = [1.5, 2.0, 8.0, 32.0, 128.0]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rdp(event: dpa.DpEvent) -> np.ndarray:
    acc = RdpAccountant(orders=ORDERS)
    acc.compose(event)
    return np.asarray(acc._rdp)


# --------------------------------------------------------------------- parameters

@pytest.mark.parametrize(("make", "message"), [
    (lambda: GNMax(sigma=-1, rng=_rng()),
     "The 'sigma' parameter of GNMax must be a float in the range (0, inf). Got -1 instead."),
    (lambda: LNMax(scale=0.0, rng=_rng()),
     "The 'scale' parameter of LNMax must be a float in the range (0, inf). Got 0.0 instead."),
    (lambda: NoisySoftVotes(sigma=math.inf, rng=_rng()),
     "The 'sigma' parameter of NoisySoftVotes must be a float in the range (0, inf). Got inf"),
    (lambda: ConfidentGNMax(sigma1=10, threshold=-1, sigma2=5, rng=_rng()),
     "The 'threshold' parameter of ConfidentGNMax must be a float in the range [0, inf). Got -1"),
    (lambda: ConfidentGNMax(sigma1=10, threshold=5, sigma2=5, rng=_rng(), on_unanswered="skip"),
     "The 'on_unanswered' parameter of ConfidentGNMax must be a str among {'drop', 'abstain'}. "
     "Got 'skip' instead."),
    (lambda: GNMax(sigma="3", rng=_rng()), "Got '3' instead."),
    (lambda: GNMax(sigma=float("nan"), rng=_rng()), "Got nan instead."),
    (lambda: GNMax(sigma=True, rng=_rng()), "Got True instead."),
    (lambda: GNMax(sigma=1.0, rng=None),
     "The 'rng' parameter of GNMax must be an instance of numpy.random.Generator. Got None"),
])
def test_parameters_are_validated_with_clear_messages(make, message) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_declared_parameters_and_factory() -> None:
    agg = make_aggregator("confident_gnmax", sigma=20.0, rng=_rng(), sigma1=50.0, threshold=30)
    assert isinstance(agg, ConfidentGNMax)
    assert agg.get_params() == {"sigma1": 50.0, "threshold": 30.0, "sigma2": 20.0,
                                "on_unanswered": "drop"}
    assert make_aggregator("lnmax", sigma=4.0, rng=_rng()).scale == 4.0
    assert make_aggregator("soft_votes", sigma=4.0, rng=_rng()).input == "probabilities"
    assert isinstance(make_aggregator("plurality"), PluralityVote)
    assert set(AGGREGATORS) == {"plurality", "gnmax", "lnmax", "confident_gnmax", "soft_votes"}
    with pytest.raises(ValueError, match="among"):
        make_aggregator("noisy_max", sigma=1.0, rng=_rng())
    with pytest.raises(ValueError, match="needs 'sigma'"):
        make_aggregator("gnmax", rng=_rng())
    with pytest.raises(ValueError, match=r"needs the parameters \['sigma1', 'threshold'\]"):
        make_aggregator("confident_gnmax", sigma=1.0, rng=_rng())
    with pytest.raises(ValueError, match="unexpected parameters"):
        make_aggregator("gnmax", sigma=1.0, rng=_rng(), threshold=3)
    with pytest.raises(ValueError, match="no parameters"):
        make_aggregator("plurality", sigma=1.0)


@pytest.mark.parametrize("agg", [GNMax(sigma=1.0, rng=_rng()), LNMax(scale=1.0, rng=_rng()),
                                 ConfidentGNMax(sigma1=1.0, threshold=1, sigma2=1.0, rng=_rng()),
                                 NoisySoftVotes(sigma=1.0, rng=_rng())])
def test_privacy_events_before_any_query_raise(agg) -> None:
    with pytest.raises(NotFittedError, match="call aggregate first"):
        agg.privacy_events()


def test_vote_histograms_must_be_votes() -> None:
    gnmax = GNMax(sigma=1.0, rng=_rng())
    with pytest.raises(ValueError, match="same total"):
        gnmax.aggregate(np.array([[3.0, 2.0], [4.0, 2.0]]))
    with pytest.raises(ValueError, match="same total"):
        gnmax.aggregate(np.array([[2.5, 2.5]]))
    with pytest.raises(ValueError, match="shape"):
        gnmax.aggregate(np.array([3.0, 2.0]))


# --------------------------------------------------------------------- behaviour

def test_lnmax_is_seeded_and_noisy() -> None:
    votes = np.tile([[30.0, 20.0]], (4000, 1))
    a = LNMax(scale=10.0, rng=_rng(1)).aggregate(votes)
    b = LNMax(scale=10.0, rng=_rng(1)).aggregate(votes)
    assert np.array_equal(a, b)
    # L1 − L2 of two Laplace(b) is symmetric with P(|D| > t) = e^{-t/b}(1 + t/(2b)) / 1:
    # P(D > 10) = e^{-1}(2 + 1)/4 ≈ 0.276.
    assert 0.25 <= a.mean() <= 0.30


def test_confident_gnmax_drops_or_abstains_on_low_consensus() -> None:
    votes = np.array([[50.0, 0.0]] * 500 + [[26.0, 24.0]] * 500)
    drop = ConfidentGNMax(sigma1=2.0, threshold=40, sigma2=1.0, rng=_rng(3))
    labels = drop.aggregate(votes)
    assert drop.answered_[:500].all() and not drop.answered_[500:].any()
    assert labels.shape == (500,) and (labels == 0).all()
    abstain = ConfidentGNMax(sigma1=2.0, threshold=40, sigma2=1.0, rng=_rng(3),
                             on_unanswered="abstain")
    labels = abstain.aggregate(votes)
    assert labels.shape == (1000,) and (labels[500:] == ABSTAIN).all() and (labels[:500] == 0).all()
    # Every query is charged, answered or not: the answered count is data-dependent.
    assert drop.n_queries_ == 1000 and drop.n_answered_ == 500
    assert drop.privacy_events() == ConfidentGNMax.event_for(2.0, 1.0, 1000)


def test_soft_votes_are_distributions_and_track_the_votes() -> None:
    rng = _rng(4)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=(40, 300))
    agg = NoisySoftVotes(sigma=2.0, rng=_rng(5))
    soft = agg.aggregate(probs)
    assert soft.shape == (300, 3)
    assert np.allclose(soft.sum(axis=1), 1.0) and soft.min() >= 0.0
    mean = probs.mean(axis=0)
    assert np.abs(soft - mean).mean() < 0.05   # noise σ = 2 on sums of 40 teachers
    # All-zero after clipping gives the uniform distribution.
    zero = NoisySoftVotes(sigma=1e-9, rng=_rng()).aggregate(np.zeros((3, 2, 4)))
    assert np.allclose(zero, 0.25)


def test_queries_accumulate_over_calls() -> None:
    agg = GNMax(sigma=10.0, rng=_rng())
    agg.aggregate(np.tile([[3.0, 2.0]], (7, 1)))
    agg.aggregate(np.tile([[3.0, 2.0]], (5, 1)))
    assert agg.privacy_events() == GNMax.event_for(10.0, 12)


# --------------------------------------------------------------------- sensitivity

def test_two_probability_vectors_differ_by_at_most_sqrt2() -> None:
    """||p − q||₂² = ||p||² + ||q||² − 2⟨p, q⟩ ≤ 1 + 1 − 0 on the simplex; vertices attain it."""
    rng = _rng(6)
    worst = 0.0
    for n_classes in (2, 3, 5, 10):
        for concentration in (0.05, 1.0):
            p = rng.dirichlet([concentration] * n_classes, size=20000)
            q = rng.dirichlet([concentration] * n_classes, size=20000)
            worst = max(worst, np.linalg.norm(p - q, axis=1).max())
    assert worst <= math.sqrt(2) + 1e-12
    assert worst > 1.3  # sparse Dirichlet vectors come close to the bound
    assert np.linalg.norm(np.eye(3)[0] - np.eye(3)[1]) == pytest.approx(math.sqrt(2))


@pytest.fixture(scope="module")
def data():
    return load_sensitive(DataConfig(source="builtin", builtin={"n_patients": 1200}), seed=0)


def test_neighbouring_datasets_change_summed_probabilities_by_at_most_sqrt2(data) -> None:
    """Empirical sensitivity of soft votes and of the Confident-GNMax max count."""
    X, y, ids = data.features, data.labels, data.patient_ids
    queries = X.sample(200, random_state=2).reset_index(drop=True)
    rng = _rng(7)
    for trial in range(2):
        drop = rng.integers(len(ids))
        keep = np.arange(len(ids)) != drop
        kw = dict(n_teachers=6, kind="logistic_regression", schema=data.schema, random_state=trial)
        full = PartitionedEnsemble(**kw).fit(X, y, ids)
        less = PartitionedEnsemble(**kw).fit(X[keep].reset_index(drop=True), y[keep], ids[keep])
        p_full, p_less = full.teacher_probabilities(queries), less.teacher_probabilities(queries)
        changed = np.abs(p_full - p_less).max(axis=(1, 2)) > 0
        assert changed.sum() == 1  # exactly one teacher saw a different partition
        diff = p_full.sum(axis=0) - p_less.sum(axis=0)
        assert np.linalg.norm(diff, axis=1).max() <= math.sqrt(2) + 1e-12
        v_full, v_less = full.vote_histogram(queries), less.vote_histogram(queries)
        assert np.abs(v_full.max(axis=1) - v_less.max(axis=1)).max() <= 1.0


# --------------------------------------------------------------------- accounting

def test_confident_gnmax_threshold_cost_is_lambda_over_two_sigma1_squared() -> None:
    """Papernot et al. 2018: data-independent threshold check, RDP λ/(2σ₁²) per query."""
    sigma1, sigma2, n = 150.0, 40.0, 300
    threshold_only = _rdp(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(sigma1), n))
    assert np.allclose(threshold_only, [n * lam / (2 * sigma1**2) for lam in ORDERS], rtol=1e-9)
    total = _rdp(ConfidentGNMax.event_for(sigma1, sigma2, n))
    expected = [n * (lam / (2 * sigma1**2) + lam / sigma2**2) for lam in ORDERS]
    assert np.allclose(total, expected, rtol=1e-9)
    agg = ConfidentGNMax(sigma1=sigma1, threshold=0.0, sigma2=sigma2, rng=_rng())
    agg.aggregate(np.tile([[8.0, 2.0]], (n, 1)))
    assert np.allclose(_rdp(agg.privacy_events()), expected, rtol=1e-9)


def test_soft_votes_cost_the_same_as_gnmax() -> None:
    agg = NoisySoftVotes(sigma=25.0, rng=_rng())
    agg.aggregate(_rng(1).dirichlet([1, 1], size=(10, 50)))
    assert agg.privacy_events() == GNMax.event_for(25.0, 50)
    assert np.allclose(_rdp(agg.privacy_events()), [50 * lam / 25.0**2 for lam in ORDERS])


@pytest.mark.parametrize("scale", [1.0, 4.0, 25.0])
def test_lnmax_one_query_is_pure_two_over_b(scale: float) -> None:
    """One LNMax query is (2/b, 0)-DP: PLD at tiny δ gives 2/b, and not less."""
    event = LNMax.event_for(scale, 1)
    acc = PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(event)
    assert acc.get_epsilon(1e-14) == pytest.approx(2.0 / scale, abs=2e-4)
    # And the exact privacy loss of one query does reach 2/b: δ(ε) > 0 just below it.
    assert acc.get_delta(2.0 / scale * 0.99) > 1e-6
    # RDP at a huge order tends to the pure ε (Mironov 2017, Prop. 6).
    big = RdpAccountant(orders=[1e6])
    big.compose(event)
    assert big._rdp[0] == pytest.approx(2.0 / scale, rel=1e-3)


def test_lnmax_two_coordinate_event_is_no_looser_than_the_l1_analysis() -> None:
    """2 × Laplace(b) (exact) vs the textbook L1-sensitivity-2 event Laplace(b/2)."""
    for scale, n, delta in [(5.0, 50, 1e-6), (20.0, 200, 1e-5)]:
        exact = epsilon_of([LNMax.event_for(scale, n)], delta, "pld")
        l1 = epsilon_of([dpa.SelfComposedDpEvent(dpa.LaplaceDpEvent(scale / 2), n)], delta, "pld")
        assert exact <= l1 <= 2 * n / scale + 1e-9


def test_events_land_in_the_ledger() -> None:
    ledger = PrivacyLedger(delta=1e-6, accountant="rdp")
    agg = ConfidentGNMax(sigma1=100.0, threshold=20, sigma2=30.0, rng=_rng())
    agg.aggregate(np.tile([[15.0, 10.0]], (40, 1)))
    ledger.record("labels", agg.privacy_events(), "confident gnmax")
    rows = [(e.mechanism, e.noise_multiplier, e.count) for e in ledger.entries]
    assert rows == [("gaussian", 100.0, 40), ("gaussian", pytest.approx(30.0 / math.sqrt(2)), 40)]
    ledger.record("labels_l", LNMax.event_for(3.0, 10))
    assert (ledger.entries[-1].mechanism, ledger.entries[-1].count) == ("laplace", 20)
    plurality = PluralityVote()
    assert isinstance(plurality.privacy_events(), dpa.NonPrivateDpEvent)


# --------------------------------------------------------------------- monotonicity

_EVENTS = {
    "gnmax": lambda s, n: GNMax.event_for(s, n),
    "lnmax": lambda s, n: LNMax.event_for(s / 10, n),
    "confident_gnmax": lambda s, n: ConfidentGNMax.event_for(2 * s, s, n),
    "soft_votes": lambda s, n: NoisySoftVotes.event_for(s, n),
}


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(sorted(_EVENTS)), sigma=st.floats(5, 100),
       queries=st.integers(1, 300), more=st.integers(1, 300), factor=st.floats(1.01, 3))
def test_more_queries_or_less_noise_never_lowers_epsilon(name, sigma, queries, more,
                                                         factor) -> None:
    event = _EVENTS[name]
    eps = epsilon_of([event(sigma, queries)], 1e-5, "rdp")
    assert epsilon_of([event(sigma, queries + more)], 1e-5, "rdp") >= eps
    assert epsilon_of([event(sigma / factor, queries)], 1e-5, "rdp") >= eps


@settings(max_examples=8, deadline=None)
@given(sigma1=st.floats(5, 200), sigma2=st.floats(5, 200), factor=st.floats(1.01, 3),
       queries=st.integers(1, 200))
def test_confident_gnmax_each_noise_is_monotone(sigma1, sigma2, factor, queries) -> None:
    eps = epsilon_of([ConfidentGNMax.event_for(sigma1, sigma2, queries)], 1e-5, "pld")
    assert epsilon_of([ConfidentGNMax.event_for(sigma1 / factor, sigma2, queries)],
                      1e-5, "pld") >= eps - 1e-9
    assert epsilon_of([ConfidentGNMax.event_for(sigma1, sigma2 / factor, queries)],
                      1e-5, "pld") >= eps - 1e-9
