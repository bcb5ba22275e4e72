"""The privacy ledger: every channel by which sensitive rows reach the student, as events.

Stages record *what happened* as dp-accounting ``DpEvent`` objects; one accountant composes
them and converts to (ε, δ) once, at the end. The ledger serialises to entries that hold
enough (mechanism, noise multiplier, sample rate, count) for anyone to recompute ε with
dp-accounting alone (see :func:`event_from_entry`).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import dp_accounting as dpa
from absl import logging as absl_logging
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

AccountantName = Literal["pld", "rdp"]
PLD_DISCRETIZATION = 1e-3  # pessimistic discretisation: a valid upper bound on ε


@dataclass(frozen=True)
class LedgerEntry:
    """One mechanism, composed ``count`` times, as recorded by a stage."""

    stage: str
    mechanism: Literal["gaussian", "poisson_gaussian", "laplace", "non_private"]
    noise_multiplier: float | None
    sample_rate: float | None
    count: int
    description: str = ""


def make_accountant(name: AccountantName) -> dpa.PrivacyAccountant:
    """A fresh accountant of the named kind (add/remove-one-patient neighbours)."""
    if name == "pld":
        return PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    if name == "rdp":
        return RdpAccountant()
    raise ValueError(f"The 'accountant' must be 'pld' or 'rdp'. Got {name!r} instead.")


def event_from_entry(entry: LedgerEntry) -> dpa.DpEvent:
    """The dp-accounting event an entry stands for."""
    if entry.mechanism == "non_private":
        return dpa.NonPrivateDpEvent()
    if entry.mechanism == "gaussian":
        base: dpa.DpEvent = dpa.GaussianDpEvent(entry.noise_multiplier)
    elif entry.mechanism == "laplace":
        base = dpa.LaplaceDpEvent(entry.noise_multiplier)
    elif entry.mechanism == "poisson_gaussian":
        base = dpa.PoissonSampledDpEvent(entry.sample_rate, dpa.GaussianDpEvent(entry.noise_multiplier))
    else:
        raise ValueError(f"unknown mechanism {entry.mechanism!r}")
    return base if entry.count == 1 else dpa.SelfComposedDpEvent(base, entry.count)


def entries_from_event(stage: str, event: dpa.DpEvent, description: str = "") -> list[LedgerEntry]:
    """Flatten a dp-accounting event into ledger entries (raises for unsupported shapes)."""
    count = 1
    if isinstance(event, dpa.ComposedDpEvent):
        return [e for sub in event.events for e in entries_from_event(stage, sub, description)]
    if isinstance(event, dpa.SelfComposedDpEvent):
        count, event = event.count, event.event
        if count == 0:  # composed zero times: nothing happened (e.g. no query was asked)
            return []
        if isinstance(event, dpa.SelfComposedDpEvent | dpa.ComposedDpEvent):
            return [LedgerEntry(e.stage, e.mechanism, e.noise_multiplier, e.sample_rate,
                                e.count * count, e.description)
                    for e in entries_from_event(stage, event, description)]
    if isinstance(event, dpa.NoOpDpEvent):
        return []
    if isinstance(event, dpa.NonPrivateDpEvent):
        return [LedgerEntry(stage, "non_private", None, None, count, description)]
    if isinstance(event, dpa.GaussianDpEvent):
        return [LedgerEntry(stage, "gaussian", float(event.noise_multiplier), None, count, description)]
    if isinstance(event, dpa.LaplaceDpEvent):
        return [LedgerEntry(stage, "laplace", float(event.noise_multiplier), None, count, description)]
    if isinstance(event, dpa.PoissonSampledDpEvent) and isinstance(event.event, dpa.GaussianDpEvent):
        return [LedgerEntry(stage, "poisson_gaussian", float(event.event.noise_multiplier),
                            float(event.sampling_probability), count, description)]
    raise ValueError(f"The ledger cannot record a {type(event).__name__}; supported: Gaussian, "
                     "Laplace, Poisson-sampled Gaussian, non-private, and their compositions.")


@contextlib.contextmanager
def quiet_accounting() -> Iterator[None]:
    """Silence dp-accounting's harmless chatter: the RDP accountant logs orders it skips for
    tiny noise (skipping keeps the bound valid) and PLD overflows for negligible losses."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        absl_logging.set_verbosity(verbosity)


def epsilon_of(events: list[dpa.DpEvent], delta: float, accountant: AccountantName) -> float:
    """ε at ``delta`` of the composition of ``events`` under one accountant."""
    if any(isinstance(e, dpa.NonPrivateDpEvent) for e in events):
        return math.inf
    with quiet_accounting():
        return _compose(make_accountant(accountant), events, delta)


