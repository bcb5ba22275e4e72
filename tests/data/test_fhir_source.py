"""The built-in FHIR cohort is reproducible: same seed, same table, in the same order."""

import pandas as pd

from medistill.config import DataConfig
from medistill.data.table import load_sensitive


def test_builtin_fhir_cohort_is_reproducible() -> None:
    config = DataConfig(source="builtin", builtin={"n_patients": 300}, fhir_jobs=2)
    a = load_sensitive(config, seed=4)
    b = load_sensitive(config, seed=4)
    pd.testing.assert_frame_equal(a.features, b.features)
    assert (a.patient_ids == b.patient_ids).all() and (a.labels == b.labels).all()
    assert not any(str(p).startswith("PT") for p in a.patient_ids)  # salted keys, not FHIR ids


def test_ingest_fhir_summary_reports_unresolved_references_and_notes(tmp_path) -> None:
    import json

    from medistill.data.fhir_source import ingest_to_parquet

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Patient.ndjson").write_text(json.dumps(
        {"resourceType": "Patient", "id": "PT-SECRET", "birthDate": "1960-01-01"}) + "\n")
    (folder / "MedicationRequest.ndjson").write_text(json.dumps(
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
         "medicationReference": {"reference": "Medication/absent"},
         "subject": {"reference": "Patient/PT-SECRET"}, "authoredOn": "2024-06-01"}) + "\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("index: {kind: fixed, date: 2025-01-01}\n"
                       "medications: [{name: n_statins, codes: ['rxnorm:617312']}]\n")
    out = ingest_to_parquet(folder, tmp_path / "t.parquet", mapping=mapping, on_error="stop",
                            fhir_version="auto", salt="s", n_jobs=1)
    summary = json.loads(json.dumps(out["summary"]))
    assert summary["unresolved_references"] == {
        "MedicationRequest.medication (no such Medication in the export)": 1}
    assert summary["notes"] == [
        "1 feature(s) of the mapping matched no resource of the export: n_statins. Their "
        "columns are 0 or missing for every patient; check their codes and code systems "
        "against the export (see docs/fhir.md, Codes)."]
    assert "PT-SECRET" not in json.dumps(summary) and "absent" not in json.dumps(summary)


def test_17_mapping_features_that_match_nothing_stay_features(tmp_path) -> None:
    """A mapping feature no resource matched is 0 (a condition flag) or missing (an
    observation) for every patient; like any empty or constant column it stays a feature,
    with the operator's note (docs/input_checks.md)."""
    from pathlib import Path

    import numpy as np
    import yaml

    import medistill.data.fhir as fhir
    from medistill.data.fhir import write_synthetic_fhir_export

    mapping = yaml.safe_load((Path(fhir.__file__).parent / "demo_mapping.yaml").read_text())
    mapping["conditions"].append({"name": "porphyria", "codes": ["snomed:999999999"]})
    mapping["observations"].append({"name": "troponin", "codes": ["loinc:99999-9"],
                                    "unit": "mg/dL"})
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    folder = write_synthetic_fhir_export(tmp_path / "export", 400,
                                         rng=np.random.default_rng(2))
    data = load_sensitive(DataConfig(source="fhir", path=folder, mapping=path), seed=0)
    assert {"porphyria", "troponin"} <= set(data.schema.feature_names)
    notes = {n.column: n.kind for n in data.notes}
    assert notes["porphyria"] == "kept_constant" and notes["troponin"] == "kept_empty"
