"""The student's preprocessing — imputation, scaling, one-hot — fitted on transfer rows only.

It is an sklearn ``ColumnTransformer`` so that skl2onnx can put it inside ``student.onnx``
(raw named columns in). Its statistics come from transfer data, never from sensitive rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from medistill.data.schema import CATEGORICAL, TableSchema


def as_model_input(features: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Normalise raw features: float64 for numbers, str for categories ('' when missing)."""
    out = {}
    for spec in schema.features:
        column = features[spec.name]
        if spec.kind == CATEGORICAL:
            values = column.astype(object)
            out[spec.name] = np.array(["" if v is None or (isinstance(v, float) and np.isnan(v))
                                       else str(v) for v in values], dtype=object)
        else:
            out[spec.name] = pd.to_numeric(column, errors="coerce").astype(float).to_numpy()
    return pd.DataFrame(out)


def make_preprocessor(schema: TableSchema) -> ColumnTransformer:
    """Median imputation + standard scaling for numbers; one-hot (unknown → zeros) for
    categories, with the public category lists of the schema."""
    numeric = [f.name for f in schema.features if f.kind != CATEGORICAL]
    categorical = [f.name for f in schema.features if f.kind == CATEGORICAL]
    transformers = []
    if numeric:
        transformers.append(("num", make_pipeline(SimpleImputer(strategy="median",
                                                                keep_empty_features=True),
                                                  StandardScaler()), numeric))
    if categorical:
        cats = [list(schema.feature(c).categories) for c in categorical]
        transformers.append(("cat", OneHotEncoder(categories=cats, handle_unknown="ignore",
                                                  sparse_output=False, dtype=np.float32),
                             categorical))
    return ColumnTransformer(transformers, sparse_threshold=0.0)


__all__ = ["as_model_input", "make_preprocessor"]
