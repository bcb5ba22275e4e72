"""FHIR version detection and validation with the matching ``fhir.resources`` models.

``fhir.resources`` 8 ships R5 as its default module and R4B under ``fhir.resources.R4B``; it
has no separate R4 module. R4B is wire-compatible with R4 for the resources medistill reads
(Patient, Observation, Condition, Encounter, MedicationRequest, Procedure), so R4 resources
are validated with the R4B models.

The version of a resource comes, in order, from: an explicit option; a hint in the resource
(``meta.profile`` canonical versions such as ``|4.0.1``, US Core profiles, which are R4, or
R4/R5-only elements such as ``Encounter.class`` as an object or a list); or, failing that, by
trying R4B and then R5 (the version that last succeeded is tried first).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import ValidationError

FhirVersion = Literal["R4", "R4B", "R5"]
VersionOption = Literal["auto", "R4", "R4B", "R5"]
VERSION_OPTIONS: tuple[str, ...] = ("auto", "R4", "R4B", "R5")

_NUMBERED = (("4.0", "R4"), ("4.1", "R4B"), ("4.3", "R4B"), ("4.2", "R5"), ("4.4", "R5"),
             ("4.5", "R5"), ("4.6", "R5"), ("5.0", "R5"))
_PATH_HINT = re.compile(r"hl7\.org/fhir/(R4B|R4|R5|4\.0|4\.3|5\.0)(?:\.\d+)?/", re.I)


def version_from_number(text: str) -> FhirVersion | None:
    """Map a ``fhirVersion`` string (``4.0.1``, ``4.3.0``, ``5.0.0``, ``R4`` …) to a version."""
    t = text.strip().upper()
    if t in ("R4", "R4B", "R5"):
        return t  # type: ignore[return-value]
    for prefix, version in _NUMBERED:
        if t.startswith(prefix):
            return version  # type: ignore[return-value]
    return None


def _profile_hint(profile: str) -> FhirVersion | None:
    if "|" in profile:
        url, _, number = profile.rpartition("|")
        if url.startswith("http://hl7.org/fhir/StructureDefinition/"):
            found = version_from_number(number)
            if found:
                return found
    m = _PATH_HINT.search(profile)
    if m:
        return version_from_number(m.group(1))
    if "/fhir/us/core/" in profile:
        return "R4"
    return None


def _structure_hint(resource: dict[str, Any]) -> FhirVersion | None:
    rtype = resource.get("resourceType")
    if rtype == "Encounter":
        cls = resource.get("class")
        if isinstance(cls, dict) or "period" in resource or "hospitalization" in resource:
            return "R4"
        if isinstance(cls, list) or "actualPeriod" in resource or "admission" in resource:
            return "R5"
    elif rtype in ("MedicationRequest", "MedicationStatement"):
        if "medicationCodeableConcept" in resource or "medicationReference" in resource:
            return "R4"
        if "medication" in resource:
            return "R5"
    elif rtype == "Procedure":
        if any(k.startswith("performed") for k in resource):
            return "R4"
        if any(k.startswith("occurrence") for k in resource):
            return "R5"
    return None


def detect_version(resource: dict[str, Any]) -> FhirVersion | None:
    """The version a resource declares or its shape implies, or None when it does not tell.

    Plain R4 and R4B resources both report ``"R4"`` unless a profile names R4B.
    """
    meta = resource.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("profile"), list):
        for profile in meta["profile"]:
            if isinstance(profile, str):
                found = _profile_hint(profile)
                if found:
                    return found
    return _structure_hint(resource)


@lru_cache(maxsize=None)
def model_class(resource_type: str, version: FhirVersion) -> type | None:
    """The ``fhir.resources`` model of ``resource_type`` in ``version``; None if there is none."""
    if version == "R5":
        from fhir.resources import get_fhir_model_class
        from fhir.resources.resource import Resource
    else:
        from fhir.resources.R4B import get_fhir_model_class
        from fhir.resources.R4B.resource import Resource
    if not resource_type or not resource_type[0].isupper() or not resource_type.isalnum():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Resource) else None


def is_resource_type(resource_type: str) -> bool:
    """True when ``resource_type`` is a resource of R4/R4B or R5."""
    return model_class(resource_type, "R4B") is not None or \
        model_class(resource_type, "R5") is not None


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """A short, value-free description of a pydantic error: field paths and messages only."""
    parts = []
    errors = error.errors(include_url=False, include_input=False, include_context=False)
    for err in errors[:limit]:
        loc = ".".join(str(x) for x in err["loc"]) or "(resource)"
        msg = " ".join(str(err["msg"]).split())
        if err["type"] == "string_pattern_mismatch" and err["loc"][-1:] == ("id",):
            msg = ("the id does not match the FHIR id pattern (1-64 letters, digits, '-' and "
                   "'.'; no '_' or spaces)")
        if len(msg) > 120:
            msg = msg[:117] + "..."
        parts.append(f"{loc}: {msg}")
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class ResourceValidator:
    """Validates resource dicts with the right version's models; remembers what worked."""

    def __init__(self, option: VersionOption = "auto") -> None:
        if option not in VERSION_OPTIONS:
            raise ValueError(f"fhir_version must be one of {', '.join(VERSION_OPTIONS)}. "
                             f"Got {option!r}.")
        self.option = option
        self._preferred: FhirVersion = "R4"

    def versions_to_try(self, resource: dict[str, Any]) -> tuple[FhirVersion, ...]:
        """The versions to validate ``resource`` against, in order."""
        if self.option != "auto":
            return (self.option,)  # type: ignore[return-value]
        hint = detect_version(resource)
        if hint is not None:
            return (hint,)
        other: FhirVersion = "R5" if self._preferred != "R5" else "R4"
        return (self._preferred, other)

    def validate(self, resource: dict[str, Any]) -> tuple[FhirVersion | None, str | None]:
        """Validate ``resource``: (version it is valid in, None) or (None, reason)."""
        rtype = str(resource.get("resourceType"))
        first_reason: str | None = None
        tried = self.versions_to_try(resource)
        for version in tried:
            cls = model_class(rtype, version)
            if cls is None:
                reason = f"{rtype} is not a resource type of FHIR {version}"
            else:
                try:
                    cls.model_validate(resource)  # type: ignore[attr-defined]
                except ValidationError as exc:
                    reason = f"not a valid {version} {rtype}: {describe_validation_error(exc)}"
                except (TypeError, ValueError) as exc:  # model-level checks outside pydantic
                    reason = f"not a valid {version} {rtype}: {type(exc).__name__}"
                else:
                    if self.option == "auto" and len(tried) > 1:
                        self._preferred = version
                    return version, None
            first_reason = first_reason or reason
        if len(tried) > 1:
            first_reason = f"{first_reason} (nor a valid {' or '.join(tried[1:])} {rtype})"
        return None, first_reason


__all__ = [
    "VERSION_OPTIONS",
    "FhirVersion",
    "ResourceValidator",
    "VersionOption",
    "describe_validation_error",
    "detect_version",
    "is_resource_type",
    "model_class",
    "version_from_number",
]
