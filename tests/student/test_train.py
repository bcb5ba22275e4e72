import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medistill.config import StudentConfig
from medistill.student.train import DpSgdSchedule, train_student


def _auroc(network, x, y) -> float:
    import torch

    with torch.no_grad():
        return roc_auc_score(y, torch.softmax(network(torch.as_tensor(x)), 1)[:, 1].numpy())


def test_recorded_events_match_what_opacus_did(arrays) -> None:
    x, y, _, _ = arrays
    config = StudentConfig(epochs=2, batch_size=100)
    schedule = DpSgdSchedule.for_data(len(x), 100, 2)
    _, record = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.3, seed=0)
    assert record.noise_multiplier == 1.3
    assert record.sample_rate == pytest.approx(schedule.sample_rate)
    assert record.steps == schedule.steps


def test_training_auroc_band_and_noise_is_really_on(arrays) -> None:
    x, y, xt, yt = arrays
    config = StudentConfig(epochs=5)
    net, _ = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0, seed=1)
    # Lower bound: it learns. Upper bound: DP noise cannot reach the non-private optimum.
    assert 0.72 <= _auroc(net, xt, yt) <= 0.89
    drowned, _ = train_student(x, y, n_classes=2, config=config, noise_multiplier=200.0, seed=1)
    assert _auroc(drowned, xt, yt) < _auroc(net, xt, yt) - 0.05


def test_same_seed_same_student(arrays) -> None:
    import torch

    x, y, xt, _ = arrays
    config = StudentConfig(epochs=1, batch_size=256)
    a, _ = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0, seed=5)
    b, _ = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0, seed=5)
    with torch.no_grad():
        assert torch.equal(a(torch.as_tensor(xt)), b(torch.as_tensor(xt)))


# ----------------------------------------------------------------------------- sampling

def _toy(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=n) > 0).astype(np.int64)
    return x, y, rng.random(n) < 0.3


def test_poisson_batches_have_rate_times_n_rows_on_average() -> None:
    import torch

    from medistill.student.sampling import BatchTensors, poisson_loader

    n, rate, steps = 2000, 0.05, 400
    data = BatchTensors(torch.arange(n).float()[:, None], torch.zeros(n, 2),
                        torch.zeros(n, dtype=torch.bool))
    loader = poisson_loader(data, sample_rate=rate, steps=steps,
                            generator=torch.Generator().manual_seed(0))
    sizes, counts = [], torch.zeros(n)
    for x, y, t, w in loader:
        assert len(x) == len(y) == len(t) == len(w)
        sizes.append(len(x))
        counts[x[:, 0].long()] += 1
        assert len(set(x[:, 0].tolist())) == len(x)          # no row twice in a batch
    assert len(sizes) == steps
    mean = float(np.mean(sizes))
    # E = rate·n = 100, sd of the mean over 400 steps = sqrt(100·0.95/400) ≈ 0.49.
    assert abs(mean - rate * n) < 2.5
    assert 0.8 < np.var(sizes) / (rate * (1 - rate) * n) < 1.25    # binomial, not fixed size
    # Each row's inclusion count is Binomial(400, 0.05): mean 20 for every row alike.
    assert abs(float(counts.mean()) - steps * rate) < 0.1
    assert float(counts[:1000].mean() - counts[1000:].mean()) == pytest.approx(0, abs=0.6)


def test_empty_poisson_batches_are_zero_row_tensors_and_still_a_step() -> None:
    import torch

    from medistill.student.sampling import BatchTensors, poisson_loader

    data = BatchTensors(torch.ones(5, 3), torch.zeros(5, 2), torch.zeros(5, dtype=torch.bool))
    loader = poisson_loader(data, sample_rate=0.01, steps=50,
                            generator=torch.Generator().manual_seed(1))
    batches = list(loader)
    assert len(batches) == 50
    empty = [b for b in batches if len(b[0]) == 0]
    assert empty and empty[0][0].shape == (0, 3) and empty[0][2].dtype == torch.bool
    # Training on a table so small that most batches are empty: every step is accounted.
    x, y, _ = _toy(12)
    config = StudentConfig(epochs=10, batch_size=8, hidden_layers=(4,))
    schedule = DpSgdSchedule.for_data(12, 8, 10)
    net, record = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0,
                                seed=0, batch_size=8)
    assert record.steps == schedule.steps == 20
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_steps_match_schedule_where_int_of_one_over_rate_is_short() -> None:
    # 1 / (1 / 93) < 93 in floating point: Opacus's DPDataLoader would take 92 steps.
    x, y, _ = _toy(93 * 8)
    config = StudentConfig(epochs=1, batch_size=8, hidden_layers=(4,))
    schedule = DpSgdSchedule.for_data(len(x), 8, 1)
    assert schedule.steps == 93 and int(1 / schedule.sample_rate) == 92
    _, record = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0, seed=0)
    assert record.steps == 93 and record.sample_rate == schedule.sample_rate


