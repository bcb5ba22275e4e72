"""FHIR R4 ``RiskAssessment`` resources for the student's predictions.

One resource per scored patient: ``subject`` (a ``Patient/<id>`` reference for FHIR input, an
identifier of the table's patient-key column otherwise), ``occurrenceDateTime`` (when the
prediction was made), ``prediction`` (probability of the positive class for a binary task,
one entry per class otherwise), and the model's identity (sha256 of ``student.onnx``) in
``method`` and ``basis``. Resources are built from pre-serialised fragments so writing a
million of them stays fast; the first of each file is validated with fhir.resources.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

import numpy as np

from medistill.deploy.model import DeployedModel
from medistill.errors import DataError

MODEL_SYSTEM = "urn:medistill:model-sha256"
KEY_SYSTEM_PREFIX = "urn:medistill:patient-key:"


def now_fhir() -> str:
    """The current time as a FHIR ``dateTime`` (UTC, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def key_subject(column: str, value: str) -> dict[str, Any]:
    """A subject Reference by identifier: the value of the patient-key column ``column``."""
    return {"identifier": {"system": KEY_SYSTEM_PREFIX + quote(column, safe=""),
                           "value": value}}


def patient_subject(patient_id: str) -> dict[str, Any]:
    """A subject Reference to a FHIR Patient by id."""
    return {"reference": f"Patient/{patient_id}"}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _short(value: float) -> float:
    """The shortest decimal that reads back as the same float32."""
    return float(str(np.float32(value)))


class RiskAssessmentBuilder:
    """Builds RiskAssessment JSON lines for one model and one occurrence time."""

    def __init__(self, model: DeployedModel, *, occurrence: str | None = None) -> None:
        schema, meta = model.schema, model.metadata
        guarantee = ("formal differential-privacy guarantee"
                     if meta.get("formal_guarantee") == "true" else "NO formal privacy guarantee")
        text = (f"medistill student model {meta.get('medistill_version', '?')}, student.onnx "
                f"sha256 {model.sha256}; {guarantee} (epsilon {meta.get('epsilon', '?')}, "
                f"delta {meta.get('delta', '?')}, per patient)")
        self.method = {"coding": [{"system": MODEL_SYSTEM, "code": model.sha256,
                                   "display": "medistill student model"}], "text": text}
        self.basis = [{"type": "Device",
                       "identifier": {"system": MODEL_SYSTEM, "value": model.sha256},
                       "display": f"medistill student.onnx predicting {schema.label}"}]
        self.occurrence = occurrence or now_fhir()
        classes = schema.classes
        self.outcome_index = [len(classes) - 1] if model.binary else list(range(len(classes)))
        self.outcomes = [_compact({"text": f"{schema.label} = {classes[i]}"})
                         for i in self.outcome_index]
        self._head = '{"resourceType":"RiskAssessment","id":'
        self._middle = f',"status":"final","method":{_compact(self.method)},"subject":'
        self._tail = (f',"occurrenceDateTime":{_compact(self.occurrence)},"basis":'
                      f'{_compact(self.basis)},"prediction":[')

    def line(self, subject: dict[str, Any], probabilities: Sequence[float]) -> str:
        """One resource as a compact JSON line (no newline)."""
        parts = [f'{{"outcome":{o},"probabilityDecimal":{_short(probabilities[i])!r}}}'
                 for o, i in zip(self.outcomes, self.outcome_index, strict=True)]
        return (f'{self._head}"{uuid.uuid4()}"{self._middle}'
                f'{_compact(subject)}{self._tail}{",".join(parts)}]}}')

    def resource(self, subject: dict[str, Any], probabilities: Sequence[float]) -> dict[str, Any]:
        return json.loads(self.line(subject, probabilities))


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise DataError unless ``resource`` is a valid R4 RiskAssessment (checked with
    fhir.resources' R4B model, whose RiskAssessment is the same as R4's)."""
    from fhir.resources.R4B.riskassessment import RiskAssessment
    from pydantic import ValidationError

    try:
        RiskAssessment.model_validate(resource)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.errors()[0]["loc"])
        raise DataError(f"internal error: a RiskAssessment did not validate (at {where}).",
                        hint="Please report this as a bug.") from None


class RiskAssessmentWriter:
    """Writes NDJSON RiskAssessments to an open text handle; validates the first one."""

    def __init__(self, handle: TextIO, model: DeployedModel) -> None:
        self.handle = handle
        self.builder = RiskAssessmentBuilder(model)
        self.validated = False

    def write(self, subjects: Iterable[dict[str, Any]], probabilities: np.ndarray) -> None:
        lines = [self.builder.line(s, p) for s, p in zip(subjects, probabilities.tolist(),
                                                           strict=True)]
        if lines and not self.validated:
            validate_resource(json.loads(lines[0]))
            self.validated = True
        if lines:
            self.handle.write("\n".join(lines) + "\n")


def bundle(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ``collection`` Bundle of resources (the HTTP service's FHIR response)."""
    return {"resourceType": "Bundle", "type": "collection", "timestamp": now_fhir(),
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}


__all__ = ["KEY_SYSTEM_PREFIX", "MODEL_SYSTEM", "RiskAssessmentBuilder", "RiskAssessmentWriter",
           "bundle", "key_subject", "now_fhir", "patient_subject", "validate_resource"]
