"""The deployed student: an onnxruntime session, the schema stored in the model's metadata,
and a model card built from that metadata and the run's ``report.json`` beside it.

Imports onnxruntime, numpy and PyYAML only: never torch, scikit-learn or pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from medistill.errors import DataError
from medistill.runfolder import sha256_of

MODEL_FILE = "student.onnx"
OUTPUT_NAME = "probabilities"
NUMERIC, BINARY, CATEGORICAL = "numeric", "binary", "categorical"
PATIENT_KEY = "patient_key"
_DEFAULT_ID = {"builtin": "patient_id", "fhir": PATIENT_KEY}


@dataclass(frozen=True)
class Feature:
    """One input column of the model: its kind and, for categoricals, the known categories."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSchema:
    """What the model reads (features) and predicts (label, classes)."""

    label: str
    classes: tuple[str, ...]
    features: tuple[Feature, ...]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def from_metadata(cls, raw: str, *, source: str) -> ModelSchema:
        try:
            data = json.loads(raw)
            features = tuple(Feature(str(f["name"]), str(f["kind"]),
                                     tuple(str(c) for c in f.get("categories") or ()))
                             for f in data["features"])
            schema = cls(str(data["label"]), tuple(str(c) for c in data["classes"]), features)
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{source}: the 'schema' metadata is not valid ({error}).",
                            hint="Re-export the model with medistill.") from None
        bad = [f.name for f in features if f.kind not in (NUMERIC, BINARY, CATEGORICAL)]
        if bad or len(schema.classes) < 2:
            raise DataError(f"{source}: the 'schema' metadata has unknown feature kinds "
                            f"{bad} or fewer than two classes.")
        return schema