def test_different_seed_different_student() -> None:
    import torch

    x, y, t = _toy()
    config = StudentConfig(epochs=1, batch_size=64, hidden_layers=(8,))
    a, _ = train_student(x, y, n_classes=2, is_transfer=t, config=config, noise_multiplier=1.0,
                         seed=1)
    b, _ = train_student(x, y, n_classes=2, is_transfer=t, config=config, noise_multiplier=1.0,
                         seed=1)
    c, _ = train_student(x, y, n_classes=2, is_transfer=t, config=config, noise_multiplier=1.0,
                         seed=2)
    z = torch.as_tensor(x[:50])
    with torch.no_grad():
        assert torch.equal(a(z), b(z))
        assert not torch.allclose(a(z), c(z))


# ----------------------------------------------------------------------------- BatchMemoryManager

@pytest.mark.parametrize("mode", ["hooks", "fused"])
def test_small_physical_batches_keep_the_accounting_and_the_result(mode: str) -> None:
    import torch

    x, y, t = _toy(1200)
    base = {"epochs": 2, "batch_size": 200, "hidden_layers": (8,), "grad_sample_mode": mode}
    schedule = DpSgdSchedule.for_data(len(x), 200, 2)
    whole, r_whole = train_student(x, y, n_classes=2, is_transfer=t,
                                   config=StudentConfig(**base), noise_multiplier=1.1, seed=3)
    split, r_split = train_student(x, y, n_classes=2, is_transfer=t,
                                   config=StudentConfig(**base, max_physical_batch_size=16),
                                   noise_multiplier=1.1, seed=3)
    for record in (r_whole, r_split):
        assert (record.steps, record.sample_rate, record.noise_multiplier) == \
            (schedule.steps, schedule.sample_rate, 1.1)
    assert r_whole.physical_batches == schedule.steps
    assert r_split.physical_batches > 10 * schedule.steps       # ~200/16 per step
    # Same Poisson batches, same noise: only the order of float sums differs.
    z = torch.as_tensor(x[:100])
    with torch.no_grad():
        assert torch.allclose(whole(z), split(z), atol=1e-4)


# ----------------------------------------------------------------------------- grad_sample_mode

def test_unknown_grad_sample_mode_is_rejected_with_the_choices() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown per-sample-gradient mode 'vmap'.*hooks"):
        StudentConfig(grad_sample_mode="vmap")


def test_fused_clipping_equals_an_exact_per_example_loop() -> None:
    import torch

    from medistill.student.fused import forward_with_activations, set_clipped_sum_grads
    from medistill.student.losses import per_example_loss
    from medistill.student.model import StudentMLP

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen) * 3          # some rows beyond the input clamp
    y = torch.softmax(torch.randn(40, 2, generator=gen), 1)
    t = torch.rand(40, generator=gen) < 0.4
    w = torch.rand(40, generator=gen)
    net = StudentMLP(6, 2, (8, 5), generator=gen)
    params = list(net.parameters())
    grads = []
    for i in range(40):
        loss = per_example_loss(net(x[i:i + 1]), y[i:i + 1], t[i:i + 1], temperature=2.0) * w[i]
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss.sum(), params)]))
    per = torch.stack(grads)
    norms = per.norm(dim=1)
    expected = (per * (0.5 / (norms + 1e-6)).clamp(max=1.0)[:, None]).sum(0)
    logits, inputs, outputs = forward_with_activations(net, x)
    assert torch.equal(logits, net(x))
    got_norms = set_clipped_sum_grads(
        net, per_example_loss(logits, y, t, temperature=2.0) * w, inputs, outputs, 0.5)
    assert torch.allclose(got_norms, norms, atol=1e-5)
    assert (norms > 0.5).any() and (norms < 0.5).any()            # both clipped and not
    assert torch.allclose(torch.cat([p.grad.flatten() for p in params]), expected, atol=1e-5)


