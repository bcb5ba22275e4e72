"""Duplicate resources: the same ``resourceType/id`` read twice (overlapping pages, a
searchset that ``_include``s the same Patient on every page, a re-run export).

Each resource the mapping reads is known by a 64-bit hash of ``type/id`` and a 64-bit hash of
its content (canonical JSON without ``meta``, which servers restamp). An identical copy is
read once; a copy with the same id and different content is bad input. The keys seen so far
are kept in sorted numpy runs (24 bytes per resource, no Python object each), merged as they
grow, so exports of millions of resources stay small in memory. Chunks are checked in file
order by the process that merges them, so the copy that counts does not depend on ``n_jobs``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

import numpy as np

NEW, SAME, DIFFERENT = 0, 1, 2
_LINE_BITS = 40
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def resource_hashes(resource: dict[str, Any]) -> tuple[int, int]:
    """(key, content) hashes of a resource; key 0 when it has no id (never a duplicate)."""
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        return 0, 0
    key = _h64(f"{resource.get('resourceType')}/{rid}".encode()) or 1
    body = {k: v for k, v in resource.items() if k != "meta"}
    return key, _h64(_CANONICAL.encode(body).encode())


def pack_where(file_index: int, line: int) -> int:
    """File index and line number in one integer."""
    return (file_index << _LINE_BITS) | line


def unpack_where(where: int) -> tuple[int, int]:
    return where >> _LINE_BITS, where & ((1 << _LINE_BITS) - 1)


class Verdict(NamedTuple):
    """Per resource of a batch: ``status`` (NEW, SAME or DIFFERENT) and, for repeats, where
    the first copy was read (packed, see :func:`pack_where`)."""

    status: np.ndarray
    first: np.ndarray


class SeenResources:
    """The resources read so far, by key hash; answers whether a batch repeats any."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # keys, contents, wheres

    def __len__(self) -> int:
        return sum(len(run[0]) for run in self._runs)

    def check(self, keys: np.ndarray, contents: np.ndarray, wheres: np.ndarray) -> Verdict:
        """Classify a batch (in reading order) and remember its new keys."""
        keys = np.asarray(keys, np.uint64)
        contents = np.asarray(contents, np.uint64)
        wheres = np.asarray(wheres, np.uint64)
        status = np.zeros(len(keys), np.int8)
        first = np.zeros(len(keys), np.uint64)
        idx = np.flatnonzero(keys != 0)
        if not len(idx):
            return Verdict(status, first)
        order = idx[np.argsort(keys[idx], kind="stable")]
        lead = np.ones(len(order), bool)
        lead[1:] = keys[order][1:] != keys[order][:-1]
        leaders = order[lead]
        # What each leader (first copy in the batch) is compared with: an earlier batch's
        # copy when there is one, else itself.
        ref_content, ref_where = contents[leaders].copy(), wheres[leaders].copy()
        seen = np.zeros(len(leaders), bool)
        for run_keys, run_contents, run_wheres in self._runs:
            pos = np.minimum(np.searchsorted(run_keys, keys[leaders]), len(run_keys) - 1)
            hit = ~seen & (run_keys[pos] == keys[leaders])
            ref_content[hit], ref_where[hit] = run_contents[pos[hit]], run_wheres[pos[hit]]
            seen |= hit
        status[leaders[seen]] = np.where(contents[leaders[seen]] == ref_content[seen],
                                         SAME, DIFFERENT)
        first[leaders[seen]] = ref_where[seen]
        group = np.cumsum(lead) - 1                 # leader number of each sorted position
        later = order[~lead]
        status[later] = np.where(contents[later] == ref_content[group[~lead]], SAME, DIFFERENT)
        first[later] = ref_where[group[~lead]]
        fresh = leaders[~seen]
        if len(fresh):
            self._add(keys[fresh], contents[fresh], wheres[fresh])
        return Verdict(status, first)

    def _add(self, keys: np.ndarray, contents: np.ndarray, wheres: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], contents[order], wheres[order]))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            b, a = self._runs.pop(), self._runs.pop()
            merged = [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]
            order = np.argsort(merged[0], kind="stable")
            self._runs.append((merged[0][order], merged[1][order], merged[2][order]))


__all__ = ["DIFFERENT", "NEW", "SAME", "SeenResources", "Verdict", "pack_where",
           "resource_hashes", "unpack_where"]
