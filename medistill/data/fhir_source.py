"""Bridge between the FHIR ingestion package and the pipeline / CLI."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import pandas as pd

from medistill.config import DataConfig
from medistill.errors import ConfigError, DataError
from medistill.housekeeping import temp_prefix

PATIENT_KEY = "patient_key"


def _ingest(source: Path, mapping: Path | None, *, on_error: str, fhir_version: str, salt: str,
            n_jobs: int, validate: str = "full", rules=None):
    from medistill.data.fhir import default_mapping, ingest_fhir, load_mapping

    if on_error not in ("stop", "skip"):
        raise ConfigError(f"--on-error must be 'stop' or 'skip'. Got {on_error!r}.")
    if fhir_version not in ("auto", "R4", "R4B", "R5"):
        raise ConfigError(f"--fhir-version must be auto, R4, R4B or R5. Got {fhir_version!r}.")
    if rules is None:
        rules = load_mapping(mapping) if mapping is not None else default_mapping()
    return ingest_fhir(source, rules, on_error=on_error, fhir_version=fhir_version, salt=salt,
                       n_jobs=n_jobs, validate=validate)


def run_salt() -> str:
    """A fresh secret salt, for tables that leave the process (``ingest-fhir``)."""
    return secrets.token_hex(16)


def _in_run_salt(seed: int) -> str:
    """The salt of patient keys that live only in a run's memory (never written): fixed by
    the seed so that splits and partitions — and so the run — are reproducible."""
    return f"medistill-in-run-{seed}"


def _canonical(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order (by patient key), whatever order worker processes returned."""
    return table.sort_values(PATIENT_KEY, kind="stable").reset_index(drop=True)


def read_fhir_table(config: DataConfig, *, seed: int) -> tuple[pd.DataFrame, str, str]:
    """One row per patient from the export at ``config.path`` (label from the mapping)."""
    result = _ingest(Path(config.path), config.mapping, on_error="stop", fhir_version="auto",
                     salt=_in_run_salt(seed), n_jobs=config.fhir_jobs,
                     validate=config.fhir_validate)
    label = config.label or result.label
    if label is None:
        raise ConfigError(f"{config.mapping or 'the default FHIR mapping'} defines no label and "
                          "data.label is not set.", hint="Add a label definition to the mapping.")
    return _canonical(result.table), label, PATIENT_KEY


def ingest_to_parquet(source: Path, out: Path, *, mapping: Path | None, on_error: str,
                      fhir_version: str, salt: str, n_jobs: int, validate: str = "full") -> dict:
    """``medistill ingest-fhir``: write the table atomically, return a summary."""
    if validate not in ("full", "mapped"):
        raise ConfigError(f"--validate must be 'full' or 'mapped'. Got {validate!r}.")
    result = _ingest(Path(source), mapping, on_error=on_error, fhir_version=fhir_version,
                     salt=salt, n_jobs=n_jobs, validate=validate)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise DataError(f"--out '{out}' is a folder; expected a .parquet file path.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    result.table.to_parquet(tmp, index=False)
    tmp.replace(out)
    return {"out": str(out), "rows": len(result.table), "columns": len(result.table.columns),
            "label": result.label, "summary": result.summary.to_dict()}


def builtin_fhir_cohort(n_patients: int, *, seed: int, n_jobs: int = 1) -> tuple[pd.DataFrame, str, str]:
    """The built-in synthetic FHIR cohort: written as a Bulk export to a temporary folder,
    then ingested with the demo mapping — the same path a hospital's export takes."""
    import numpy as np

    from medistill.data.fhir import demo_mapping, write_synthetic_fhir_export

    with tempfile.TemporaryDirectory(prefix=temp_prefix("fhir")) as tmp:
        folder = write_synthetic_fhir_export(Path(tmp) / "export", n_patients,
                                             rng=np.random.default_rng(seed))
        # The export was validated when it was made (see tests/data/fhir); reading only the
        # mapped fields keeps the demo fast.
        result = _ingest(folder, None, on_error="stop", fhir_version="auto",
                         salt=_in_run_salt(seed), n_jobs=n_jobs, validate="mapped",
                         rules=demo_mapping())
    return _canonical(result.table), result.label, PATIENT_KEY


__all__ = ["PATIENT_KEY", "ingest_to_parquet", "read_fhir_table"]
