"""#16.7: one YAML loader for pipelines, policies and FHIR mappings; budget sanity."""

from pathlib import Path

import pytest

from medistill.audit.gates import load_policy
from medistill.config import MAX_EPSILON, load_config, parse_config
from medistill.data.fhir.mapping import load_mapping
from medistill.errors import ConfigError
from medistill.yamlio import did_you_mean, field_path, parse_yaml

PIPELINE = "data:\n  source: csv\n  path: r.csv\n  label: y\nprivacy:\n  target_epsilon: {eps}\n"
MINIMAL = {"data": {"source": "csv", "path": "records.csv", "label": "outcome"}}


def test_16_7_duplicate_key_in_pipeline_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(eps="3.0") + "  target_epsilon: 1000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "p.yaml line 7, column 3: duplicate key 'target_epsilon'" in message
    assert "first given at line 6" in message


def test_16_7_duplicate_key_refused_by_policy_and_mapping_loaders(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("gates:\n  - name: a\n    metric: x.y\n    op: '>='\n    threshold: 0.9\n"
                      "    threshold: 0.1\n    severity: review\n")
    with pytest.raises(ConfigError, match=r"policy.yaml line 6, column 5: duplicate key "
                                          "'threshold'"):
        load_policy(policy)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("index:\n  kind: fixed\n  date: 2025-01-01\nindex:\n  kind: fixed\n")
    with pytest.raises(ConfigError, match=r"mapping.yaml line 4, column 1: duplicate key 'index'"):
        load_mapping(mapping)


def test_16_7_same_key_in_different_mappings_is_fine() -> None:
    assert parse_yaml("a: {x: 1}\nb: {x: 2}\n", source="t") == {"a": {"x": 1}, "b": {"x": 2}}


def test_16_7_exponent_without_dot_is_a_number() -> None:
    parsed = parse_yaml("a: 1e-6\nb: 5E3\nc: '1e3'\nd: 3\ne: 2.5\n", source="t")
    assert parsed == {"a": 1e-6, "b": 5000.0, "c": "1e3", "d": 3, "e": 2.5}
    assert isinstance(parsed["d"], int)


def test_16_7_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^t.yaml line 2, column 1: YAML syntax error"):
        parse_yaml("a: [1\n", source="t.yaml")


@pytest.mark.parametrize(("value", "kind"), [("true", "true/false"), ("'3.0'", "text"),
                                             ("[3]", "list")])
def test_16_7_target_epsilon_must_be_a_number(tmp_path: Path, value: str, kind: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(eps=value))
    with pytest.raises(ConfigError, match=f"privacy.target_epsilon' must be a number.*not {kind}"):
        load_config(path)


def test_16_7_shares_must_be_numbers() -> None:
    raw = {**MINIMAL, "privacy": {"target_epsilon": 3.0, "shares": {"labels": True}}}
    with pytest.raises(ConfigError, match="share of 'labels' must be a number"):
        parse_config(raw)


def test_16_7_epsilon_above_maximum_refused_unless_nonprivate() -> None:
    assert MAX_EPSILON == 50
    for eps in (50.5, 1000, 1e9):
        with pytest.raises(ConfigError, match="above 50.*allow_nonprivate"):
            parse_config({**MINIMAL, "privacy": {"target_epsilon": eps}})
    assert parse_config({**MINIMAL, "privacy": {"target_epsilon": 50}}).privacy.target_epsilon == 50
    allowed = parse_config({**MINIMAL, "privacy": {"target_epsilon": 1000,
                                                   "allow_nonprivate": True}})
    assert allowed.privacy.target_epsilon == 1000


def test_16_7_did_you_mean_and_field_path() -> None:
    assert did_you_mean("threshhold", ["threshold", "metric"]) == "threshold"
    assert did_you_mean("tpo", ["op", "top"]) == "top"              # same letters first
    assert did_you_mean("zzz", ["threshold"]) is None
    data = {"observations": [{"name": "a"}, {"name": "glucose"}]}
    assert field_path(("observations", 1, "unit"), data) == "observations[1] (glucose).unit"
    assert field_path(("gates", 2, "op")) == "gates[2].op"
