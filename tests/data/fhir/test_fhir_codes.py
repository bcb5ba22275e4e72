"""Code spellings: system URL variants and OIDs, trimmed codes, ICD codes without the dot and
in any case, and the summary note naming features that matched nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from medistill.data.fhir import ingest_fhir, mapping_from_dict
from medistill.data.fhir.codes import CodeMatcher, canonical_code, canonical_system, parse_code

from .conftest import LOINC

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
WHEN = "2024-06-01T08:00:00Z"


@pytest.mark.parametrize("spelling", [
    "http://loinc.org", "https://loinc.org", "http://loinc.org/", "HTTP://LOINC.org",
    " http://loinc.org ", "urn:oid:2.16.840.1.113883.6.1", "2.16.840.1.113883.6.1"])
def test_loinc_spellings_are_one_system(spelling):
    assert canonical_system(spelling) == LOINC


@pytest.mark.parametrize(("oid", "url"), [
    ("2.16.840.1.113883.6.96", "http://snomed.info/sct"),
    ("2.16.840.1.113883.6.88", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ("2.16.840.1.113883.6.3", "http://hl7.org/fhir/sid/icd-10"),
    ("2.16.840.1.113883.6.90", ICD10CM),
    ("2.16.840.1.113883.6.103", "http://hl7.org/fhir/sid/icd-9-cm"),
])
def test_known_oids_are_their_systems(oid, url):
    assert canonical_system(f"urn:oid:{oid}") == url


def test_unknown_systems_keep_their_path_and_oid():
    assert canonical_system("https://Example.org/Codes/") == "http://example.org/Codes"
    assert canonical_system("urn:oid:1.2.3") == "urn:oid:1.2.3"


def test_icd_codes_lose_the_dot_and_case_other_codes_are_only_trimmed():
    assert canonical_code(ICD10CM, " e11.9 ") == "E119"
    assert canonical_code(LOINC, " 2345-7 ") == "2345-7"
    assert canonical_code("http://snomed.info/sct", "44054006") == "44054006"


def test_matcher_compares_canonical_spellings():
    m = CodeMatcher()
    m.add(0, [parse_code("icd10:E11*")])
    m.add(1, [parse_code("icd10:E11.9")])
    m.add(2, [parse_code("loinc:2345-7")])
    m.add(3, [parse_code("urn:oid:2.16.840.1.113883.6.1|2339-0")])
    m.add(4, [parse_code("2345-7")])
    assert m.match([("urn:oid:2.16.840.1.113883.6.90", "e119")]) == {0, 1}
    assert m.match([("http://fhir.de/CodeSystem/bfarm/icd-10-gm", "E11.90")]) == {0}
    assert m.match([("https://loinc.org/", " 2345-7")]) == {2, 4}
    assert m.match([(LOINC, "2339-0")]) == {3}
    assert m.match([(LOINC, "2345-7x")]) == set()
    assert m.match([("http://snomed.info/sct", "e11.9")]) == set()  # not ICD: no ICD rules


def _condition(build, pid, code, system=ICD10CM):
    return build.condition(pid, code, "2020-01-01", system=system)


MAPPING = {
    "index": {"kind": "fixed", "date": "2025-01-01"},
    "observations": [{"name": "glucose", "codes": ["loinc:2345-7"], "unit": "mg/dL"}],
    "conditions": [{"name": "diabetes", "codes": ["icd10:E11*"], "lookback_days": "all"},
                   {"name": "e11_9", "codes": ["icd10:E11.9"], "lookback_days": "all"}],
}


def _spellings_export(build, folder, pad):
    observations = []
    for i, system in enumerate(["https://loinc.org", "http://loinc.org/",
                                "urn:oid:2.16.840.1.113883.6.1"]):
        obs = build.obs(f"o{i}", "2345-7", 100, "mg/dL", WHEN)
        obs["code"]["coding"][0].update(system=system, code=f"{pad}2345-7{pad}")
        observations.append(obs)
    conditions = [_condition(build, "c0", "E119"), _condition(build, "c1", "e11.9"),
                  _condition(build, "c2", "E11.9", "urn:oid:2.16.840.1.113883.6.90"),
                  _condition(build, "c3", "E11.9", "http://fhir.de/CodeSystem/bfarm/icd-10-gm")]
    ids = [f"o{i}" for i in range(3)] + [f"c{i}" for i in range(4)]
    return build.export(folder, [build.patient(p) for p in ids] + observations + conditions)


@pytest.mark.parametrize(("validate", "pad"), [("full", ""), ("mapped", " ")])
def test_spellings_of_one_code_match_in_an_export(build, tmp_path, validate, pad):
    # FHIR codes have no surrounding spaces: only validate="mapped" lets them through.
    folder = _spellings_export(build, tmp_path / "x", pad)
    result = ingest_fhir(folder, mapping_from_dict(MAPPING), salt="s", validate=validate,
                         keep_patient_ids=True)
    table = result.table.set_index(pd.Index(result.patient_ids))
    assert table.loc[["o0", "o1", "o2"], "glucose"].tolist() == [100.0] * 3
    assert table.loc[["c0", "c1", "c2", "c3"], "diabetes"].tolist() == [1] * 4
    assert table.loc[["c0", "c1", "c2", "c3"], "e11_9"].tolist() == [1] * 4
    assert result.summary.notes == ()


def test_features_that_match_nothing_are_named_in_a_note(build, tmp_path):
    folder = build.export(tmp_path / "x", [
        build.patient("p1"), build.obs("p1", "2345-7", 100, "mg/dL", WHEN),
        _condition(build, "p1", "I10")])
    result = ingest_fhir(folder, mapping_from_dict(MAPPING), salt="s")
    (note,) = result.summary.notes
    assert note.startswith("2 feature(s) of the mapping matched no resource of the export: "
                           "diabetes, e11_9.")
    assert "I10" not in note and "p1" not in note
