"""Read the fields a mapping needs from one resource (as parsed JSON) into events.

The same code reads R4, R4B and R5 shapes (``Encounter.class`` as a Coding or a list,
``medicationCodeableConcept`` or ``medication.concept``, ``performed[x]`` or
``occurrence[x]``). It checks the type and format of every field it reads, which is all the
validation ``validate="mapped"`` does. Names, addresses, telecom, identifiers and narrative
are never read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from medistill.data.fhir.plan import MEDICATION_TYPES, Plan
from medistill.data.fhir.units import converter, normalize_unit


class BadResource(Exception):
    """A resource lacks or mistypes a field the mapping reads; ``reason`` has no values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PatientRecord(NamedTuple):
    """What a table row keeps of a Patient (no name, address, telecom or identifier)."""

    fhir_id: str
    alias: str | None      # reference key of the Bundle fullUrl when it differs from the id
    birth_day: int         # date ordinal, -1 when unknown
    gender: str
    deceased: bool
    deceased_day: int      # date ordinal, -1 when unknown
    race: str
    ethnicity: str
    line: int


class Event(NamedTuple):
    slot: int
    day: int
    ts: float
    value: float


_DATETIME = re.compile(
    r"^(\d{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?"
    r"(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$")
_URN = ("urn:uuid:", "urn:oid:")
_OTHER_TYPE = re.compile(r"(?:^|/)(?!Patient/)[A-Z][A-Za-z]+/[^/]+(?:/_history/[^/]+)?$")
_EPOCH = date(1970, 1, 1).toordinal()
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_SKIP_STATUS = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "Condition": frozenset(),
    "Encounter": frozenset({"entered-in-error", "cancelled"}),
    "MedicationRequest": frozenset({"entered-in-error"}),
    "MedicationStatement": frozenset({"entered-in-error", "not-taken"}),
    "Procedure": frozenset({"entered-in-error", "not-done"}),
}
_VALUE_X = re.compile(r"^value[A-Z][A-Za-z]*$")
_COMPARATORS = frozenset({"<", "<=", ">=", ">", "ad"})
_UNIT_TOKEN = re.compile(r"^[A-Za-z0-9%/\[\]{}()._*^'-]{1,24}$")
_NOT_YET = {
    "Observation": frozenset({"registered"}),
    "Encounter": frozenset({"planned"}),
    "MedicationRequest": frozenset({"draft"}),
    "MedicationStatement": frozenset({"intended"}),
    "Procedure": frozenset({"preparation"}),
}
"""Statuses of resources that have not happened yet: their dates (a planned visit, a draft
order) say nothing about when the export was made."""
_MEDICATION_DATES = {
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
}
_SKIP_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
RACE = {"1002-5": "american_indian_or_alaska_native", "2028-9": "asian",
        "2054-5": "black_or_african_american", "2076-8": "native_hawaiian_or_pacific_islander",
        "2106-3": "white", "2131-1": "other", "UNK": "unknown", "ASKU": "unknown"}
ETHNICITY = {"2135-2": "hispanic_or_latino", "2186-5": "not_hispanic_or_latino",
             "UNK": "unknown", "ASKU": "unknown"}


@lru_cache(maxsize=4096)
def parse_when(text: str) -> tuple[int, float]:
    """(date ordinal of the local calendar day, UTC seconds since 1970) of a FHIR date or
    dateTime; partial dates (``2024``, ``2024-05``) fall on the first day of the period.
    Raises ValueError when ``text`` is not a FHIR date/dateTime."""
    m = _DATETIME.match(text)
    if m is None:
        raise ValueError(text)
    year = int(m.group(1))
    month = int(m.group(3) or 1)
    day = date(year, month, int(m.group(5) or 1)).toordinal()
    if m.group(6) is None:
        return day, (day - _EPOCH) * 86400.0
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return day, stamp.timestamp()


def _when(value: Any, path: str) -> tuple[int, float]:
    if not isinstance(value, str):
        raise BadResource(f"{path}: expected a date/dateTime string")
    try:
        return parse_when(value)
    except ValueError:
        raise BadResource(f"{path}: not a valid FHIR date/dateTime") from None


