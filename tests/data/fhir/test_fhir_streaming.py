"""Memory stays within a budget while an export much larger than the budget is ingested."""

from __future__ import annotations

import pytest

import json
import tracemalloc

import numpy as np

from medistill.data.fhir import ingest as ingest_module
from medistill.data.fhir import ingest_fhir, mapping_from_dict
from medistill.data.fhir.aggregate import (
    EventBuffer,
    Events,
    final_values,
    in_window,
    reduce_events,
)
from medistill.data.fhir.plan import AGGS

MEMORY_BUDGET = 1 << 20  # bytes of Python allocations while ingesting an 8+ MiB export
DEDUP_BYTES = 48  # per resource: 24 kept for duplicate detection, 24 while its runs merge


def test_event_buffer_compacts_to_one_row_per_owner_and_slot():
    rng = np.random.default_rng(0)
    agg = np.arange(len(AGGS))
    lo, hi = np.full(len(AGGS), -100.0), np.zeros(len(AGGS))
    buffer = EventBuffer(agg, lo, hi, index_day=1000, compact_at=5000)
    batches, largest = [], 0
    for _ in range(100):
        n = 1000
        batch = Events(rng.integers(0, 10, n), rng.integers(0, len(AGGS), n).astype(np.int16),
                       rng.integers(880, 1020, n).astype(np.int32), rng.random(n),
                       rng.normal(size=n), np.ones(n))
        batches.append(batch)
        buffer.add(batch)
        largest = max(largest, len(buffer))
    assert largest <= 5000 + 1000 + 10 * len(AGGS)
    def windowed(events: Events) -> Events:
        return events.take(np.flatnonzero(in_window(events, 1000, lo, hi)))

    expected = reduce_events(windowed(Events.concat(batches)), agg)
    got = reduce_events(windowed(buffer.drain()), agg)
    np.testing.assert_array_equal(got.owner, expected.owner)
    np.testing.assert_allclose(final_values(got, agg), final_values(expected, agg))


@pytest.mark.slow
def test_ingesting_an_export_larger_than_the_memory_budget(build, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "COMPACT_EVENTS", 2000)
    folder = build.export(tmp_path / "big", [build.patient(f"p{i}") for i in range(3)])
    note = [{"text": "n" * 300}]
    with open(folder / "Observation.000.ndjson", "w") as f:
        for i in range(16_000):
            day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
            f.write(json.dumps(build.obs(f"p{i % 3}", "8867-4", 50 + i % 40, "/min", day,
                                         oid=f"o{i}", note=note)) + "\n")
    size = (folder / "Observation.000.ndjson").stat().st_size
    assert size > 8 * MEMORY_BUDGET
    mapping = mapping_from_dict({
        "index": {"kind": "fixed", "date": "2025-01-01"},
        "observations": [{"name": f"hr_{a}", "codes": ["loinc:8867-4"], "agg": a}
                         for a in ("latest", "mean", "min", "max", "count")]})
    tracemalloc.start()
    try:
        result = ingest_fhir(folder, mapping, salt="s", validate="mapped", chunk_bytes=1 << 17)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BUDGET + DEDUP_BYTES * 16_000
    assert result.table["hr_count"].sum() == 16_000
    assert result.table["hr_min"].min() == 50 and result.table["hr_max"].max() == 89
