"""Teacher models behind one small interface: sklearn estimators (fit / predict_proba) on
the raw feature frame. Teachers are trained on sensitive rows and are never released.

Every teacher is a :class:`sklearn.pipeline.Pipeline` ``[("encode", ColumnTransformer),
("model", estimator)]`` built by :func:`make_teacher`. Randomness comes only from the
``random_state`` passed in: nothing here seeds numpy's or torch's global generators.
"""

from __future__ import annotations

import copy
import numbers
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_array, check_X_y

from medistill.data.schema import CATEGORICAL, TableSchema
from medistill.errors import NotFittedError

TEACHER_KINDS = ("hist_gradient_boosting", "logistic_regression", "random_forest", "torch_mlp")


def _columns(schema: TableSchema) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in schema.features if f.kind != CATEGORICAL]
    categorical = [f.name for f in schema.features if f.kind == CATEGORICAL]
    return numeric, categorical


def _check_param(owner: str, name: str, value, kind: type, low: float, high: float,
                 *, low_open: bool = True, high_open: bool = True) -> None:
    """sklearn-style parameter validation message for a number in an interval."""
    ok_type = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
               if kind is int else isinstance(value, numbers.Real) and not isinstance(value, bool))
    ok = ok_type and (value > low if low_open else value >= low) and \
        (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"The '{name}' parameter of {owner} must be "
                         f"{'an int' if kind is int else 'a float'} in the range "
                         f"{left}{low:g}, {high:g}{right}. Got {value!r} instead.")


@contextmanager
def _torch_threads(n: int):
    """Run with ``n`` intra-op threads and restore the previous setting afterwards.

    Small tabular batches gain nothing from intra-op parallelism, and on a busy machine
    OpenMP's spinning threads make each step tens of times slower; parallelism comes from
    training teachers in separate processes instead (joblib).
    """
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


class _MLP(torch.nn.Module):
    """Linear → ReLU → dropout blocks; dropout masks drawn from an explicit generator."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int, dropout: float) -> None:
        super().__init__()
        sizes = (n_in, *hidden)
        # skip_init: the default initialisation would draw from torch's global generator;
        # ``reset`` initialises from an explicit one instead.
        linear = torch.nn.utils.skip_init
        self.hidden = torch.nn.ModuleList(
            linear(torch.nn.Linear, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.out = linear(torch.nn.Linear, sizes[-1], n_out)
        self.dropout = dropout

    def reset(self, generator: torch.Generator) -> None:
        """He-uniform weights and zero biases, drawn from ``generator`` only."""
        for layer in (*self.hidden, self.out):
            torch.nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=generator)
            torch.nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
            if generator is not None and self.dropout > 0:  # training: inverted dropout
                keep = torch.bernoulli(torch.full_like(x, 1.0 - self.dropout), generator=generator)
                x = x * keep / (1.0 - self.dropout)
        return self.out(x)


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """A large multi-layer perceptron teacher in torch, with the sklearn estimator API.

    Expects a numeric matrix (missing values imputed, columns scaled, categories one-hot —
    :func:`make_teacher` puts a ColumnTransformer in front). Trains with AdamW on
    cross-entropy in mini-batches, keeps ``validation_fraction`` of the rows (stratified) to
    stop early and restores the weights of the best validation loss.

    All randomness (weight initialisation, validation split, batch order, dropout) comes from
    a ``torch.Generator`` seeded with ``random_state``; global generators are never touched.
    It uses ``n_threads`` torch threads (default 1) while fitting and predicting, and restores
    the process-wide setting afterwards.
    """

    def __init__(self, hidden_layer_sizes: tuple[int, ...] = (256, 256, 128), *,
                 dropout: float = 0.1, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: int = 256, max_epochs: int = 60, validation_fraction: float = 0.15,
                 n_iter_no_change: int = 8, n_threads: int = 1,
                 random_state: int | None = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        name = type(self).__name__
        sizes = self.hidden_layer_sizes
        if (not isinstance(sizes, tuple | list) or not sizes
                or not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes)):
            raise ValueError(f"The 'hidden_layer_sizes' parameter of {name} must be a non-empty "
                             f"tuple of positive ints. Got {sizes!r} instead.")
        _check_param(name, "dropout", self.dropout, float, 0, 1, low_open=False)
        _check_param(name, "learning_rate", self.learning_rate, float, 0, np.inf)
        _check_param(name, "weight_decay", self.weight_decay, float, 0, np.inf, low_open=False)
        _check_param(name, "batch_size", self.batch_size, int, 1, np.inf, low_open=False)
        _check_param(name, "max_epochs", self.max_epochs, int, 1, np.inf, low_open=False)
        _check_param(name, "validation_fraction", self.validation_fraction, float, 0, 1,
                     low_open=False)
        _check_param(name, "n_iter_no_change", self.n_iter_no_change, int, 1, np.inf,
                     low_open=False)
        _check_param(name, "n_threads", self.n_threads, int, 1, np.inf, low_open=False)
        if self.random_state is not None:
            _check_param(name, "random_state", self.random_state, int, 0, 2**63 - 1,
                         low_open=False, high_open=False)

    def fit(self, X, y) -> TorchMLPClassifier:
        self._validate_params()
        with _torch_threads(self.n_threads):
            return self._fit(X, y)

    def _fit(self, X, y) -> TorchMLPClassifier:
        X, y = check_X_y(X, y, dtype=np.float32, ensure_min_samples=2)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y. "
                             f"Got {len(self.classes_)} class instead.")
        self.n_features_in_ = X.shape[1]
        seed = 0 if self.random_state is None else int(self.random_state)
        gen = torch.Generator().manual_seed(seed)
        train, val = self._split(codes, gen)
        xt, yt = torch.from_numpy(X), torch.from_numpy(codes.astype(np.int64))
        net = _MLP(X.shape[1], tuple(int(s) for s in self.hidden_layer_sizes),
                   len(self.classes_), float(self.dropout))
        net.reset(gen)
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate,
                                weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        best, best_state, stale, self.loss_curve_ = np.inf, None, 0, []
        for _epoch in range(self.max_epochs):
            net.train()
            order = train[torch.randperm(len(train), generator=gen)]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(net(xt[idx], gen), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.loss_curve_.append(total / len(order))
            if len(val) == 0:
                continue
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(xt[val]), yt[val]))
            if val_loss < best - 1e-4:
                best, best_state, stale = val_loss, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
                if stale >= self.n_iter_no_change:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.module_ = net
        self.n_epochs_ = len(self.loss_curve_)
        self.best_validation_loss_ = None if best_state is None else best
        return self

    def _split(self, codes: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Stratified train/validation row indices (no validation if too few rows)."""
        train, val = [], []
        for c in range(codes.max() + 1):
            rows = torch.from_numpy(np.flatnonzero(codes == c))
            rows = rows[torch.randperm(len(rows), generator=gen)]
            n_val = int(round(self.validation_fraction * len(rows)))
            n_val = n_val if len(rows) - n_val >= 1 else 0
            val.append(rows[:n_val])
            train.append(rows[n_val:])
        return torch.cat(train), torch.cat(val)

    def predict_proba(self, X) -> np.ndarray:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit first.")
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        with _torch_threads(self.n_threads), torch.no_grad():
            return torch.softmax(self.module_(torch.from_numpy(X)), dim=1).double().numpy()

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


