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
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.batch_memory_manager import BatchMemoryManager

from medistill.config import StudentConfig
from medistill.errors import TrainingError
from medistill.privacy.randomness import use_noise_generator
from medistill.student.averaging import IterateAverage, ema_decay
from medistill.student.fused import (
    CLIPPING_CHECK_TOLERANCE,
    check_fusable,
    forward_with_activations,
    is_fusable,
    set_clipped_sum_grads,
    verify_against_opacus,
)
from medistill.student.losses import StudentCriterion, alpha_weights, per_example_loss
from medistill.student.model import StudentMLP
from medistill.student.sampling import BatchTensors, poisson_loader


# Opacus's hooks fire on the first layer, whose input needs no gradient: harmless. Filtered
# for the whole process, because reference models train in threads and per-call
# ``catch_warnings`` contexts are not thread-safe.
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients")

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

    def expected_batch_size(self, public_rows: int = 0) -> float:
        """The expected Poisson batch over the ``n_examples`` planned rows plus
        ``public_rows`` rows whose number is public (transfer rows): the divisor of the noisy
        gradient sum (Opacus's ``expected_batch_size``), so the update reads no exact count of
        sensitive rows."""
        if public_rows < 0:
            raise ValueError(f"public_rows must be >= 0. Got {public_rows!r} instead.")
        return self.sample_rate * (self.n_examples + public_rows)

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
    # True when the noise and sampling came from a privacy generator (fresh entropy, see
    # medistill.privacy.randomness); False for audit-only trainings seeded by ``seed``.
    privacy_noise: bool = False
    grad_sample_mode: str = "hooks"   # as resolved ("auto" → "fused" or "hooks")
    physical_batches: int = 0   # forward/backward passes (> steps when batches were split)
    # "fused" only: max |fused − Opacus| / max |Opacus| of the clipped gradient sum on the
    # probe batch checked before training (verify_against_opacus); None in Opacus's modes.
    clipping_check: float | None = None
    # what Opacus divided the noisy gradient sum by (its optimizer's expected_batch_size)
    expected_batch_size: float = 0.0


# Rows of the training data (evenly spaced, so both transfer and sensitive rows are met when
# the data is ordered by kind) on which "fused" clipping is compared with Opacus's.
CLIPPING_CHECK_ROWS = 256




def epoch_weights(config: StudentConfig, is_transfer: torch.Tensor, alpha: float,
                  epoch: int) -> torch.Tensor | None:
    """Per-example loss weights of ``epoch`` under ``config.alpha_schedule``, or None
    when every weight would be 1 (constant schedule, or only one kind of row).

    The weights depend only on the configuration and the epoch, never on the data, and they
    are applied to each example's loss before Opacus clips its gradient: each example still
    contributes at most ``max_grad_norm`` to the summed gradient, so the Sampled Gaussian
    mechanism and its accounting are unchanged. None exceeds 1, because clipping would undo
    a larger weight (why α is a data share in the first place, ``docs/design.md``).
    """
    n_transfer = int(is_transfer.sum())
    if (config.alpha_schedule == "constant" or config.alpha_end is None
            or n_transfer in (0, len(is_transfer))):
        return None
    progress = epoch / (config.epochs - 1) if config.epochs > 1 else 0.0
    effective = alpha + (config.alpha_end - alpha) * progress
    w_transfer, w_sensitive = alpha_weights(alpha, effective)
    if w_transfer == w_sensitive == 1.0:
        return None
    return torch.where(is_transfer, torch.tensor(w_transfer), torch.tensor(w_sensitive))


def resolve_grad_sample_mode(mode: str, model: torch.nn.Module) -> str:
    """``auto`` → ``fused`` for a model ``check_fusable`` accepts (the student MLP), else
    Opacus's ``hooks``; an explicit mode is returned as it is."""
    if mode != "auto":
        return mode
    return "fused" if is_fusable(model) else "hooks"


