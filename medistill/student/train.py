"""DP-SGD training of the student with Opacus: Poisson sampling, per-sample clipping,
noise set by the budget planner (never ``make_private_with_epsilon`` on a fresh budget)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from medistill.config import StudentConfig
from medistill.errors import ConfigError
from medistill.student.losses import mixed_loss
from medistill.student.model import StudentMLP


@dataclass(frozen=True)
class DpSgdSchedule:
    """What Opacus will do: Poisson sample rate and number of steps."""

    n_examples: int
    batch_size: int
    sample_rate: float
    steps: int

    @classmethod
    def for_data(cls, n_examples: int, batch_size: int, epochs: int) -> DpSgdSchedule:
        batches_per_epoch = max(1, math.ceil(n_examples / batch_size))
        # Opacus's DPDataLoader samples each example with probability 1/len(data_loader).
        return cls(n_examples, batch_size, 1.0 / batches_per_epoch, epochs * batches_per_epoch)

    def event(self, noise_multiplier: float) -> dpa.DpEvent:
        return dpa.SelfComposedDpEvent(
            dpa.PoissonSampledDpEvent(self.sample_rate, dpa.GaussianDpEvent(noise_multiplier)),
            self.steps)


@dataclass(frozen=True)
class DpSgdRecord:
    """What Opacus actually did, read back from its accountant's history."""

    noise_multiplier: float
    sample_rate: float
    steps: int


def train_student(inputs: np.ndarray, targets: np.ndarray, *, n_classes: int,
                  is_transfer: np.ndarray | None = None,
                  config: StudentConfig, noise_multiplier: float, seed: int,
                  batch_size: int | None = None,
                  on_epoch: Callable[[int, float], None] | None = None,
                  ) -> tuple[StudentMLP, DpSgdRecord]:
    """Train a fresh student on preprocessed ``inputs`` with DP-SGD at ``noise_multiplier``.

    ``targets`` are class codes [n] or target probabilities [n, C] (soft labels);
    rows flagged in ``is_transfer`` use the distillation loss at ``config.temperature``.
    """
    if config.secure_mode:
        try:
            import torchcsprng  # noqa: F401
        except ImportError:
            raise ConfigError(
                "student.secure_mode is true but the torchcsprng package (a cryptographically "
                "secure random generator for Opacus) is not installed.",
                hint="Install torchcsprng for this torch version, or set "
                     "student.secure_mode: false for non-production runs.") from None
    generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator().manual_seed(seed + 1)
    init_generator = torch.Generator().manual_seed(seed + 2)
    model = StudentMLP(inputs.shape[1], n_classes, config.hidden_layers, generator=init_generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if targets.ndim == 1:
        targets = np.eye(n_classes, dtype=np.float32)[targets]
    if is_transfer is None:
        is_transfer = np.zeros(len(inputs), dtype=bool)
    dataset = TensorDataset(torch.as_tensor(inputs, dtype=torch.float32),
                            torch.as_tensor(targets, dtype=torch.float32),
                            torch.as_tensor(is_transfer, dtype=torch.bool))
    batch = batch_size or config.resolved_batch_size(len(inputs))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, generator=generator)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="opacus")
        engine = PrivacyEngine(accountant="rdp", secure_mode=config.secure_mode)
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader,
            noise_multiplier=noise_multiplier, max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            noise_generator=None if config.secure_mode else noise_generator)
    model.train()
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for epoch in range(config.epochs):
        total, count = 0.0, 0
        for x, y, transfer in loader:
            if len(x) == 0:
                continue
            optimizer.zero_grad()
            loss = mixed_loss(model(x), y, transfer, temperature=config.temperature)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
        if on_epoch is not None:
            on_epoch(epoch, total / max(count, 1))
    history = engine.accountant.history
    sigma, rate = history[-1][0], history[-1][1]
    steps = sum(h[2] for h in history)
    network = model._module if hasattr(model, "_module") else model
    network.eval()
    return network, DpSgdRecord(float(sigma), float(rate), int(steps))


__all__ = ["DpSgdRecord", "DpSgdSchedule", "train_student"]