file_sha256 = sha256_of  # one implementation, shared with the run folder's manifest


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _id_columns(folder: Path) -> tuple[str, ...]:
    """``patient_key``, and the run's id column (``data.id_column`` of its pipeline.yaml)."""
    import yaml

    columns = [PATIENT_KEY]
    try:
        data = yaml.safe_load((folder / "pipeline.yaml").read_text(encoding="utf-8"))
        data = data.get("data") or {}
        column = data.get("id_column") or _DEFAULT_ID.get(str(data.get("source")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        column = None
    if column and str(column) not in columns:
        columns.append(str(column))
    return tuple(columns)


def _resolve(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise DataError(f"model file '{path}' does not exist.",
                        hint=f"Point --model at the {MODEL_FILE} of a finished run folder "
                             "(or an unpacked `medistill package` bundle).")
    return path


class DeployedModel:
    """A loaded ``student.onnx``; thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: Path, session: Any, schema: ModelSchema,
                 metadata: dict[str, str]) -> None:
        self.path = path
        self.session = session
        self.schema = schema
        self.metadata = metadata
        self.sha256 = file_sha256(path)
        self.id_columns = _id_columns(path.parent)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def binary(self) -> bool:
        return len(self.schema.classes) == 2

    def predict_proba(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (float32) for prepared feeds."""
        return self.session.run([OUTPUT_NAME], feeds)[0]

    @cached_property
    def card(self) -> dict[str, Any]:
        """Model card: identity, inputs, privacy claim and (if present) the audit's verdict."""
        return model_card(self)


def _check_io(session: Any, schema: ModelSchema, source: str) -> None:
    inputs = {i.name: i.type for i in session.get_inputs()}
    expected = {f.name: "tensor(string)" if f.kind == CATEGORICAL else "tensor(float)"
                for f in schema.features}
    if inputs != expected:
        raise DataError(f"{source}: the graph's inputs do not match its schema metadata "
                        f"(graph: {sorted(inputs)}; schema: {sorted(expected)}).",
                        hint="Re-export the model with medistill.")
    if OUTPUT_NAME not in {o.name for o in session.get_outputs()}:
        raise DataError(f"{source}: the graph has no '{OUTPUT_NAME}' output.")


def load_model(path: str | Path, *, threads: int | None = None) -> DeployedModel:
    """Load ``student.onnx`` (or the one inside a run folder) with its schema.

    ``threads`` sets onnxruntime's intra-op threads (default: onnxruntime's choice).
    Raises :class:`DataError` if the file is missing, not ONNX, or not a medistill model.
    """
    import onnxruntime as ort

    path = _resolve(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise DataError(f"model file '{path}' is not an ONNX model onnxruntime can load "
                        f"({reason}).",
                        hint=f"Use the {MODEL_FILE} written by medistill.") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if "schema" not in metadata:
        raise DataError(f"model file '{path}' has no medistill 'schema' metadata; it was not "
                        "exported by medistill.", hint=f"Use the {MODEL_FILE} of a run folder.")
    schema = ModelSchema.from_metadata(metadata["schema"], source=str(path))
    _check_io(session, schema, str(path))
    return DeployedModel(path, session, schema, metadata)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _integrity(model: DeployedModel) -> str:
    """Does the model match the hash recorded beside it (run or bundle manifest)?"""
    for name in ("manifest.json", "bundle_manifest.json"):
        manifest = _read_json(model.folder / name)
        if manifest is None:
            continue
        recorded = (manifest.get("sha256") or {}).get(model.path.name)
        if recorded is None:
            return f"{name} does not list {model.path.name}"
        return "ok" if recorded == model.sha256 else f"MISMATCH: the model differs from {name}"
    return "no manifest beside the model"


def releasable_gates(gates: Any) -> list[dict[str, Any]] | None:
    """The report's gate rows as the model card may carry them: a gate on per-group test
    metrics (``fairness.…``) keeps its name, result and rule, not its measured value or
    note (they name a group and its test metrics, which stay in the internal report)."""
    if not isinstance(gates, list):
        return None
    out = []
    for gate in gates:
        if isinstance(gate, dict) and str(gate.get("metric", "")).startswith("fairness."):
            gate = {**gate, "value": None, "note": "per-group figure: see the internal report"}
        out.append(gate)
    return out


def model_card(model: DeployedModel) -> dict[str, Any]:
    """Identity, inputs and privacy claim of a model, plus its audit summary from
    ``report.json`` when that report belongs to this model (same pipeline hash)."""
    meta = model.metadata
    report = _read_json(model.folder / "report.json")
    run = (report or {}).get("run") or {}
    matches = bool(report) and run.get("pipeline_sha256") == meta.get("pipeline_sha256")
    privacy: dict[str, Any] = {
        "unit": "patient",
        "formal_guarantee": meta.get("formal_guarantee") == "true",
        "epsilon": _float(meta.get("epsilon")), "delta": _float(meta.get("delta")),
        "accountant": meta.get("accountant"), "source": "student.onnx metadata"}
    card: dict[str, Any] = {
        "model": {"file": model.path.name, "sha256": model.sha256,
                  "size_bytes": model.path.stat().st_size,
                  "medistill_version": meta.get("medistill_version"),
                  "pipeline_sha256": meta.get("pipeline_sha256"),
                  "label": model.schema.label, "classes": list(model.schema.classes),
                  "features": [{"name": f.name, "kind": f.kind,
                                "categories": list(f.categories)} for f in model.schema.features],
                  "integrity": _integrity(model)},
        "privacy": privacy, "report": None}
    if report and matches:
        claimed = report.get("privacy") or {}
        privacy.update({k: claimed[k] for k in ("unit", "formal_guarantee", "epsilon", "delta",
                                                "accountant", "covered", "caveats")
                        if k in claimed})
        privacy["source"] = "report.json"
        utility = report.get("utility") or {}
        card["report"] = {
            "verdict": report.get("verdict"), "passed": report.get("passed"),
            "created_at": run.get("created_at"), "dataset": run.get("dataset"),
            "utility": {k: utility.get(k) for k in ("student", "teacher", "retention")},
            "speed": {k: (report.get("speed") or {}).get(k) for k in ("threads", "student")},
            "gates": releasable_gates(report.get("gates"))}
    elif report:
        card["report_note"] = ("report.json beside the model belongs to another run "
                               "(pipeline hash differs); it was not used.")
    return card


__all__ = ["BINARY", "CATEGORICAL", "MODEL_FILE", "NUMERIC", "OUTPUT_NAME", "PATIENT_KEY",
           "DeployedModel", "Feature", "ModelSchema", "file_sha256", "load_model", "model_card",
           "releasable_gates"]
