"""DP-SGD fine-tuning of a distilled student (medistill.student.train.fine_tune)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medistill.config import StudentConfig
from medistill.student.train import DpSgdSchedule, fine_tune, train_student


def _auroc(network, x, y) -> float:
    with torch.no_grad():
        return roc_auc_score(y, torch.softmax(network(torch.as_tensor(x)), 1)[:, 1].numpy())


def _params(network) -> list[torch.Tensor]:
    return [p.detach().clone() for p in network.parameters()]


def _start(x, y, seed: int = 0):
    """A student trained without noise (as distillation trains it) on labels ``y``."""
    net, _ = train_student(x, y, n_classes=2, config=StudentConfig(epochs=4), noise_multiplier=0.0,
                           seed=seed)
    return net


def test_fine_tuning_starts_from_the_given_weights_and_leaves_them_unchanged(arrays) -> None:
    x, y, _, _ = arrays
    start = _start(x, y)
    before = _params(start)
    config = StudentConfig(fine_tune_epochs=1, fine_tune_learning_rate=1e-9, averaging_epochs=0)
    schedule = DpSgdSchedule.for_data(len(x), 256, 1)
    tuned, _ = fine_tune(start, x, y, n_classes=2, config=config, noise_multiplier=0.0, seed=3,
                         schedule=schedule)
    assert tuned is not start
    for a, b, c in zip(before, _params(start), _params(tuned), strict=True):
        assert torch.equal(a, b)                        # the distilled network is untouched
        assert torch.allclose(a, c, atol=1e-5)          # the tuned one started from it


def test_fine_tuning_follows_the_plans_schedule_and_its_own_epochs(arrays) -> None:
    x, y, _, _ = arrays
    config = StudentConfig(epochs=40, fine_tune_epochs=3)
    schedule = DpSgdSchedule.for_data(len(x), 128, 3)
    _, record = fine_tune(_start(x, y), x, y, n_classes=2, config=config, noise_multiplier=1.1,
                          seed=0, schedule=schedule)
    assert record.noise_multiplier == 1.1
    assert record.sample_rate == pytest.approx(schedule.sample_rate)
    assert record.steps == schedule.steps


def test_fine_tuning_repairs_a_start_that_ranks_backwards(arrays) -> None:
    """A distilled student can rank against the outcome when its DP teacher's noisy ranges
    put every real value on one clamp; DP-SGD on the real labels turns it round."""
    x, y, xt, yt = arrays
    inverted = _start(x, 1 - y)
    assert _auroc(inverted, xt, yt) < 0.3
    schedule = DpSgdSchedule.for_data(len(x), 64, 15)
    tuned, _ = fine_tune(inverted, x, y, n_classes=2, config=StudentConfig(),
                         noise_multiplier=1.0, seed=1, schedule=schedule)
    # Lower bound: it now ranks with the outcome. Upper: DP noise keeps it below the optimum.
    assert 0.7 <= _auroc(tuned, xt, yt) <= 0.89


def test_fine_tuning_keeps_a_good_start(arrays) -> None:
    x, y, xt, yt = arrays
    start = _start(x, y)
    schedule = DpSgdSchedule.for_data(len(x), 64, 15)
    tuned, _ = fine_tune(start, x, y, n_classes=2, config=StudentConfig(), noise_multiplier=1.0,
                         seed=2, schedule=schedule)
    assert _auroc(tuned, xt, yt) >= _auroc(start, xt, yt) - 0.03


def test_anchor_rows_leave_the_accounting_as_planned_and_hold_the_student_to_its_teacher(
        arrays) -> None:
    """Teacher-labelled rows mixed into the batches are post-processing: the record (sample
    rate, steps, noise) is the schedule's. Under heavy noise they keep the student near
    its start, where the patients alone pull it off."""
    x, y, xt, yt = arrays
    start = _start(x, y)
    with torch.no_grad():
        soft = torch.softmax(start(torch.as_tensor(x)), 1).numpy()
    schedule = DpSgdSchedule.for_data(len(x), 64, 15)
    common = {"n_classes": 2, "config": StudentConfig(), "noise_multiplier": 8.0,
              "schedule": schedule}
    alone = [_auroc(fine_tune(start, x, y, seed=s, **common)[0], xt, yt) for s in range(3)]
    held = []
    for s in range(3):
        net, record = fine_tune(start, x, y, seed=s, anchor=(x, soft), **common)
        assert record.sample_rate == pytest.approx(schedule.sample_rate)
        assert record.steps == schedule.steps and record.noise_multiplier == 8.0
        held.append(_auroc(net, xt, yt))
    assert np.mean(held) > np.mean(alone)
    assert np.mean(held) >= _auroc(start, xt, yt) - 0.02


def test_anchor_rows_are_drawn_from_the_transfer_rows_per_planned_patient() -> None:
    from medistill.steps.student import anchor_rows

    inputs = np.arange(40, dtype=np.float32).reshape(20, 2)
    targets = np.tile(np.array([[0.3, 0.7]], dtype=np.float32), (20, 1))

    def draw(n_planned: int, ratio: float, rows: np.ndarray = inputs, seed: int = 0):
        return anchor_rows(rows, targets[:len(rows)], n_planned=n_planned, ratio=ratio,
                           rng=np.random.default_rng(seed))

    x, t = draw(8, 1.0)
    assert len(x) == len(t) == 8
    assert len({tuple(r) for r in x}) == len(x)                 # without replacement
    assert {tuple(r) for r in x} <= {tuple(r) for r in inputs}
    assert len(draw(8, 0.5)[0]) == 4
    assert len(draw(1000, 1.0)[0]) == 20
    assert draw(8, 1.0, inputs[:0]) is None
    assert draw(8, 0.0) is None
    # the same planned count and seed: the same rows, whatever else there is
    assert np.array_equal(draw(8, 1.0)[0], x)


@pytest.mark.parametrize("mode", ["hooks", "fused"])
def test_fine_tuning_divides_by_the_planned_expected_batch_not_the_row_count(
        mode: str, divisors: list[float]) -> None:
    """Two patient sets of 109 and 110 rows (and 30 anchors) under a schedule planned for
    400 patients: every step divides by 0.1 · (400 + 30), Opacus's own int(n · q) would
    have been 13 and 14."""
    rng = np.random.default_rng(0)
    config = StudentConfig(fine_tune_epochs=1, hidden_layers=(4,), grad_sample_mode=mode)
    planned = DpSgdSchedule.for_data(400, 40, 1)             # q = 0.1, 10 steps
    anchor = (rng.normal(size=(30, 5)).astype(np.float32),
              np.full((30, 2), 0.5, dtype=np.float32))
    for n in (109, 110):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64)
        start, _ = train_student(x, y, n_classes=2, config=config, noise_multiplier=0.0, seed=0)
        divisors.clear()
        _, record = fine_tune(start, x, y, n_classes=2, config=config, noise_multiplier=1.0,
                              seed=1, schedule=planned, anchor=anchor)
        assert record.steps == planned.steps == len(divisors)
        assert divisors == [pytest.approx(0.1 * 430)] * planned.steps
        assert record.expected_batch_size == pytest.approx(planned.expected_batch_size(30))
