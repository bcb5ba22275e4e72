"""FHIR version detection and R4/R5 parsing of every resource type medistill reads."""

from __future__ import annotations

import pytest

from medistill.data.fhir import demo_mapping, detect_version, ingest_fhir
from medistill.data.fhir.version import ResourceValidator, version_from_number
from medistill.errors import DataError

CLINICAL = {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"}


def r4_samples(build):
    return [build.patient(), build.obs("p1", "8867-4", 70, "/min", "2024-01-01"),
            build.condition("p1", "38341003", "2020-01-01"),
            build.encounter("p1", "AMB", "2024-01-01T10:00:00Z"),
            build.medication("p1", "197361", "2024-01-01"),
            build.procedure("p1", "80146002", "2024-01-01")]


def r5_samples(build):
    return [build.patient(), build.obs("p1", "8867-4", 70, "/min", "2024-01-01"),
            build.condition("p1", "38341003", "2020-01-01",
                            clinicalStatus={"coding": [CLINICAL]}),
            build.encounter("p1", "AMB", "2024-01-01T10:00:00Z", r5=True),
            build.medication("p1", "197361", "2024-01-01", r5=True),
            build.procedure("p1", "80146002", "2024-01-01", r5=True)]


@pytest.mark.parametrize(("profile", "expected"), [
    ("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient", "R4"),
    ("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient|6.1.0", "R4"),
    ("http://hl7.org/fhir/StructureDefinition/bp|4.0.1", "R4"),
    ("http://hl7.org/fhir/StructureDefinition/bp|4.3.0", "R4B"),
    ("http://hl7.org/fhir/StructureDefinition/bp|5.0.0", "R5"),
    ("http://hl7.org/fhir/R4/StructureDefinition/Patient", "R4"),
    ("http://hl7.org/fhir/5.0/StructureDefinition/Patient", "R5"),
    ("http://example.org/fhir/StructureDefinition/local-patient", None),
])
def test_version_from_meta_profile(profile, expected):
    assert detect_version({"resourceType": "Patient", "meta": {"profile": [profile]}}) == expected


def test_version_from_shape(build):
    assert detect_version(build.encounter("p", "AMB", "2024-01-01")) == "R4"
    assert detect_version(build.encounter("p", "AMB", "2024-01-01", r5=True)) == "R5"
    assert detect_version(build.medication("p", "1", "2024-01-01")) == "R4"
    assert detect_version(build.medication("p", "1", "2024-01-01", r5=True)) == "R5"
    assert detect_version(build.procedure("p", "1", "2024-01-01")) == "R4"
    assert detect_version(build.procedure("p", "1", "2024-01-01", r5=True)) == "R5"
    assert detect_version(build.patient()) is None  # same in every version


@pytest.mark.parametrize(("number", "expected"), [
    ("4.0.1", "R4"), ("4.0", "R4"), ("4.3.0", "R4B"), ("5.0.0", "R5"), ("r4b", "R4B"),
    ("3.0.2", None)])
def test_version_from_fhir_version_number(number, expected):
    assert version_from_number(number) == expected


@pytest.mark.parametrize("option", ["R4", "R4B", "auto"])
def test_every_r4_sample_parses(build, option):
    validator = ResourceValidator(option)
    for resource in r4_samples(build):
        version, reason = validator.validate(resource)
        assert reason is None, (resource["resourceType"], reason)
        assert version == ("R4" if option == "auto" else option)


@pytest.mark.parametrize("option", ["R5", "auto"])
def test_every_r5_sample_parses(build, option):
    validator = ResourceValidator(option)
    for resource in r5_samples(build):
        version, reason = validator.validate(resource)
        assert reason is None, (resource["resourceType"], reason)
    assert validator.validate(r5_samples(build)[3])[0] == "R5"


def test_explicit_version_rejects_the_other_versions_shape(build):
    version, reason = ResourceValidator("R5").validate(
        build.encounter("p1", "AMB", "2024-01-01T10:00:00Z"))
    assert version is None
    assert reason.startswith("not a valid R5 Encounter: class")
    version, reason = ResourceValidator("R4").validate(
        build.medication("p1", "1", "2024-01-01", r5=True))
    assert version is None and "R4 MedicationRequest" in reason


def test_auto_tries_the_other_version_when_there_is_no_hint(build):
    validator = ResourceValidator("auto")
    r5_condition = r5_samples(build)[2]
    r5_condition["participant"] = [{"actor": {"reference": "Practitioner/x"}}]  # R5 only
    assert validator.validate(r5_condition) == ("R5", None)
    assert validator.versions_to_try(build.patient()) == ("R5", "R4")  # remembers R5


def test_reason_names_both_versions_when_neither_fits():
    version, reason = ResourceValidator("auto").validate(
        {"resourceType": "Observation", "status": "final"})
    assert version is None
    assert "not a valid R4 Observation: code: Field required" in reason
    assert "nor a valid R5 Observation" in reason


def test_r4_and_r5_exports_give_the_same_table(build, tmp_path):
    tables = {}
    for name, samples in (("r4", r4_samples(build)), ("r5", r5_samples(build))):
        extra = [build.condition("p1", "22298006", "2025-03-01")]
        folder = build.export(tmp_path / name, samples + extra)
        result = ingest_fhir(folder, demo_mapping(), salt="s")
        tables[name] = result.table
        assert result.summary.n_skipped == 0
    assert tables["r4"].equals(tables["r5"])
    row = tables["r4"].iloc[0]
    assert row["heart_rate"] == 70 and row["hypertension"] == 1
    assert row["n_encounters"] == 1 and row["n_medications"] == 1 and row["cv_event_1y"] == 1


def test_explicit_version_option_stops_at_a_resource_of_the_other_version(build, tmp_path):
    folder = build.export(tmp_path / "x", r4_samples(build))
    with pytest.raises(DataError, match=r"Condition\.000\.ndjson line 1: not a valid R5 Condition"):
        ingest_fhir(folder, demo_mapping(), salt="s", fhir_version="R5")
