"""Assemble the sensitive table: read, drop identifiers, infer the schema, encode the label."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medistill.config import DataConfig
from medistill.data.builtin import builtin_table
from medistill.data.checks import (
    InputNote,
    check_class_sizes,
    check_finite,
    check_free_text,
    check_label_type,
    check_size,
    drop_note,
    holds_dates,
    kept_note,
    leakage_notes,
    normalise_label_spellings,
    uninformative,
)
from medistill.data.identifiers import detect_identifiers
from medistill.data.loaders import load_table
from medistill.data.number_text import check_numbers_as_text
from medistill.data.schema import (
    CATEGORICAL,
    FeatureSpec,
    TableSchema,
    coerce_numeric,
    encode_labels,
    infer_kind,
    public_categories,
)
from medistill.errors import DataError, IdentifierColumnError


@dataclass(frozen=True)
class SensitiveData:
    """The sensitive records, ready for the pipeline. Patient ids stay in memory only."""

    features: pd.DataFrame          # one column per feature: float, or str/None for categories
    labels: np.ndarray              # class codes 0..C-1
    patient_ids: np.ndarray         # never written to any artifact
    schema: TableSchema
    name: str
    caveats: tuple[str, ...] = ()
    # (stage, dp-accounting event, description) of charged data-derived choices (e.g. OMOP
    # concept selection): the pipeline records them in the run's ledger before planning.
    privacy_events: tuple[tuple[str, Any, str], ...] = ()
    notes: tuple[InputNote, ...] = ()  # input checks: dropped columns, label leakage, ...

    def rows(self, index: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Features, labels and patient ids of the given rows."""
        return (self.features.iloc[index].reset_index(drop=True), self.labels[index],
                self.patient_ids[index])

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patient_ids))


def _require_column(frame: pd.DataFrame, column: str, role: str, source: str) -> None:
    if column not in frame.columns:
        close = difflib.get_close_matches(column, [str(c) for c in frame.columns], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise DataError(f"{source}: the {role} column '{column}' is not in the table; its "
                        f"columns are {', '.join(map(str, frame.columns[:30]))}.{hint}")


def _nested_columns(frame: pd.DataFrame) -> list[str]:
    """Columns whose cells are lists, arrays or records (Parquet list, struct or map types)."""
    nested = []
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        sample = frame[column].dropna().head(100)
        if any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in sample):
            nested.append(str(column))
    return nested


def _without_nested(frame: pd.DataFrame, config: DataConfig, *, source: str,
                    used: set[str]) -> pd.DataFrame:
    """``frame`` without nested columns that ``data.features`` leaves out; a nested column
    that would be used (as the label, the id, an identifier or a feature) is refused."""
    nested = _nested_columns(frame)
    if not nested:
        return frame
    needed = [c for c in nested if c in used or config.features is None
              or c in config.features]
    if needed:
        raise DataError(
            f"{source}: column(s) {', '.join(repr(c) for c in needed)} hold lists or records "
            "in each cell (a nested Parquet type); medistill takes one value per cell.",
            hint="Flatten them into plain columns (one per value) before the run, or list "
                 "the columns to use in data.features so that these are left out.")
    return frame.drop(columns=nested)


def _read(config: DataConfig, seed: int) -> tuple[pd.DataFrame, str, str | None, tuple[str, ...], str]:
    if config.source == "builtin" and config.builtin.name == "fhir_cohort":
        from medistill.data.fhir_source import builtin_fhir_cohort

        table, label, id_col = builtin_fhir_cohort(config.builtin.n_patients, seed=seed,
                                                   n_jobs=config.fhir_jobs)
        return table, config.label or label, id_col, config.identifiers, \
            "built-in synthetic FHIR cohort"
    if config.source == "builtin":
        table, label, id_col, identifiers = builtin_table(
            config.builtin.name, n_patients=config.builtin.n_patients, seed=seed)
        return table, config.label or label, config.id_column or id_col, \
            tuple(dict.fromkeys(identifiers + config.identifiers)), f"built-in '{config.builtin.name}'"
    if config.source == "fhir":
        from medistill.data.fhir_source import read_fhir_table

        table, label, id_col = read_fhir_table(config, seed=seed)
        return table, config.label or label, id_col, config.identifiers, str(config.path)
    table = load_table(config.path, config.source, config.missing_values)
    return table, config.label, config.id_column, config.identifiers, str(config.path)


