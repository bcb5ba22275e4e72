"""Noisy aggregation of teacher votes into labels for transfer rows, with privacy events.

Each aggregator is a class with declared parameters (validated in the constructor, with
sklearn-style messages), an ``aggregate`` method and a ``privacy_events()`` method returning
the dp-accounting event of everything it has answered so far. All accounting here is
**data-independent**: it holds for every pair of neighbouring datasets, whatever the votes.
Data-dependent PATE accounting (Papernot et al., 2018) is deliberately not implemented — it
may only be released through smooth sensitivity, which is out of scope.

The neighbouring relation is *add or remove one patient*. Teacher partitions are a keyed
hash of the patient id (:mod:`medistill.teachers.ensemble`), so one patient changes the
training data — hence possibly the output — of exactly one teacher. Sensitivities below are
with respect to that one teacher's change. Proofs are in ``docs/privacy.md``.

| aggregator | input | per query | sensitivity | dp-accounting event per query |
|---|---|---|---|---|
| ``PluralityVote`` | votes | argmax, no noise | — | ``NonPrivateDpEvent`` (ε = ∞) |
| ``LNMax(scale=b)`` | votes | argmax(n + Lap(b)^C) | two counts move by 1 | 2 × ``LaplaceDpEvent(b)`` |
| ``GNMax(sigma)`` | votes | argmax(n + N(0, σ²)^C) | L2 √2 | ``GaussianDpEvent(σ/√2)`` |
| ``ConfidentGNMax`` | votes | max(n) + N(0, σ₁²) ≥ T ? GNMax(σ₂) : ⊥ | 1 (max), √2 | ``GaussianDpEvent(σ₁)`` + ``GaussianDpEvent(σ₂/√2)`` |
| ``NoisySoftVotes(sigma)`` | probabilities | normalise(clip(Σ_k p_k + N(0, σ²)^C)) | L2 √2 | ``GaussianDpEvent(σ/√2)`` |

Instances count the queries of every ``aggregate`` call; ``privacy_events()`` covers all of
them, so record it in the ledger once, after the last call.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import dp_accounting as dpa
import numpy as np

from medistill.errors import NotFittedError

VOTE_L2_SENSITIVITY = math.sqrt(2.0)
"""L2 distance between the vote histograms (or summed probability vectors) of neighbours."""
MAX_COUNT_SENSITIVITY = 1.0
"""How much max_j n_j can change when one teacher changes its vote (Confident-GNMax check)."""
ABSTAIN = -1
"""The label of a query Confident-GNMax did not answer (with ``on_unanswered="abstain"``)."""


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class Param:
    """A declared parameter: a number in an interval, or one of a few strings."""

    kind: type = float
    low: float = -math.inf
    high: float = math.inf
    closed: Literal["neither", "left", "right", "both"] = "neither"
    options: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind is str:
            return "a str among {" + ", ".join(repr(o) for o in self.options) + "}"
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        noun = "an int" if self.kind is int else "a float"
        return f"{noun} in the range {left}{_num(self.low)}, {_num(self.high)}{right}"

    def accepts(self, value: Any) -> bool:
        if self.kind is str:
            return isinstance(value, str) and value in self.options
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if math.isnan(value):
            return False
        above = value >= self.low if self.closed in ("left", "both") else value > self.low
        below = value <= self.high if self.closed in ("right", "both") else value < self.high
        return above and below


def _num(x: float) -> str:
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"


def _repeat(event: dpa.DpEvent, count: int) -> dpa.DpEvent:
    if count < 0:
        raise ValueError(f"The number of queries must be a non-negative int. Got {count!r}.")
    if count == 0:
        return dpa.NoOpDpEvent()
    return event if count == 1 else dpa.SelfComposedDpEvent(event, int(count))


class Aggregator:
    """Base class: declared parameters, validation, query counting.

    Class attributes for callers (e.g. the pipeline):

    - ``name``: the key of :func:`make_aggregator`;
    - ``input``: ``"votes"`` (``aggregate`` takes the vote histogram [n, C]) or
      ``"probabilities"`` (it takes the teachers' probabilities [K, n, C]);
    - ``soft_labels``: whether ``aggregate`` returns probabilities [n, C] or class codes [n];
    - ``formal_guarantee``: whether the events are differentially private.
    """

    name: ClassVar[str]
    parameters: ClassVar[dict[str, Param]] = {}
    input: ClassVar[Literal["votes", "probabilities"]] = "votes"
    soft_labels: ClassVar[bool] = False
    formal_guarantee: ClassVar[bool] = True
    needs_rng: ClassVar[bool] = True

    def __init__(self, *, rng: np.random.Generator | None = None, **params: Any) -> None:
        cls = type(self).__name__
        for key, spec in self.parameters.items():
            value = params[key]
            if not spec.accepts(value):
                raise ValueError(f"The '{key}' parameter of {cls} must be {spec.describe()}. "
                                 f"Got {value!r} instead.")
            setattr(self, key, spec.kind(value))
        if self.needs_rng and not isinstance(rng, np.random.Generator):
            raise ValueError(f"The 'rng' parameter of {cls} must be an instance of "
                             f"numpy.random.Generator. Got {rng!r} instead.")
        self.rng = rng

    def get_params(self) -> dict[str, Any]:
        """The declared parameters and their values (for reports and ledger descriptions)."""
        return {key: getattr(self, key) for key in self.parameters}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- counting and events
    def _count(self, n: int) -> None:
        self.n_queries_ = getattr(self, "n_queries_", 0) + int(n)

    def _require_queries(self) -> int:
        if not hasattr(self, "n_queries_"):
            raise NotFittedError(f"{type(self).__name__} has answered no queries yet; call "
                                 "aggregate first.")
        return self.n_queries_

    def planned_event(self, n_queries: int) -> dpa.DpEvent:
        """The event ``n_queries`` queries at this instance's parameters will cost (planning)."""
        raise NotImplementedError

    def privacy_events(self) -> dpa.DpEvent:
        """The event of every query answered so far (data-independent accounting)."""
        return self.planned_event(self._require_queries())

    def aggregate(self, data: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _check_votes(vote_histogram: np.ndarray, owner: str) -> np.ndarray:
    """A vote histogram [n, C]: non-negative integer counts, the same total in every row.

    The sensitivity analysis assumes each row is one vote per teacher; anything else (e.g.
    summed probabilities) would void it, so it is refused.
    """
    votes = np.asarray(vote_histogram, dtype=float)
    if votes.ndim != 2 or votes.shape[1] < 2:
        raise ValueError(f"{owner}.aggregate expects a vote histogram of shape [n_rows, "
                         f"n_classes ≥ 2]. Got shape {votes.shape} instead.")
    if len(votes) and (not np.all(np.isfinite(votes)) or votes.min() < 0
                       or not np.array_equal(votes, np.round(votes))
                       or np.ptp(votes.sum(axis=1)) != 0):
        raise ValueError(f"{owner}.aggregate expects vote counts: non-negative integers with "
                         "the same total (the number of teachers) in every row.")
    return votes


def _check_probabilities(teacher_probabilities: np.ndarray, owner: str) -> np.ndarray:
    """Teachers' probabilities [K, n, C], each vector projected onto the simplex.

    The √2 sensitivity needs every teacher's vector to lie on the probability simplex, so
    negative entries are clipped and each vector renormalised (uniform if it sums to 0);
    this projection depends on one teacher's output only and so cannot raise sensitivity.
    """
    probs = np.asarray(teacher_probabilities, dtype=float)
    if probs.ndim != 3 or probs.shape[2] < 2:
        raise ValueError(f"{owner}.aggregate expects teacher probabilities of shape "
                         f"[n_teachers, n_rows, n_classes ≥ 2]. Got shape {probs.shape} instead.")
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{owner}.aggregate expects finite teacher probabilities.")
    probs = np.clip(probs, 0.0, None)
    total = probs.sum(axis=2, keepdims=True)
    uniform = np.full_like(probs, 1.0 / probs.shape[2])
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0), uniform)