def _compose(acc: dpa.PrivacyAccountant, events: list[dpa.DpEvent], delta: float) -> float:
    with warnings.catch_warnings():
        # dp-accounting's PLD overflows harmlessly for events with negligible privacy loss.
        warnings.simplefilter("ignore", RuntimeWarning)
        for event in events:
            acc.compose(event)
        return float(acc.get_epsilon(delta))


class PrivacyLedger:
    """An append-only list of privacy events with one accountant over all of them.

    One ledger covers one population. The pipeline keeps one for the sensitive patients
    (the default ``name``) and, when the transfer table is a public clinical table, a second
    one for the transfer-data individuals (e.g. ``name="transfer individuals"``): the two
    never share entries and are reported separately, each with its own (ε, δ).
    """

    def __init__(self, *, delta: float, accountant: AccountantName = "pld",
                 name: str = "sensitive patients", formal: bool = True) -> None:
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1). Found {delta}.")
        make_accountant(accountant)
        self.delta = float(delta)
        self.accountant = accountant
        self.name = name
        # False when the run's DP noise followed a recorded seed (privacy.reproducible_noise):
        # the entries still say what was done, but nothing formal protects the patients.
        self.formal = bool(formal)
        # δ added outside the accountant by thresholded releases (DP category selection): the
        # guarantee's δ is ``delta + threshold_delta``.
        self.threshold_delta = 0.0
        self._entries: list[LedgerEntry] = []

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    def record(self, stage: str, event: dpa.DpEvent, description: str = "", *,
               threshold_delta: float = 0.0) -> None:
        """Record that ``stage`` ran the mechanism ``event`` on sensitive rows;
        ``threshold_delta`` is δ it adds outside the accountant (a thresholded release)."""
        self._entries.extend(entries_from_event(stage, event, description))
        self.threshold_delta += float(threshold_delta)

    @property
    def total_delta(self) -> float:
        """The δ of the guarantee: the accountant's plus any threshold δ."""
        return self.delta + self.threshold_delta

    @property
    def formal_guarantee(self) -> bool:
        return self.formal and all(e.mechanism != "non_private" for e in self._entries)

    def epsilon(self) -> float:
        """ε of everything recorded, at this ledger's δ (∞ if any stage is non-private).

        With reproducible noise this is what the entries would cost with secret noise; the
        run itself has no guarantee (``formal_guarantee`` is False)."""
        if not self._entries:
            return 0.0
        return epsilon_of([event_from_entry(e) for e in self._entries], self.delta, self.accountant)

    def epsilon_alone(self, entry: LedgerEntry) -> float:
        """ε of one entry on its own, at this ledger's δ (for the report's table)."""
        return epsilon_of([event_from_entry(entry)], self.delta, self.accountant)

    def summary_rows(self) -> list[dict]:
        """One plain row per entry, with the ε of that entry alone (∞ as ``None``).

        The keys are those of ``report.json["privacy"]["ledger"]`` plus ``description``:
        ``stage, mechanism, noise_multiplier, sample_rate, count, epsilon_alone``.
        """
        rows = []
        for entry in self._entries:
            row = asdict(entry)
            eps = self.epsilon_alone(entry)
            row["epsilon_alone"] = None if math.isinf(eps) else eps
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        """The ledger as plain data (``ledger.json``); ε is recomputable from ``entries``."""
        rows = self.summary_rows()
        eps = self.epsilon()
        return {"name": self.name, "unit": "patient", "accountant": self.accountant,
                "pld_value_discretization": PLD_DISCRETIZATION if self.accountant == "pld" else None,
                "neighbouring_relation": "add or remove one patient",
                "delta": self.delta, "threshold_delta": self.threshold_delta,
                "delta_total": self.total_delta, "epsilon": None if math.isinf(eps) else eps,
                "formal_guarantee": self.formal_guarantee,
                "noise_source": ("fresh OS entropy (ChaCha20), never recorded" if self.formal
                                 else "the recorded seed (privacy.reproducible_noise: testing only)"),
                "entries": rows}

    @classmethod
    def from_dict(cls, data: dict) -> PrivacyLedger:
        """Rebuild a ledger from ``to_dict`` output (used to recompute ε independently)."""
        formal = not str(data.get("noise_source", "")).startswith("the recorded seed")
        ledger = cls(delta=data["delta"], accountant=data["accountant"], name=data.get("name", ""),
                     formal=formal)
        ledger.threshold_delta = float(data.get("threshold_delta", 0.0))
        for row in data["entries"]:
            ledger._entries.append(LedgerEntry(
                stage=row["stage"], mechanism=row["mechanism"],
                noise_multiplier=row["noise_multiplier"], sample_rate=row["sample_rate"],
                count=int(row["count"]), description=row.get("description", "")))
        return ledger

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


__all__ = ["LedgerEntry", "PrivacyLedger", "entries_from_event", "epsilon_of",
           "event_from_entry", "make_accountant"]
