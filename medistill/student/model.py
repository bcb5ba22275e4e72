"""The student: a small MLP (no BatchNorm — DP-SGD forbids it)."""

from __future__ import annotations

import torch
from torch import nn


class StudentMLP(nn.Module):
    """Linear → ReLU blocks and a linear head producing class logits."""

    def __init__(self, n_inputs: int, n_classes: int, hidden_layers: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for hidden in hidden_layers:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WithSoftmax(nn.Module):
    """Wraps a logit model so the exported graph outputs probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["StudentMLP", "WithSoftmax", "n_parameters"]
