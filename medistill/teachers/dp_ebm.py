"""The DP-EBM teacher: interpret's ``DPExplainableBoostingClassifier`` with its ledger event.

What interpret does (read from ``interpret/utils/_preprocessor.py``, ``_privacy.py`` and
``glassbox/_ebm/_ebm.py`` / ``_boost.py``, interpret-core 0.7.8; see ``docs/teachers.md``):

1. **Binning** gets ``bin_budget_frac·ε`` and ``δ/2``. Every one of the F features gets a
   histogram (numeric: 2·(max_bins−1) equal bins between the declared bounds; categorical:
   one count per category seen) plus N(0, s_bin²) per bin, s_bin = √F / μ_bin, where μ_bin is
   the GDP parameter whose (ε, δ) curve passes through (bin_budget_frac·ε, δ/2). One patient
   (one row) moves one count of each histogram by 1: each histogram is a Gaussian mechanism
   with noise multiplier s_bin, composed F times.
2. **Boosting** gets the rest of ε and ``δ/2``: max_rounds × F × outer_bags term updates; each
   sums the learning-rate-scaled log-loss gradients (|g| ≤ 1) over the leaves of a randomly
   (data-independently) split feature and adds N(0, s²) per leaf, s = lr·√T / μ_boost. The
   denominators are the *noisy* bin counts from step 1, so no other count is read. One
   patient changes one leaf sum by at most lr: a Gaussian with noise multiplier √T / μ_boost,
   composed T times.

The ledger event is exactly that composition: two Gaussians (each part's k queries are one
Gaussian of multiplier σ/√k), which the PLD accountant composes tightly (μ = √(μ_bin² +
μ_boost²) GDP). interpret itself adds the two
parts' (ε, δ) (basic composition), which is looser, so :func:`calibrate_dp_ebm` hands
interpret a nominal ε a little above the target and the recorded event still meets it.

Two data dependences the event does not cover, both handled here: interpret reads the
data's min/max when a numeric feature has no bound (we refuse to fit without declared
bounds) and only noises categories *seen* in the data (we add one public "phantom" row per
category, weight 1e-9, so the histogram's domain is the declared one). A third, the
bin-merging threshold (the exact row count / max_bins), is moved onto a public row count
(:mod:`medistill.teachers.dp_ebm_binning`).

**Randomness:** interpret draws its noise from ``std::random_device`` (RDRAND / the OS) with
Google's secure Gaussian sampler whenever ``random_state`` is None; this module always
passes None, so no recorded seed reproduces the noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import dp_accounting as dpa
import numpy as np
import pandas as pd
from interpret.privacy import DPExplainableBoostingClassifier
from interpret.utils._privacy import calc_gdp_noise_multi

from medistill.data.schema import NUMERIC, TableSchema
from medistill.errors import TrainingError
from medistill.privacy.ledger import AccountantName, epsilon_of, make_accountant
from medistill.teachers.dp_ebm_binning import public_merge_target
from medistill.teachers.dp_inputs import DEFAULT_MAX_BINS, PublicEncoding

PHANTOM_WEIGHT = 1e-9


@dataclass(frozen=True)
class DPEBMSettings:
    """The DP-EBM's hyper-parameters (public; chosen before seeing data)."""

    max_rounds: int = 300
    learning_rate: float = 0.01
    max_bins: int = DEFAULT_MAX_BINS
    max_leaves: int = 3
    outer_bags: int = 1
    bin_budget_frac: float = 0.1

    def __post_init__(self) -> None:
        for name in ("max_rounds", "max_bins", "max_leaves", "outer_bags"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < (3 if name == "max_bins" else 1):
                raise ValueError(f"The '{name}' parameter of DPEBMSettings must be an int >= "
                                 f"{3 if name == 'max_bins' else 1}. Got {value!r} instead.")
        for name in ("learning_rate", "bin_budget_frac"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"The '{name}' parameter of DPEBMSettings must be a float in "
                                 f"the range (0, 1). Got {value!r} instead.")

    def n_boosting_queries(self, n_features: int) -> int:
        return self.max_rounds * n_features * self.outer_bags


def dp_ebm_event(*, n_features: int, binning_noise_multiplier: float,
                 n_boosting_queries: int, boosting_noise_multiplier: float) -> dpa.DpEvent:
    """The DP-EBM as dp-accounting sees it: the binning Gaussians, then the boosting ones.

    k Gaussian mechanisms of noise multiplier σ (sensitivity 1 each) compose to exactly one
    Gaussian of multiplier σ/√k (both are √k/σ-GDP; Dong, Roth & Su 2022, Cor. 3.3), so each
    part is recorded as one Gaussian: same privacy profile, and the accountant stays fast.
    """
    return dpa.ComposedDpEvent([
        dpa.GaussianDpEvent(binning_noise_multiplier / math.sqrt(n_features)),
        dpa.GaussianDpEvent(boosting_noise_multiplier / math.sqrt(n_boosting_queries))])


def interpret_noise_multipliers(*, epsilon: float, delta: float, n_features: int,
                                settings: DPEBMSettings) -> tuple[float, float]:
    """(binning, boosting) noise multipliers interpret will use for its ``epsilon``/``delta``.

    Computed with interpret's own function, exactly as its ``fit`` does (sample weights ≤ 1).
    """
    bin_eps = epsilon * settings.bin_budget_frac
    binning = float(calc_gdp_noise_multi(n_features, bin_eps, delta / 2))
    boosting = float(calc_gdp_noise_multi(settings.n_boosting_queries(n_features),
                                          epsilon - bin_eps, delta - delta / 2))
    return binning, boosting


def predicted_event(*, epsilon: float, delta: float, n_features: int,
                    settings: DPEBMSettings) -> dpa.DpEvent:
    """The event a DP-EBM fitted with interpret's ``epsilon``/``delta`` will record."""
    binning, boosting = interpret_noise_multipliers(epsilon=epsilon, delta=delta,
                                                    n_features=n_features, settings=settings)
    return dp_ebm_event(n_features=n_features, binning_noise_multiplier=binning,
                        n_boosting_queries=settings.n_boosting_queries(n_features),
                        boosting_noise_multiplier=boosting)


# max_bins the plan chooses from (public_max_bins), largest first; 32 is interpret's default.
MAX_BINS_CHOICES = (32, 16)


def public_max_bins(*, n_patients: int, epsilon: float, delta: float, n_features: int,
                    settings: DPEBMSettings = DPEBMSettings(),
                    accountant: AccountantName = "pld") -> int:
    """The largest of ``MAX_BINS_CHOICES`` whose bin-merging target holds at least one
    binning noise std, else the smallest.

    interpret merges its 2·(max_bins − 1) uniform bins until each holds n / (max_bins − 1)
    noisy patients; each uniform bin carries noise of std s_bin (the binning noise
    multiplier, sensitivity 1). When n / (max_bins − 1) < s_bin the bins are cut by noise:
    fewer, wider bins then hold more patients each (measured: `docs/design.md`, "The
    DP-EBM's bins"). ``n_patients`` must be public or charged (the plan passes the noisy
    training count), ``epsilon`` the DP-EBM's planned ε; the choice is post-processing of
    public quantities and does not change the ledger event.
    """
    nominal = calibrate_dp_ebm(epsilon=epsilon, delta=delta, n_features=n_features,
                               settings=settings, accountant=accountant)
    s_bin, _ = interpret_noise_multipliers(epsilon=nominal, delta=delta, n_features=n_features,
                                           settings=settings)
    for max_bins in MAX_BINS_CHOICES:
        if n_patients / (max_bins - 1) >= s_bin:
            return max_bins
    return MAX_BINS_CHOICES[-1]


def calibrate_dp_ebm(*, epsilon: float, delta: float, n_features: int,
                     settings: DPEBMSettings = DPEBMSettings(),
                     accountant: AccountantName = "pld") -> float:
    """interpret's ``epsilon`` parameter whose recorded event costs at most ``epsilon`` at
    ``delta`` (interpret's ``delta`` parameter is ``delta`` too).

    Uses ``dp_accounting.mechanism_calibration.calibrate_dp_mechanism``. With the PLD
    accountant the result is above ``epsilon`` (interpret's own basic composition is looser);
    with RDP, whose conversion to (ε, δ) is looser than the exact GDP one, it may be lower.
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive finite float. Got {epsilon!r} instead.")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1). Got {delta!r} instead.")

    def event(nominal: float) -> dpa.DpEvent:
        return predicted_event(epsilon=nominal, delta=delta, n_features=n_features,
                               settings=settings)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        nominal = dpa.mechanism_calibration.calibrate_dp_mechanism(
            lambda: make_accountant(accountant), event, epsilon, delta,
            bracket_interval=dpa.mechanism_calibration.ExplicitBracketInterval(
                epsilon / 4, 4 * epsilon), tol=1e-4 * epsilon)
    return float(nominal)


@dataclass
class DPEBMTeacher:
    """A fitted DP-EBM teacher. Its outputs are post-processing of ``event``.

    ``model`` is interpret's estimator (never released: it holds the exact row count in
    ``bag_weights_``); ``encoding`` maps feature frames to its inputs.
    """

    model: DPExplainableBoostingClassifier
    encoding: PublicEncoding
    settings: DPEBMSettings
    event: dpa.DpEvent
    nominal_epsilon: float
    nominal_delta: float
    noise_multipliers: tuple[float, float] = field(default=(math.nan, math.nan))

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        """Logits (log-odds of class 1) for the rows of ``frame``."""
        return np.asarray(self.model.decision_function(self.encoding.ebm_frame(frame)),
                          dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape (n_rows, 2)."""
        p1 = 1.0 / (1.0 + np.exp(-self.decision_function(frame)))
        return np.column_stack([1.0 - p1, p1])

    def epsilon(self, delta: float, accountant: AccountantName = "pld") -> float:
        """ε of this teacher alone at ``delta``."""
        return epsilon_of([self.event], delta, accountant)