def load_sensitive(config: DataConfig, *, seed: int) -> SensitiveData:
    """Read the sensitive records named in ``config`` and check them."""
    events: tuple[tuple[str, Any, str], ...] = ()
    source_caveats: tuple[str, ...] = ()
    if config.source == "omop":
        from medistill.data.omop import read_omop

        omop = read_omop(config.omop, label=config.label)
        frame, label, id_column, source = omop.table, omop.label, omop.id_column, omop.source
        identifiers, events, source_caveats = config.identifiers, omop.privacy_events, omop.caveats
    else:
        frame, label, id_column, identifiers, source = _read(config, seed)
    _require_column(frame, label, "label", source)
    frame = _without_nested(frame, config, source=source,
                            used={label, id_column, *identifiers} - {None})
    if id_column is not None:
        _require_column(frame, id_column, "patient id", source)
    for column in identifiers:
        _require_column(frame, column, "identifier", source)
    check_size(frame[id_column].nunique() if id_column else len(frame), source=source)
    declared = set(identifiers) | {label} | set(config.feature_types)
    if id_column:
        declared.add(id_column)
    if config.features is not None:
        for column in config.features:
            _require_column(frame, column, "feature", source)
        candidates = list(config.features)
    else:
        findings = detect_identifiers(frame, exclude=declared)
        if findings:
            listed = "; ".join(f"'{f.column}' ({f.reason})" for f in findings)
            names = ", ".join(f.column for f in findings)
            raise IdentifierColumnError(
                f"{source}: these columns look like direct identifiers and will not be used "
                f"as features: {listed}.",
                hint=f"Declare them as identifiers to drop (data.identifiers: [{names}]) or, if "
                     "they really are clinical features, declare their type, e.g. "
                     f"data.feature_types.{findings[0].column}: categorical.")
        candidates = [c for c in frame.columns if c not in declared or c in config.feature_types]
        candidates = [c for c in candidates if c not in (label, id_column) and c not in identifiers]
    if not candidates:
        raise DataError(f"{source}: no feature columns are left after removing the label, the "
                        "patient id and the identifiers.")
    label_values, notes = normalise_label_spellings(frame[label], label=label)
    if label_values.notna().all():
        check_label_type(label_values, source=source, label=label)
    labels, classes, class_notes = encode_labels(label_values, source=source, label=label,
                                                 positive=config.positive_class)
    notes.extend(class_notes)
    patient_ids = (frame[id_column].astype(str).to_numpy() if id_column
                   else np.array([f"row{i}" for i in range(len(frame))]))
    if id_column and frame[id_column].isna().any():
        row = int(frame[id_column].isna().to_numpy().nonzero()[0][0])
        raise DataError(f"{source}: the patient id column '{id_column}' is empty in row {row + 2}.")
    check_class_sizes(labels, classes, source=source, label=label, patient_ids=patient_ids)

    specs, columns, caveats = [], {}, list(source_caveats)
    inferred_categories = []
    inferred_text: dict[str, pd.Series] = {}
    for column in candidates:
        if column not in config.feature_types and holds_dates(frame[column]):
            notes.append(drop_note(column))
            continue
        # Empty and constant columns stay features: whether a column is either is read from
        # the sensitive values (one patient can flip it) and would show in the model's
        # inputs. The operator gets a note on how to leave such a column out.
        empty_or_constant = uninformative(frame[column])
        if empty_or_constant:
            notes.append(kept_note(empty_or_constant, column,
                                   listed=config.features is not None))
        kind = config.feature_types.get(column) or infer_kind(frame[column])
        if kind == CATEGORICAL and column not in config.feature_types:
            inferred_text[column] = frame[column]
        if kind == CATEGORICAL:
            values = frame[column].astype("object").where(frame[column].notna(), None)
            values = values.map(lambda v: None if v is None else str(v).strip() or None)
            check_free_text(values, source=source, column=column,
                            declared=column in config.feature_types)
            # Every category is a candidate here; which reach any model is decided later by
            # a declared list or a charged DP threshold on patient counts
            # (medistill.data.categories, in the pipeline's prepare step).
            cats = public_categories(values, 1)
            inferred_categories.append(column)
            specs.append(FeatureSpec(column, CATEGORICAL, cats))
            columns[column] = values.where(values.isin(cats), None)
        else:
            columns[column] = coerce_numeric(frame, column, source=source)
            check_finite(columns[column], source=source, column=column)
            specs.append(FeatureSpec(column, kind))
    check_numbers_as_text(inferred_text, source=source)
    if not specs:
        raise DataError(f"{source}: no usable feature columns: every candidate column holds "
                        "dates.", hint="Derive numbers from the dates before the run (age at "
                        "the visit, days since diagnosis), or declare their type in "
                        "data.feature_types.")
    if inferred_categories:
        caveats.append(
            "Category lists of " + ", ".join(inferred_categories) + " were read from the "
            "sensitive table; the pipeline keeps only categories declared in "
            "transfer.categories or chosen by a charged DP threshold on patient counts.")
    if any(n.kind == "dropped_date" for n in notes):
        caveats.append("Which columns were dropped as dates was read from the sensitive "
                       "table (a format rule on the first filled cells) and is treated as "
                       "public schema metadata.")
    if id_column is None:
        caveats.append("No patient id column was given: each row is treated as one patient.")
    schema = TableSchema(features=tuple(specs), label=label, classes=classes,
                         id_column=id_column, dropped_identifiers=tuple(identifiers),
                         missing_values=config.missing_values)
    features = pd.DataFrame(columns)
    notes.extend(leakage_notes(features, labels, {f.name: f.kind for f in specs}, label=label))
    return SensitiveData(features=features, labels=labels, patient_ids=patient_ids,
                         schema=schema, name=source, caveats=tuple(caveats),
                         privacy_events=events, notes=tuple(notes))


__all__ = ["SensitiveData", "load_sensitive"]