# --------------------------------------------------------------------------- aggregators

class PluralityVote(Aggregator):
    """The noiseless plurality vote: no formal guarantee (ε = ∞); only with allow_nonprivate."""

    name = "plurality"
    formal_guarantee = False
    needs_rng = False

    def __init__(self, *, rng: np.random.Generator | None = None) -> None:
        super().__init__(rng=rng)

    def aggregate(self, vote_histogram: np.ndarray) -> np.ndarray:
        votes = _check_votes(vote_histogram, type(self).__name__)
        self._count(len(votes))
        self.answered_ = np.ones(len(votes), dtype=bool)
        return votes.argmax(axis=1)

    @staticmethod
    def event_for(n_queries: int) -> dpa.DpEvent:
        return dpa.NonPrivateDpEvent() if n_queries > 0 else dpa.NoOpDpEvent()

    def planned_event(self, n_queries: int) -> dpa.DpEvent:
        return self.event_for(n_queries)

    def privacy_events(self) -> dpa.DpEvent:
        # Non-private whether or not it has answered yet: the run has no formal guarantee.
        return dpa.NonPrivateDpEvent()


class GNMax(Aggregator):
    """Gaussian NoisyMax (Papernot et al., ICLR 2018): argmax of votes + N(0, σ²) per class.

    Adding or removing one patient changes one teacher's vote: the histogram moves by at most
    √2 in L2, so each answered query is a Gaussian mechanism with noise multiplier σ/√2
    (RDP λ/σ² at order λ).
    """

    name = "gnmax"
    parameters = {"sigma": Param(float, 0.0, math.inf)}

    def __init__(self, *, sigma: float, rng: np.random.Generator) -> None:
        super().__init__(rng=rng, sigma=sigma)

    def aggregate(self, vote_histogram: np.ndarray) -> np.ndarray:
        """Noisy-argmax label per row; counts the queries answered."""
        votes = _check_votes(vote_histogram, type(self).__name__)
        noisy = votes + self.rng.normal(0.0, self.sigma, size=votes.shape)
        self._count(len(votes))
        self.answered_ = np.ones(len(votes), dtype=bool)
        return noisy.argmax(axis=1)

    @staticmethod
    def event_for(sigma: float, n_queries: int) -> dpa.DpEvent:
        return _repeat(dpa.GaussianDpEvent(sigma / VOTE_L2_SENSITIVITY), n_queries)

    def planned_event(self, n_queries: int) -> dpa.DpEvent:
        return self.event_for(self.sigma, n_queries)


