"""Bridge between the FHIR ingestion package and the pipeline / CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medistill.config import DataConfig
from medistill.errors import ConfigError, DataError

PATIENT_KEY = "patient_key"


def _ingest(source: Path, mapping: Path | None, *, on_error: str, fhir_version: str, salt: str,
            n_jobs: int):
    from medistill.data.fhir import default_mapping, ingest_fhir, load_mapping

    if on_error not in ("stop", "skip"):
        raise ConfigError(f"--on-error must be 'stop' or 'skip'. Got {on_error!r}.")
    if fhir_version not in ("auto", "R4", "R4B", "R5"):
        raise ConfigError(f"--fhir-version must be auto, R4, R4B or R5. Got {fhir_version!r}.")
    rules = load_mapping(mapping) if mapping is not None else default_mapping()
    return ingest_fhir(source, rules, on_error=on_error, fhir_version=fhir_version, salt=salt,
                       n_jobs=n_jobs)


def read_fhir_table(config: DataConfig, *, seed: int) -> tuple[pd.DataFrame, str, str]:
    """One row per patient from the export at ``config.path`` (label from the mapping)."""
    result = _ingest(Path(config.path), config.mapping, on_error="stop", fhir_version="auto",
                     salt=f"medistill-run-{seed}", n_jobs=1)
    label = config.label or result.label
    if label is None:
        raise ConfigError(f"{config.mapping or 'the default FHIR mapping'} defines no label and "
                          "data.label is not set.", hint="Add a label definition to the mapping.")
    return result.table, label, PATIENT_KEY


def ingest_to_parquet(source: Path, out: Path, *, mapping: Path | None, on_error: str,
                      fhir_version: str, salt: str, n_jobs: int) -> dict:
    """``medistill ingest-fhir``: write the table atomically, return a summary."""
    result = _ingest(Path(source), mapping, on_error=on_error, fhir_version=fhir_version,
                     salt=salt, n_jobs=n_jobs)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise DataError(f"--out '{out}' is a folder; expected a .parquet file path.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    result.table.to_parquet(tmp, index=False)
    tmp.replace(out)
    summary = result.summary
    return {"out": str(out), "rows": len(result.table), "columns": len(result.table.columns),
            "label": result.label,
            "summary": summary.__dict__ if hasattr(summary, "__dict__") else summary}


__all__ = ["PATIENT_KEY", "ingest_to_parquet", "read_fhir_table"]
