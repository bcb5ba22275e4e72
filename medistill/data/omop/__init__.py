"""OMOP CDM data source: a target cohort, an outcome and a time at risk, framed as OHDSI's
PatientLevelPrediction frames them, read from DuckDB, Parquet/CSV or PostgreSQL into one row
per person. See ``docs/omop.md``."""

from __future__ import annotations

from medistill.data.omop.loader import OmopTable, expand, read_omop
from medistill.data.omop.selection import ConceptSelection, select_concepts, selection_event
from medistill.data.omop.source import eunomia_path, open_source

__all__ = ["ConceptSelection", "OmopTable", "eunomia_path", "expand", "open_source",
           "read_omop", "select_concepts", "selection_event"]