class LNMax(Aggregator):
    """Laplace NoisyMax (Papernot et al., ICLR 2017): argmax of votes + Lap(b) per class.

    ``scale`` is the Laplace scale b (the 2017 paper's 1/γ). One teacher changing its vote
    moves exactly two counts, one down and one up, by 1 each; the noise is independent per
    class, so releasing the whole noisy histogram has exactly the privacy loss of two 1-D
    Laplace mechanisms of sensitivity 1 and scale b, i.e. two ``LaplaceDpEvent(b)`` (in
    dp-accounting, ``LaplaceDpEvent(noise_multiplier)`` is scale / L1-sensitivity). The
    argmax is post-processing of it. Pure DP: ε = 2/b per query — the same as the textbook
    L1 analysis (sensitivity 2, ``LaplaceDpEvent(b/2)``), but the two-coordinate event is
    tighter when queries compose under (ε, δ).
    """

    name = "lnmax"
    parameters = {"scale": Param(float, 0.0, math.inf)}

    def __init__(self, *, scale: float, rng: np.random.Generator) -> None:
        super().__init__(rng=rng, scale=scale)

    def aggregate(self, vote_histogram: np.ndarray) -> np.ndarray:
        votes = _check_votes(vote_histogram, type(self).__name__)
        noisy = votes + self.rng.laplace(0.0, self.scale, size=votes.shape)
        self._count(len(votes))
        self.answered_ = np.ones(len(votes), dtype=bool)
        return noisy.argmax(axis=1)

    @staticmethod
    def event_for(scale: float, n_queries: int) -> dpa.DpEvent:
        # Per query: the two moved counts, each a Laplace mechanism of sensitivity 1.
        return _repeat(dpa.LaplaceDpEvent(scale), 2 * n_queries)

    def planned_event(self, n_queries: int) -> dpa.DpEvent:
        return self.event_for(self.scale, n_queries)


