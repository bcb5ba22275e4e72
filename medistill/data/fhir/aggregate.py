"""Per-patient aggregation of events: windows relative to the index date and reductions.

Events are columns of numpy arrays (owner, slot, day, ts, value, weight). Reducing keeps one
row per (owner, slot) and can be applied again to its own output, so buffered events can be
compacted while reading and reduced once more at the end:

- ``latest``: the value with the latest timestamp (ties: the larger value);
- ``mean``: value holds the sum and weight the count; the mean is value / weight;
- ``min`` / ``max``; ``count``: weight holds the count; ``flag``: any event;
- ``first``: the earliest event (used for the index date).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medistill.data.fhir.plan import AGGS

_LATEST, _MEAN, _MIN, _MAX, _COUNT, _FLAG, _FIRST = range(len(AGGS))


@dataclass
class Events:
    """A batch of events; ``owner`` is a reference number or a table row."""

    owner: np.ndarray   # int64
    slot: np.ndarray    # int16
    day: np.ndarray     # int32, date ordinal
    ts: np.ndarray      # float64, UTC seconds
    value: np.ndarray   # float64
    weight: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.owner)

    @classmethod
    def empty(cls) -> Events:
        return cls(np.empty(0, np.int64), np.empty(0, np.int16), np.empty(0, np.int32),
                   np.empty(0), np.empty(0), np.empty(0))

    @classmethod
    def concat(cls, parts: Sequence[Events]) -> Events:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def take(self, index: np.ndarray) -> Events:
        return Events(*(getattr(self, f)[index] for f in _FIELDS))


_FIELDS = ("owner", "slot", "day", "ts", "value", "weight")


def in_window(events: Events, index_day: np.ndarray | int, lo: np.ndarray, hi: np.ndarray
              ) -> np.ndarray:
    """Mask of events whose day lies in ``[index + lo, index + hi]`` of their slot.

    ``index_day`` is one date ordinal or one per owner (-1: no index, never in a window).
    """
    if isinstance(index_day, np.ndarray):
        idx = index_day[events.owner]
        offset = (events.day - idx).astype(np.float64)
        ok = idx >= 0
    else:
        offset = (events.day - index_day).astype(np.float64)
        ok = np.ones(len(events), bool)
    return ok & (offset >= lo[events.slot]) & (offset <= hi[events.slot])


def reduce_events(events: Events, agg_codes: np.ndarray) -> Events:
    """One row per (owner, slot) with the slot's aggregation applied (see module doc)."""
    n = len(events)
    if n == 0:
        return events
    order = np.lexsort((events.value, events.ts, events.owner, events.slot))
    e = events.take(order)
    new_group = np.ones(n, bool)
    new_group[1:] = (np.diff(e.slot) != 0) | (np.diff(e.owner) != 0)
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], n) - 1
    agg = agg_codes[e.slot[starts]]
    out = e.take(np.where(agg == _FIRST, starts, ends))
    value_sum = np.add.reduceat(e.value, starts)
    weight_sum = np.add.reduceat(e.weight, starts)
    out.value = np.select(
        [agg == _MEAN, agg == _MIN, agg == _MAX],
        [value_sum, np.minimum.reduceat(e.value, starts), np.maximum.reduceat(e.value, starts)],
        out.value)
    out.weight = np.where((agg == _MEAN) | (agg == _COUNT), weight_sum, 1.0)
    return out


def final_values(reduced: Events, agg_codes: np.ndarray) -> np.ndarray:
    """The aggregate of each reduced row: mean = sum / count, count = weight, flag = 1."""
    agg = agg_codes[reduced.slot]
    return np.select([agg == _MEAN, agg == _COUNT, agg == _FLAG],
                     [reduced.value / reduced.weight, reduced.weight, 1.0], reduced.value)


class EventBuffer:
    """Events collected while reading, compacted when they pass ``compact_at`` rows.

    Compaction needs the index date, so it happens only when one index date is known for
    everyone before reading (a fixed date or the manifest's export date). It runs when the
    new events outnumber both ``compact_at`` and the compacted ones, so its cost stays
    linear in the number of events.
    """

    def __init__(self, agg_codes: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 index_day: int | None, compact_at: int = 2_000_000) -> None:
        self.agg_codes, self.lo, self.hi = agg_codes, lo, hi
        self.index_day = index_day
        self.compact_at = compact_at
        self._parts: list[Events] = []
        self._size = 0
        self._compacted = 0

    def add(self, events: Events) -> None:
        if not len(events):
            return
        self._parts.append(events)
        self._size += len(events)
        fresh = self._size - self._compacted
        if self.index_day is not None and fresh > max(self.compact_at, self._compacted):
            merged = Events.concat(self._parts)
            kept = merged.take(np.flatnonzero(in_window(merged, self.index_day, self.lo,
                                                        self.hi)))
            self._parts = [reduce_events(kept, self.agg_codes)]
            self._size = self._compacted = len(self._parts[0])

    def drain(self) -> Events:
        """All buffered events, in one batch; the buffer is left empty."""
        events = Events.concat(self._parts)
        self._parts, self._size, self._compacted = [], 0, 0
        return events

    def __len__(self) -> int:
        return self._size


__all__ = ["EventBuffer", "Events", "final_values", "in_window", "reduce_events"]
