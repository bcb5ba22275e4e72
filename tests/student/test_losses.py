import math

import pytest
import torch

from medistill.student.losses import kd_loss, mixed_loss, soften


def test_kd_loss_against_hand_computed_value() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    targets = torch.tensor([[0.75, 0.25]])
    t = 2.0
    # softened targets: p^(1/2) normalised; student softmax(z/2).
    pt = [math.sqrt(0.75), math.sqrt(0.25)]
    pt = [v / sum(pt) for v in pt]
    q = [math.exp(1.0) / (math.exp(1.0) + 1.0), 1.0 / (math.exp(1.0) + 1.0)]
    expected = -(pt[0] * math.log(q[0]) + pt[1] * math.log(q[1])) * t**2
    assert kd_loss(logits, targets, t).item() == pytest.approx(expected, rel=1e-6)


def test_temperature_one_is_soft_cross_entropy() -> None:
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(torch.randn(5, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    expected = -(probs * torch.log_softmax(logits, dim=1)).sum(dim=1)
    assert torch.allclose(kd_loss(logits, probs, 1.0), expected)
    assert torch.allclose(soften(probs, 1.0), probs)


def test_mix_reduces_to_pure_losses_at_the_ends() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 2, generator=gen)
    labels = torch.randint(0, 2, (8,), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 2).float()
    soft = torch.softmax(torch.randn(8, 2, generator=gen), dim=1)
    # α = 0: only sensitive rows → ordinary cross-entropy.
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert mixed_loss(logits, onehot, torch.zeros(8, dtype=torch.bool), temperature=3.0).item() \
        == pytest.approx(ce.item(), rel=1e-6)
    # α = 1: only transfer rows → pure KD.
    kd = kd_loss(logits, soft, 3.0).mean()
    assert mixed_loss(logits, soft, torch.ones(8, dtype=torch.bool), temperature=3.0).item() \
        == pytest.approx(kd.item(), rel=1e-6)
