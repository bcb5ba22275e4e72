"""Bad input: stop at the first bad line with a message naming file and line, or skip and
count; messages and skip reasons never hold names or ids."""

from __future__ import annotations

import gzip
import json

import pytest

from medistill.data.fhir import demo_mapping, ingest_fhir, mapping_from_dict
from medistill.errors import ConfigError, DataError

SECRETS = ("Secretname", "Hidden", "MRN-SECRET-1", "555-000-1111", "Secret Street")


def _export(build, tmp_path, bad_observation_line: str):
    """p1 and p2 with one observation each, and one bad line as line 2 of the Observations."""
    folder = build.export(tmp_path / "export", [
        build.patient("p1"), build.patient("p2"),
        build.obs("p1", "8867-4", 70, "/min", "2024-05-01"),
        build.obs("p2", "8867-4", 60, "/min", "2024-05-01")])
    path = folder / "Observation.000.ndjson"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], bad_observation_line, lines[1]]) + "\n")
    return folder


def _ok_obs(build, **changes):
    return json.dumps({**build.obs("p1", "8867-4", 80, "/min", "2024-06-01", oid="o"), **changes})


BAD_LINES = {
    "truncated": (lambda b: _ok_obs(b)[:60],
                  "not valid JSON (Expecting ',' delimiter at column 61)"),
    "not json": (lambda b: "this is not json, MRN-SECRET-1", "not valid JSON (Expecting value at "
                                                             "column 1)"),
    "a list": (lambda b: "[1, 2]", "expected a JSON object (a FHIR resource), got a list"),
    "no type": (lambda b: '{"id": "Secretname"}', "has no resourceType"),
    "unknown type": (lambda b: '{"resourceType": "Observaton", "id": "x"}',
                     "unknown resource type 'Observaton'"),
    "invalid": (lambda b: _ok_obs(b, valueQuantity={"value": "Secretname"}),
                "not a valid R4 Observation: valueQuantity.value"),
    "missing field": (lambda b: json.dumps({"resourceType": "Observation", "status": "final",
                                            "subject": {"reference": "Patient/p1"}}),
                      "not a valid R4 Observation: code: Field required"),
    "bad date": (lambda b: _ok_obs(b, effectiveDateTime="Secretname-2024"),
                 "effectiveDateTime"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_stops_with_file_and_line(build, tmp_path, case):
    make, expected = BAD_LINES[case]
    folder = _export(build, tmp_path, make(build))
    with pytest.raises(DataError) as info:
        ingest_fhir(folder, demo_mapping(), salt="s")
    msg = str(info.value)
    assert msg.startswith("Observation.000.ndjson line 2: ")
    assert expected in msg
    assert "--on-error skip" in msg
    assert not any(secret in msg for secret in SECRETS)


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_is_skipped_and_counted(build, tmp_path, case):
    make, expected = BAD_LINES[case]
    folder = _export(build, tmp_path, make(build))
    result = ingest_fhir(folder, demo_mapping(), salt="s", on_error="skip")
    assert result.summary.n_skipped == 1
    (skipped,) = result.summary.skipped
    assert (skipped.file, skipped.line) == ("Observation.000.ndjson", 2)
    assert expected in skipped.reason
    assert not any(secret in skipped.reason for secret in SECRETS)
    assert sorted(result.table["heart_rate"]) == [60.0, 70.0]   # the good lines are kept


@pytest.mark.parametrize("case", ["truncated", "invalid"])
def test_mapped_validation_also_catches_what_it_reads(build, tmp_path, case):
    make, _ = BAD_LINES[case]
    folder = _export(build, tmp_path, make(build))
    with pytest.raises(DataError, match="Observation.000.ndjson line 2: "):
        ingest_fhir(folder, demo_mapping(), salt="s", validate="mapped")


def test_reference_to_a_missing_patient(build, tmp_path):
    folder = build.export(tmp_path / "x", [
        build.patient("p1"),
        build.obs("p1", "8867-4", 70, "/min", "2024-05-01"),
        build.obs("ghost", "8867-4", 99, "/min", "2024-05-01"),
        build.obs("ghost", "8867-4", 98, "/min", "2024-05-02")])
    with pytest.raises(DataError) as info:
        ingest_fhir(folder, demo_mapping(), salt="s")
    msg = str(info.value)
    assert msg.startswith("Observation.000.ndjson line 2: the subject refers to a Patient that "
                          "is not in the export")
    assert "ghost" not in msg
    result = ingest_fhir(folder, demo_mapping(), salt="s", on_error="skip")
    assert result.summary.n_skipped == 2
    assert result.summary.skipped[0][:2] == ("Observation.000.ndjson", 2)
    assert "2 resource(s) of that patient left out" in result.summary.skipped[0].reason
    assert result.table["heart_rate"].tolist() == [70.0]


def test_bundle_references_resolve_through_full_urls(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7f1c", "resource": {"resourceType": "Patient", "id": "p-9",
                                                  "gender": "male", "birthDate": "1970-01-01"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0b2a", "resource": {
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "urn:uuid:7f1c"}, "effectiveDateTime": "2024-05-01",
            "valueQuantity": {"value": 64, "code": "/min"}}},
        {"request": {"method": "DELETE", "url": "Observation/1"}}]}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, indent=1))
    result = ingest_fhir(path, demo_mapping(), salt="s")
    assert result.table["heart_rate"].tolist() == [64.0]
    assert result.summary.resource_counts == {"Observation": 1, "Patient": 1}