class ConfidentGNMax(Aggregator):
    """Confident-GNMax (Papernot et al., ICLR 2018, Alg. 1): answer only confident queries.

    Per query: if max_j n_j + N(0, σ₁²) ≥ T, answer with GNMax at σ₂; otherwise do not
    answer (``on_unanswered="drop"``: the row is left out of the returned labels;
    ``"abstain"``: its label is :data:`ABSTAIN`). ``answered_`` is the boolean mask of the
    rows answered by the last call.

    Accounting (data-independent, conservative): the threshold check is a Gaussian mechanism
    on max_j n_j, whose sensitivity is 1 (one vote moving changes every count by at most 1,
    and max is 1-Lipschitz in the sup norm) — noise multiplier σ₁, RDP λ/(2σ₁²). Whether
    GNMax then runs is decided by the check's released outcome, so by adaptive composition
    each query costs at most check + GNMax; every query is charged both, answered or not
    (the number answered depends on the data and must not set the charge).
    """

    name = "confident_gnmax"
    parameters = {"sigma1": Param(float, 0.0, math.inf),
                  "threshold": Param(float, 0.0, math.inf, closed="left"),
                  "sigma2": Param(float, 0.0, math.inf),
                  "on_unanswered": Param(str, options=("drop", "abstain"))}

    def __init__(self, *, sigma1: float, threshold: float, sigma2: float,
                 rng: np.random.Generator, on_unanswered: str = "drop") -> None:
        super().__init__(rng=rng, sigma1=sigma1, threshold=threshold, sigma2=sigma2,
                         on_unanswered=on_unanswered)

    def aggregate(self, vote_histogram: np.ndarray) -> np.ndarray:
        """Labels of the answered rows ("drop"), or of all rows with ABSTAIN ("abstain")."""
        votes = _check_votes(vote_histogram, type(self).__name__)
        check = votes.max(axis=1) + self.rng.normal(0.0, self.sigma1, size=len(votes))
        answered = check >= self.threshold
        noisy = votes[answered] + self.rng.normal(0.0, self.sigma2,
                                                  size=(int(answered.sum()), votes.shape[1]))
        self._count(len(votes))
        self.answered_ = answered
        self.n_answered_ = getattr(self, "n_answered_", 0) + int(answered.sum())
        labels = noisy.argmax(axis=1)
        if self.on_unanswered == "drop":
            return labels
        full = np.full(len(votes), ABSTAIN, dtype=labels.dtype)
        full[answered] = labels
        return full

    @staticmethod
    def event_for(sigma1: float, sigma2: float, n_queries: int) -> dpa.DpEvent:
        if n_queries == 0:
            return dpa.NoOpDpEvent()
        return dpa.ComposedDpEvent([
            _repeat(dpa.GaussianDpEvent(sigma1 / MAX_COUNT_SENSITIVITY), n_queries),
            GNMax.event_for(sigma2, n_queries)])

    def planned_event(self, n_queries: int) -> dpa.DpEvent:
        return self.event_for(self.sigma1, self.sigma2, n_queries)


