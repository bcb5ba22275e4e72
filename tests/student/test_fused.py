"""``grad_sample_mode: auto`` → ``fused``, and the per-run check of fused clipping against
Opacus's own per-sample gradients and clipping (``verify_against_opacus``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medistill.config import StudentConfig
from medistill.errors import TrainingError
from medistill.student import fused
from medistill.student import train as train_module
from medistill.student.fused import CLIPPING_CHECK_TOLERANCE, verify_against_opacus
from medistill.student.model import StudentMLP
from medistill.student.train import resolve_grad_sample_mode, train_student


def _toy(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 6)) * 3).astype(np.float32)       # some rows beyond the clamp
    y = (x[:, 0] + rng.normal(size=n) > 0).astype(np.int64)
    return x, y, rng.random(n) < 0.3


def _probe(n: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen) * 3
    y = torch.softmax(torch.randn(n, 2, generator=gen), 1)
    t = torch.rand(n, generator=gen) < 0.4
    w = torch.rand(n, generator=gen)
    return StudentMLP(6, 2, (8, 5), generator=gen), x, y, t, w


# ------------------------------------------------------------------------- broken variants

def _no_bias_term(model, per_example_loss, inputs, outputs, max_grad_norm):
    """The fused clipping with a plausible bug: the bias is left out of the norm."""
    backprops = torch.autograd.grad(per_example_loss.sum(), outputs)
    squared = sum((g * g).sum(1) * (a * a).sum(1) for a, g in zip(inputs, backprops, strict=True))
    norms = squared.sqrt()
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    layers = [m for m in model.net if isinstance(m, nn.Linear)]
    for layer, a, g in zip(layers, inputs, backprops, strict=True):
        layer.weight.grad = (g * factor[:, None]).T @ a
        layer.bias.grad = (g * factor[:, None]).sum(0)
    return norms


def _bound_5_percent_too_large(original):
    def broken(model, per_example_loss, inputs, outputs, max_grad_norm):
        return original(model, per_example_loss, inputs, outputs, max_grad_norm * 1.05)
    return broken


BROKEN = {"no_bias_term": lambda original: _no_bias_term,
          "bound_too_large": _bound_5_percent_too_large}


# ------------------------------------------------------------------------- auto

def test_default_mode_is_auto() -> None:
    assert StudentConfig().grad_sample_mode == "auto"


def test_auto_resolves_to_fused_for_the_student_mlp_only() -> None:
    net = StudentMLP(6, 2, (8, 4))
    assert resolve_grad_sample_mode("auto", net) == "fused"
    assert resolve_grad_sample_mode("auto", nn.Sequential(nn.Linear(6, 2))) == "hooks"
    for mode in ("fused", "hooks", "ew", "functorch", "ghost"):
        assert resolve_grad_sample_mode(mode, net) == mode


def test_auto_trains_fused_and_records_the_check() -> None:
    x, y, t = _toy()
    config = StudentConfig(epochs=1, batch_size=50, hidden_layers=(8,))
    net, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                noise_multiplier=1.0, seed=0)
    assert record.grad_sample_mode == "fused"
    assert record.clipping_check is not None and 0.0 <= record.clipping_check < 1e-5
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_opacus_modes_record_no_check() -> None:
    x, y, t = _toy(100)
    config = StudentConfig(epochs=1, batch_size=50, hidden_layers=(4,), grad_sample_mode="hooks")
    _, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                              noise_multiplier=1.0, seed=0)
    assert (record.grad_sample_mode, record.clipping_check) == ("hooks", None)


# ------------------------------------------------------------------------- the check

@pytest.mark.parametrize("weighted", [False, True])
def test_check_agrees_with_opacus_on_random_data(weighted: bool) -> None:
    net, x, y, t, w = _probe()
    before = [p.detach().clone() for p in net.parameters()]
    rng_state = torch.get_rng_state()
    relative = verify_against_opacus(net, x, y, t, w if weighted else None, temperature=2.0,
                                     max_grad_norm=0.5)
    assert 0.0 <= relative < 1e-5
    # Copies only: the model's parameters and gradients, and torch's global RNG, untouched.
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(rng_state, torch.get_rng_state())


@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_check_catches_a_broken_fused_clipping(bug: str, monkeypatch) -> None:
    net, x, y, t, w = _probe()
    monkeypatch.setattr(fused, "set_clipped_sum_grads", BROKEN[bug](fused.set_clipped_sum_grads))
    assert verify_against_opacus(net, x, y, t, w, temperature=2.0,
                                 max_grad_norm=0.5) > 10 * CLIPPING_CHECK_TOLERANCE


@pytest.mark.parametrize("mode", ["auto", "fused"])
@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_training_refuses_a_broken_fused_clipping(mode: str, bug: str, monkeypatch) -> None:
    x, y, t = _toy()
    monkeypatch.setattr(fused, "set_clipped_sum_grads", BROKEN[bug](fused.set_clipped_sum_grads))
    config = StudentConfig(epochs=1, batch_size=50, hidden_layers=(8,), max_grad_norm=0.5,
                           grad_sample_mode=mode)
    with pytest.raises(TrainingError, match="disagrees with Opacus's per-sample clipping") as err:
        train_student(x, y, n_classes=2, is_transfer=t, config=config, noise_multiplier=1.0,
                      seed=0)
    assert "grad_sample_mode: hooks" in str(err.value)
    # Opacus's own modes are not checked (nothing to compare with): they still train.
    train_student(x, y, n_classes=2, is_transfer=t, noise_multiplier=1.0, seed=0,
                  config=config.model_copy(update={"grad_sample_mode": "hooks"}))


def test_the_check_changes_no_random_stream_and_not_the_student(monkeypatch) -> None:
    x, y, t = _toy(400)
    config = StudentConfig(epochs=2, batch_size=64, hidden_layers=(8,), alpha=0.3)
    checked, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                    noise_multiplier=1.0, seed=7)
    assert record.clipping_check is not None
    calls = []

    def skipped(*args, **kwargs) -> float:
        calls.append(1)
        return 0.0

    monkeypatch.setattr(train_module, "verify_against_opacus", skipped)
    unchecked, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                      noise_multiplier=1.0, seed=7)
    assert calls == [1] and record.clipping_check == 0.0
    z = torch.as_tensor(x[:50])
    with torch.no_grad():
        assert torch.equal(checked(z), unchecked(z))
