"""Ledger and accounting against formulas, independent libraries and published results."""

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from medistill.privacy.ledger import LedgerEntry, PrivacyLedger, entries_from_event, epsilon_of
from medistill.teachers.aggregators import GNMax


def test_gnmax_rdp_is_lambda_over_sigma_squared() -> None:
    """Papernot et al. 2018, Prop. 8: data-independent RDP of GNMax is λ/σ² per query."""
    sigma, orders = 40.0, [2.0, 8.0, 32.0]
    acc = RdpAccountant(orders=orders)
    acc.compose(GNMax.event_for(sigma, 1))
    assert np.allclose(acc._rdp, [lam / sigma**2 for lam in orders], rtol=1e-9)
    acc = RdpAccountant(orders=orders)
    acc.compose(GNMax.event_for(sigma, 250))
    assert np.allclose(acc._rdp, [250 * lam / sigma**2 for lam in orders], rtol=1e-9)


def _analytic_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Balle & Wang (ICML 2018), Thm. 8: exact ε of the Gaussian mechanism (sensitivity 1)."""
    def delta_of(eps: float) -> float:
        return norm.cdf(-eps * sigma + 1 / (2 * sigma)) - math.exp(eps) * norm.cdf(-eps * sigma - 1 / (2 * sigma))
    return brentq(lambda e: delta_of(e) - delta, 0.0, 100.0)


@pytest.mark.parametrize(("sigma", "delta"), [(1.0, 1e-5), (3.0, 1e-6), (0.7, 1e-3)])
def test_pld_matches_analytic_gaussian(sigma: float, delta: float) -> None:
    ledger = PrivacyLedger(delta=delta, accountant="pld")
    ledger.record("x", dpa.GaussianDpEvent(sigma))
    exact = _analytic_gaussian_epsilon(sigma, delta)
    assert exact <= ledger.epsilon() <= exact * 1.01 + 2e-3  # pessimistic, and tight


def test_composition_of_gaussians_is_one_gaussian() -> None:
    """k Gaussians with multiplier s compose to one with s/√k (exact under PLD)."""
    ledger = PrivacyLedger(delta=1e-5, accountant="pld")
    ledger.record("labels", GNMax.event_for(30.0, 100))
    exact = _analytic_gaussian_epsilon(30.0 / math.sqrt(2) / 10, 1e-5)
    assert ledger.epsilon() == pytest.approx(exact, rel=0.01)


def test_dp_sgd_ledger_agrees_with_opacus_rdp_accountant() -> None:
    from opacus.accountants import RDPAccountant

    sigma, q, steps, delta = 1.1, 256 / 60000, 60 * 235, 1e-5
    opacus_acc = RDPAccountant()
    opacus_acc.history = [(sigma, q, steps)]
    ledger = PrivacyLedger(delta=delta, accountant="rdp")
    ledger.record("student_dp_sgd", dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps))
    assert ledger.epsilon() == pytest.approx(opacus_acc.get_epsilon(delta), rel=0.01)
    pld = PrivacyLedger(delta=delta, accountant="pld")
    for entry in ledger.entries:
        pld._entries.append(entry)
    assert pld.epsilon() <= ledger.epsilon()  # PLD is tighter than RDP


def test_ledger_epsilon_recomputes_from_its_json() -> None:
    ledger = PrivacyLedger(delta=5e-6, accountant="pld")
    ledger.record("schema_statistics", dpa.GaussianDpEvent(15.0))
    ledger.record("labels", GNMax.event_for(25.0, 40))
    ledger.record("student_dp_sgd", dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(0.02, dpa.GaussianDpEvent(1.2)), 500))
    data = ledger.to_dict()
    again = PrivacyLedger.from_dict(data)
    assert again.epsilon() == pytest.approx(data["epsilon"], rel=1e-12)
    # Independently: only dp-accounting and the entries' numbers.
    events = []
    for row in data["entries"]:
        if row["mechanism"] == "gaussian":
            base = dpa.GaussianDpEvent(row["noise_multiplier"])
        else:
            base = dpa.PoissonSampledDpEvent(row["sample_rate"], dpa.GaussianDpEvent(row["noise_multiplier"]))
        events.append(dpa.SelfComposedDpEvent(base, row["count"]))
    acc = dpa.pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dpa.ComposedDpEvent(events))
    independent = acc.get_epsilon(5e-6)
    assert independent <= data["epsilon"] <= independent * 1.02


def test_non_private_entry_means_infinite_epsilon() -> None:
    ledger = PrivacyLedger(delta=1e-6)
    ledger.record("labels", dpa.NonPrivateDpEvent())
    assert math.isinf(ledger.epsilon()) and not ledger.formal_guarantee
    assert ledger.to_dict()["epsilon"] is None


def test_nested_events_flatten_with_counts() -> None:
    event = dpa.SelfComposedDpEvent(dpa.ComposedDpEvent(
        [dpa.GaussianDpEvent(2.0), dpa.SelfComposedDpEvent(dpa.LaplaceDpEvent(1.0), 3)]), 5)
    entries = entries_from_event("s", event)
    assert [(e.mechanism, e.count) for e in entries] == [("gaussian", 5), ("laplace", 15)]


def test_unsupported_event_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot record"):
        entries_from_event("s", dpa.RandomizedResponseDpEvent(0.5, 2))


@settings(max_examples=15, deadline=None)
@given(sigma=st.floats(5, 100), queries=st.integers(1, 400), more=st.integers(1, 400),
       factor=st.floats(1.01, 3))
def test_more_queries_or_less_noise_never_lowers_epsilon(sigma, queries, more, factor) -> None:
    eps = epsilon_of([GNMax.event_for(sigma, queries)], 1e-5, "rdp")
    assert epsilon_of([GNMax.event_for(sigma, queries + more)], 1e-5, "rdp") >= eps
    assert epsilon_of([GNMax.event_for(sigma / factor, queries)], 1e-5, "rdp") >= eps


def test_entry_is_plain_data() -> None:
    entry = LedgerEntry("labels", "gaussian", 10.0, None, 3)
    assert entry.count == 3 and entry.sample_rate is None
