"""Teachers, reference models, attacks and FHIR chunks give the same results on a Dask
cluster as locally (everything here is seeded), and each unit is one counted task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from medistill.audit.mia_suite import run_attacks
from medistill.audit.reference_models import (
    EstimatorTrainer,
    plan_reference_inclusion,
    reference_predictions,
    train_reference_models,
)
from medistill.compute import compute_backend
from medistill.config import DataConfig
from medistill.data.fhir import demo_mapping, ingest_fhir, write_synthetic_fhir_export
from medistill.data.table import load_sensitive
from medistill.teachers.ensemble import PartitionedEnsemble


@pytest.fixture(scope="module")
def data():
    return load_sensitive(DataConfig(source="builtin", builtin={"name": "cohort",
                                                                "n_patients": 800}), seed=0)


def _ensemble(data, n_jobs: int) -> PartitionedEnsemble:
    return PartitionedEnsemble(n_teachers=4, kind="logistic_regression", schema=data.schema,
                               random_state=3, n_jobs=n_jobs).fit(
        data.features, data.labels, data.patient_ids)


def test_teachers_on_dask_match_local_teachers(data, dask_config, tmp_path: Path) -> None:
    local = _ensemble(data, n_jobs=1)
    with compute_backend(dask_config, tmp_path) as backend:
        remote = _ensemble(data, n_jobs=1)
    assert backend.summary()["tasks"] == 4
    rows = data.features.iloc[:300]
    np.testing.assert_array_equal(remote.teacher_probabilities(rows),
                                  local.teacher_probabilities(rows))
    np.testing.assert_array_equal(remote.partition_sizes_, local.partition_sizes_)


def _table(n: int = 400):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


def test_reference_models_on_dask_match_local_ones(dask_config, tmp_path: Path) -> None:
    X, y = _table()
    inclusion = plan_reference_inclusion(len(y), 4, np.random.default_rng(1))
    trainer = EstimatorTrainer(LogisticRegression(max_iter=200), X, y)
    local = reference_predictions(train_reference_models(trainer, inclusion, n_jobs=1,
                                                         seeds=range(4)), np.arange(len(y)))
    with compute_backend(dask_config, tmp_path) as backend:
        models = train_reference_models(trainer, inclusion, n_jobs=1, seeds=range(4))
    assert backend.summary()["tasks"] == 4
    np.testing.assert_array_equal(reference_predictions(models, np.arange(len(y))), local)


def test_attacks_with_reference_models_are_the_same_on_dask(dask_config, tmp_path) -> None:
    X, y = _table(300)
    features = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    is_member = np.arange(len(y)) < 150
    target = LogisticRegression(max_iter=200).fit(features[is_member], y[is_member])

    def train_fn(indices: np.ndarray, seed: int):
        return LogisticRegression(max_iter=200, random_state=seed).fit(
            features.iloc[indices], y[indices]).predict_proba

    def attack() -> tuple[dict, pd.DataFrame]:
        return run_attacks(target.predict_proba, features, y, np.arange(len(y)), is_member,
                           train_fn=train_fn, n_reference=4, delta=1e-5,
                           rng=np.random.default_rng(5), seed=0, n_jobs=2)

    local_block, local_raw = attack()
    with compute_backend(dask_config, tmp_path) as backend:
        block, raw = attack()
    assert backend.summary()["tasks"] == 4
    pd.testing.assert_frame_equal(raw, local_raw)
    assert block == local_block


def test_fhir_chunks_on_dask_give_the_same_table(dask_config, tmp_path: Path) -> None:
    export = write_synthetic_fhir_export(tmp_path / "export", 120,
                                         rng=np.random.default_rng(4))
    kwargs = {"salt": "s", "validate": "mapped", "chunk_bytes": 1 << 16}
    local = ingest_fhir(export, demo_mapping(), **kwargs)
    with compute_backend(dask_config, tmp_path / "work") as backend:
        remote = ingest_fhir(export, demo_mapping(), **kwargs)
    assert backend.summary()["tasks"] > len(local.summary.files)  # several chunks per file
    pd.testing.assert_frame_equal(remote.table, local.table)
    assert remote.summary.resource_counts == local.summary.resource_counts
