"""Distillation losses: soft targets at temperature T (with the T² scaling of Hinton et al.
2015) on transfer rows, ordinary cross-entropy on sensitive rows, mixed per example."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soften(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Target probabilities at temperature T: p^(1/T), renormalised (T = 1 leaves them)."""
    if temperature == 1.0:
        return probabilities
    logp = torch.log(probabilities.clamp_min(1e-12)) / temperature
    return torch.softmax(logp, dim=-1)


def kd_loss(logits: torch.Tensor, target_probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-example T²·CE(softmax(z/T), soften(p, T)); equals KL up to the targets' entropy."""
    targets = soften(target_probabilities, temperature)
    log_q = F.log_softmax(logits / temperature, dim=-1)
    return -(targets * log_q).sum(dim=-1) * temperature**2


def per_example_loss(logits: torch.Tensor, target_probabilities: torch.Tensor,
                     is_transfer: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Per-example KD (transfer rows) or cross-entropy (sensitive rows), shape [n]."""
    kd = kd_loss(logits, target_probabilities, temperature)
    ce = -(target_probabilities * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    return torch.where(is_transfer, kd, ce)


def mixed_loss(logits: torch.Tensor, target_probabilities: torch.Tensor,
               is_transfer: torch.Tensor, *, temperature: float,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of KD on transfer rows and cross-entropy on sensitive rows.

    Sensitive rows carry one-hot targets, so their term is the ordinary cross-entropy.
    The α mix is the share of transfer rows in the data (see ``docs/design.md``);
    ``weights`` (per example, at most 1) reshape it during training (``alpha_weights``).
    """
    per_example = per_example_loss(logits, target_probabilities, is_transfer,
                                   temperature=temperature)
    if weights is not None:
        per_example = per_example * weights
    return per_example.mean()


class StudentCriterion(nn.Module):
    """``mixed_loss`` as a criterion with a ``reduction`` attribute ("mean", "sum" or
    "none"), which Opacus's ghost clipping needs: it calls it with ``reduction = "none"``
    to get the per-example losses."""

    def __init__(self, temperature: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = temperature
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, is_transfer: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.reduction == "mean":
            return mixed_loss(logits, targets, is_transfer, temperature=self.temperature,
                              weights=weights)
        per_example = per_example_loss(logits, targets, is_transfer,
                                       temperature=self.temperature)
        if weights is not None:
            per_example = per_example * weights
        return per_example if self.reduction == "none" else per_example.sum()


def alpha_weights(alpha_data: float, alpha_effective: float) -> tuple[float, float]:
    """Per-example loss weights (transfer, sensitive) that turn a data mix with a share
    ``alpha_data`` of transfer rows into an effective mix ``alpha_effective``.

    The group that should count less is down-weighted; no weight exceeds 1 (a weight above 1
    would be undone by per-sample clipping). Equal shares give (1, 1): the plain data mix.
    """
    if not 0.0 < alpha_data < 1.0 or alpha_effective == alpha_data:
        return 1.0, 1.0
    odds_data = alpha_data / (1.0 - alpha_data)
    if alpha_effective < alpha_data:
        return alpha_effective / (1.0 - alpha_effective) / odds_data, 1.0
    return 1.0, (1.0 - alpha_effective) / alpha_effective * odds_data


__all__ = ["StudentCriterion", "alpha_weights", "kd_loss", "mixed_loss", "per_example_loss",
           "soften"]
