"""Mapping files: validation, error messages naming file and field, packaged mappings."""

from __future__ import annotations

import pytest
import yaml

from medistill.data.fhir import FhirMapping, default_mapping, demo_mapping, load_mapping
from medistill.data.fhir.codes import Code, parse_code
from medistill.data.fhir.mapping import mapping_from_dict
from medistill.errors import ConfigError

INDEX = {"kind": "fixed", "date": "2025-01-01"}


def _error(data, tmp_path) -> str:
    path = tmp_path / "site_mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    return str(info.value)


def test_packaged_mappings_load():
    demo = demo_mapping()
    assert isinstance(demo, FhirMapping)
    assert demo.label is not None and demo.label.name == "cv_event_1y"
    assert demo.column_names()[:3] == ["age", "sex", "smoking"]
    generic = default_mapping()
    assert generic.label is None and generic.index.kind == "export_date"
    assert {"heart_rate", "sbp", "bmi", "glucose", "hba1c", "creatinine", "cholesterol",
            "hypertension", "diabetes", "n_encounters", "n_medication_requests"} \
        <= set(generic.column_names())


@pytest.mark.parametrize("mapping", [demo_mapping(), default_mapping()])
def test_mapping_round_trips_through_yaml(mapping, tmp_path):
    path = tmp_path / "saved.yaml"
    path.write_text(yaml.safe_dump(mapping.model_dump(mode="json")))
    assert load_mapping(path) == mapping


def test_mapping_is_frozen():
    with pytest.raises(Exception, match="frozen"):
        demo_mapping().lookback_days = 3  # type: ignore[misc]


def test_unknown_top_level_key_suggests_the_closest(tmp_path):
    msg = _error({"index": INDEX, "lookbak_days": 30}, tmp_path)
    assert msg.startswith("site_mapping.yaml: invalid FHIR mapping.")
    assert "unknown key 'lookbak_days'; did you mean 'lookback_days'?" in msg


def test_unknown_nested_key_names_the_feature(tmp_path):
    msg = _error({"index": INDEX, "observations": [
        {"name": "bmi", "codes": ["loinc:39156-5"]},
        {"name": "glucose", "codes": ["loinc:2339-0"], "agregate": "mean"}]}, tmp_path)
    assert "observations[1] (glucose): unknown key 'agregate'; did you mean 'agg'?" in msg


def test_unknown_label_key(tmp_path):
    msg = _error({"index": INDEX, "label": {"name": "y", "kind": "observation_above",
                                            "codes": ["loinc:4548-4"], "horizon_days": 90,
                                            "thresold": 6.5}}, tmp_path)
    assert "label: unknown key 'thresold'; did you mean 'threshold'?" in msg


def test_unknown_system_alias_suggests_the_closest(tmp_path):
    msg = _error({"index": INDEX, "conditions": [{"name": "htn", "codes": ["snomd:38341003"]}]},
                 tmp_path)
    assert "conditions[0] (htn).codes: code 'snomd:38341003' uses the unknown system " \
           "alias 'snomd'; did you mean 'snomed'?" in msg


def test_unknown_unit_suggests_the_closest(tmp_path):
    msg = _error({"index": INDEX, "observations": [
        {"name": "g", "codes": ["x"], "unit": "mg/dLL"}]}, tmp_path)
    assert "observations[0] (g).unit: unknown unit 'mg/dLL'; did you mean 'mg/dL'?" in msg


def test_unit_spellings_are_normalized():
    m = mapping_from_dict({"index": INDEX, "observations": [
        {"name": "w", "codes": ["x"], "unit": "lbs"}]})
    assert m.observations[0].unit == "[lb_av]"


@pytest.mark.parametrize(("data", "expected"), [
    ({"index": {"kind": "fixed"}}, "index: kind 'fixed' needs a 'date'"),
    ({"index": {"kind": "fixd", "date": "2025-01-01"}}, "index.kind: Input should be 'fixed'"),
    ({"index": {"kind": "export_date", "date": "2025-01-01"}},
     "'date' is only used with kind 'fixed'"),
    ({"index": INDEX, "lookback_days": -1}, "lookback_days: must be a number of days >= 0"),
    ({"index": INDEX, "observations": [{"name": "g", "codes": ["x"], "lookback_days": "al"}]},
     "observations[0] (g).lookback_days: must be a number of days >= 0 or 'all'. Got 'al'"),
    ({"index": INDEX, "observations": [{"name": "g", "codes": []}]},
     "observations[0] (g).codes: needs at least one code"),
    ({"index": INDEX, "observations": [{"name": "s", "codes": ["x"], "value": "coded",
                                        "categories": {"yes": ["y"]}, "agg": "mean"}]},
     "a coded value can only be aggregated with 'latest' or 'count'"),
    ({"index": INDEX, "observations": [{"name": "s", "codes": ["x"], "value": "coded"}]},
     "observations[0] (s): 'value: coded' needs 'categories'"),
    ({"index": INDEX, "observations": [{"name": "1bad", "codes": ["x"]}]},
     "must be a column name"),
    ({"index": INDEX, "conditions": [{"name": "age", "codes": ["x"]}]},
     "the column name 'age' is used twice"),
    ({"index": INDEX, "label": {"name": "y", "kind": "condition_onset", "horizon_days": 30}},
     "kind 'condition_onset' needs a non-empty 'codes' list"),
    ({"index": INDEX, "label": {"name": "y", "kind": "deceased", "horizon_days": 0}},
     "label.horizon_days: Input should be greater than or equal to 1"),
    ({"index": INDEX, "label": {"name": "y", "kind": "observation_above", "codes": ["x"],
                                "horizon_days": 30}}, "needs a 'threshold'"),
    ({"index": INDEX, "observations": [{"name": "patient_key", "codes": ["x"]}]},
     "reserved for the salted patient key"),
])
def test_invalid_values_name_the_field(data, expected, tmp_path):
    assert expected in _error(data, tmp_path)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("index:\n  kind: fixed\n  date: [2025-01-01\nlabel: x\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml line \d+, column \d+: YAML syntax error"):
        load_mapping(path)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_mapping(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a YAML mapping"):
        load_mapping(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("loinc:8867-4", Code(("http://loinc.org",), "8867-4")),
    ("http://loinc.org|8867-4", Code(("http://loinc.org",), "8867-4")),
    ("8867-4", Code(None, "8867-4")),
    ("icd10:I21*", Code(("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10",
                         "http://fhir.de/CodeSystem/bfarm/icd-10-gm"), "I21", prefix=True)),
    (" icd10gm: E11.9 ", Code(("http://fhir.de/CodeSystem/bfarm/icd-10-gm",), "E11.9")),
])
def test_code_syntax(text, expected):
    assert parse_code(text) == expected


@pytest.mark.parametrize("text", ["loinc:", "a*b", "|123", "*"])
def test_malformed_codes(text):
    with pytest.raises(ValueError):
        parse_code(text)
