"""The DP linear teacher: logistic regression trained with DP-SGD (Opacus).

Inputs come from public information only (:class:`~medistill.teachers.dp_inputs.PublicEncoding`:
declared ranges scale numeric features to [-1, 1], with a missing indicator; one-hot over
declared categories), so no statistic of the sensitive rows is read outside DP-SGD.
Each patient contributes one row (the caller guarantees it); each step Poisson-samples rows
with rate q, clips each row's gradient to ``max_grad_norm`` and adds N(0, (z·C)²): the
ledger event is ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), T)``,
with z calibrated by ``dp_accounting.mechanism_calibration`` to the (ε, δ) share and q, z, T
read back from Opacus's own accountant history.

**Randomness:** the Poisson sampling and the gradient noise are privacy draws: they come
from ``rng``, by default :func:`medistill.privacy.randomness.secure_generator` (ChaCha20
keyed with fresh OS entropy, never recorded); pass ``Randomness.privacy("dp_teacher")``
to follow the run's reproducible mode. Opacus's own ``torch.normal`` draw is replaced
(``use_noise_generator``); its clipping, scaling and accounting are unchanged.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import pandas as pd
import torch
from absl import logging as absl_logging
from opacus import PrivacyEngine
from torch.utils.data import DataLoader

from medistill.data.schema import TableSchema
from medistill.errors import TrainingError
from medistill.privacy.ledger import AccountantName, epsilon_of, make_accountant
from medistill.privacy.randomness import (
    GeneratorPoissonSampler,
    secure_generator,
    use_noise_generator,
)
from medistill.student.sampling import BatchTensors, passthrough
from medistill.student.train import DpSgdSchedule, set_expected_batch_size
from medistill.teachers.dp_inputs import PublicEncoding
from medistill.teachers.models import _torch_threads


@dataclass(frozen=True)
class DPLinearSettings:
    """DP-SGD hyper-parameters of the linear teacher (public; fixed before seeing data)."""

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.05
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"The '{name}' parameter of DPLinearSettings must be an int "
                                 f">= 1. Got {value!r} instead.")
        for name in ("learning_rate", "max_grad_norm"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"The '{name}' parameter of DPLinearSettings must be a float "
                                 f"in the range (0, inf). Got {value!r} instead.")


@functools.lru_cache(maxsize=64)
def calibrate_noise(schedule: DpSgdSchedule, *, epsilon: float, delta: float,
                    accountant: AccountantName = "pld") -> float:
    """The smallest noise multiplier z whose schedule event costs at most (ε, δ) (a pure
    function of its arguments, cached)."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive finite float. Got {epsilon!r} instead.")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1). Got {delta!r} instead.")
    calibrate = dpa.mechanism_calibration.calibrate_dp_mechanism
    interval = dpa.mechanism_calibration
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)   # RDP skips orders it cannot compute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # RDP is fast and looser than PLD: its answer brackets the PLD one from above (PLD
        # at tiny noise multipliers is slow and memory-hungry, so it never goes there).
        try:
            upper = float(calibrate(lambda: make_accountant("rdp"), schedule.event, epsilon,
                                    delta, bracket_interval=interval.LowerEndpointAndGuess(
                                        0.3, 1.0), tol=1e-3 if accountant == "rdp" else 0.02))
            if accountant == "rdp":
                return upper
            return float(calibrate(lambda: make_accountant(accountant), schedule.event,
                                   epsilon, delta, bracket_interval=interval.ExplicitBracketInterval(
                                       0.5 * upper, upper), tol=2e-3 * upper))
        finally:
            absl_logging.set_verbosity(verbosity)


@dataclass
class DPLinearTeacher:
    """A fitted DP logistic regression. Its outputs are post-processing of ``event``."""

    linear: torch.nn.Linear
    encoding: PublicEncoding
    settings: DPLinearSettings
    event: dpa.DpEvent
    noise_multiplier: float
    sample_rate: float
    steps: int

    def logits(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-class logits, shape (n_rows, n_classes)."""
        x = torch.from_numpy(self.encoding.linear_matrix(frame))
        with torch.no_grad():
            return self.linear(x).double().numpy()

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-odds of class 1 for binary outcomes; the logits otherwise."""
        z = self.logits(frame)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits(frame)), dim=1).numpy()

    def epsilon(self, delta: float, accountant: AccountantName = "pld") -> float:
        return epsilon_of([self.event], delta, accountant)