def check_fused_clipping(model: StudentMLP, x: torch.Tensor, y: torch.Tensor,
                         is_transfer: torch.Tensor, weights: torch.Tensor | None, *,
                         temperature: float, max_grad_norm: float) -> float:
    """Compare ``fused`` clipping with Opacus's on ``CLIPPING_CHECK_ROWS`` evenly spaced
    training rows (their targets, transfer flags and epoch-0 weights) before training; raise
    ``TrainingError`` when they disagree by more than ``CLIPPING_CHECK_TOLERANCE``.

    Uses copies of the initial model and no random numbers: the training model, its
    gradients and every generator of the run are left as they were."""
    rows = torch.linspace(0, len(x) - 1, min(CLIPPING_CHECK_ROWS, len(x))).round().long()
    probe_weights = None if weights is None else weights[rows]
    relative = verify_against_opacus(model, x[rows], y[rows], is_transfer[rows], probe_weights,
                                     temperature=temperature, max_grad_norm=max_grad_norm)
    if not relative <= CLIPPING_CHECK_TOLERANCE:      # also catches NaN
        raise TrainingError(
            f"student.grad_sample_mode 'fused' disagrees with Opacus's per-sample clipping: "
            f"on a probe batch of {len(rows)} training rows the clipped gradient sums differ "
            f"by {relative:.3g} of their largest value (tolerance "
            f"{CLIPPING_CHECK_TOLERANCE:g}). Training was stopped before any step, because a "
            f"wrong clipping would break the privacy guarantee.",
            hint="Set student.grad_sample_mode: hooks to train with Opacus's own clipping, "
                 "and report this as a bug in medistill/student/fused.py.")
    return relative


def set_expected_batch_size(optimizer: DPOptimizer, expected_batch_size: float) -> None:
    """Make Opacus's ``optimizer`` divide its noisy gradient sum by ``expected_batch_size``.

    ``PrivacyEngine.make_private`` has no argument for it: it computes
    ``int(len(data_loader.dataset) * sample_rate)``, the exact row count, and passes that to
    the optimizer it builds, whose ``scale_grad`` divides by the attribute set here."""
    if not (isinstance(optimizer, DPOptimizer) and math.isfinite(expected_batch_size)
            and expected_batch_size > 0):
        raise ValueError(f"expected a DPOptimizer and a positive finite expected batch size; "
                         f"got {type(optimizer).__name__} and {expected_batch_size!r}.")
    optimizer.expected_batch_size = float(expected_batch_size)


def _make_fused_private(engine: PrivacyEngine, model: StudentMLP, optimizer: torch.optim.Optimizer,
                        loader, *, noise_multiplier: float, max_grad_norm: float,
                        noise_generator: torch.Generator,
                        expected_batch_size: float | None = None):
    """What ``make_private`` does, for ``grad_sample_mode: fused`` (``medistill.student.fused``):
    the model stays unwrapped (its clipped sums are computed directly), the optimizer is
    Opacus's ``DPOptimizerFastGradientClipping`` (noise, scaling by ``expected_batch_size``,
    accumulation over physical batches) with the accountant's hook at ``1 / len(loader)``.
    Without ``expected_batch_size`` the divisor is ``make_private``'s,
    ``int(len(dataset) · sample rate)``."""
    check_fusable(model)
    sample_rate = 1 / len(loader)
    if expected_batch_size is None:
        expected_batch_size = int(len(loader.dataset) * sample_rate)
    dp_optimizer = DPOptimizerFastGradientClipping(
        optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size, loss_reduction="mean",
        generator=noise_generator, secure_mode=False)
    dp_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    return model, dp_optimizer, loader


def _steps_taken(engine: PrivacyEngine) -> int:
    """Logical DP-SGD steps so far, from the accountant (physical batches of a split
    Poisson batch are not steps)."""
    return sum(h[2] for h in engine.accountant.history)


