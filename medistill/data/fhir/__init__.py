"""FHIR ingestion: Bulk Data NDJSON exports and Bundles (R4, R4B, R5) to one row per patient.

``ingest_fhir`` reads an export as a declarative mapping says (``load_mapping``,
``default_mapping``, ``demo_mapping``); ``write_synthetic_fhir_export`` writes the built-in
synthetic US Core cohort. See ``docs/fhir.md``.
"""

from __future__ import annotations

from medistill.data.fhir.ingest import (
    IngestResult,
    IngestSummary,
    SkippedLine,
    ingest_fhir,
    patient_key,
)
from medistill.data.fhir.labels import describe_label
from medistill.data.fhir.mapping import (
    FhirMapping,
    default_mapping,
    demo_mapping,
    load_mapping,
    mapping_from_dict,
)
from medistill.data.fhir.synthetic import write_synthetic_fhir_export
from medistill.data.fhir.units import convert
from medistill.data.fhir.version import detect_version

__all__ = [
    "FhirMapping",
    "IngestResult",
    "IngestSummary",
    "SkippedLine",
    "convert",
    "default_mapping",
    "demo_mapping",
    "describe_label",
    "detect_version",
    "ingest_fhir",
    "load_mapping",
    "mapping_from_dict",
    "patient_key",
    "write_synthetic_fhir_export",
]
