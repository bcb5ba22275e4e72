"""The export step (steps/export.py): student.onnx's metadata is releasable and never
understates the guarantee."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import dp_accounting as dpa
import numpy as np
import onnx
import pandas as pd
import torch

from medistill.data.schema import FeatureSpec, TableSchema
from medistill.privacy.ledger import PrivacyLedger
from medistill.steps.export import export, model_metadata
from medistill.student.model import StudentMLP
from medistill.student.preprocess import as_model_input, make_preprocessor

SCHEMA = TableSchema(features=(FeatureSpec("age", "numeric"),
                               FeatureSpec("sex", "categorical", ("female", "male"))),
                     label="y", classes=("0", "1"))


def _ledger() -> PrivacyLedger:
    """A ledger whose ε and δ a 6-significant-digit format would round down."""
    ledger = PrivacyLedger(delta=1e-5)
    ledger.record("patient_counts", dpa.GaussianDpEvent(1.1), threshold_delta=1.23456789e-8)
    eps = ledger.epsilon()
    assert float(f"{eps:.6g}") < eps and float(f"{ledger.total_delta:.6g}") < ledger.total_delta
    return ledger


def test_metadata_is_exact_and_never_understates_the_guarantee() -> None:
    ledger = _ledger()
    meta = model_metadata(ledger)
    assert float(meta["epsilon"]) == ledger.epsilon()  # exact: never below the ledger
    assert float(meta["delta"]) == ledger.total_delta
    assert meta["accountant"] == "pld" and meta["formal_guarantee"] == "true"
    assert set(meta) == {"medistill_version", "epsilon", "delta", "accountant",
                         "formal_guarantee"}


def test_metadata_of_a_non_private_run_says_infinite() -> None:
    ledger = PrivacyLedger(delta=1e-5)
    ledger.record("transfer_munge", dpa.NonPrivateDpEvent())
    meta = model_metadata(ledger)
    assert float(meta["epsilon"]) == float("inf") and meta["formal_guarantee"] == "false"


def test_exported_model_carries_no_pipeline_hash(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"age": rng.uniform(18, 90, 50),
                         "sex": rng.choice(["female", "male"], 50).astype(object)})
    preprocessor = make_preprocessor(SCHEMA).fit(as_model_input(rows, SCHEMA))
    torch.manual_seed(0)
    network = StudentMLP(preprocessor.transform(as_model_input(rows.head(2), SCHEMA)).shape[1],
                         2, (4,)).eval()
    ledger = _ledger()
    prepared = SimpleNamespace(data=SimpleNamespace(schema=SCHEMA), ledger=ledger)
    student = SimpleNamespace(preprocessor=preprocessor, network=network)
    export(prepared, student, tmp_path / "student.onnx")  # type: ignore[arg-type]
    model = onnx.load(str(tmp_path / "student.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert not [k for k in meta if "pipeline" in k]
    assert float(meta["epsilon"]) >= ledger.epsilon()
    assert float(meta["delta"]) >= ledger.total_delta
