"""Small FHIR resources and exports built inline for the FHIR ingestion tests."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medistill.data.fhir import write_synthetic_fhir_export

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SYNTHETIC_SEED = 20250101
SYNTHETIC_PATIENTS = 300
_IDS = itertools.count(1)


def _uid(prefix: str) -> str:
    """A fresh resource id: the same type/id read twice is a duplicate."""
    return f"{prefix}{next(_IDS)}"


class Build:
    """Builders of R4 resources (R5 variants where the versions differ)."""

    @staticmethod
    def patient(pid: str = "p1", gender: str = "female", birth: str = "1960-01-01",
                **extra: Any) -> dict[str, Any]:
        return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
                "name": [{"family": "Secretname", "given": ["Hidden"]}],
                "identifier": [{"system": "urn:mrn", "value": "MRN-SECRET-1"}],
                "telecom": [{"system": "phone", "value": "+1-555-000-1111"}],
                "address": [{"line": ["1 Secret Street"], "city": "Nowhere"}], **extra}

    @staticmethod
    def obs(pid: str, code: str, value: float | None, unit: str | None, when: str,
            oid: str | None = None, **extra: Any) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Observation", "id": oid or _uid("o"), "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when, **extra}
        if value is not None:
            res["valueQuantity"] = {"value": value, "system": UCUM, "code": unit}
        return res

    @staticmethod
    def coded_obs(pid: str, code: str, answer: str, when: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": _uid("c"), "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": answer}]}}

    @staticmethod
    def condition(pid: str, code: str, onset: str | None, system: str = SNOMED,
                  **extra: Any) -> dict[str, Any]:
        res: dict[str, Any] = {"resourceType": "Condition", "id": _uid("cd"),
                               "code": {"coding": [{"system": system, "code": code}]},
                               "subject": {"reference": f"Patient/{pid}"}, **extra}
        if onset is not None:
            res["onsetDateTime"] = onset
        return res

    @staticmethod
    def encounter(pid: str, cls: str, start: str, r5: bool = False) -> dict[str, Any]:
        if r5:
            return {"resourceType": "Encounter", "id": _uid("e"), "status": "completed",
                    "class": [{"coding": [{"system": ACT, "code": cls}]}],
                    "subject": {"reference": f"Patient/{pid}"},
                    "actualPeriod": {"start": start}}
        return {"resourceType": "Encounter", "id": _uid("e"), "status": "finished",
                "class": {"system": ACT, "code": cls},
                "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start}}

    @staticmethod
    def medication(pid: str, code: str, authored: str, r5: bool = False) -> dict[str, Any]:
        concept = {"coding": [{"system": RXNORM, "code": code}]}
        res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": _uid("m"),
                               "status": "active", "intent": "order",
                               "subject": {"reference": f"Patient/{pid}"},
                               "authoredOn": authored}
        if r5:
            res["medication"] = {"concept": concept}
        else:
            res["medicationCodeableConcept"] = concept
        return res

    @staticmethod
    def procedure(pid: str, code: str, when: str, r5: bool = False) -> dict[str, Any]:
        return {"resourceType": "Procedure", "id": _uid("pr"), "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": code}]},
                "subject": {"reference": f"Patient/{pid}"},
                ("occurrenceDateTime" if r5 else "performedDateTime"): when}

    @staticmethod
    def export(folder: Path, resources: list[dict[str, Any]]) -> Path:
        """Write ``resources`` as a Bulk Data folder, one ``<Type>.000.ndjson`` per type."""
        folder.mkdir(parents=True, exist_ok=True)
        by_type: dict[str, list[str]] = defaultdict(list)
        for r in resources:
            by_type[r.get("resourceType", "Unknown")].append(json.dumps(r))
        for rtype, lines in by_type.items():
            (folder / f"{rtype}.000.ndjson").write_text("\n".join(lines) + "\n")
        return folder


@pytest.fixture(scope="session")
def build() -> type[Build]:
    return Build


@pytest.fixture(scope="session")
def synthetic_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-patient synthetic export, written once for the session."""
    out = tmp_path_factory.mktemp("synthetic") / "export"
    return write_synthetic_fhir_export(out, SYNTHETIC_PATIENTS,
                                       rng=np.random.default_rng(SYNTHETIC_SEED))
