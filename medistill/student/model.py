"""The student: a small MLP (no BatchNorm — DP-SGD forbids it)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


# Standardised inputs are clamped to ±INPUT_CLIP before the first layer (an ONNX Clip).
# The scaling statistics come from transfer data, never from sensitive rows; where a noisy
# synthetic column misses the real range, real rows would otherwise reach the network at
# hundreds of standard deviations, dominate every clipped DP-SGD gradient and wreck training.
INPUT_CLIP = 5.0


class StudentMLP(nn.Module):
    """Input clamp, Linear → ReLU blocks and a linear head producing class logits."""

    def __init__(self, n_inputs: int, n_classes: int, hidden_layers: tuple[int, ...], *,
                 generator: torch.Generator | None = None,
                 input_bounds: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__()
        lower, upper = (np.full(n_inputs, -INPUT_CLIP), np.full(n_inputs, INPUT_CLIP))
        if input_bounds is not None:   # per-input range of the (paid-for) transfer rows
            lower = np.maximum(lower, np.asarray(input_bounds[0], dtype=float))
            upper = np.minimum(upper, np.asarray(input_bounds[1], dtype=float))
        self.register_buffer("lower", torch.as_tensor(lower, dtype=torch.float32))
        self.register_buffer("upper", torch.as_tensor(upper, dtype=torch.float32))
        layers: list[nn.Module] = []
        width = n_inputs
        for hidden in hidden_layers:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        if generator is not None:
            self._initialise(generator)

    def _initialise(self, generator: torch.Generator) -> None:
        """PyTorch's default Linear initialisation, drawn from ``generator`` (not the global
        RNG), so concurrent trainings stay reproducible."""
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)

    def clamp_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs clamped to the student's range (±INPUT_CLIP, or the transfer rows' own
        per-input range, so the student never extrapolates where its teacher clipped)."""
        return torch.maximum(torch.minimum(x, self.upper), self.lower)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.clamp_inputs(x))


class WithSoftmax(nn.Module):
    """Wraps a logit model so the exported graph outputs probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def multiply_adds(n_inputs: int, n_classes: int, hidden_layers: tuple[int, ...]) -> int:
    """Multiply-adds of one row through the linear layers (what batch-1 CPU time scales with
    once onnxruntime's fixed per-call cost is paid)."""
    widths = (n_inputs, *hidden_layers, n_classes)
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def size_for_latency(n_inputs: int, n_classes: int, *, max_macs: int = 2048) -> tuple[int, ...]:
    """The widest funnel ``(w, w/2)``, w ∈ {64, 32, 16, 8}, within ``max_macs`` per row.

    The default budget keeps a 20-input student at (32, 16), ≈ 0.04 ms per row in
    onnxruntime on one thread; wide tables get narrower students, so batch-1 latency stays
    flat however many features there are (down to (8, 4), ≈ 12 multiply-adds per input).
    """
    for width in (64, 32, 16, 8):
        layers = (width, width // 2)
        if multiply_adds(n_inputs, n_classes, layers) <= max_macs:
            return layers
    return (8, 4)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["INPUT_CLIP", "StudentMLP", "WithSoftmax", "multiply_adds", "n_parameters",
           "size_for_latency"]
