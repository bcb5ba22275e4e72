from pathlib import Path

import pytest

from medistill.config import PipelineConfig, load_config, parse_config
from medistill.errors import ConfigError

MINIMAL = {"data": {"source": "csv", "path": "records.csv", "label": "outcome"},
           "privacy": {"target_epsilon": 3.0}}


def test_minimal_file_gets_working_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("data:\n  source: csv\n  path: records.csv\n  label: outcome\n"
                    "  id_column: patient_id\nprivacy:\n  target_epsilon: 3.0\n  delta: 1.0e-6\n")
    config = load_config(path)
    assert config.privacy.target_epsilon == 3.0 and config.privacy.delta == 1e-6
    assert config.data.path == tmp_path / "records.csv"  # relative to the pipeline file
    assert config.student.hidden_layers and config.split.test == 0.2
    assert config.privacy.accountant == "pld"


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(Exception):
        config.privacy.target_epsilon = 10.0  # type: ignore[misc]


def test_resolved_config_round_trips_through_yaml() -> None:
    import yaml

    config = parse_config(MINIMAL)
    again = PipelineConfig.model_validate(yaml.safe_load(config.to_yaml()))
    assert again == config and again.sha256() == config.sha256()


@pytest.mark.parametrize(("section", "key", "suggestion"), [
    ("data", "id_colum", "id_column"), ("student", "alfa", "alpha"),
    (None, "studnt", "student"), ("privacy", "target_epsilom", "target_epsilon")])
def test_unknown_key_suggests_closest(section, key, suggestion) -> None:
    raw = {k: dict(v) for k, v in MINIMAL.items()}
    if section is None:
        raw[key] = {}
    else:
        raw.setdefault(section, {})[key] = 1
    with pytest.raises(ConfigError, match=f"unknown key '{key}'.*did you mean '{suggestion}'"):
        parse_config(raw, source="p.yaml")


@pytest.mark.parametrize("eps", [0, -1, float("nan"), float("inf")])
def test_non_positive_epsilon_is_refused(eps) -> None:
    raw = {**MINIMAL, "privacy": {"target_epsilon": eps}}
    with pytest.raises(ConfigError, match="privacy.target_epsilon"):
        parse_config(raw, source="p.yaml")


def test_missing_sections_and_fields_are_named() -> None:
    with pytest.raises(ConfigError, match="'privacy' is missing"):
        parse_config({"data": MINIMAL["data"]})
    with pytest.raises(ConfigError, match="'path' is required"):
        parse_config({"data": {"source": "csv", "label": "y"}, "privacy": {"target_epsilon": 1}})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  source: csv\n path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+.*YAML syntax error"):
        load_config(path)


def test_missing_and_empty_pipeline_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)


def test_seed_override() -> None:
    config = parse_config(MINIMAL, overrides={"seed": 42})
    assert config.seed == 42


def test_audit_groups() -> None:
    config = parse_config({**MINIMAL, "audit": {"groups": ["site", "ethnicity", "site"]}})
    assert config.audit.groups == ("site", "ethnicity")
    assert (config.audit.fairness_min_patients, config.audit.fairness_min_events) == (100, 10)
    with pytest.raises(ConfigError, match="worst_group.*reserved"):
        parse_config({**MINIMAL, "audit": {"groups": ["worst_group"]}}, source="p.yaml")


def test_missing_value_codes() -> None:
    def data(**kw):
        return {**MINIMAL, "data": {**MINIMAL["data"], **kw}}

    assert parse_config(MINIMAL).data.missing_values == ()
    config = parse_config(data(missing_values=[" . ", -99, "unknown", "."]))
    assert config.data.missing_values == (".", "-99", "unknown")  # YAML's -99 read as text
    for blank in ("", "   "):
        with pytest.raises(ConfigError, match=r"field 'data.missing_values' holds a blank code"):
            parse_config(data(missing_values=[".", blank]), source="p.yaml")
    with pytest.raises(ConfigError, match="'missing_values' applies to csv and parquet"):
        parse_config({**MINIMAL, "data": {"source": "builtin", "missing_values": ["."]}})
