"""The released student is the exponential moving average of DP-SGD's iterates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medistill.config import StudentConfig
from medistill.student import averaging
from medistill.student.averaging import IterateAverage, ema_decay
from medistill.student.train import train_student


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    return x, y


def test_decay_has_the_configured_time_constant() -> None:
    assert ema_decay(1.0, 30) == pytest.approx(1 - 1 / 30)
    assert ema_decay(2.0, 10) == pytest.approx(0.95)
    assert ema_decay(0.0, 30) is None
    assert ema_decay(0.01, 3) == 0.0                    # shorter than a step: last iterate


@pytest.mark.parametrize("physical", [1024, 16])
def test_released_network_is_the_ema_of_the_logical_steps(monkeypatch, physical: int) -> None:
    """One update per logical step, also when BatchMemoryManager splits the Poisson batch
    into physical batches, and the returned weights are the EMA of those iterates."""
    snapshots: list[list[torch.Tensor]] = []
    update = IterateAverage.update

    def recording_update(self, network):
        snapshots.append([p.detach().clone() for p in network.parameters()])
        update(self, network)

    monkeypatch.setattr(averaging.IterateAverage, "update", recording_update)
    x, y = _data()
    config = StudentConfig(epochs=3, batch_size=100, hidden_layers=(8,), averaging_epochs=1.0,
                           max_physical_batch_size=physical)
    network, record = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0,
                                    seed=4)
    assert len(snapshots) == record.steps == 18
    decay = ema_decay(1.0, 6)
    expected = snapshots[0]
    for snapshot in snapshots[1:]:
        expected = [decay * e + (1 - decay) * s for e, s in zip(expected, snapshot, strict=True)]
    for got, want in zip(network.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)


def test_averaging_is_post_processing_and_zero_releases_the_last_iterate() -> None:
    """The same seed gives the same DP-SGD run with or without averaging; only the
    released weights differ, and averaging_epochs 0 releases the last iterate."""
    x, y = _data()
    base = {"epochs": 3, "batch_size": 100, "hidden_layers": (8,)}
    last, r_last = train_student(x, y, n_classes=2, noise_multiplier=1.0, seed=2,
                                 config=StudentConfig(**base, averaging_epochs=0.0))
    averaged, r_avg = train_student(x, y, n_classes=2, noise_multiplier=1.0, seed=2,
                                    config=StudentConfig(**base, averaging_epochs=1.0))
    assert (r_last.steps, r_last.sample_rate, r_last.noise_multiplier) == \
        (r_avg.steps, r_avg.sample_rate, r_avg.noise_multiplier)
    differences = [float((a - b).detach().abs().max()) for a, b in
                   zip(last.parameters(), averaged.parameters(), strict=True)]
    assert max(differences) > 1e-4


def test_default_is_one_epoch() -> None:
    assert StudentConfig().averaging_epochs == 1.0