def _one_hot_encoder(schema: TableSchema, *, scale: bool) -> ColumnTransformer:
    """Median imputation with missing indicators (scaled if asked) and one-hot categories."""
    numeric, categorical = _columns(schema)
    cats = [list(schema.feature(c).categories) for c in categorical]
    steps = [SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)]
    if scale:
        steps.append(StandardScaler())
    return ColumnTransformer(
        [("num", make_pipeline(*steps), numeric),
         ("cat", OneHotEncoder(categories=cats, handle_unknown="ignore",
                               sparse_output=False), categorical)],
        verbose_feature_names_out=False)


class _EmptyAsZero(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Numeric columns passed through, except those missing in every training row, which
    read as 0: a constant the trees ignore. (scikit-learn 1.9's histogram gradient
    boosting fails to bin a column without any value; an empty column stays a feature,
    see ``docs/input_checks.md``.)"""

    def fit(self, X, y=None) -> _EmptyAsZero:
        values = check_array(X, dtype=float, ensure_all_finite="allow-nan")
        self.empty_ = np.isnan(values).all(axis=0)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        values = check_array(X, dtype=float, ensure_all_finite="allow-nan", copy=True)
        values[:, self.empty_] = 0.0
        return values


def make_teacher(kind: str, schema: TableSchema, *, random_state: int, **params) -> Pipeline:
    """An unfitted teacher of the given kind for tables of this schema.

    ``params`` override the model step's defaults (e.g. ``C`` for logistic regression,
    ``max_epochs`` for the torch MLP); they are validated by the model at fit time.
    """
    numeric, categorical = _columns(schema)
    cats = [list(schema.feature(c).categories) for c in categorical]
    if kind == "hist_gradient_boosting":
        encode = ColumnTransformer(
            [("num", _EmptyAsZero(), numeric),
             ("cat", OrdinalEncoder(categories=cats, handle_unknown="use_encoded_value",
                                    unknown_value=np.nan, encoded_missing_value=np.nan),
              categorical)],
            verbose_feature_names_out=False)
        model = HistGradientBoostingClassifier(
            categorical_features=list(range(len(numeric), len(numeric) + len(categorical))) or None,
            max_iter=300, learning_rate=0.06, early_stopping=True, validation_fraction=0.15,
            n_iter_no_change=20, random_state=random_state)
        return Pipeline([("encode", encode), ("model", model.set_params(**params))])
    if kind == "logistic_regression":
        model = LogisticRegression(C=1.0, max_iter=2000)
        return Pipeline([("encode", _one_hot_encoder(schema, scale=True)),
                         ("model", model.set_params(**params))])
    if kind == "random_forest":
        # Trees need no scaling; imputation keeps the teacher robust to all-missing columns.
        model = RandomForestClassifier(n_estimators=300, min_samples_leaf=3, max_features="sqrt",
                                       n_jobs=1, random_state=random_state)
        return Pipeline([("encode", _one_hot_encoder(schema, scale=False)),
                         ("model", model.set_params(**params))])
    if kind == "torch_mlp":
        model = TorchMLPClassifier(random_state=random_state)
        return Pipeline([("encode", _one_hot_encoder(schema, scale=True)),
                         ("model", model.set_params(**params))])
    raise ValueError(f"The 'kind' parameter of make_teacher must be one of {TEACHER_KINDS}. "
                     f"Got {kind!r} instead.")


__all__ = ["TEACHER_KINDS", "TorchMLPClassifier", "make_teacher"]
