import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medistill.config import DataConfig, StudentConfig
from medistill.data.splits import split_patients
from medistill.data.table import load_sensitive
from medistill.student.preprocess import as_model_input, make_preprocessor
from medistill.student.train import DpSgdSchedule, train_student


@pytest.fixture(scope="module")
def arrays():
    data = load_sensitive(DataConfig(source="builtin", builtin={"n_patients": 2500}), seed=0)
    split = split_patients(data.patient_ids, data.labels, test=0.25, holdout=0.05, seed=0)
    X = as_model_input(data.features, data.schema)
    pre = make_preprocessor(data.schema).fit(X.iloc[split.train])
    to = lambda idx: pre.transform(X.iloc[idx]).astype(np.float32)  # noqa: E731
    return to(split.train), data.labels[split.train], to(split.test), data.labels[split.test]


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