def _first_date(res: dict[str, Any], rtype: str, names: tuple[str, ...]
                ) -> tuple[int, float] | None:
    for name in names:
        value = res.get(name)
        if value is None:
            continue
        if name == "period" or name.endswith("Period"):
            if not isinstance(value, dict):
                raise BadResource(f"{rtype}.{name}: expected an object")
            for end in ("start", "end"):
                if value.get(end) is not None:
                    return _when(value[end], f"{rtype}.{name}.{end}")
            continue
        return _when(value, f"{rtype}.{name}")
    return None


def _codings(concept: Any, path: str) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a CodeableConcept."""
    if concept is None:
        return []
    if not isinstance(concept, dict):
        raise BadResource(f"{path}: expected a CodeableConcept object")
    codings = concept.get("coding", [])
    if not isinstance(codings, list):
        raise BadResource(f"{path}.coding: expected a list")
    out = []
    for c in codings:
        if not isinstance(c, dict):
            raise BadResource(f"{path}.coding: expected Coding objects")
        code, system = c.get("code"), c.get("system")
        if code is None:
            continue
        if not isinstance(code, str) or not (system is None or isinstance(system, str)):
            raise BadResource(f"{path}.coding: code and system must be strings")
        out.append((system, code))
    return out


def reference_key(reference: str) -> str | None:
    """The key of a Patient reference: the id of ``Patient/<id>`` (also absolute URLs and
    ``/_history/``), the whole ``urn:uuid:``/``urn:oid:`` reference, or None."""
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return reference
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


UNRESOLVABLE = "?"
"""The key of a medication reference that names no Medication resource."""


def medication_key(reference: str) -> str | None:
    """``Medication/<id>`` for relative and absolute Medication references (also with
    ``/_history/``), the whole ``urn:uuid:``/``urn:oid:`` reference, or None."""
    if reference.startswith(_URN):
        return reference
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == "Medication" and parts[-1]:
        return f"Medication/{parts[-1]}"
    return None


def subject_key(res: dict[str, Any], rtype: str) -> str | None:
    """The Patient key of ``subject`` (or ``patient``); None when it is not a Patient."""
    subject = res.get("subject", res.get("patient"))
    if subject is None:
        return None
    if not isinstance(subject, dict):
        raise BadResource(f"{rtype}.subject: expected a Reference object")
    ref = subject.get("reference")
    if ref is None:
        if subject.get("identifier") is not None:
            raise BadResource(f"{rtype}.subject: a reference by identifier cannot be matched "
                              "to a Patient of the export; expected Patient/<id>")
        return None
    if not isinstance(ref, str):
        raise BadResource(f"{rtype}.subject.reference: expected a string")
    if ref.startswith("Patient?"):
        raise BadResource(f"{rtype}.subject.reference: a conditional reference (Patient?...) "
                          "cannot be matched to a Patient of the export; expected Patient/<id>")
    key = reference_key(ref)
    if key is not None:
        return key
    if subject.get("type") == "Patient" and ref and "/" not in ref and "?" not in ref:
        return ref   # a bare id with type: Patient
    if _OTHER_TYPE.search(ref.split("?")[0]):
        return None  # a Group, a Location...
    raise BadResource(f"{rtype}.subject.reference: not a reference medistill can match to a "
                      "Patient (expected Patient/<id>, a URL ending in Patient/<id>, or "
                      "urn:uuid:)")


def not_happened(res: dict[str, Any], rtype: str) -> bool:
    """True when the resource's status says it has not happened yet (planned, draft…)."""
    return res.get("status") in _NOT_YET.get(rtype, ())


def _status_skipped(res: dict[str, Any], rtype: str) -> bool:
    status = res.get("status")
    if status is not None and not isinstance(status, str):
        raise BadResource(f"{rtype}.status: expected a code string")
    return status in _SKIP_STATUS.get(rtype, ())