def fit_dp_linear(features: pd.DataFrame, labels: np.ndarray, schema: TableSchema, *,
                  epsilon: float, delta: float, bounds: Mapping[str, tuple[float, float]],
                  settings: DPLinearSettings = DPLinearSettings(),
                  accountant: AccountantName = "pld",
                  rng: np.random.Generator | None = None,
                  planned: tuple[DpSgdSchedule, float] | None = None) -> DPLinearTeacher:
    """Fit a DP logistic regression on one row per patient within (ε, δ).

    ``rng`` drives the Poisson sampling and the noise (default: a fresh secure generator).
    ``planned`` — a (schedule, noise multiplier) pair decided from public or charged counts
    — replaces the schedule and noise calibrated here from the exact row count (which the
    recorded event would otherwise carry); ``epsilon`` is then not used. The noisy gradient
    sum is divided by the schedule's expected batch (``schedule.expected_batch_size()``), so
    with a planned schedule the weights read no exact count either.
    """
    encoding = PublicEncoding.build(schema, bounds)
    labels = np.asarray(labels)
    if len(labels) != len(features) or not np.isin(labels, range(schema.n_classes)).all():
        raise TrainingError(f"The DP linear teacher needs one class code 0..{schema.n_classes - 1}"
                            f" of '{schema.label}' per training row.")
    x = torch.from_numpy(encoding.linear_matrix(features))
    y = torch.from_numpy(labels.astype(np.int64))
    if planned is None:
        schedule = DpSgdSchedule.for_data(len(x), settings.batch_size, settings.epochs)
        noise = calibrate_noise(schedule, epsilon=epsilon, delta=delta, accountant=accountant)
    else:
        schedule, noise = planned
    rng = secure_generator() if rng is None else rng
    linear = torch.nn.Linear(x.shape[1], schema.n_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    model = torch.nn.Sequential(linear)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    sampler = GeneratorPoissonSampler(num_samples=len(x), sample_rate=schedule.sample_rate,
                                      steps=schedule.steps // settings.epochs, rng=rng)
    loader = DataLoader(BatchTensors(x, y), batch_sampler=sampler, collate_fn=passthrough)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="opacus")
        engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise,
            max_grad_norm=settings.max_grad_norm, poisson_sampling=False)
    # make_private divides by int(len(x) · q), the exact count: use the schedule's instead
    set_expected_batch_size(optimizer, schedule.expected_batch_size())
    use_noise_generator(optimizer, rng)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    with _torch_threads(1):   # tiny batches: intra-op threads only spin on a busy machine
        for _ in range(settings.epochs):
            for xb, yb, _w in loader:
                optimizer.zero_grad()
                loss_fn(model(xb), yb).backward()
                optimizer.step()
    history = engine.accountant.history
    sigma, rate, steps = history[-1][0], history[-1][1], sum(h[2] for h in history)
    if not (math.isclose(sigma, noise) and math.isclose(rate, schedule.sample_rate)
            and steps == schedule.steps):
        raise RuntimeError(f"Opacus ran (z={sigma}, q={rate}, T={steps}), not the planned "
                           f"(z={noise}, q={schedule.sample_rate}, T={schedule.steps}).")
    trained = model._module[0] if hasattr(model, "_module") else model[0]
    clean = torch.nn.Linear(trained.in_features, trained.out_features)
    clean.load_state_dict(trained.state_dict())
    clean.eval()
    event = DpSgdSchedule(schedule.n_examples, schedule.batch_size, float(rate),
                          int(steps)).event(float(sigma))
    return DPLinearTeacher(clean, encoding, settings, event, float(sigma), float(rate), int(steps))


__all__ = ["DPLinearSettings", "DPLinearTeacher", "calibrate_noise", "fit_dp_linear"]
