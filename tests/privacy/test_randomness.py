"""Privacy draws come from fresh entropy; seeded draws reproduce; the test mode says so."""

import numpy as np
import pytest
import torch

from medistill.config import StudentConfig
from medistill.privacy.ledger import PrivacyLedger
from medistill.privacy.randomness import (
    GeneratorPoissonSampler, Randomness, gaussian_noise_like, secure_generator)
from medistill.student.train import train_student


def test_privacy_draws_are_fresh_and_seeded_draws_reproduce() -> None:
    r = Randomness(seed=7)
    assert not np.array_equal(r.privacy("labels").normal(size=8), r.privacy("labels").normal(size=8))
    assert np.array_equal(r.seeded("audit").normal(size=8), Randomness(7).seeded("audit").normal(size=8))
    assert not np.array_equal(r.seeded("audit").normal(size=8), r.seeded("mix").normal(size=8))
    assert r.secret_key("split") != r.secret_key("split")


def test_reproducible_mode_follows_the_seed_and_has_no_formal_guarantee() -> None:
    a, b = Randomness(3, reproducible=True), Randomness(3, reproducible=True)
    assert np.array_equal(a.privacy("labels").normal(size=4), b.privacy("labels").normal(size=4))
    assert a.secret_key("split") == b.secret_key("split")
    assert not a.formal_guarantee and Randomness(3).formal_guarantee
    ledger = PrivacyLedger(delta=1e-6, formal=a.formal_guarantee)
    assert not ledger.formal_guarantee
    assert PrivacyLedger.from_dict(ledger.to_dict()).formal_guarantee is False


def test_secure_generator_is_chacha20() -> None:
    bit_generator = secure_generator().bit_generator
    assert type(bit_generator).__name__ == "ChaCha"


def test_noise_has_the_right_law() -> None:
    noise = gaussian_noise_like(secure_generator(), 2.5, torch.zeros(200_000))
    assert noise.dtype == torch.float32
    assert abs(float(noise.mean())) < 0.05 and 2.45 < float(noise.std()) < 2.55


def test_poisson_sampler_rate_and_steps() -> None:
    sampler = GeneratorPoissonSampler(num_samples=10_000, sample_rate=0.05, steps=7,
                                      rng=secure_generator())
    batches = list(sampler)
    assert len(batches) == 7
    assert all(400 <= len(b) <= 600 for b in batches)   # Binomial(10000, .05): sd 21.8


def test_15_2_two_trainings_with_privacy_noise_differ_and_seeded_ones_agree() -> None:
    """Issue #15 item 2: same data, same seed, fresh privacy noise → different students."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    config = StudentConfig(epochs=2, hidden_layers=(8,))

    def weights(privacy_rng):
        net, record = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0,
                                    seed=5, privacy_rng=privacy_rng)
        return torch.cat([p.detach().flatten() for p in net.parameters()]), record

    first, record = weights(secure_generator())
    second, _ = weights(secure_generator())
    assert record.privacy_noise and not torch.equal(first, second)
    seeded_a, rec_a = weights(None)
    seeded_b, _ = weights(None)
    assert torch.equal(seeded_a, seeded_b) and not rec_a.privacy_noise


@pytest.mark.parametrize("std", [0.0, 1.0])
def test_zero_noise_is_exactly_zero(std: float) -> None:
    noise = gaussian_noise_like(secure_generator(), std, torch.zeros(3))
    assert (noise == 0).all() == (std == 0.0)
