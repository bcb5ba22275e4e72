"""More ledger cases: the new aggregators' events, the transfer-individuals ledger, rows."""

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.pld import PLDAccountant

from medistill.privacy.ledger import PrivacyLedger, entries_from_event, event_from_entry
from medistill.teachers.aggregators import ConfidentGNMax, GNMax, LNMax, NoisySoftVotes


def _independent_epsilon(data: dict) -> float:
    """ε from ledger.json's numbers with dp-accounting alone (finer PLD discretisation)."""
    events = []
    for row in data["entries"]:
        noise = row["noise_multiplier"]
        base = {"gaussian": lambda: dpa.GaussianDpEvent(noise),
                "laplace": lambda: dpa.LaplaceDpEvent(noise),
                "poisson_gaussian": lambda: dpa.PoissonSampledDpEvent(
                    row["sample_rate"], dpa.GaussianDpEvent(noise))}[row["mechanism"]]()
        events.append(dpa.SelfComposedDpEvent(base, row["count"]))
    acc = PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dpa.ComposedDpEvent(events))
    return acc.get_epsilon(data["delta"])


def test_confident_gnmax_and_lnmax_ledgers_recompute_from_json() -> None:
    ledger = PrivacyLedger(delta=1e-6, accountant="pld")
    agg = ConfidentGNMax(sigma1=120.0, threshold=60, sigma2=40.0, rng=np.random.default_rng(0))
    agg.aggregate(np.tile([[70.0, 30.0]], (200, 1)))
    ledger.record("labels", agg.privacy_events(), "Confident-GNMax on 200 rows")
    ledger.record("labels_lnmax", LNMax.event_for(30.0, 5), "LNMax on 5 rows")
    ledger.record("student_dp_sgd", dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.5)), 300))
    data = ledger.to_dict()
    assert [(r["mechanism"], r["count"]) for r in data["entries"]] == [
        ("gaussian", 200), ("gaussian", 200), ("laplace", 10), ("poisson_gaussian", 300)]
    assert data["entries"][1]["noise_multiplier"] == pytest.approx(40.0 / math.sqrt(2))
    assert PrivacyLedger.from_dict(data).epsilon() == pytest.approx(data["epsilon"], rel=1e-12)
    independent = _independent_epsilon(data)
    assert independent <= data["epsilon"] <= independent * 1.02
    rdp = PrivacyLedger.from_dict({**data, "accountant": "rdp"})
    assert data["epsilon"] <= rdp.epsilon()  # PLD is tighter than RDP


def test_round_trip_of_every_new_event_shape() -> None:
    for event in (ConfidentGNMax.event_for(10.0, 5.0, 7), LNMax.event_for(3.0, 4),
                  NoisySoftVotes.event_for(9.0, 11), GNMax.event_for(9.0, 1)):
        entries = entries_from_event("s", event)
        again = [e for entry in entries
                 for e in entries_from_event("s", event_from_entry(entry))]
        assert again == entries


def test_zero_queries_record_nothing() -> None:
    ledger = PrivacyLedger(delta=1e-6)
    ledger.record("labels", GNMax.event_for(10.0, 0))
    ledger.record("labels", dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(3.0), 0))
    ledger.record("labels", ConfidentGNMax.event_for(10.0, 5.0, 0))
    assert ledger.entries == () and ledger.epsilon() == 0.0


def test_transfer_individuals_have_their_own_independent_ledger() -> None:
    patients = PrivacyLedger(delta=1e-6, accountant="pld")
    transfer = PrivacyLedger(delta=1e-5, accountant="pld", name="transfer individuals")
    patients.record("labels", GNMax.event_for(30.0, 100))
    before = patients.epsilon()
    step = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.02, dpa.GaussianDpEvent(1.1)), 400)
    transfer.record("student_dp_sgd", step, "DP-SGD steps over transfer rows")
    patients.record("student_dp_sgd", step, "DP-SGD steps over sensitive rows")
    # Recording into one never changes the other.
    assert [e.stage for e in transfer.entries] == ["student_dp_sgd"]
    assert len(patients.entries) == 2
    alone = PrivacyLedger(delta=1e-5, accountant="pld")
    alone.record("student_dp_sgd", step)
    assert transfer.epsilon() == pytest.approx(alone.epsilon(), rel=1e-12)
    assert patients.epsilon() > before
    data = transfer.to_dict()
    assert data["name"] == "transfer individuals" and data["delta"] == 1e-5
    assert PrivacyLedger.from_dict(data).name == "transfer individuals"
    assert PrivacyLedger.from_dict(patients.to_dict()).name == "sensitive patients"


def test_summary_rows_carry_the_report_columns() -> None:
    ledger = PrivacyLedger(delta=1e-6, accountant="pld")
    ledger.record("labels", LNMax.event_for(8.0, 3), "LNMax")
    ledger.record("oops", dpa.NonPrivateDpEvent(), "plurality")
    rows = ledger.summary_rows()
    assert [set(r) for r in rows] == [{"stage", "mechanism", "noise_multiplier", "sample_rate",
                                       "count", "epsilon_alone", "description"}] * 2
    assert rows[0]["count"] == 6 and rows[0]["epsilon_alone"] <= 6 / 8.0 + 1e-3  # pure 2/b per query
    assert rows[1]["epsilon_alone"] is None
    assert rows == ledger.to_dict()["entries"]
