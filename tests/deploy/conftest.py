"""Run folders for the deployment tests, built once per session.

A full ``run_pipeline`` takes close to a minute on two cores, so these folders are made
with the pipeline's own parts instead: the cohort simulator, the student's preprocessing,
an MLP student (briefly fitted, no DP: these tests are about serving, not privacy) and the
real ONNX exporter, plus ``pipeline.yaml``, ``report.json`` and ``manifest.json`` in the
run-folder contract's shape. One binary folder (the cohort's ``cv_event_1y``) and one
three-class folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medistill.data.cohort import OUTCOME, simulate_cohort
from medistill.data.schema import FeatureSpec, TableSchema, infer_kind, public_categories

ID_COLUMN = "patient_id"
FEATURES = ["sex", "age", "smoking", "bmi", "sbp", "dbp", "heart_rate", "glucose", "hba1c",
            "cholesterol", "hdl", "creatinine", "hypertension", "diabetes", "ckd",
            "n_encounters", "n_medications"]


def _schema(table: pd.DataFrame, label: str, classes: tuple[str, ...],
            missing_values: tuple[str, ...] = ()) -> TableSchema:
    specs = []
    for name in FEATURES:
        kind = infer_kind(table[name])
        categories = public_categories(table[name], 5) if kind == "categorical" else ()
        specs.append(FeatureSpec(name, kind, categories))
    return TableSchema(tuple(specs), label, classes, id_column=ID_COLUMN,
                       missing_values=missing_values)


def _train(inputs: np.ndarray, labels: np.ndarray, n_classes: int):
    import torch

    from medistill.student.model import StudentMLP

    torch.set_num_threads(1)  # a tiny network: more threads only add contention
    torch.manual_seed(0)
    net = StudentMLP(inputs.shape[1], n_classes, (16, 8))
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(labels)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    return net.eval()


def build_run_folder(folder: Path, table: pd.DataFrame, labels: np.ndarray,
                     classes: tuple[str, ...], missing_values: tuple[str, ...] = ()) -> Path:
    """A run-folder look-alike whose student.onnx comes from the real exporter
    (``missing_values``: the run's data.missing_values)."""
    from medistill.audit.model_card import write_model_card
    from medistill.config import parse_config
    from medistill.runfolder import write_manifest
    from medistill.student.export import export_student
    from medistill.student.preprocess import as_model_input, make_preprocessor

    folder.mkdir(parents=True)
    schema = _schema(table, OUTCOME if len(classes) == 2 else "risk_band", classes,
                     missing_values)
    features = as_model_input(table, schema)
    preprocessor = make_preprocessor(schema).fit(features)
    net = _train(preprocessor.transform(features).astype(np.float32), labels, len(classes))
    pipeline = {"data": {"source": "csv", "path": "records.csv", "label": schema.label,
                         "id_column": ID_COLUMN}, "privacy": {"target_epsilon": 3.0}}
    if missing_values:
        pipeline["data"]["missing_values"] = list(missing_values)
    pipeline_text = yaml.safe_dump(pipeline, sort_keys=False)
    pipeline_sha = hashlib.sha256(pipeline_text.encode()).hexdigest()
    (folder / "pipeline.yaml").write_text(pipeline_text)
    # what medistill.steps.export.model_metadata writes: no pipeline hash
    metadata = {"medistill_version": "0.1.0", "epsilon": "2.5", "delta": "1e-05",
                "accountant": "pld", "formal_guarantee": "true"}
    export_student(folder / "student.onnx", preprocessor, net, schema, metadata)
    report = {
        "schema_version": "1", "verdict": "release", "passed": True, "gates": [],
        "run": {"medistill_version": "0.1.0", "created_at": "2026-01-02T03:04:05Z",
                "pipeline_sha256": pipeline_sha, "plan": {"noisy_class_counts": [310, 95],
                                                          "n_train_noisy": 405}},
        "utility": {"student": {"auroc": 0.8}, "teacher": {"auroc": 0.85},
                    "retention": {"auroc": 0.94}},
        "speed": {"threads": 1, "student": {"latency_ms_p50": 0.07}},
        "privacy": {"unit": "patient", "formal_guarantee": True, "epsilon": 2.4987,
                    "delta": 1e-05, "accountant": "pld", "ledger": [],
                    "covered": "the released student"}}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "ledger.json").write_text(json.dumps({"events": []}))
    write_model_card(folder, report, parse_config(pipeline))
    write_manifest(folder)
    return folder


@pytest.fixture(scope="session")
def cohort() -> pd.DataFrame:
    """400 simulated patients with fake identifiers and some missing labs."""
    return simulate_cohort(400, rng=np.random.default_rng(11))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, cohort: pd.DataFrame) -> Path:
    """A binary run folder (label cv_event_1y, classes '0', '1')."""
    labels = cohort[OUTCOME].to_numpy().astype(np.int64)
    return build_run_folder(tmp_path_factory.mktemp("deploy") / "run", cohort, labels,
                            ("0", "1"))


@pytest.fixture(scope="session")
def coded_dir(tmp_path_factory: pytest.TempPathFactory, cohort: pd.DataFrame) -> Path:
    """A binary run folder whose run declared data.missing_values: ['.', '-99']."""
    labels = cohort[OUTCOME].to_numpy().astype(np.int64)
    return build_run_folder(tmp_path_factory.mktemp("deploy") / "coded", cohort, labels,
                            ("0", "1"), missing_values=(".", "-99"))


@pytest.fixture(scope="session")
def multiclass_dir(tmp_path_factory: pytest.TempPathFactory, cohort: pd.DataFrame) -> Path:
    """A three-class run folder (risk bands low / mid / high by age)."""
    labels = np.digitize(cohort["age"].to_numpy(), [45, 65]).astype(np.int64)
    return build_run_folder(tmp_path_factory.mktemp("deploy") / "multi", cohort, labels,
                            ("low", "mid", "high"))


@pytest.fixture(scope="session")
def reference():
    """``reference(model_path, frame) -> probabilities`` via the audit's own feeding
    (``medistill.student.export.onnx_feeds``) and a plain onnxruntime session."""
    import onnxruntime as ort

    from medistill.student.export import OUTPUT_NAME, onnx_feeds

    def run(model_path: Path, frame: pd.DataFrame) -> np.ndarray:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        raw = json.loads(session.get_modelmeta().custom_metadata_map["schema"])
        schema = TableSchema(tuple(FeatureSpec(f["name"], f["kind"], tuple(f["categories"]))
                                   for f in raw["features"]), raw["label"],
                             tuple(raw["classes"]))
        return session.run([OUTPUT_NAME], onnx_feeds(frame, schema))[0]

    return run


@pytest.fixture()
def records_csv(tmp_path: Path, cohort: pd.DataFrame) -> Path:
    path = tmp_path / "records.csv"
    cohort.to_csv(path, index=False)
    return path
