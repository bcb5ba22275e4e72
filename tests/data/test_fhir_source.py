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
