"""The teacher zoo: one sklearn interface, seeded by random_state only."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from medistill.config import DataConfig
from medistill.data.table import load_sensitive
from medistill.errors import ConfigError, NotFittedError
from medistill.teachers.ensemble import PartitionedEnsemble
from medistill.teachers.models import TEACHER_KINDS, TorchMLPClassifier, make_teacher


@pytest.fixture(scope="module")
def data():
    d = load_sensitive(DataConfig(source="builtin", builtin={"n_patients": 1500}), seed=0)
    cut = 800
    return d, (d.features[:cut], d.labels[:cut]), (d.features[cut:].reset_index(drop=True),
                                                   d.labels[cut:])


@pytest.mark.parametrize("kind", TEACHER_KINDS)
def test_every_kind_fits_and_predicts_probabilities(data, kind) -> None:
    d, (X, y), (Xt, yt) = data
    params = {"max_epochs": 15} if kind == "torch_mlp" else {}
    model = make_teacher(kind, d.schema, random_state=0, **params).fit(X, y)
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    assert np.allclose(proba.sum(axis=1), 1.0) and proba.min() >= 0
    assert roc_auc_score(yt, proba[:, 1]) > 0.75
    if kind in ("torch_mlp", "random_forest"):  # seeded by random_state alone
        again = make_teacher(kind, d.schema, random_state=0, **params).fit(X, y)
        assert np.allclose(again.predict_proba(Xt), proba)


@pytest.mark.parametrize("kind", TEACHER_KINDS)
def test_every_kind_takes_an_empty_and_a_constant_column(data, kind) -> None:
    """Empty and constant columns stay features (docs/input_checks.md): every teacher fits
    with them; in the trees and the linear model, values arriving later in the empty column
    change nothing (the MLP's weights on it keep their random start)."""
    from dataclasses import replace

    from medistill.data.schema import FeatureSpec

    d, (X, y), (Xt, _) = data
    schema = replace(d.schema, features=(*d.schema.features, FeatureSpec("spare", "numeric"),
                                         FeatureSpec("unit", "numeric")))
    params = {"max_epochs": 3} if kind == "torch_mlp" else {}
    model = make_teacher(kind, schema, random_state=0, **params).fit(
        X.assign(spare=np.nan, unit=7.5), y)
    proba = model.predict_proba(Xt.assign(spare=np.nan, unit=7.5))
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
    if kind != "torch_mlp":
        assert np.allclose(model.predict_proba(Xt.assign(spare=3.0, unit=7.5)), proba)


def test_make_teacher_overrides_and_unknown_kind(data) -> None:
    d = data[0]
    assert make_teacher("logistic_regression", d.schema, random_state=0, C=0.1)[-1].C == 0.1
    with pytest.raises(ValueError, match="The 'kind' parameter of make_teacher must be one of"):
        make_teacher("svm", d.schema, random_state=0)


def _toy(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    return X, y


def test_mlp_is_a_sklearn_estimator() -> None:
    est = TorchMLPClassifier(hidden_layer_sizes=(16,), max_epochs=3, random_state=4)
    assert est.get_params()["random_state"] == 4 and not hasattr(est, "module_")
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    X, y = _toy()
    est.fit(X, y)
    assert list(est.classes_) == ["no", "yes"] and est.n_features_in_ == 5
    assert est.predict(X).dtype == est.classes_.dtype
    assert 0 <= est.score(X, y) <= 1
    assert not hasattr(copy, "module_")  # clone copies parameters, not learned state


def test_mlp_predict_before_fit_raises_not_fitted() -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        TorchMLPClassifier().predict_proba(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        TorchMLPClassifier().predict(np.zeros((2, 3)))


def test_mlp_is_seeded_without_touching_global_generators() -> None:
    X, y = _toy()
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    threads = torch.get_num_threads()
    a = TorchMLPClassifier(hidden_layer_sizes=(32, 16), max_epochs=5, random_state=1).fit(X, y)
    b = TorchMLPClassifier(hidden_layer_sizes=(32, 16), max_epochs=5, random_state=1).fit(X, y)
    c = TorchMLPClassifier(hidden_layer_sizes=(32, 16), max_epochs=5, random_state=2).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.allclose(a.predict_proba(X), c.predict_proba(X))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.get_num_threads() == threads


def test_mlp_learns_and_stops_early() -> None:
    X, y = _toy(1500)
    est = TorchMLPClassifier(hidden_layer_sizes=(64, 64), max_epochs=200, n_iter_no_change=3,
                             random_state=0).fit(X, y)
    assert est.n_epochs_ < 200 and est.best_validation_loss_ is not None
    assert roc_auc_score(y == "yes", est.predict_proba(X)[:, 1]) > 0.9


@pytest.mark.parametrize(("params", "message"), [
    ({"dropout": 1.0}, "The 'dropout' parameter of TorchMLPClassifier must be a float in the "
                       "range [0, 1). Got 1.0 instead."),
    ({"batch_size": 0}, "The 'batch_size' parameter of TorchMLPClassifier must be an int in the "
                        "range [1, inf). Got 0 instead."),
    ({"hidden_layer_sizes": ()}, "'hidden_layer_sizes' parameter of TorchMLPClassifier must be"),
    ({"learning_rate": -1}, "The 'learning_rate' parameter"),
    ({"max_epochs": 2.5}, "The 'max_epochs' parameter"),
])
def test_mlp_validates_parameters_in_fit(params, message) -> None:
    est = TorchMLPClassifier(**params)  # __init__ only stores
    X, y = _toy(50)
    with pytest.raises(ValueError) as info:
        est.fit(X, y)
    assert message in str(info.value)


def test_mlp_validates_data() -> None:
    X, y = _toy(60)
    with pytest.raises(ValueError, match="at least 2 classes"):
        TorchMLPClassifier(max_epochs=1).fit(X, np.zeros(60))
    est = TorchMLPClassifier(hidden_layer_sizes=(8,), max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="expecting 5 features"):
        est.predict_proba(X[:, :3])


def test_ensemble_engine_is_validated(data) -> None:
    d = data[0]
    with pytest.raises(ConfigError, match=r"'engine'.*'ray' is planned but not available"):
        PartitionedEnsemble(n_teachers=3, kind="logistic_regression", schema=d.schema,
                            random_state=0, engine="ray")
    with pytest.raises(ConfigError, match="Got 'dask' instead"):
        PartitionedEnsemble(n_teachers=3, kind="logistic_regression", schema=d.schema,
                            random_state=0, engine="dask")
    ens = PartitionedEnsemble(n_teachers=3, kind="logistic_regression", schema=d.schema,
                              random_state=0, engine="joblib")
    assert ens.engine == "joblib"