def _phantom_rows(encoding: PublicEncoding) -> pd.DataFrame:
    """One public row per category of every categorical/binary feature (cycled), so that
    interpret's categorical histograms cover the declared domain, not the observed one."""
    schema = encoding.schema
    domains = {f.name: encoding.categories(f.name) for f in schema.features if f.kind != NUMERIC}
    n = max((len(d) for d in domains.values()), default=0)
    cols = {}
    for spec in schema.features:
        if spec.kind == NUMERIC:
            lo, hi = encoding.bounds[spec.name]
            cols[spec.name] = np.full(n, (lo + hi) / 2)
        else:
            domain = domains[spec.name]
            cols[spec.name] = np.array([domain[i % len(domain)] for i in range(n)], dtype=object)
    return pd.DataFrame(cols)


def _check_labels(labels: np.ndarray, schema: TableSchema) -> np.ndarray:
    labels = np.asarray(labels)
    if schema.n_classes != 2:
        raise TrainingError(f"The DP-EBM teacher supports binary outcomes only; the label "
                            f"'{schema.label}' has {schema.n_classes} classes.",
                            hint="Use the PATE teachers or the DP linear teacher instead.")
    if not np.isin(labels, (0, 1)).all() or len(np.unique(labels)) < 2:
        raise TrainingError(f"The DP-EBM teacher needs both classes 0 and 1 of '{schema.label}' "
                            "among its training rows.")
    return labels.astype(np.int64)


