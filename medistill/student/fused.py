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
The student benchmark compares it with an exact per-example loop.
"""

from __future__ import annotations

import torch
from torch import nn

from medistill.student.model import INPUT_CLIP, StudentMLP

ROWWISE = (nn.Linear, nn.ReLU)


def check_fusable(model: nn.Module) -> None:
    if not isinstance(model, StudentMLP) or not all(isinstance(m, ROWWISE) for m in model.net):
        raise ValueError("grad_sample_mode 'fused' needs a StudentMLP of Linear and ReLU layers; "
                         "use 'hooks' for other networks")


def forward_with_activations(model: StudentMLP, x: torch.Tensor
                             ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``model(x)``, with each linear layer's input and output kept."""
    h = torch.clamp(x, -INPUT_CLIP, INPUT_CLIP)
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


__all__ = ["check_fusable", "forward_with_activations", "set_clipped_sum_grads"]
