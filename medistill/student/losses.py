"""Distillation losses: soft targets at temperature T (with the T² scaling of Hinton et al.
2015) on transfer rows, ordinary cross-entropy on sensitive rows, mixed per example."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def mixed_loss(logits: torch.Tensor, target_probabilities: torch.Tensor,
               is_transfer: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Mean over the batch of KD on transfer rows and cross-entropy on sensitive rows.

    Sensitive rows carry one-hot targets, so their term is the ordinary cross-entropy.
    The α mix is the share of transfer rows in the data (see ``docs/design.md``).
    """
    kd = kd_loss(logits, target_probabilities, temperature)
    ce = -(target_probabilities * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    per_example = torch.where(is_transfer, kd, ce)
    return per_example.mean()


__all__ = ["kd_loss", "mixed_loss", "soften"]
