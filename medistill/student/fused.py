"""Per-sample clipping for the student MLP in one backward pass (``grad_sample_mode: fused``).

For a linear layer ``z = W a + b`` on a batch of rows, example i's gradient is
``g_i a_iᵀ`` for W and ``g_i`` for b, where ``g_i = ∂ℓ_i/∂z_i``. Its squared norm is
``‖g_i‖²·(‖a_i‖² + 1)`` — the identity behind Opacus's ghost clipping — and the *clipped
sum* over the batch is ``(c ⊙ G)ᵀ A`` and ``Σ_i c_i g_i`` with clip factors
``c_i = min(1, C / (‖∇ℓ_i‖ + 1e-6))`` (Opacus's formula). So no per-example gradient is
ever materialised, and unlike Opacus's ghost mode no second backward pass is needed:
one ``autograd.grad`` to the layers' outputs gives every ``G``, and the clipped sums are one
matrix product per layer.

Noise, the division by the expected batch size, physical-batch accumulation
(``BatchMemoryManager``) and the accountant's record stay Opacus's: the clipped sums are put
in ``p.grad`` for Opacus's ``DPOptimizerFastGradientClipping``, which expects exactly that.

This is exact only for networks of ``nn.Linear`` layers and element-wise activations,
applied row by row (no BatchNorm, no layer mixing examples); ``check_fusable`` enforces it.
The student benchmark compares it with an exact per-example loop, and every training run in
this mode first compares it with Opacus's own per-sample gradients and clipping on a probe
batch (``verify_against_opacus``; ``train_student`` refuses to train when they disagree).
"""

from __future__ import annotations

import copy

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from medistill.student.model import StudentMLP

ROWWISE = (nn.Linear, nn.ReLU)


def check_fusable(model: nn.Module) -> None:
    if not isinstance(model, StudentMLP) or not all(isinstance(m, ROWWISE) for m in model.net):
        raise ValueError("grad_sample_mode 'fused' needs a StudentMLP of Linear and ReLU layers; "
                         "use 'hooks' for other networks")


def is_fusable(model: nn.Module) -> bool:
    """Whether ``check_fusable`` accepts ``model`` (what ``grad_sample_mode: auto`` asks)."""
    try:
        check_fusable(model)
    except ValueError:
        return False
    return True


def forward_with_activations(model: StudentMLP, x: torch.Tensor
                             ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``model(x)``, with each linear layer's input and output kept."""
    h = model.clamp_inputs(x)
    inputs, outputs = [], []
    for layer in model.net:
        if isinstance(layer, nn.Linear):
            inputs.append(h)
            h = layer(h)
            outputs.append(h)
        else:
            h = layer(h)
    return h, inputs, outputs


def set_clipped_sum_grads(model: StudentMLP, per_example_loss: torch.Tensor,
                          inputs: list[torch.Tensor], outputs: list[torch.Tensor],
                          max_grad_norm: float) -> torch.Tensor:
    """Put Σ_i clip_i·∇ℓ_i into each parameter's ``.grad``; returns the per-example norms."""
    backprops = torch.autograd.grad(per_example_loss.sum(), outputs)
    squared = torch.zeros(len(per_example_loss), dtype=per_example_loss.dtype)
    for a, g in zip(inputs, backprops, strict=True):
        squared = squared + (g * g).sum(1) * ((a * a).sum(1) + 1.0)
    norms = squared.sqrt()
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    layers = [m for m in model.net if isinstance(m, nn.Linear)]
    for layer, a, g in zip(layers, inputs, backprops, strict=True):
        clipped = g * factor[:, None]
        layer.weight.grad = clipped.T @ a
        layer.bias.grad = clipped.sum(0)
    return norms


# Largest max |fused − Opacus| / max |Opacus| over the clipped gradient sums that training
# accepts (float32; on the student the two agree to ≈ 1e-7 relative, docs/benchmarks.md).
CLIPPING_CHECK_TOLERANCE = 1e-4


def verify_against_opacus(model: StudentMLP, x: torch.Tensor, y: torch.Tensor,
                          transfer: torch.Tensor, weights: torch.Tensor | None = None, *,
                          temperature: float, max_grad_norm: float) -> float:
    """Relative difference between the fused clipped gradient sum and Opacus's on one batch.

    Both sides work on deep copies of ``model`` (its parameters and ``.grad`` are not
    touched) and draw no random numbers, so training's generators are left as they were.
    The fused side is ``forward_with_activations`` + ``set_clipped_sum_grads`` as training
    runs them. The reference side is Opacus's own code: ``GradSampleModule`` (hooks) for the
    per-example gradients of the same per-example losses (times ``weights``), and
    ``DPOptimizer.clip_and_accumulate`` for the clipping (``min(1, C / (‖∇ℓ_i‖ + 1e-6))``)
    and the sum; no noise is involved.

    Returns ``max |fused − opacus| / max |opacus|`` over every parameter (0 when both are 0).
    """
    from medistill.student.losses import per_example_loss

    check_fusable(model)
    x, y = x.detach(), y.detach()
    with torch.enable_grad():
        fused = copy.deepcopy(model)
        for p in fused.parameters():
            p.grad = None
        logits, inputs, outputs = forward_with_activations(fused, x)
        losses = per_example_loss(logits, y, transfer, temperature=temperature)
        if weights is not None:
            losses = losses * weights
        set_clipped_sum_grads(fused, losses, inputs, outputs, max_grad_norm)
        got = torch.cat([p.grad.detach().flatten() for p in fused.parameters()])

        reference = copy.deepcopy(model)
        for p in reference.parameters():
            p.grad = None
        wrapped = GradSampleModule(reference, batch_first=True, loss_reduction="sum")
        # only clip_and_accumulate runs (no noise, no scaling, no step); with "sum" Opacus
        # ignores expected_batch_size anyway
        clipper = DPOptimizer(torch.optim.SGD(wrapped.parameters(), lr=0.0),
                              noise_multiplier=0.0, max_grad_norm=max_grad_norm,
                              expected_batch_size=1, loss_reduction="sum")
        losses = per_example_loss(wrapped(x), y, transfer, temperature=temperature)
        if weights is not None:
            losses = losses * weights
        losses.sum().backward()
        clipper.clip_and_accumulate()
        expected = torch.cat([p.summed_grad.detach().flatten() for p in clipper.params])
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    diff = float((got - expected).abs().max()) if expected.numel() else 0.0
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0.0 else float("inf")


__all__ = ["CLIPPING_CHECK_TOLERANCE", "check_fusable", "forward_with_activations",
           "is_fusable", "set_clipped_sum_grads", "verify_against_opacus"]