@dataclass
class Extractor:
    """Turns resources into events for the slots of ``plan``; counts dropped values."""

    plan: Plan

    def __post_init__(self) -> None:
        self.dropped: dict[str, int] = {}
        self.recent: list[str] = []   # keys dropped since the caller last cleared it
        self.units: dict[int, set[str]] = {}  # slot without a declared unit -> units seen
        self.pending: list[tuple[str, str, int, float]] = []
        """(referring type, Medication key, day, ts) of references to resolve."""
        self.matched: set[int] = set()  # slots that matched at least one resource

    def _drop(self, key: str) -> None:
        self.dropped[key] = self.dropped.get(key, 0) + 1
        self.recent.append(key)

    def patient(self, res: dict[str, Any], full_url: str | None, line: int) -> PatientRecord:
        pid = res.get("id")
        if pid is None and isinstance(full_url, str) and full_url.startswith(_URN):
            pid = full_url   # a transaction entry the server has not given an id yet
        if not isinstance(pid, str) or not pid:
            raise BadResource("Patient has no id (nor a urn:uuid: fullUrl)")
        gender = res.get("gender", "unknown")
        if gender not in _GENDERS:
            raise BadResource("Patient.gender: expected male, female, other or unknown")
        birth_day = -1
        if res.get("birthDate") is not None:
            birth_day = _when(res["birthDate"], "Patient.birthDate")[0]
        deceased = res.get("deceasedBoolean", False)
        if not isinstance(deceased, bool):
            raise BadResource("Patient.deceasedBoolean: expected true or false")
        deceased_day = -1
        if res.get("deceasedDateTime") is not None:
            deceased_day = _when(res["deceasedDateTime"], "Patient.deceasedDateTime")[0]
            deceased = True
        alias = reference_key(full_url) if isinstance(full_url, str) else None
        race, ethnicity = self._race_ethnicity(res.get("extension"))
        return PatientRecord(pid, alias if alias != pid else None, birth_day, gender,
                             deceased, deceased_day, race, ethnicity, line)

    @staticmethod
    def _race_ethnicity(extensions: Any) -> tuple[str, str]:
        found = {"race": "unknown", "ethnicity": "unknown"}
        if not isinstance(extensions, list):
            return found["race"], found["ethnicity"]
        for ext in extensions:
            if not isinstance(ext, dict) or not isinstance(ext.get("url"), str):
                continue
            url = ext["url"]
            for kind, table in (("race", RACE), ("ethnicity", ETHNICITY)):
                if url != f"{_US_CORE}us-core-{kind}":
                    continue
                codes = [sub.get("valueCoding", {}).get("code")
                         for sub in ext.get("extension", []) or []
                         if isinstance(sub, dict) and sub.get("url") == "ombCategory"
                         and isinstance(sub.get("valueCoding"), dict)]
                codes = [c for c in codes if isinstance(c, str)]
                if len(codes) > 1:
                    found[kind] = "multiple"
                elif codes:
                    found[kind] = table.get(codes[0], "other")
        return found["race"], found["ethnicity"]

    def events(self, res: dict[str, Any], rtype: str) -> list[Event]:
        """The events of one clinical resource (nothing for statuses such as
        entered-in-error, or when it has no date)."""
        handler: Callable[[dict[str, Any]], list[Event]] = getattr(self, f"_{rtype}")
        if _status_skipped(res, rtype):
            return []
        return handler(res)

    def _simple(self, res: dict[str, Any], rtype: str, codes: list[tuple[str | None, str]],
                dates: tuple[str, ...]) -> list[Event]:
        slots = self.plan.matchers[rtype].match(codes)
        if not slots:
            return []
        self.matched.update(slots)
        when = _first_date(res, rtype, dates)
        if when is None:
            return []
        return [Event(s, when[0], when[1], 1.0) for s in sorted(slots)]

    def _Condition(self, res: dict[str, Any]) -> list[Event]:
        if res.get("verificationStatus") is not None:
            verification = _codings(res["verificationStatus"], "Condition.verificationStatus")
            if any(code in _SKIP_VERIFICATION for _, code in verification):
                return []
        codes = _codings(res.get("code"), "Condition.code")
        return self._simple(res, "Condition", codes,
                            ("onsetDateTime", "onsetPeriod", "recordedDate"))

    def _Encounter(self, res: dict[str, Any]) -> list[Event]:
        cls = res.get("class")
        if isinstance(cls, dict):  # R4/R4B: a Coding
            codes = _codings({"coding": [cls]}, "Encounter.class")
        elif isinstance(cls, list):  # R5: a list of CodeableConcepts
            codes = [c for i, cc in enumerate(cls) for c in _codings(cc, f"Encounter.class[{i}]")]
        elif cls is None:
            codes = []
        else:
            raise BadResource("Encounter.class: expected a Coding or a list of CodeableConcepts")
        return self._simple(res, "Encounter", codes, ("period", "actualPeriod"))

    def _MedicationRequest(self, res: dict[str, Any]) -> list[Event]:
        return self._medication_events(res, "MedicationRequest")

    def _MedicationStatement(self, res: dict[str, Any]) -> list[Event]:
        return self._medication_events(res, "MedicationStatement")

    def _medication_events(self, res: dict[str, Any], rtype: str) -> list[Event]:
        """Events of a MedicationRequest or MedicationStatement; a reference to a Medication
        resource is kept in ``pending`` to be resolved once every chunk is read."""
        codes, pending = self._medication_codes(res, rtype)
        dates = _MEDICATION_DATES[rtype]
        events = self._simple(res, rtype, codes, dates)
        if pending is not None and self.plan.reads_codes(rtype):
            when = _first_date(res, rtype, dates)
            if when is not None:
                self.pending.append((rtype, pending, when[0], when[1]))
        return events

    def _medication_codes(self, res: dict[str, Any], rtype: str
                          ) -> tuple[list[tuple[str | None, str]], str | None]:
        """The medication's codes, read from the resource or its contained Medication, and
        the key of a Medication resource to resolve them from later (or None)."""
        if "medicationCodeableConcept" in res:
            return _codings(res["medicationCodeableConcept"],
                            f"{rtype}.medicationCodeableConcept"), None
        reference: Any = res.get("medicationReference")
        path = f"{rtype}.medicationReference"
        medication = res.get("medication")
        if isinstance(medication, dict):  # R5 CodeableReference
            if medication.get("concept") is not None:
                return _codings(medication["concept"], f"{rtype}.medication.concept"), None
            reference, path = medication.get("reference"), f"{rtype}.medication.reference"
        if reference is None:
            return [], None
        if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
            raise BadResource(f"{path}: expected a Reference with a 'reference' string")
        target = reference["reference"]
        if target.startswith("#"):
            return self._contained_codes(res, target[1:], path, rtype), None
        return [], medication_key(target) or UNRESOLVABLE

    @staticmethod
    def _contained_codes(res: dict[str, Any], local_id: str, path: str, rtype: str
                         ) -> list[tuple[str | None, str]]:
        contained = res.get("contained") or []
        if not isinstance(contained, list):
            raise BadResource(f"{rtype}.contained: expected a list")
        for i, inner in enumerate(contained):
            if isinstance(inner, dict) and inner.get("resourceType") == "Medication" \
                    and inner.get("id") == local_id:
                return _codings(inner.get("code"), f"{rtype}.contained[{i}].code")
        raise BadResource(f"{path}: refers to a contained Medication that is not there")

    def medication(self, res: dict[str, Any], full_url: Any
                   ) -> tuple[list[str], dict[str, set[int]]]:
        """The reference keys of a Medication resource and, per resource type referring to
        it (MedicationRequest, MedicationStatement), the coded slots it matches."""
        codes = _codings(res.get("code"), "Medication.code")
        keys = [f"Medication/{res['id']}"] if isinstance(res.get("id"), str) else []
        if isinstance(full_url, str) and (alias := medication_key(full_url)) is not None:
            keys.append(alias)
        return keys, {t: self.plan.matchers[t].match_codes(codes) for t in MEDICATION_TYPES
                      if self.plan.reads_codes(t)}

    def _Procedure(self, res: dict[str, Any]) -> list[Event]:
        codes = _codings(res.get("code"), "Procedure.code")
        return self._simple(res, "Procedure", codes,
                            ("performedDateTime", "performedPeriod", "occurrenceDateTime",
                             "occurrencePeriod"))

    def _Observation(self, res: dict[str, Any]) -> list[Event]:
        if not isinstance(res.get("code"), dict):
            raise BadResource("Observation.code: required CodeableConcept is missing")
        matcher = self.plan.matchers["Observation"]
        parts: list[tuple[dict[str, Any], str]] = [(res, "Observation")]
        components = res.get("component", [])
        if not isinstance(components, list):
            raise BadResource("Observation.component: expected a list")
        parts += [(c, f"Observation.component[{i}]") for i, c in enumerate(components)
                  if isinstance(c, dict)]
        hits = [(holder, path, matcher.match(_codings(holder.get("code"), f"{path}.code")))
                for holder, path in parts]
        if not any(slots for _, _, slots in hits):
            return []
        for _, _, slots in hits:
            self.matched.update(slots)
        when = _first_date(res, "Observation", ("effectiveDateTime", "effectiveInstant",
                                                "effectivePeriod", "issued"))
        if when is None:
            return []
        out: list[Event] = []
        for holder, path, slots in hits:
            for s in sorted(slots):
                value = self._observation_value(holder, path, s)
                if value is not None:
                    out.append(Event(s, when[0], when[1], value))
        return out

    def _observation_value(self, holder: dict[str, Any], path: str, s: int) -> float | None:
        slot = self.plan.slots[s]
        if slot.value == "event":
            return 1.0
        if slot.value == "coded":
            concept = holder.get("valueCodeableConcept")
            if concept is None:
                return None
            hits = self.plan.categories[s].match(_codings(concept, f"{path}.valueCodeableConcept"))
            return float(min(hits)) if hits else float(len(slot.categories) - 1)
        read = self._number(holder, path, slot.name)
        if read is None:
            return None
        value, code, unit = read
        if slot.unit is not None:
            convert = converter(code, slot.unit, slot.analyte) or \
                converter(unit, slot.unit, slot.analyte)
            if convert is None:
                if code is None and unit is None:
                    self._drop(f"{slot.name}: a value without a unit does not convert to "
                               f"{slot.unit}")
                else:
                    self._drop(f"{slot.name}: unit {unit_label(code, unit)!r} does not "
                               f"convert to {slot.unit}")
                return None
            value = convert(value)
        elif code is not None or unit is not None:
            self.units.setdefault(s, set()).add(unit_label(code, unit))
        if slot.threshold is not None:
            passed = value > slot.threshold if slot.above else value < slot.threshold
            return 1.0 if passed else None
        return value

    def _number(self, holder: dict[str, Any], path: str, name: str
                ) -> tuple[float, str | None, str | None] | None:
        """(value, unit code, unit text) of ``valueQuantity`` or ``valueInteger``; None, with
        the value counted as dropped, for a bound (``comparator``) or a non-numeric value."""
        quantity = holder.get("valueQuantity")
        if quantity is None:
            number = holder.get("valueInteger")
            if number is not None:
                if isinstance(number, bool) or not isinstance(number, int):
                    raise BadResource(f"{path}.valueInteger: expected an integer")
                return float(number), None, None
            other = next((k for k in holder if _VALUE_X.match(k)), None)
            if other is not None:
                self._drop(f"{name}: {other} is not a number")
            return None
        if not isinstance(quantity, dict):
            raise BadResource(f"{path}.valueQuantity: expected a Quantity object")
        value = quantity.get("value")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise BadResource(f"{path}.valueQuantity.value: expected a finite number")
        code, unit = quantity.get("code"), quantity.get("unit")
        if any(u is not None and not isinstance(u, str) for u in (code, unit)):
            raise BadResource(f"{path}.valueQuantity: code and unit must be strings")
        comparator = quantity.get("comparator")
        if comparator is not None:
            shown = comparator if comparator in _COMPARATORS else "?"
            self._drop(f"{name}: a value with comparator {shown!r} is a bound, not a value")
            return None
        return float(value), code, unit


def unit_label(code: str | None, unit: str | None) -> str:
    """How a unit is named in messages: its canonical UCUM code when known, else the code (or
    text) when it looks like a unit code, else ``?``: never free text."""
    for text in (code, unit):
        known = normalize_unit(text)
        if known is not None:
            return known
    raw = code if code is not None else unit
    return raw if raw is not None and _UNIT_TOKEN.match(raw) else "?"


__all__ = ["BadResource", "ETHNICITY", "Event", "Extractor", "PatientRecord", "RACE",
           "UNRESOLVABLE", "medication_key", "not_happened", "parse_when", "reference_key",
           "subject_key", "unit_label"]
