"""Teacher models behind one small interface: sklearn estimators (fit / predict_proba) on
the raw feature frame. Teachers are trained on sensitive rows and are never released."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from medistill.data.schema import CATEGORICAL, TableSchema

TEACHER_KINDS = ("hist_gradient_boosting", "logistic_regression")


def _columns(schema: TableSchema) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in schema.features if f.kind != CATEGORICAL]
    categorical = [f.name for f in schema.features if f.kind == CATEGORICAL]
    return numeric, categorical


def make_teacher(kind: str, schema: TableSchema, *, random_state: int) -> Pipeline:
    """An unfitted teacher of the given kind for tables of this schema."""
    numeric, categorical = _columns(schema)
    cats = [list(schema.feature(c).categories) for c in categorical]
    if kind == "hist_gradient_boosting":
        encode = ColumnTransformer(
            [("num", "passthrough", numeric),
             ("cat", OrdinalEncoder(categories=cats, handle_unknown="use_encoded_value",
                                    unknown_value=np.nan, encoded_missing_value=np.nan),
              categorical)],
            verbose_feature_names_out=False)
        model = HistGradientBoostingClassifier(
            categorical_features=list(range(len(numeric), len(numeric) + len(categorical))) or None,
            max_iter=300, learning_rate=0.06, early_stopping=True, validation_fraction=0.15,
            n_iter_no_change=20, random_state=random_state)
        return Pipeline([("encode", encode), ("model", model)])
    if kind == "logistic_regression":
        encode = ColumnTransformer(
            [("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                   StandardScaler()), numeric),
             ("cat", OneHotEncoder(categories=cats, handle_unknown="ignore"), categorical)],
            verbose_feature_names_out=False)
        return Pipeline([("encode", encode),
                         ("model", LogisticRegression(C=1.0, max_iter=2000))])
    raise ValueError(f"The 'kind' parameter of make_teacher must be one of {TEACHER_KINDS}. "
                     f"Got {kind!r} instead.")


__all__ = ["TEACHER_KINDS", "make_teacher"]
