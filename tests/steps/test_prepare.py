"""The prepare step: keyed splits, one row per patient, noisy counts, DP category lists."""

import numpy as np
import pandas as pd

from medistill.config import parse_config
from medistill.privacy.randomness import Randomness
from medistill.steps.prepare import prepare, public_delta


def _csv(tmp_path, n: int = 1200):
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    frame = pd.DataFrame({"patient_id": ids, "age": rng.normal(60, 10, n),
                          "ward": rng.choice(["cardio", "renal", "onco"], n),
                          "outcome": rng.integers(0, 2, n)})
    rare = pd.DataFrame({"patient_id": ["zz"] * 25, "age": [70.0] * 25,
                         "ward": ["Zyxw-rare-unit"] * 25, "outcome": [1] * 25})
    path = tmp_path / "records.csv"
    pd.concat([frame, rare]).to_csv(path, index=False)
    return path


def _config(path, **privacy):
    return parse_config({"data": {"source": "csv", "path": str(path), "label": "outcome",
                                  "id_column": "patient_id",
                                  "feature_types": {"ward": "categorical"}},
                         "privacy": {"target_epsilon": 3.0, **privacy}})


def test_15_3_one_patients_category_reaches_no_schema_and_is_charged(tmp_path) -> None:
    prepared = prepare(_config(_csv(tmp_path)), Randomness(0))
    cats = prepared.data.schema.feature("ward").categories
    assert "Zyxw-rare-unit" not in cats and set(cats) <= {"cardio", "renal", "onco"}
    stages = [e.stage for e in prepared.ledger.entries]
    assert stages[:2] == ["patient_counts", "category_selection"]
    assert 0 < prepared.ledger.threshold_delta <= 0.01 * prepared.ledger.delta * 1.0001
    assert "Zyxw-rare-unit" not in set(prepared.data.features["ward"].dropna())


def test_counts_are_noisy_and_delta_comes_from_a_public_bound(tmp_path) -> None:
    config = _config(_csv(tmp_path))
    a, b = prepare(config, Randomness(0)), prepare(config, Randomness(0))
    assert a.facts.class_counts != b.facts.class_counts        # fresh noise each run
    assert a.ledger.delta == public_delta(sum(a.facts.class_counts))
    assert public_delta(900) == 1e-4 and public_delta(20_000) == 1e-6
    assert len(a.dp_rows) == len(np.unique(a.train_ids))       # one row per patient


def test_reproducible_mode_repeats_itself(tmp_path) -> None:
    config = _config(_csv(tmp_path), reproducible_noise=True)
    a, b = prepare(config, Randomness(0, True)), prepare(config, Randomness(0, True))
    assert a.facts.class_counts == b.facts.class_counts
    assert np.array_equal(a.split.train, b.split.train)
    assert not a.ledger.formal_guarantee
