"""Load the sensitive records, split them by patient, and release the counts the plan needs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from medistill.config import PipelineConfig
from medistill.data.categories import apply_categories, select_categories
from medistill.data.splits import PatientSplit, one_row_per_patient, split_patients
from medistill.data.table import SensitiveData, load_sensitive
from medistill.plan import RunFacts
from medistill.privacy.ledger import PrivacyLedger
from medistill.privacy.randomness import Randomness
from medistill.privacy.stages import fixed_noise, stage


@dataclass(frozen=True)
class Prepared:
    """The sensitive data split by patient, the DP stages' rows, and the run's ledger.

    ``dp_rows`` index one row per training patient into the train split (canary patients
    left out of training are not among them); ``canary_rows`` / ``canary_in`` are the
    one-run audit's canaries (train-split indices, and whether each entered DP-SGD).
    """

    data: SensitiveData
    split: PatientSplit
    train_X: pd.DataFrame
    train_y: np.ndarray
    train_ids: np.ndarray
    dp_rows: np.ndarray
    canary_rows: np.ndarray
    canary_in: np.ndarray
    ledger: PrivacyLedger
    facts: RunFacts

    @property
    def n_train_patients(self) -> int:
        return len(np.unique(self.train_ids))


def public_delta(n_patients_noisy: int) -> float:
    """δ from a public bound: the power of ten at most 1/(10·n), n rounded up to a power of
    ten (a coarse function of a noisy count, never of the exact one)."""
    digits = math.ceil(math.log10(max(n_patients_noisy, 10)))
    return 10.0 ** -(digits + 1)


def noisy_class_counts(labels_per_patient: np.ndarray, n_classes: int, *, noise: float,
                       rng: np.random.Generator) -> tuple[int, ...]:
    """Per-class patient counts plus Gaussian noise of std ``noise`` (L2 sensitivity 1:
    adding a patient adds one to one class), rounded and floored at 0."""
    counts = np.bincount(labels_per_patient, minlength=n_classes).astype(float)
    noisy = counts + rng.normal(0.0, noise, size=counts.shape)
    return tuple(int(max(0, round(c))) for c in noisy)


def _choose_categories(config: PipelineConfig, data: SensitiveData, split: PatientSplit,
                       train_X: pd.DataFrame, dp_rows: np.ndarray, ledger: PrivacyLedger,
                       randomness: Randomness):
    """Declared category lists, or a charged DP threshold on training patients' counts;
    the whole table is restricted to them (other values become unknown)."""
    selection = select_categories(
        train_X.iloc[dp_rows], data.schema, declared=dict(config.transfer.categories),
        delta=ledger.delta, rng=randomness.privacy("category_selection"),
        floor=config.data.min_category_count,
        noise=fixed_noise("category_selection", config.privacy.target_epsilon, ledger.delta,
                          config.privacy.accountant))
    if selection.event is not None:
        derived = [c for c in selection.categories if c not in selection.declared]
        ledger.record("category_selection", selection.event,
                      f"noisy patient counts of the categories of {', '.join(derived)}; kept "
                      f"those above {selection.threshold:.0f}",
                      threshold_delta=selection.threshold_delta)
    if not selection.categories:
        return data, train_X, selection.event
    features, schema = apply_categories(data.features, data.schema, selection.categories)
    caveats = tuple(c for c in data.caveats if not c.startswith("Category lists of "))
    emptied = [c for c, kept in selection.categories.items() if not kept]
    if emptied:
        caveats += (f"No category of {', '.join(emptied)} has enough patients to pass the DP "
                    "threshold at this budget, so the column was left out; declare its "
                    "categories (transfer.categories) to keep it.",)
    data = replace(data, features=features, schema=schema, caveats=caveats)
    return data, data.rows(split.train)[0], selection.event


def prepare(config: PipelineConfig, randomness: Randomness) -> Prepared:
    """Load, split by keyed hash, pick one row per patient and release the noisy counts."""
    data = load_sensitive(config.data, seed=config.seed)
    split = split_patients(data.patient_ids, test=config.split.test,
                           holdout=config.split.holdout, key=randomness.secret_key("split"))
    train_X, train_y, train_ids = data.rows(split.train)
    dp_rows = one_row_per_patient(train_ids, key=randomness.secret_key("rows"))
    target, accountant = config.privacy.target_epsilon, config.privacy.accountant
    # δ is not known before the count: calibrate at a small provisional δ (more noise).
    count_noise = fixed_noise("patient_counts", target, config.privacy.delta or 1e-7, accountant)
    counts = noisy_class_counts(train_y[dp_rows], data.schema.n_classes, noise=count_noise,
                                rng=randomness.privacy("patient_counts"))
    delta = config.privacy.delta or public_delta(sum(counts))
    ledger = PrivacyLedger(delta=delta, accountant=config.privacy.accountant,
                           formal=randomness.formal_guarantee)
    spent = []
    for name, event, what in data.privacy_events:   # charged by the loader (OMOP concepts)
        ledger.record(name, event, what)
        spent.append(event)
    count_event = stage("patient_counts").event(count_noise, None)
    ledger.record("patient_counts", count_event,
                  f"noisy per-class counts of training patients (std {count_noise:.3g})")
    spent.append(count_event)
    data, train_X, event = _choose_categories(config, data, split, train_X, dp_rows, ledger,
                                              randomness)
    if event is not None:
        spent.append(event)
    facts = RunFacts(schema=data.schema, class_counts=counts, delta=delta, spent=tuple(spent))
    return Prepared(data=data, split=split, train_X=train_X, train_y=train_y,
                    train_ids=train_ids, dp_rows=dp_rows, canary_rows=np.empty(0, np.int64),
                    canary_in=np.empty(0, bool), ledger=ledger, facts=facts)


def with_canaries(prepared: Prepared, n_canaries: int, rng: np.random.Generator) -> Prepared:
    """One-run audit (Steinke et al. 2023): ``n_canaries`` training patients are canaries,
    each entering DP-SGD with probability ½ (drawn from ``rng``, a privacy generator); the
    excluded half is left out of every DP stage."""
    if n_canaries < 20 or n_canaries > len(prepared.dp_rows):
        return prepared
    rows = rng.choice(prepared.dp_rows, size=n_canaries, replace=False)
    included = rng.random(n_canaries) < 0.5
    dp_rows = np.setdiff1d(prepared.dp_rows, rows[~included])
    return replace(prepared, dp_rows=dp_rows, canary_rows=rows, canary_in=included)


__all__ = ["Prepared", "noisy_class_counts", "prepare", "public_delta", "with_canaries"]