def test_fused_mode_refuses_other_networks() -> None:
    import torch

    from medistill.student.fused import check_fusable

    with pytest.raises(ValueError, match="fused"):
        check_fusable(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("mode", ["fused", "ew", "functorch", "ghost"])
def test_every_mode_trains_with_the_same_accounting(mode: str) -> None:
    import torch

    x, y, t = _toy(400)
    config = StudentConfig(epochs=1, batch_size=50, hidden_layers=(8,), grad_sample_mode=mode)
    net, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                noise_multiplier=0.0, seed=0)
    assert record.grad_sample_mode == mode and record.steps == 8
    reference, _ = train_student(x, y, n_classes=2, is_transfer=t,
                                 config=StudentConfig(epochs=1, batch_size=50, hidden_layers=(8,),
                                                      grad_sample_mode="hooks"),
                                 noise_multiplier=0.0, seed=0)
    z = torch.as_tensor(x[:50])
    with torch.no_grad():   # noise 0: every exact mode takes the same steps
        assert torch.allclose(net(z), reference(z), atol=1e-4)


# ----------------------------------------------------------------------------- α schedule

def test_constant_schedule_and_pure_data_ignore_alpha_end() -> None:
    import torch

    from medistill.student.train import epoch_weights

    flags = torch.tensor([True, False, False, True])
    linear = StudentConfig(alpha=0.3, alpha_schedule="linear", alpha_end=0.0, epochs=4)
    constant = StudentConfig(alpha=0.3, alpha_schedule="constant", alpha_end=0.0, epochs=4)
    assert epoch_weights(constant, flags, 0.3, 3) is None
    assert epoch_weights(linear, torch.zeros(4, dtype=torch.bool), 0.3, 3) is None   # α = 0
    assert epoch_weights(linear, torch.ones(4, dtype=torch.bool), 0.3, 3) is None    # α = 1
    assert epoch_weights(linear, flags, 0.3, 0) is None          # first epoch: the data mix
    last = epoch_weights(linear, flags, 0.3, 3)
    assert last.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_default_schedule_is_linear_to_zero() -> None:
    config = StudentConfig()
    assert (config.alpha_schedule, config.alpha_end, config.grad_sample_mode) == \
        ("linear", 0.0, "auto")
    with pytest.raises(ValueError, match="unknown α schedule"):
        StudentConfig(alpha_schedule="cosine")


def test_linear_schedule_moves_the_effective_mix() -> None:
    from medistill.student.losses import alpha_weights

    for data_share, target in ((0.3, 0.1), (0.3, 0.6), (0.5, 0.5), (0.2, 0.0), (0.2, 1.0)):
        wt, ws = alpha_weights(data_share, target)
        assert max(wt, ws) == 1.0 and min(wt, ws) >= 0.0
        assert wt * data_share / (wt * data_share + ws * (1 - data_share)) == \
            pytest.approx(target)