def test_bad_bundle_stops_with_its_line(tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text('{"resourceType": "Bundle", "entry": [\n'
                    '{"resource": {"resourceType": "Patient", "id": "a"}},\n'
                    '{"resource": {"resourceType": "Patient", "id": "b"}\n]}')
    with pytest.raises(DataError, match=r"bundle\.json line 4: not valid JSON .*the rest of "
                                        r"this file cannot be read"):
        ingest_fhir(path, demo_mapping(), salt="s")


def test_duplicate_patient_with_different_content(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.patient("p1"),
                                           build.patient("p1", birth="1961-01-01")])
    with pytest.raises(DataError, match="Patient.000.ndjson line 2: a second Patient with the "
                                        "same id and different content \\(the first is at "
                                        "Patient.000.ndjson line 1\\)"):
        ingest_fhir(folder, demo_mapping(), salt="s")


def test_export_without_patients(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.obs("p1", "8867-4", 70, "/min", "2024-05-01")])
    with pytest.raises(DataError, match="no valid Patient resource was found"):
        ingest_fhir(folder, demo_mapping(), salt="s", on_error="skip")


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="holds no FHIR files"):
        ingest_fhir(tmp_path, demo_mapping(), salt="s")
    with pytest.raises(DataError, match="does not exist"):
        ingest_fhir(tmp_path / "missing", demo_mapping(), salt="s")


def test_truncated_gzip_file(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.patient(f"p{i}") for i in range(200)])
    raw = (folder / "Patient.000.ndjson").read_bytes()
    (folder / "Patient.000.ndjson").unlink()
    (folder / "Patient.000.ndjson.gz").write_bytes(gzip.compress(raw)[:-200])
    with pytest.raises(DataError, match=r"Patient\.000\.ndjson\.gz line \d+: the file cannot be "
                                        r"read from this line on \(\w+: damaged or cut short\)"):
        ingest_fhir(folder, demo_mapping(), salt="s")


def test_blank_lines_and_unmapped_types_are_not_errors(build, tmp_path):
    folder = build.export(tmp_path / "x", [build.patient("p1")])
    (folder / "Patient.000.ndjson").write_text((folder / "Patient.000.ndjson").read_text()
                                               + "\n   \n")
    (folder / "Immunization.000.ndjson").write_text(json.dumps(
        {"resourceType": "Immunization", "id": "i"}) + "\n")
    result = ingest_fhir(folder, demo_mapping(), salt="s")
    assert result.summary.resource_counts == {"Immunization": 1, "Patient": 1}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"salt": ""}, "salt must be a non-empty secret string"),
    ({"salt": "s", "on_error": "ignore"}, "on_error must be 'stop' or 'skip'"),
    ({"salt": "s", "fhir_version": "R3"}, "fhir_version must be one of auto, R4, R4B, R5"),
    ({"salt": "s", "validate": "none"}, "validate must be 'full' or 'mapped'"),
    ({"salt": "s", "n_jobs": 0}, "n_jobs must be a positive integer or -1"),
])
def test_bad_options(build, tmp_path, kwargs, expected):
    folder = build.export(tmp_path / "x", [build.patient("p1")])
    with pytest.raises(ConfigError, match=expected):
        ingest_fhir(folder, demo_mapping(), **kwargs)


def test_every_patient_rejected_gives_the_first_reason(build, tmp_path):
    ids = [f"MRN_{i:06d}" for i in range(3)]   # '_' is not allowed in a FHIR id
    folder = build.export(tmp_path / "x", [build.patient(p) for p in ids])
    with pytest.raises(DataError) as info:
        ingest_fhir(folder, demo_mapping(), salt="s", on_error="skip")
    msg = str(info.value)
    assert "all 3 Patient resource(s) read were rejected as bad input; the first, at " \
           "Patient.000.ndjson line 1: not a valid R4 Patient: id: the id does not match the " \
           "FHIR id pattern" in msg
    assert "needs its Patient file" not in msg and "validate='mapped'" in msg
    assert not any(p in msg for p in ids) and not any(s in msg for s in SECRETS)
    mapped = ingest_fhir(folder, demo_mapping(), salt="s", validate="mapped")
    assert len(mapped.table) == 3


def test_json_error_names_the_column_once(build, tmp_path):
    folder = _export(build, tmp_path, '{"resourceType": "Observation", "id": "unterminated')
    with pytest.raises(DataError) as info:
        ingest_fhir(folder, demo_mapping(), salt="s")
    assert "(Unterminated string starting at column 39)" in str(info.value)


def test_stopping_early_with_workers_gives_no_joblib_warning(build, tmp_path, recwarn):
    patients = [build.patient(f"p{i}") for i in range(50)]
    observations = [build.obs(f"p{i % 50}", "8867-4", 70, "/min", "2024-05-01")
                    for i in range(400)]
    folder = build.export(tmp_path / "x", patients + observations)
    path = folder / "Observation.000.ndjson"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["{not json"] + lines) + "\n")
    with pytest.raises(DataError, match="line 1: not valid JSON"):
        ingest_fhir(folder, demo_mapping(), salt="s", n_jobs=2, chunk_bytes=2000)
    assert not [w for w in recwarn if "tasks" in str(w.message)]


def test_datetime_without_time_zone_full_refuses_mapped_reads_its_day(build, tmp_path):
    folder = build.export(tmp_path / "x", [
        build.patient("p1"), build.obs("p1", "8867-4", 70, "/min", "2024-12-31T23:30:00")])
    with pytest.raises(DataError, match="effectiveDateTime"):
        ingest_fhir(folder, demo_mapping(), salt="s")
    mapping = mapping_from_dict({"index": {"kind": "fixed", "date": "2024-12-31"},
                                 "lookback_days": 0,
                                 "observations": [{"name": "hr", "codes": ["loinc:8867-4"]}]})
    table = ingest_fhir(folder, mapping, salt="s", validate="mapped").table
    assert table["hr"].tolist() == [70.0]   # the day as written, whatever the zone
