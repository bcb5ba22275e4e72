"""Where the randomness of a run comes from.

Two kinds of draws, never mixed:

- **Privacy draws** — every draw a differential-privacy guarantee rests on: DP noise (GNMax,
  the synthesizer's marginals, DP-SGD's gradient noise, a DP teacher's noise) and Poisson
  sampling. By default they come from :func:`secure_generator`: numpy's ``Generator`` over
  randomgen's ChaCha20 bit generator (a cryptographically secure stream cipher), keyed with
  fresh OS entropy that is never written anywhere. Nobody who knows the pipeline file, the
  seed and every other record can recompute them.
- **Seeded draws** — everything no guarantee rests on (audit splits and attacks, initial
  weights, plots, the order of training rows): from ``pipeline.yaml``'s seed, reproducible.

``privacy.reproducible_noise: true`` makes privacy draws follow the seed too, for tests and
debugging. Such a run has **no formal guarantee** (ε = ∞ against anyone who knows the seed),
and its ledger, model metadata and report say so.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from randomgen import ChaCha

REPRODUCIBLE_NOTE = (
    "This run used privacy.reproducible_noise: its DP noise and sampling were derived from the "
    "recorded seed, so anyone who knows the seed and the other records can undo them. It has "
    "no formal privacy guarantee (ε = ∞) and is for testing only.")


def secure_generator() -> np.random.Generator:
    """A numpy Generator over ChaCha20 keyed with fresh OS entropy (never recorded)."""
    return np.random.Generator(ChaCha(seed=secrets.randbits(256), rounds=20))


def _stream_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class Randomness:
    """The run's two sources of randomness.

    ``privacy(name)`` is a generator for privacy draws of the stage ``name``: fresh and secure
    unless ``reproducible`` (then derived from ``seed`` and ``name``). ``seeded(name)`` is a
    reproducible generator for everything else. Each call returns an independent stream.
    """

    seed: int
    reproducible: bool = False

    @property
    def formal_guarantee(self) -> bool:
        """False when privacy draws follow the recorded seed."""
        return not self.reproducible

    def privacy(self, name: str) -> np.random.Generator:
        if self.reproducible:
            return self.seeded(f"privacy:{name}")
        return secure_generator()

    def seeded(self, name: str) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed,
                                                            spawn_key=(_stream_key(name),)))

    def secret_key(self, name: str) -> bytes:
        """A 32-byte key for keyed hashes (splits, partitions): fresh and never recorded,
        or derived from the seed in reproducible mode."""
        if self.reproducible:
            return hashlib.sha256(f"medistill:{self.seed}:{name}".encode()).digest()
        return secrets.token_bytes(32)


def gaussian_noise_like(rng: np.random.Generator, std: float, reference: torch.Tensor) -> torch.Tensor:
    """Gaussian noise of standard deviation ``std`` shaped like ``reference``, from ``rng``.

    Drawn as the mean of four normals scaled by 2 (the same law), as Opacus's secure mode
    does after Holohan et al. 2021, so that the low bits of one float64 normal do not
    reveal the value it was added to (floating-point attacks; see docs/privacy.md).
    """
    if std == 0:
        return torch.zeros_like(reference)
    shape = tuple(reference.shape)
    total = sum(rng.standard_normal(shape) for _ in range(4))
    return torch.as_tensor(total * (std / 2.0), dtype=reference.dtype, device=reference.device)


def use_noise_generator(optimizer, rng: np.random.Generator) -> None:
    """Make an Opacus ``DPOptimizer`` draw its gradient noise from ``rng``.

    Opacus draws noise with ``torch.normal`` from a ``torch.Generator`` (a Mersenne
    twister); this replaces only that draw. Clipping, scaling and accounting stay Opacus's.
    """
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    def add_noise() -> None:
        for p in optimizer.params:
            _check_processed_flag(p.summed_grad)
            noise = gaussian_noise_like(rng, optimizer.noise_multiplier * optimizer.max_grad_norm,
                                        p.summed_grad)
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)

    optimizer.add_noise = add_noise


class GeneratorPoissonSampler(UniformWithReplacementSampler):
    """Opacus's Poisson sampler (each row in each step with probability ``sample_rate``)
    drawing its inclusion mask from a numpy generator."""

    def __init__(self, *, num_samples: int, sample_rate: float, steps: int,
                 rng: np.random.Generator) -> None:
        super().__init__(num_samples=num_samples, sample_rate=sample_rate, steps=steps)
        self.rng = rng

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = self.rng.random(self.num_samples) < self.sample_rate
            yield np.flatnonzero(mask).tolist()


__all__ = ["REPRODUCIBLE_NOTE", "GeneratorPoissonSampler", "Randomness", "gaussian_noise_like",
           "secure_generator", "use_noise_generator"]
