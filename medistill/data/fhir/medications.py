"""Medication codes through ``medicationReference``: requests wait for their Medication.

A MedicationRequest (or MedicationStatement) that names its drug by reference
(``Medication/<id>``, an absolute URL or a Bundle entry's ``urn:uuid:``) cannot be matched
against code lists while its chunk is read: the Medication may sit in another file, read by
another process. Chunks report the Medication resources they read (key -> coded slots) and
the references they met (owner, Medication key, day); once every chunk is merged, the
references become events. Each referring resource type has its own table, since its
features (slots) differ.
"""

from __future__ import annotations

import numpy as np

from medistill.data.fhir.aggregate import Events

def unresolved_medication(resource_type: str) -> str:
    """The ``summary.unresolved_references`` key of ``resource_type``'s references to a
    Medication that is not in the export."""
    return f"{resource_type}.medication (no such Medication in the export)"


UNRESOLVED_MEDICATION = unresolved_medication("MedicationRequest")


class MedicationReferences:
    """Medication resources and the references waiting for them, across chunks."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[int, ...]] = {}   # Medication key -> coded slots
        self._keys: dict[str, int] = {}                # Medication key -> number
        self._waiting: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add_medications(self, medications: list[tuple[str, tuple[int, ...]]]) -> None:
        """Medication resources read (the first copy of a key wins)."""
        for key, slots in medications:
            self._slots.setdefault(key, slots)

    def add_references(self, owner: np.ndarray, keys: list[str], day: np.ndarray,
                       ts: np.ndarray) -> None:
        """References met, one per MedicationRequest: owner, Medication key, day, time."""
        if not keys:
            return
        numbers = [self._keys.setdefault(k, len(self._keys)) for k in keys]
        self._waiting.append((np.asarray(owner, np.int64), np.asarray(numbers, np.int64),
                              np.asarray(day, np.int32), np.asarray(ts, np.float64)))

    def resolve(self) -> tuple[Events, int]:
        """(events of the resolved references, number of unresolved references)."""
        if not self._waiting:
            return Events.empty(), 0
        owner, key, day, ts = (np.concatenate(c) for c in zip(*self._waiting, strict=True))
        self._waiting = []
        slots_of = [self._slots.get(k) for k in self._keys]
        unresolved = int(np.array([s is None for s in slots_of])[key].sum())
        lens = np.array([len(s or ()) for s in slots_of], np.int64)
        flat = np.array([x for s in slots_of for x in (s or ())], np.int16)
        per = lens[key]                                   # events of each reference
        rep = np.repeat(np.arange(len(key)), per)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(per) - per, per)
        slot = flat[(np.cumsum(lens) - lens)[key][rep] + within]
        ones = np.ones(len(rep))
        return Events(owner[rep], slot, day[rep], ts[rep], ones, ones.copy()), unresolved


__all__ = ["UNRESOLVED_MEDICATION", "MedicationReferences", "unresolved_medication"]
