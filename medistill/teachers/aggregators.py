"""Noisy aggregation of teacher votes into labels for transfer rows, with privacy events."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np

from medistill.errors import NotFittedError

VOTE_L2_SENSITIVITY = math.sqrt(2.0)


class GNMax:
    """Gaussian NoisyMax (Papernot et al., ICLR 2018): argmax of votes + N(0, σ²) per class.

    Adding or removing one patient changes one teacher's vote: the histogram moves by at most
    √2 in L2, so each answered query is a Gaussian mechanism with noise multiplier σ/√2
    (RDP λ/σ² at order λ).
    """

    name = "gnmax"

    def __init__(self, *, sigma: float, rng: np.random.Generator) -> None:
        if not sigma > 0:
            raise ValueError(f"The 'sigma' parameter of GNMax must be a float in the range "
                             f"(0, inf). Got {sigma!r} instead.")
        self.sigma = float(sigma)
        self.rng = rng

    def aggregate(self, vote_histogram: np.ndarray) -> np.ndarray:
        """Noisy-argmax label per row; records how many queries were answered."""
        noisy = vote_histogram + self.rng.normal(0.0, self.sigma, size=vote_histogram.shape)
        self.n_queries_ = len(vote_histogram)
        return noisy.argmax(axis=1)

    @staticmethod
    def event_for(sigma: float, n_queries: int) -> dpa.DpEvent:
        return dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(sigma / VOTE_L2_SENSITIVITY), n_queries)

    def privacy_events(self) -> dpa.DpEvent:
        if not hasattr(self, "n_queries_"):
            raise NotFittedError("GNMax has answered no queries yet; call aggregate first.")
        return self.event_for(self.sigma, self.n_queries_)


class PluralityVote:
    """The noiseless plurality vote: no formal guarantee (ε = ∞); only with allow_nonprivate."""

    name = "plurality"

    def aggregate(self, vote_histogram: np.ndarray) -> np.ndarray:
        self.n_queries_ = len(vote_histogram)
        return vote_histogram.argmax(axis=1)

    def privacy_events(self) -> dpa.DpEvent:
        return dpa.NonPrivateDpEvent()


__all__ = ["GNMax", "PluralityVote", "VOTE_L2_SENSITIVITY"]
