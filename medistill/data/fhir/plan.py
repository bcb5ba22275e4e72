"""A mapping compiled into numbered slots and code matchers, small enough to send to workers.

Every feature, the label and (for ``first_encounter`` indexes) the index date is one *slot*:
a resource type, codes to match, an aggregation and a window of days relative to the index
date (features ``[-lookback, 0]``, labels ``[1, horizon]``, both ends included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from medistill.data.fhir.codes import CodeMatcher, parse_code
from medistill.data.fhir.mapping import FhirMapping

Agg = Literal["latest", "mean", "min", "max", "count", "flag", "first"]
AGGS: tuple[str, ...] = ("latest", "mean", "min", "max", "count", "flag", "first")
OTHER = "other"
MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")
MAPPED_TYPES = ("Observation", "Condition", "Encounter", *MEDICATION_TYPES, "Procedure")


@dataclass(frozen=True)
class Slot:
    """One aggregated quantity per patient."""

    name: str
    resource_type: str
    agg: Agg
    lo: float
    hi: float
    role: Literal["feature", "label", "index"] = "feature"
    value: Literal["quantity", "coded", "event"] = "event"
    unit: str | None = None
    analyte: str | None = None
    categories: tuple[str, ...] = ()
    threshold: float | None = None
    above: bool = True

    @property
    def agg_code(self) -> int:
        return AGGS.index(self.agg)


@dataclass(frozen=True)
class Plan:
    """The compiled mapping."""

    mapping: FhirMapping
    slots: tuple[Slot, ...]
    matchers: dict[str, CodeMatcher]
    categories: dict[int, CodeMatcher] = field(default_factory=dict)

    @property
    def resource_types(self) -> frozenset[str]:
        """Resource types the mapping reads (Patient always; Medication when a medication
        feature has codes, to resolve ``medicationReference``)."""
        types = {"Patient", *(t for t, m in self.matchers.items() if not m.empty)}
        if any(self.reads_codes(t) for t in MEDICATION_TYPES):
            types.add("Medication")
        return frozenset(types)

    def reads_codes(self, resource_type: str) -> bool:
        """True when some feature of ``resource_type`` lists codes."""
        m = self.matchers[resource_type]
        return bool(m.exact or m.any_system or m.prefixes)

    def slot_index(self, role: str) -> list[int]:
        return [i for i, s in enumerate(self.slots) if s.role == role]


def _window(lookback: int | str | None, default: int | str) -> tuple[float, float]:
    days = default if lookback is None else lookback
    return (-math.inf if days == "all" else -float(days)), 0.0


def compile_mapping(mapping: FhirMapping) -> Plan:
    """Number the mapping's features and build one code matcher per resource type."""
    slots: list[Slot] = []
    matchers = {t: CodeMatcher() for t in MAPPED_TYPES}
    categories: dict[int, CodeMatcher] = {}

    def add(slot: Slot, codes: tuple[str, ...], types: tuple[str, ...] = ()) -> int:
        slots.append(slot)
        i = len(slots) - 1
        for rtype in types or (slot.resource_type,):
            matchers[rtype].add(i, [parse_code(c) for c in codes])
        return i

    default = mapping.lookback_days
    for f in mapping.observations:
        lo, hi = _window(f.lookback_days, default)
        cats = tuple(f.categories or ()) + (OTHER,)
        i = add(Slot(f.name, "Observation", f.agg, lo, hi,
                     value="event" if f.agg == "count" else f.value, unit=f.unit,
                     analyte=f.analyte, categories=cats if f.value == "coded" else ()),
                f.codes)
        if f.value == "coded":
            cm = CodeMatcher()
            for k, codes in enumerate((f.categories or {}).values()):
                cm.add(k, [parse_code(c) for c in codes])
            categories[i] = cm
    for f in mapping.conditions:
        add(Slot(f.name, "Condition", f.agg, *_window(f.lookback_days, default)), f.codes)
    for f in mapping.encounters:
        add(Slot(f.name, "Encounter", f.agg, *_window(f.lookback_days, default)), f.classes)
    for f in mapping.medications:
        add(Slot(f.name, f.resources[0], f.agg, *_window(f.lookback_days, default)),
            f.codes, f.resources)
    for f in mapping.procedures:
        add(Slot(f.name, "Procedure", f.agg, *_window(f.lookback_days, default)), f.codes)
    label = mapping.label
    if label is not None and label.kind != "deceased":
        observation = label.kind.startswith("observation")
        add(Slot(label.name, "Observation" if observation else "Condition", "flag",
                 1.0, float(label.horizon_days), role="label",
                 value="quantity" if observation else "event", unit=label.unit,
                 analyte=label.analyte, threshold=label.threshold,
                 above=label.kind != "observation_below"), label.codes)
    if mapping.index.kind == "first_encounter":
        add(Slot("__index__", "Encounter", "first", -math.inf, math.inf, role="index"),
            mapping.index.encounter_classes)
    return Plan(mapping, tuple(slots), matchers, categories)


__all__ = ["AGGS", "MAPPED_TYPES", "MEDICATION_TYPES", "OTHER", "Plan", "Slot", "compile_mapping"]