def test_schedules_reduce_exactly_to_the_plain_mix() -> None:
    import torch

    x, y, t = _toy(500)
    base = {"epochs": 2, "batch_size": 64, "hidden_layers": (8,), "alpha": 0.3}
    z = torch.as_tensor(x[:50])
    # The plain data mix, as before schedules existed: constant weights of 1 (no weights).
    plain, _ = train_student(x, y, n_classes=2, is_transfer=t,
                             config=StudentConfig(**base, alpha_schedule="constant"),
                             noise_multiplier=1.0, seed=4)
    same = [StudentConfig(**base, alpha_schedule="constant", alpha_end=0.9),
            StudentConfig(**base, alpha_schedule="linear", alpha_end=0.3),
            StudentConfig(**base, alpha_schedule="linear", alpha_end=None)]
    with torch.no_grad():
        for config in same:
            net, _ = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                   noise_multiplier=1.0, seed=4)
            assert torch.equal(net(z), plain(z)), config
        for flags in (np.zeros(len(x), bool), np.ones(len(x), bool)):        # α = 0 and α = 1
            a, _ = train_student(x, y, n_classes=2, is_transfer=flags,
                                 config=StudentConfig(**base, alpha_schedule="constant"),
                                 noise_multiplier=1.0, seed=4)
            b, _ = train_student(x, y, n_classes=2, is_transfer=flags,
                                 config=StudentConfig(**base, alpha_schedule="linear",
                                                      alpha_end=0.0),
                                 noise_multiplier=1.0, seed=4)
            assert torch.equal(a(z), b(z))
        moved, _ = train_student(x, y, n_classes=2, is_transfer=t,
                                 config=StudentConfig(**base, alpha_schedule="linear",
                                                      alpha_end=0.0),
                                 noise_multiplier=1.0, seed=4)
        assert not torch.equal(moved(z), plain(z))


def test_weights_scale_each_examples_loss_before_clipping() -> None:
    import torch

    from medistill.student.losses import StudentCriterion, mixed_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=gen)
    targets = torch.softmax(torch.randn(6, 2, generator=gen), 1)
    flags = torch.tensor([True, True, False, False, True, False])
    w = torch.tensor([0.5, 0.5, 1.0, 1.0, 0.5, 1.0])
    per = StudentCriterion(2.0, reduction="none")(logits, targets, flags)
    assert torch.allclose(StudentCriterion(2.0, reduction="none")(logits, targets, flags, w),
                          per * w)
    assert mixed_loss(logits, targets, flags, temperature=2.0, weights=w).item() == \
        pytest.approx((per * w).mean().item())
    assert torch.equal(mixed_loss(logits, targets, flags, temperature=2.0),
                       StudentCriterion(2.0)(logits, targets, flags))


# ----------------------------------------------------------------------------- plan schedule

def test_a_planned_schedule_fixes_sample_rate_and_steps_whatever_the_row_count() -> None:
    from medistill.student.train import DpSgdSchedule

    x, y, _ = _toy(100)
    config = StudentConfig(epochs=2, batch_size=50, hidden_layers=(4,))
    planned = DpSgdSchedule.for_data(400, 40, 2)       # planned for 400 rows, 10 batches/epoch
    _, record = train_student(x, y, n_classes=2, config=config, noise_multiplier=1.0, seed=0,
                              schedule=planned)
    assert record.sample_rate == pytest.approx(planned.sample_rate)
    assert record.steps == planned.steps


@pytest.mark.parametrize("mode", ["hooks", "fused", "ghost"])
def test_a_given_expected_batch_size_is_what_every_step_divides_by(
        mode: str, divisors: list[float]) -> None:
    """Released trainings pass the plan's expected batch: rows 109 and 110 under a schedule
    planned for 400 both divide by 40. Without it the divisor is Opacus's int(n · q)."""
    planned = DpSgdSchedule.for_data(400, 40, 2)        # q = 0.1, 10 steps per epoch
    config = StudentConfig(epochs=2, batch_size=40, hidden_layers=(4,), grad_sample_mode=mode)
    for n in (109, 110):
        x, y, t = _toy(n)
        divisors.clear()
        _, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                  noise_multiplier=1.0, seed=0, schedule=planned,
                                  expected_batch_size=planned.expected_batch_size())
        assert divisors == [pytest.approx(40.0)] * planned.steps
        assert record.expected_batch_size == pytest.approx(40.0)
        divisors.clear()
        _, record = train_student(x, y, n_classes=2, is_transfer=t, config=config,
                                  noise_multiplier=1.0, seed=0, schedule=planned)
        assert divisors == [int(n * 0.1)] * planned.steps
        assert record.expected_batch_size == int(n * 0.1)


def test_expected_batch_size_is_the_planned_rows_times_the_rate() -> None:
    planned = DpSgdSchedule.for_data(400, 40, 3)
    assert planned.expected_batch_size() == pytest.approx(40.0)
    assert planned.expected_batch_size(30) == pytest.approx(43.0)
    with pytest.raises(ValueError, match="public_rows"):
        planned.expected_batch_size(-1)