class NoisySoftVotes(Aggregator):
    """Noisy soft votes: Σ_k p_k + N(0, σ²) per class, clipped at 0 and normalised.

    Each teacher contributes its probability vector p_k on the simplex. One patient changes
    one teacher's vector from p to q, and ||p − q||₂ ≤ √2 on the simplex, so the noisy sum
    is a Gaussian mechanism with noise multiplier σ/√2 per query — the same event as GNMax.
    Clipping and normalising are post-processing; an all-zero row becomes uniform.
    """

    name = "soft_votes"
    parameters = {"sigma": Param(float, 0.0, math.inf)}
    input = "probabilities"
    soft_labels = True

    def __init__(self, *, sigma: float, rng: np.random.Generator) -> None:
        super().__init__(rng=rng, sigma=sigma)

    def aggregate(self, teacher_probabilities: np.ndarray) -> np.ndarray:
        """Soft labels [n_rows, n_classes] from probabilities [n_teachers, n_rows, n_classes]."""
        probs = _check_probabilities(teacher_probabilities, type(self).__name__)
        total = probs.sum(axis=0)
        noisy = np.clip(total + self.rng.normal(0.0, self.sigma, size=total.shape), 0.0, None)
        self._count(len(total))
        self.answered_ = np.ones(len(total), dtype=bool)
        mass = noisy.sum(axis=1, keepdims=True)
        uniform = np.full_like(noisy, 1.0 / noisy.shape[1])
        return np.where(mass > 0, noisy / np.where(mass > 0, mass, 1.0), uniform)

    @staticmethod
    def event_for(sigma: float, n_queries: int) -> dpa.DpEvent:
        return GNMax.event_for(sigma, n_queries)

    def planned_event(self, n_queries: int) -> dpa.DpEvent:
        return self.event_for(self.sigma, n_queries)


AGGREGATORS: dict[str, type[Aggregator]] = {
    cls.name: cls for cls in (PluralityVote, LNMax, GNMax, ConfidentGNMax, NoisySoftVotes)}


def make_aggregator(name: str, *, sigma: float | None = None,
                    rng: np.random.Generator | None = None, **params: Any) -> Aggregator:
    """An aggregator by name; ``sigma`` is its main noise scale.

    ``sigma`` is σ for ``gnmax`` and ``soft_votes``, σ₂ (the GNMax step) for
    ``confident_gnmax`` (which also needs ``sigma1`` and ``threshold``, and takes
    ``on_unanswered``), the Laplace scale b for ``lnmax``, and must be left out for
    ``plurality``. Other ``params`` go to the class and are validated there.
    """
    if name not in AGGREGATORS:
        raise ValueError(f"The 'name' parameter of make_aggregator must be a str among "
                         f"{{{', '.join(repr(n) for n in AGGREGATORS)}}}. Got {name!r} instead.")
    cls = AGGREGATORS[name]
    if cls is PluralityVote:
        if sigma is not None or params:
            raise ValueError("The 'plurality' aggregator takes no parameters (it adds no "
                             f"noise). Got sigma={sigma!r} and {params!r} instead.")
        return PluralityVote(rng=rng)
    if sigma is None:
        raise ValueError(f"make_aggregator({name!r}) needs 'sigma', its noise scale.")
    key = {"lnmax": "scale", "confident_gnmax": "sigma2"}.get(name, "sigma")
    if key in params:
        raise ValueError(f"make_aggregator({name!r}): give the noise scale as 'sigma', not "
                         f"{key!r}.")
    allowed = set(cls.parameters) - {key}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"make_aggregator({name!r}) got unexpected parameters {unknown}; "
                         f"it accepts sigma, rng and {sorted(allowed) or 'nothing else'}.")
    missing = sorted(k for k in allowed - set(params)
                     if k not in ("on_unanswered",))
    if missing:
        raise ValueError(f"make_aggregator({name!r}) needs the parameters {missing}.")
    return cls(rng=rng, **{key: sigma}, **params)


__all__ = ["ABSTAIN", "AGGREGATORS", "Aggregator", "ConfidentGNMax", "GNMax", "LNMax",
           "MAX_COUNT_SENSITIVITY", "NoisySoftVotes", "Param", "PluralityVote",
           "VOTE_L2_SENSITIVITY", "make_aggregator"]
