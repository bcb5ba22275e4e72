"""Medication references resolved once every chunk is merged, in any order."""

from __future__ import annotations

import numpy as np

from medistill.data.fhir.medications import MedicationReferences


def test_references_become_one_event_per_matched_slot_whatever_the_order():
    refs = MedicationReferences()
    refs.add_references(np.array([0, 1, 2]), ["Medication/a", "Medication/b", "Medication/x"],
                        np.array([10, 11, 12]), np.array([1.0, 2.0, 3.0]))
    refs.add_medications([("Medication/a", (3, 5)), ("Medication/b", ()),
                          ("Medication/a", (9,))])          # a later copy does not override
    refs.add_references(np.array([4]), ["Medication/a"], np.array([13]), np.array([4.0]))
    events, unresolved = refs.resolve()
    assert unresolved == 1
    assert list(zip(events.owner.tolist(), events.slot.tolist(), events.day.tolist(),
                    strict=True)) == [(0, 3, 10), (0, 5, 10), (4, 3, 13), (4, 5, 13)]
    assert events.value.tolist() == [1.0] * 4 and events.weight.tolist() == [1.0] * 4
    assert len(refs.resolve()[0]) == 0
