"""Poisson-sampled batches sliced from pre-made tensors.

Opacus's ``DPDataLoader`` fetches a Poisson batch one row at a time through
``Dataset.__getitem__`` and stacks the rows in ``default_collate``; for a ~1,000-parameter
student that fetching costs more than the DP-SGD step itself. Here the same sampler that
``DPDataLoader`` uses (Opacus's ``UniformWithReplacementSampler``: each example included
independently with probability ``sample_rate`` at every step, from an explicit
``torch.Generator``) drives a ``DataLoader`` over a dataset whose ``__getitems__`` slices
whole batches out of the tensors. Empty batches come out as zero-row tensors of the right
shape and dtype, so the training loop still takes a (noise-only) step on them.

The sampler is given its number of steps explicitly (``ceil(n / batch_size)`` per epoch):
``DPDataLoader`` uses ``int(1 / sample_rate)``, which floating point makes one short for some
batch counts (93, 99, 105, …), so the steps would not match ``DpSgdSchedule``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch.utils.data import DataLoader, Dataset

from medistill.privacy.randomness import GeneratorPoissonSampler


class BatchTensors(Dataset):
    """Row-aligned tensors whose batches are taken with one index per tensor.

    ``weights`` (per-example loss weights) may be replaced between epochs; it is returned
    as the last element of every batch.
    """

    def __init__(self, *tensors: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors must have the same number of rows")
        self.tensors = tensors
        self.weights = torch.ones(n) if weights is None else weights

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (*(t[index] for t in self.tensors), self.weights[index])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return (*(t.index_select(0, index) for t in self.tensors),
                self.weights.index_select(0, index))


def passthrough(batch):
    """``__getitems__`` already returns the stacked batch."""
    return batch


def poisson_loader(dataset: BatchTensors, *, sample_rate: float, steps: int,
                   generator: torch.Generator | None,
                   rng: np.random.Generator | None = None) -> DataLoader:
    """A DataLoader yielding ``steps`` Poisson batches (rate ``sample_rate``) per pass.

    ``len(loader) == steps``, so ``PrivacyEngine.make_private(..., poisson_sampling=False)``
    derives ``sample_rate = 1 / steps`` and the expected batch size from it, as it does for
    its own ``DPDataLoader``. With ``rng`` (a privacy generator, see
    ``medistill.privacy.randomness``) the inclusion masks come from it instead of
    ``generator``.
    """
    if rng is not None:
        sampler: UniformWithReplacementSampler = GeneratorPoissonSampler(
            num_samples=len(dataset), sample_rate=sample_rate, steps=steps, rng=rng)
    else:
        sampler = UniformWithReplacementSampler(num_samples=len(dataset), sample_rate=sample_rate,
                                                generator=generator, steps=steps)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=passthrough)


__all__ = ["BatchTensors", "passthrough", "poisson_loader"]
