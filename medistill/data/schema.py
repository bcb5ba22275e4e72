"""The table schema: which columns are features (and of what kind), the label, the patient id.

The schema is inferred from the data and can be overridden in the pipeline file
(``data.feature_types``, ``data.features``, ``data.identifiers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medistill.data.number_text import (
    SPREADSHEET_ERRORS,
    conversion_hint,
    is_spreadsheet_error,
    number_format,
)
from medistill.errors import DataError

NUMERIC, BINARY, CATEGORICAL = "numeric", "binary", "categorical"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: its kind, and for categoricals the public category list."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    """Features, label and classes of a sensitive table. Contains no data values
    except category names and class names."""

    features: tuple[FeatureSpec, ...]
    label: str
    classes: tuple[str, ...]
    id_column: str | None = None
    dropped_identifiers: tuple[str, ...] = field(default=())
    # data.missing_values: export codes read as missing, in training and by the deployed model
    missing_values: tuple[str, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def feature(self, name: str) -> FeatureSpec:
        return next(f for f in self.features if f.name == name)

    def to_dict(self) -> dict:
        """The schema as stored in the model's metadata (``missing_values`` only if any)."""
        out = {"label": self.label, "classes": list(self.classes),
               "features": [{"name": f.name, "kind": f.kind, "categories": list(f.categories)}
                            for f in self.features]}
        if self.missing_values:
            out["missing_values"] = list(self.missing_values)
        return out


def _first_non_numeric(series: pd.Series) -> tuple[int, str] | None:
    as_text = series.dropna().astype(str).str.strip()
    converted = pd.to_numeric(as_text, errors="coerce")
    bad = converted.isna() & (as_text != "")
    if not bad.any():
        return None
    position = bad.to_numpy().nonzero()[0][0]
    return int(as_text.index[position]), as_text.iloc[position]


def coerce_numeric(frame: pd.DataFrame, column: str, *, source: str) -> pd.Series:
    """Convert a column to float, or raise a DataError naming the first bad cell."""
    series = frame[column]
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    bad = _first_non_numeric(series)
    if bad is not None:
        row, text = bad
        written = number_format(text)
        if is_spreadsheet_error(text):
            raise DataError(
                f"{source}: column '{column}' is numeric but row {row + 2} (line {row + 2} of "
                "a CSV with a header) holds a spreadsheet error value (one of "
                f"{', '.join(SPREADSHEET_ERRORS)}): a formula that failed.",
                hint="Fix the formulas, or read such cells as missing: data.missing_values: "
                     "['#DIV/0!', '#N/A', '#VALUE!'] (list the ones the export has).")
        if written is not None:
            raise DataError(
                f"{source}: column '{column}' is numeric but row {row + 2} (line {row + 2} of "
                f"a CSV with a header) holds a number written as text, with {written} (the "
                "value is not shown: it may identify a patient).", hint=conversion_hint(column))
        raise DataError(
            f"{source}: column '{column}' is numeric but row {row + 2} (line {row + 2} of a "
            "CSV with a header) holds text that is not a number (the value is not shown: it "
            "may identify a patient).",
            hint="Fix or blank the cell (blank cells are treated as missing), or declare the "
                 f"column as categorical: data.feature_types.{column}: categorical. If the "
                 "text is an export's code for a missing value (such as a SAS or Stata "
                 "placeholder), declare that code in data.missing_values.")
    return pd.to_numeric(series.astype(str).str.strip().replace("", np.nan), errors="coerce")


def _looks_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return True
    values = series.dropna().astype(str).str.strip()
    values = values[values != ""]
    if values.empty:
        return False
    parsed = pd.to_numeric(values, errors="coerce")
    return parsed.notna().mean() >= 0.95


def infer_kind(series: pd.Series) -> str:
    """numeric, binary (two numeric values 0/1) or categorical."""
    if _looks_numeric(series):
        values = pd.to_numeric(series.dropna().astype(str).str.strip(), errors="coerce").dropna()
        if pd.api.types.is_bool_dtype(series) or set(values.unique()) <= {0.0, 1.0}:
            return BINARY
        return NUMERIC
    return CATEGORICAL


def public_categories(series: pd.Series, min_count: int) -> tuple[str, ...]:
    """Categories seen in at least ``min_count`` rows, sorted; rarer ones become 'unknown'."""
    counts = series.dropna().astype(str).value_counts()
    return tuple(sorted(counts[counts >= min_count].index))


def encode_labels(series: pd.Series, *, source: str, label: str,
                  positive: str | None = None) -> tuple[np.ndarray, tuple[str, ...], list]:
    """Map a label column to integer classes 0..C-1; at least two classes are required. A
    binary label's positive class comes second (``positive`` declared, else read from the
    class names: :mod:`medistill.data.positive_class`); the notes say which it is."""
    if series.isna().any():
        row = int(series.isna().to_numpy().nonzero()[0][0])
        raise DataError(f"{source}: the label column '{label}' is empty in row {row + 2}; every "
                        "record needs a label.", hint="Drop unlabelled rows before the run.")
    text = series.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        keys = sorted(numeric.unique())
        classes = tuple(str(int(k)) if float(k).is_integer() else str(k) for k in keys)
        codes = np.searchsorted(np.asarray(keys), numeric.to_numpy())
    else:
        classes = tuple(sorted(text.unique()))
        codes = np.searchsorted(np.asarray(classes), text.to_numpy())
    if len(classes) < 2:
        raise DataError(f"{source}: the label column '{label}' has a single class "
                        f"({classes[0]!r}) in all {len(series)} rows; a classifier needs at "
                        "least two.", hint="Check that the right column is named in data.label.")
    from medistill.data.positive_class import order_binary_classes

    codes, classes, note = order_binary_classes(codes.astype(np.int64), classes,
                                                declared=positive, source=source, label=label,
                                                numeric=bool(numeric.notna().all()))
    return codes, classes, [note] if note else []


__all__ = ["BINARY", "CATEGORICAL", "NUMERIC", "FeatureSpec", "TableSchema", "coerce_numeric",
           "encode_labels", "infer_kind", "public_categories"]