def fit_dp_ebm(features: pd.DataFrame, labels: np.ndarray, schema: TableSchema, *,
               epsilon: float, delta: float, bounds: Mapping[str, tuple[float, float]],
               public_rows: int, settings: DPEBMSettings = DPEBMSettings(),
               accountant: AccountantName = "pld", n_jobs: int = 1) -> DPEBMTeacher:
    """Fit a DP-EBM on one row per patient (the caller guarantees it) within (ε, δ).

    ``bounds`` are public ranges of every numeric feature (declared, or post-processed from
    charged marginals); values are clipped to them. ``public_rows`` is a public estimate of
    the number of rows (e.g. from the charged patient count): interpret's bin merging reads
    it instead of the exact count. The returned teacher's ``event`` costs at most
    ``epsilon`` at ``delta`` under ``accountant``.
    """
    encoding = PublicEncoding.build(schema, bounds, max_bins=settings.max_bins)
    labels = _check_labels(labels, schema)
    n_features = len(schema.features)
    nominal = calibrate_dp_ebm(epsilon=epsilon, delta=delta, n_features=n_features,
                               settings=settings, accountant=accountant)
    X = encoding.ebm_frame(features)
    weights = np.ones(len(X))
    phantom = _phantom_rows(encoding)
    if len(phantom):
        X = pd.concat([X, phantom], ignore_index=True)
        labels = np.concatenate([labels, np.arange(len(phantom)) % 2])
        weights = np.concatenate([weights, np.full(len(phantom), PHANTOM_WEIGHT)])
    model = DPExplainableBoostingClassifier(
        feature_names=schema.feature_names, feature_types=encoding.ebm_feature_types(),
        max_bins=settings.max_bins, max_rounds=settings.max_rounds,
        learning_rate=settings.learning_rate, max_leaves=settings.max_leaves,
        outer_bags=settings.outer_bags, validation_size=0, n_jobs=n_jobs,
        random_state=None, epsilon=nominal, delta=delta, composition="gdp",
        bin_budget_frac=settings.bin_budget_frac,
        privacy_bounds={name: (encoding.missing_slot(name)[0], hi)
                        for name, (_lo, hi) in encoding.bounds.items()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        public_total = max(1, int(public_rows)) + len(phantom) * PHANTOM_WEIGHT
        with public_merge_target(public_total, n_features=n_features):
            model.fit(X, labels, sample_weight=weights)
    leaks = [str(w.message) for w in caught if "privacy" in str(w.message).lower()]
    if leaks:  # interpret read something off the data: a bug here, never a user error
        raise RuntimeError(f"interpret reported a privacy violation: {leaks[0]}")
    binning = float(model.noise_scale_binning_)
    boosting = float(model.noise_scale_boosting_) / settings.learning_rate
    expected = interpret_noise_multipliers(epsilon=nominal, delta=delta, n_features=n_features,
                                           settings=settings)
    if not np.allclose((binning, boosting), expected, rtol=1e-9):
        raise RuntimeError(f"interpret used noise multipliers {(binning, boosting)}, not the "
                           f"planned {expected}; its DP code has changed: re-check the event.")
    event = dp_ebm_event(n_features=n_features, binning_noise_multiplier=binning,
                         n_boosting_queries=settings.n_boosting_queries(n_features),
                         boosting_noise_multiplier=boosting)
    return DPEBMTeacher(model, encoding, settings, event, nominal, delta, (binning, boosting))


__all__ = ["MAX_BINS_CHOICES", "DPEBMSettings", "DPEBMTeacher", "calibrate_dp_ebm",
           "dp_ebm_event", "fit_dp_ebm", "interpret_noise_multipliers", "predicted_event",
           "public_max_bins"]
