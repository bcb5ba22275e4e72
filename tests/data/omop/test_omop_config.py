"""The ``data.omop`` section of the pipeline file."""

from __future__ import annotations

from pathlib import Path

import pytest

from medistill.config import parse_config
from medistill.errors import ConfigError

OMOP = {"database": "cdm.duckdb", "target": {"concepts": [1118084]},
        "outcome": {"concepts": [192671]}}


def _parse(data: dict, base_dir: Path | None = None):
    return parse_config({"data": data, "privacy": {"target_epsilon": 3.0}}, source="p.yaml",
                        base_dir=base_dir)


def test_omop_source_needs_its_section():
    with pytest.raises(ConfigError, match="'omop' section is required"):
        _parse({"source": "omop"})


def test_relative_database_is_resolved_against_the_pipeline_file(tmp_path):
    config = _parse({"source": "omop", "omop": OMOP}, base_dir=tmp_path)
    assert config.data.omop.database == str(tmp_path / "cdm.duckdb")
    for kept in ("eunomia", "postgresql://reader@db/cdm"):
        config = _parse({"source": "omop", "omop": {**OMOP, "database": kept}}, tmp_path)
        assert config.data.omop.database == kept


def test_defaults_and_window_order():
    omop = _parse({"source": "omop", "omop": {**OMOP, "covariates": {"windows": [30, 365]}}}
                  ).data.omop
    assert omop.covariates.windows == (365, 30)
    assert omop.time_at_risk.start_days == 1 and omop.time_at_risk.end_days == 365
    assert omop.covariates.selection.max_concepts_per_person == 8


def test_unknown_keys_and_bad_values_are_named():
    with pytest.raises(ConfigError, match="outcome"):
        _parse({"source": "omop", "omop": {**OMOP, "outcome": {"concepts": []}}})
    with pytest.raises(ConfigError, match="time_at_risk"):
        _parse({"source": "omop", "omop": {**OMOP, "time_at_risk": {"start_days": 30,
                                                                     "end_days": 10}}})
