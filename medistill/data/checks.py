"""Input checks before any training, in the manner of scikit-learn's ``check_array`` and
``type_of_target``: refuse what would fail late or train silently on nonsense, and note what
was repaired.

Every message names the file, the column and the row (or line) and what was expected; none
quotes a cell value, which may identify a patient. See ``docs/input_checks.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from medistill.errors import DataError

MIN_PATIENTS = 200
"""Fewest patients a run accepts: 20 % test and 20 % holdout, the rest split between
teachers, and a privacy budget spread over them."""
MIN_PER_CLASS = 10
"""Fewest records of each label class (each split needs some of every class)."""
MAX_CLASSES = 20
"""Most label classes accepted: more is a measurement or an identifier, not a class."""
MAX_ABS_VALUE = 1e15
"""Largest magnitude of a numeric cell. Beyond it the scaler's variance overflows and the
ONNX model's float32 inputs lose the value (float32 ends at 3.4e38); clinical values, cell
counts per litre included (5e12), stay far below it."""
FREE_TEXT_UNIQUE_SHARE = 0.5
"""A categorical column with more distinct values than this share of its filled cells is
free text or one value per record."""

DATE_SHARE = 0.95
"""A text column is a date column when at least this share of its filled cells are dates."""
DATE_SAMPLE = 2000
"""Filled cells read (the first ones) to judge whether a text column holds dates: the check
runs on every text column, twice, and a million-row export must not wait on it."""
_DATE_CELL = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")

NoteKind = Literal["kept_empty", "kept_constant", "dropped_date", "label_spelling",
                   "label_leakage", "positive_class"]
Uninformative = Literal["empty", "constant"]
_KEPT: dict[Uninformative, NoteKind] = {"empty": "kept_empty", "constant": "kept_constant"}


@dataclass(frozen=True)
class InputNote:
    """Something the checks repaired or want a reviewer to see. Names a column, never a value."""

    kind: NoteKind
    column: str
    message: str
    severity: Literal["info", "warning"] = "info"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "column": self.column, "severity": self.severity,
                "message": self.message}


def _line(position: int) -> str:
    return f"row {position + 1} (line {position + 2} of a CSV with a header)"


# --------------------------------------------------------------------------- headers

def _normalised(name: str) -> str:
    return re.sub(r"\s+", " ", str(name)).strip().casefold()


def check_headers(names: Sequence[object], *, source: str) -> None:
    """Refuse repeated column names, and names that differ only in case or spaces
    (``Age`` and ``age ``): which one the label or a feature means would be a guess."""
    seen: dict[str, str] = {}
    unnamed = [i + 1 for i, name in enumerate(names) if name is None or not str(name).strip()]
    if len(unnamed) > 1:
        raise DataError(f"{source}: columns {', '.join(map(str, unnamed))} have no name in the "
                        "header line; every column needs a distinct name.",
                        hint="Name them, or remove them if they are row numbers.")
    for name in names:
        text = "" if name is None else str(name)
        key = _normalised(text)
        if key in seen:
            other = seen[key]
            how = "is repeated" if other == text else \
                f"and '{other}' differ only in upper/lower case or spaces"
            raise DataError(f"{source}: column '{text}' {how}; every column needs a distinct "
                            "name.", hint="Rename or remove one of them in the header line.")
        seen[key] = text


# --------------------------------------------------------------------------- size and label

def check_size(n_patients: int, *, source: str) -> None:
    """Refuse a table with fewer than :data:`MIN_PATIENTS` patients."""
    if n_patients < MIN_PATIENTS:
        raise DataError(f"{source}: {n_patients} patients (or rows) is too few; medistill "
                        f"needs at least {MIN_PATIENTS}, split by patient into train, test and "
                        "holdout, with the train patients spread over several teachers.",
                        hint="Use a larger extract; under a privacy budget, useful models "
                             "usually need thousands of patients.")


def normalise_label_spellings(series: pd.Series, *, label: str) -> tuple[pd.Series, list[InputNote]]:
    """Trim spaces (inner runs become one space); spellings that then differ only in case
    (``yes``, ``Yes ``, ``YES``) are merged into their lower-case form, with a note.
    Missing cells stay missing, and so do cells of spaces only (an export's blank, not a
    class); numbers are left alone."""
    missing = series.isna()
    cleaned = {value: re.sub(r"\s+", " ", str(value)).strip()
               for value in pd.unique(series[~missing])}
    spellings: dict[str, set[str]] = {}
    for text in cleaned.values():
        spellings.setdefault(text.casefold(), set()).add(text)
    merged = {folded for folded, texts in spellings.items() if len(texts) > 1}
    final = {value: (text.casefold() if text.casefold() in merged else text) or None
             for value, text in cleaned.items()}
    notes = []
    if merged:
        notes.append(InputNote(
            "label_spelling", label,
            f"The label '{label}' had {len(merged)} class(es) spelled in more than one way "
            "(upper/lower case); each was merged into its lower-case spelling."))
    out = pd.Series([None] * len(series), index=series.index, dtype=object)
    out[~missing] = series[~missing].map(final).astype(object)
    return out, notes


def check_label_type(series: pd.Series, *, source: str, label: str) -> None:
    """Refuse a label that is a measurement, not a class: non-integer numbers
    (``continuous`` in scikit-learn's terms) or more than :data:`MAX_CLASSES` values.
    Call it on a label without missing cells."""
    text = series.astype(str)
    numeric = pd.to_numeric(text, errors="coerce")
    hint = ("medistill trains classifiers: derive a class column (e.g. outcome within a "
            "year, or a value above a clinical threshold) and name it in data.label.")
    if numeric.notna().all():
        as_float = numeric.to_numpy(dtype=float)
        fractional = ~np.isclose(as_float, np.round(as_float))
        if fractional.any():
            position = int(np.flatnonzero(fractional)[0])
            raise DataError(f"{source}: the label column '{label}' holds continuous numbers "
                            f"(e.g. {_line(position)} is not a whole number).", hint=hint)
    n_classes = text.nunique()
    if n_classes > MAX_CLASSES:
        raise DataError(f"{source}: the label column '{label}' has {n_classes} distinct "
                        f"values; at most {MAX_CLASSES} classes are accepted.", hint=hint)


def check_class_sizes(codes: np.ndarray, classes: Sequence[str], *, source: str,
                      label: str, patient_ids: np.ndarray | None = None) -> None:
    """Refuse a class with fewer than :data:`MIN_PER_CLASS` patients (records when no
    patient ids are given): one patient's many records never make a class."""
    if patient_ids is None:
        counts = np.bincount(codes, minlength=len(classes))
    else:
        pairs = pd.DataFrame({"pid": np.asarray(patient_ids).astype(str), "code": codes})
        per_class = pairs.drop_duplicates().groupby("code")["pid"].size()
        counts = per_class.reindex(range(len(classes)), fill_value=0).to_numpy()
    unit = "records" if patient_ids is None else "patients"
    small = [str(c) for c, n in zip(classes, counts, strict=True) if n < MIN_PER_CLASS]
    if small:
        raise DataError(f"{source}: label class(es) {', '.join(repr(c) for c in small)} of "
                        f"'{label}' have fewer than {MIN_PER_CLASS} {unit}; every class must "
                        "reach the train, test and holdout splits.",
                        hint="Merge rare classes, or use a larger extract.")


# --------------------------------------------------------------------------- features

def uninformative(series: pd.Series) -> Uninformative | None:
    """``empty`` when every cell is missing (or spaces only), ``constant`` when the filled
    cells hold one value, else ``None``. Read from the sensitive values, so it may only
    inform a note to the operator, never which columns reach a model."""
    values = series.dropna()
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        if values.empty:
            return "empty"
        return "constant" if values.min() == values.max() else None
    distinct = pd.Series(values.unique()).astype(str).str.strip()
    distinct = distinct[distinct != ""]
    if distinct.empty:
        return "empty"
    return "constant" if distinct.nunique() <= 1 else None


def holds_dates(series: pd.Series) -> bool:
    """A column of dates or timestamps: a datetime type (Parquet), or text whose first
    :data:`DATE_SAMPLE` filled cells are ISO (``2014-03-02``, with or without a time) or
    day/month/year dates in at least :data:`DATE_SHARE` of them."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    values = series.dropna().head(DATE_SAMPLE).astype(str).str.strip()
    values = values[values != ""]
    return bool(len(values)) and float(values.str.fullmatch(_DATE_CELL).mean()) >= DATE_SHARE


def drop_note(column: str) -> InputNote:
    """The note for a column dropped by :func:`holds_dates` (a format rule)."""
    return InputNote("dropped_date", column, (
        f"Column '{column}' was dropped: it holds dates, which the model does not take "
        "as they are (a calendar date is a quasi-identifier, and as categories each day "
        "would be its own rare value). Derive a number from it before the run — age at "
        "the visit, days since diagnosis, the year — or declare it with "
        f"data.feature_types.{column} to use it as categories."))


def kept_note(kind: Uninformative, column: str, *, listed: bool) -> InputNote:
    """The operator's note for an empty or constant column that stays a feature (the note
    goes to the console and the internal report, never to the model card). ``listed``:
    the column is named in ``data.features``."""
    what = {"empty": "is empty in every record",
            "constant": "holds the same value in every record that has one"}[kind]
    how = ("remove it from data.features" if listed else
           "list the columns to use in data.features, or add it to data.identifiers")
    return InputNote(_KEPT[kind], column, (
        f"Column '{column}' {what}, so it carries little or no information; it is kept as "
        "a feature because dropping it would depend on the patients' values (whether a "
        "column is empty or constant can turn on a single patient, and the exported "
        f"model's inputs would show it). To leave it out, {how}."))


def check_finite(values: pd.Series, *, source: str, column: str) -> None:
    """Refuse infinite numbers and magnitudes above :data:`MAX_ABS_VALUE` in a numeric
    feature (missing cells are fine: they are imputed)."""
    array = values.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = np.isinf(array) | (np.abs(array) > MAX_ABS_VALUE)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column '{column}' holds {int(bad.sum())} infinite or huge "
                        f"number(s) (beyond ±{MAX_ABS_VALUE:.0e}), the first in "
                        f"{_line(position)}.",
                        hint="Blank the cells (blank cells are treated as missing) or fix the "
                             "export's units; values this large are not measurements.")


def check_free_text(values: pd.Series, *, source: str, column: str, declared: bool) -> None:
    """Refuse a categorical column that is free text: more distinct values than
    :data:`FREE_TEXT_UNIQUE_SHARE` of its filled cells (and more than 20)."""
    filled = values.dropna()
    if filled.nunique() > max(FREE_TEXT_UNIQUE_SHARE * len(filled), 20):
        role = "declared categorical" if declared else "not numeric"
        raise DataError(f"{source}: column '{column}' is {role} but looks like free text: "
                        "nearly every record has its own value, so it cannot be one-hot "
                        "encoded.",
                        hint=f"Drop it (data.identifiers: [{column}]) or derive a coded column "
                             "from it before the run.")


# --------------------------------------------------------------------------- leakage

def _pure_groups(values: pd.Series, codes: np.ndarray) -> bool:
    keys = values.astype(object).where(values.notna(), "\0missing")
    per_value = pd.Series(codes).groupby(keys.to_numpy()).nunique()
    return len(per_value) <= len(values) / 2 and bool((per_value == 1).all())


def _separable_by_thresholds(values: pd.Series, codes: np.ndarray) -> bool:
    x = values.to_numpy(dtype=float, na_value=np.nan)
    filled = ~np.isnan(x)
    if (~filled).any() and len(np.unique(codes[~filled])) > 1:
        return False
    if not filled.any():
        return False
    ranges = pd.DataFrame({"x": x[filled], "y": codes[filled]}).groupby("y")["x"].agg(["min",
                                                                                        "max"])
    ranges = ranges.sort_values("min")
    return bool((ranges["max"].to_numpy()[:-1] < ranges["min"].to_numpy()[1:]).all())


def leakage_notes(features: pd.DataFrame, codes: np.ndarray, kinds: dict[str, str], *,
                  label: str) -> list[InputNote]:
    """A warning for each feature that predicts the label perfectly on its own: every
    category (or missingness) holds one class, or each class has its own range of values.
    Such a column is usually recorded after the outcome, or is a copy of it."""
    codes = np.asarray(codes)
    if len(np.unique(codes)) < 2:
        return []
    notes = []
    for column in features.columns:
        values = features[column].reset_index(drop=True)
        if kinds.get(column) == "categorical":
            leaks = _pure_groups(values, codes)
        else:
            leaks = _separable_by_thresholds(values, codes)
        if leaks:
            notes.append(InputNote(
                "label_leakage", column,
                f"Possible label leakage: column '{column}' alone predicts the label '{label}' "
                "perfectly in the sensitive records. Check that it is not recorded after the "
                "outcome or derived from it; if it is, drop it (data.identifiers) and run "
                "again: utility figures with it are not credible.", "warning"))
    return notes


__all__ = ["DATE_SHARE", "FREE_TEXT_UNIQUE_SHARE", "MAX_ABS_VALUE", "MAX_CLASSES",
           "MIN_PATIENTS", "MIN_PER_CLASS", "InputNote", "Uninformative", "check_class_sizes",
           "check_free_text", "check_finite", "check_headers", "check_label_type", "check_size",
           "drop_note", "holds_dates", "kept_note", "leakage_notes", "normalise_label_spellings",
           "uninformative"]
