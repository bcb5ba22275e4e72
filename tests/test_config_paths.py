"""The pipeline.yaml written into a run folder has absolute paths (#16.10)."""

from __future__ import annotations

from pathlib import Path

import yaml

from medistill.config import load_config


def test_16_10_resolved_config_has_absolute_paths(tmp_path, monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.yaml").write_text(
        "data:\n  source: csv\n  path: records.csv\n  label: y\nprivacy:\n  target_epsilon: 3\n"
        "audit:\n  policy: policies/strict.yaml\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("sub/p.yaml"))
    written = yaml.safe_load(config.to_yaml())
    assert written["data"]["path"] == str(tmp_path / "sub" / "records.csv")
    assert written["audit"]["policy"] == str(tmp_path / "sub" / "policies" / "strict.yaml")
    monkeypatch.chdir(tmp_path / "sub")  # read again from elsewhere: same paths
    assert load_config(tmp_path / "sub" / "p.yaml").to_yaml() == config.to_yaml()