def train_student(inputs: np.ndarray, targets: np.ndarray, *, n_classes: int,
                  is_transfer: np.ndarray | None = None,
                  config: StudentConfig, noise_multiplier: float, seed: int,
                  batch_size: int | None = None,
                  on_epoch: Callable[[int, float], None] | None = None,
                  alpha: float | None = None,
                  privacy_rng: np.random.Generator | None = None,
                  schedule: DpSgdSchedule | None = None,
                  input_bounds: tuple[np.ndarray, np.ndarray] | None = None,
                  init_state: dict | None = None,
                  expected_batch_size: float | None = None,
                  ) -> tuple[StudentMLP, DpSgdRecord]:
    """Train a fresh student on preprocessed ``inputs`` with DP-SGD at ``noise_multiplier``.

    ``targets`` are class codes [n] or target probabilities [n, C] (soft labels);
    rows flagged in ``is_transfer`` use the distillation loss at ``config.temperature``.

    Batches are Poisson samples (Opacus's sampler: each row independently with probability
    ``1 / ceil(n / batch)`` at each of ``ceil(n / batch)`` steps per epoch), sliced from tensors made once; every step is taken, empty batches
    included (noise only). Batches above ``config.max_physical_batch_size`` rows are split
    by Opacus's ``BatchMemoryManager`` into physical batches of one logical step.

    ``schedule`` (the run plan's) fixes the sample rate and steps; without it they follow
    from ``batch_size`` and the number of rows.

    ``alpha`` is the share of transfer rows the data was built with (default
    ``config.alpha``); ``config.alpha_schedule`` reweights from it (``epoch_weights``).

    ``config.grad_sample_mode`` ``auto`` resolves to ``fused`` for the student MLP (see
    ``resolve_grad_sample_mode``). In ``fused`` mode the clipped gradient sum is first
    compared with Opacus's own on a probe batch of the training rows
    (``check_fused_clipping``); a disagreement raises ``TrainingError`` before any step.

    The network returned is the exponential moving average of the iterates over
    ``config.averaging_epochs`` epochs (``medistill.student.averaging``; post-processing),
    or the last iterate when that is 0.

    ``init_state`` (a state dict of a network of the same shape) replaces the seeded
    initial weights: :func:`fine_tune` starts from the distilled student.

    ``expected_batch_size`` is what the noisy gradient sum is divided by at every step
    (Opacus's divisor). Trainings on sensitive rows that are released pass the planned one
    (``DpSgdSchedule.expected_batch_size``: from the charged count, plus the public number
    of transfer rows), so the weights read no exact count. Without it the divisor is
    Opacus's own, ``int(len(inputs) · sample rate)``: only for trainings whose row count is
    public (transfer rows only) or that are never released.

    Randomness: with ``privacy_rng`` (a privacy generator from
    ``medistill.privacy.randomness``: fresh OS entropy through ChaCha20) the Poisson sampling
    and the gradient noise are drawn from it; without it (audit-only trainings, never
    released) they follow ``seed``. Initial weights always follow ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator().manual_seed(seed + 1)
    init_generator = torch.Generator().manual_seed(seed + 2)
    model = StudentMLP(inputs.shape[1], n_classes,
                       config.resolved_hidden_layers(inputs.shape[1], n_classes),
                       generator=init_generator, input_bounds=input_bounds)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if targets.ndim == 1:
        targets = np.eye(n_classes, dtype=np.float32)[targets]
    if is_transfer is None:
        is_transfer = np.zeros(len(inputs), dtype=bool)
    flags = torch.as_tensor(is_transfer, dtype=torch.bool)
    dataset = BatchTensors(torch.as_tensor(inputs, dtype=torch.float32),
                           torch.as_tensor(targets, dtype=torch.float32), flags)
    if schedule is not None:
        # The plan's schedule (sized from public or noisy counts, never the exact n): the
        # same sample rate over however many rows there are.
        epoch = DpSgdSchedule(len(inputs), schedule.batch_size, schedule.sample_rate,
                              max(1, schedule.steps // config.epochs))
    else:
        batch = batch_size or config.resolved_batch_size(len(inputs))
        epoch = DpSgdSchedule.for_data(len(inputs), batch, 1)
    schedule = epoch
    loader = poisson_loader(dataset, sample_rate=schedule.sample_rate, steps=schedule.steps,
                            generator=generator, rng=privacy_rng)
    criterion: torch.nn.Module = StudentCriterion(config.temperature)
    alpha = config.alpha if alpha is None else alpha
    mode = resolve_grad_sample_mode(config.grad_sample_mode, model)
    clipping_check = None
    if mode == "fused":
        clipping_check = check_fused_clipping(
            model, *dataset.tensors, epoch_weights(config, flags, alpha, 0),
            temperature=config.temperature, max_grad_norm=config.max_grad_norm)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="opacus")
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
        if mode == "fused":
            model, optimizer, loader = _make_fused_private(
                engine, model, optimizer, loader, noise_multiplier=noise_multiplier,
                max_grad_norm=config.max_grad_norm, noise_generator=noise_generator,
                expected_batch_size=expected_batch_size)
        else:
            made = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, criterion=criterion,
                noise_multiplier=noise_multiplier, max_grad_norm=config.max_grad_norm,
                poisson_sampling=False,   # the loader is already Poisson (see sampling.py)
                grad_sample_mode=mode,
                noise_generator=noise_generator)
            if mode == "ghost":
                model, optimizer, criterion, loader = made
            else:
                model, optimizer, loader = made
            model.forbid_grad_accumulation()   # what make_private does with poisson_sampling
            if expected_batch_size is not None:
                # make_private set int(len(dataset) · sample rate), the exact row count
                set_expected_batch_size(optimizer, expected_batch_size)
        if privacy_rng is not None:
            use_noise_generator(optimizer, privacy_rng)
    model.train()
    physical = 0
    network = model._module if hasattr(model, "_module") else model
    decay = ema_decay(config.averaging_epochs, schedule.steps)
    average = IterateAverage(network, decay) if decay is not None else None
    with torch.enable_grad():
        for epoch in range(config.epochs):
            weights = epoch_weights(config, flags, alpha, epoch)
            dataset.weights = torch.ones(len(flags)) if weights is None else weights
            total, count = 0.0, 0
            with BatchMemoryManager(data_loader=loader, optimizer=optimizer,
                                    max_physical_batch_size=config.max_physical_batch_size
                                    ) as physical_loader:
                for x, y, transfer, w in physical_loader:
                    optimizer.zero_grad()
                    w = None if weights is None else w
                    if mode == "fused":
                        logits, inputs_, outputs = forward_with_activations(model, x)
                        per_example = per_example_loss(logits, y, transfer,
                                                       temperature=config.temperature)
                        if w is not None:
                            per_example = per_example * w
                        set_clipped_sum_grads(model, per_example, inputs_, outputs,
                                              config.max_grad_norm)
                        loss = per_example.detach().mean()
                    else:
                        loss = criterion(model(x), y, transfer, w)
                        loss.backward()
                    optimizer.step()
                    physical += 1
                    if average is not None and _steps_taken(engine) > average.updates:
                        average.update(network)      # once per logical (Poisson) step
                    if len(x):
                        total += float(loss.item()) * len(x)
                        count += len(x)
            if on_epoch is not None:
                on_epoch(epoch, total / max(count, 1))
    history = engine.accountant.history
    sigma, rate = history[-1][0], history[-1][1]
    steps = sum(h[2] for h in history)
    if average is not None and average.updates:
        network = average.network()
    network.eval()
    return network, DpSgdRecord(float(sigma), float(rate), int(steps),
                                privacy_noise=privacy_rng is not None, grad_sample_mode=mode,
                                physical_batches=physical, clipping_check=clipping_check,
                                expected_batch_size=float(optimizer.expected_batch_size))


def fine_tune(network: StudentMLP, inputs: np.ndarray, labels: np.ndarray, *, n_classes: int,
              config: StudentConfig, noise_multiplier: float, seed: int,
              schedule: DpSgdSchedule,
              privacy_rng: np.random.Generator | None = None,
              input_bounds: tuple[np.ndarray, np.ndarray] | None = None,
              anchor: tuple[np.ndarray, np.ndarray] | None = None,
              ) -> tuple[StudentMLP, DpSgdRecord]:
    """DP-SGD on sensitive rows (``inputs``, class codes ``labels``) starting from the
    distilled ``network``'s weights, for ``config.fine_tune_epochs`` epochs at
    ``config.fine_tune_learning_rate`` with the plan's ``schedule`` (its sample rate and
    steps; its ``n_examples`` is the planned number of patients, from the charged count).
    The starting weights are post-processing of the DP teacher, so they cost nothing; only
    this training is charged (stage ``student_dp_sgd``). The network given is not changed.
    Randomness as in :func:`train_student`.

    ``anchor`` (preprocessed transfer rows and the teacher's probabilities on them) are
    mixed into the same Poisson batches with the distillation loss, as the PATE path mixes
    its labelled rows: they hold the student to its teacher where the patients' noisy
    gradients say little. The caller must choose them without reading the sensitive rows
    (``medistill.steps.student.anchor_rows``: a planned number of them, drawn by a seeded
    generator). Then DP-SGD runs over (sensitive rows) ∪ (a fixed set of public rows):
    neighbouring patient sets give datasets that differ in one row, and the schedule's
    sample rate, steps and noise are its whole accounting.

    The noisy gradient sum is divided by the planned expected batch,
    ``schedule.expected_batch_size(number of anchors)``, never by one read from ``inputs``.
    """
    tuned = config.model_copy(update={"epochs": config.fine_tune_epochs,
                                      "learning_rate": config.fine_tune_learning_rate,
                                      "alpha_schedule": "constant"})
    targets = np.eye(n_classes, dtype=np.float32)[labels]
    flags = np.zeros(len(inputs), dtype=bool)
    n_anchors = 0
    if anchor is not None and len(anchor[0]):
        n_anchors = len(anchor[0])
        inputs = np.vstack([inputs, anchor[0]]).astype(np.float32)
        targets = np.vstack([targets, anchor[1].astype(np.float32)])
        flags = np.r_[flags, np.ones(n_anchors, dtype=bool)]
    # the planned share of anchors (a constant schedule never reweights by it)
    alpha = n_anchors / (schedule.n_examples + n_anchors)
    return train_student(inputs, targets, n_classes=n_classes, config=tuned,
                         is_transfer=flags, alpha=alpha,
                         noise_multiplier=noise_multiplier, seed=seed, schedule=schedule,
                         privacy_rng=privacy_rng, input_bounds=input_bounds,
                         init_state=network.state_dict(),
                         expected_batch_size=schedule.expected_batch_size(n_anchors))


__all__ = ["CLIPPING_CHECK_ROWS", "DpSgdRecord", "DpSgdSchedule",
           "check_fused_clipping", "epoch_weights", "fine_tune", "resolve_grad_sample_mode",
           "set_expected_batch_size", "train_student"]
