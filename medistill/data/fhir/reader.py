"""Streaming readers for Bulk Data exports (NDJSON) and Bundle JSON files.

Nothing here loads a whole file: NDJSON is read line by line (optionally a byte range of a
file, so processes can share one large file), and Bundles are decoded one ``entry`` at a time
from a bounded text buffer.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

from medistill.data.fhir.bulk import plan_layout, read_manifest
from medistill.errors import DataError

NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
JSON_SUFFIXES = (".json",)
_WS = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class ExportFile:
    """One input file; ``name`` is how messages refer to it (relative to the source)."""

    path: Path
    name: str
    kind: Literal["ndjson", "json"]

    @property
    def gzipped(self) -> bool:
        return self.path.name.endswith(".gz")


@dataclass(frozen=True)
class Export:
    """The files of a FHIR source and, when a Bulk Data manifest is present, its time."""

    root: Path
    files: tuple[ExportFile, ...]
    transaction_time: date | None = None
    error_files: tuple[Path, ...] = ()              # OperationOutcome NDJSON: reported only
    skipped_files: tuple[tuple[str, str], ...] = ()  # (file name, reason)


def _kind(path: Path) -> Literal["ndjson", "json"] | None:
    name = path.name.lower()
    if name.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def _stamp(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def discover(source: Path) -> Export:
    """The FHIR files of ``source`` (a Bulk Data folder, an NDJSON file or a Bundle file).

    A folder is read as :mod:`medistill.data.fhir.bulk` describes: the files its export
    manifest lists or, without one, the NDJSON files named after resource types, plus Bundle
    ``*.json`` files; other files are skipped and listed in ``skipped_files``. Files are read
    in name order; the manifest provides the export date.
    """
    source = Path(source)
    expected = ("Expected a Bulk Data export folder (Patient.000.ndjson, "
                "Observation.000.ndjson, ...), an .ndjson file or a Bundle .json file.")
    if not source.exists():
        raise DataError(f"FHIR source {str(source)!r} does not exist. {expected}")
    if source.is_file():
        kind = _kind(source)
        if kind is None:
            raise DataError(f"FHIR source {source.name!r} is neither .ndjson, .jsonl nor "
                            f".json. {expected}")
        return Export(source.parent, (ExportFile(source, source.name, kind),))
    ndjson: list[Path] = []
    bundles: list[Path] = []
    skipped: list[tuple[str, str]] = []
    manifest = None
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        kind = _kind(path)
        if kind is None:
            skipped.append((path.name, "not an NDJSON or JSON file"))
        elif kind == "ndjson":
            ndjson.append(path)
        elif manifest is None and (found := read_manifest(path)):
            manifest = found
        else:
            bundles.append(path)
    layout = plan_layout(ndjson, manifest)
    if manifest is not None:
        skipped += [(p.name, f"a JSON file beside the export manifest {manifest.name}")
                    for p in bundles]
        bundles = []
    skipped += list(layout.skipped)
    files = sorted([ExportFile(p, p.name, "ndjson") for p in layout.read]
                   + [ExportFile(p, p.name, "json") for p in bundles], key=lambda f: f.name)
    if not files:
        listed = "; ".join(f"{n} ({why})" for n, why in skipped[:5])
        raise DataError(f"FHIR source folder {str(source)!r} holds no FHIR files (*.ndjson, "
                        f"*.jsonl, *.ndjson.gz or Bundle *.json) to read"
                        + (f"; skipped: {listed}" if listed else "") + f". {expected}")
    return Export(source, tuple(files), _stamp(manifest.transaction_time) if manifest else None,
                  layout.errors, tuple(sorted(skipped)))


def open_binary(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 16)


def ndjson_ranges(path: Path, chunk_bytes: int) -> list[tuple[int, int | None]]:
    """Split an NDJSON file into byte ranges of about ``chunk_bytes`` ending at line breaks.

    A gzipped file cannot be split and is one range.
    """
    if path.name.endswith(".gz"):
        return [(0, None)]
    size = path.stat().st_size
    ranges: list[tuple[int, int | None]] = []
    start = 0
    with open(path, "rb") as f:
        while start < size:
            f.seek(min(start + chunk_bytes, size))
            if f.tell() < size:
                f.readline()
            end = f.tell()
            ranges.append((start, end))
            start = end
    return ranges or [(0, 0)]


def iter_ndjson(path: Path, start: int = 0, end: int | None = None
                ) -> Iterator[tuple[int, bytes]]:
    """Yield (line number relative to ``start``, 1-based; raw line) for a byte range."""
    with open_binary(path) as f:
        if start:
            f.seek(start)
        pos = start
        for number, line in enumerate(f, 1):
            yield number, line
            pos += len(line)
            if end is not None and pos >= end:
                break


class BundleSyntaxError(Exception):
    """A Bundle file is not valid JSON; reading it cannot go on past ``line``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class _TextStream:
    """A bounded, refillable text buffer that tracks line numbers."""

    def __init__(self, f: TextIO, block: int) -> None:
        self.f = f
        self.block = block
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._line = 1          # line number at self._counted
        self._counted = 0

    def fill(self) -> bool:
        if self.eof:
            return False
        more = self.f.read(max(self.block, len(self.buf) - self.pos))
        if not more:
            self.eof = True
            return False
        if self.pos:  # drop what was consumed; positions before it are no longer needed
            self.line_at(self.pos)
            self.buf = self.buf[self.pos:]
            self._counted -= self.pos
            self.pos = 0
        self.buf += more
        return True

    def line_at(self, pos: int) -> int:
        if pos > self._counted:
            self._line += self.buf.count("\n", self._counted, pos)
            self._counted = pos
        return self._line

    def peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def take(self, expected: str) -> None:
        got = self.peek()
        if got != expected:
            found = repr(got) if got else "the end of the file"
            raise BundleSyntaxError(self.line_at(self.pos),
                                    f"not valid JSON (expected {expected!r}, found {found})")
        self.pos += 1

    def value(self, decoder: json.JSONDecoder) -> Any:
        self.peek()
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.fill():
                    continue
                line = self.line_at(min(exc.pos, len(self.buf)))
                raise BundleSyntaxError(line, f"not valid JSON ({exc.msg})") from None
            if end == len(self.buf) and self.fill():
                continue  # a number or literal may go on in the next block
            self.pos = end
            return obj


def _iter_document(s: _TextStream, decoder: json.JSONDecoder) -> Iterator[tuple[int, Any]]:
    """Yield (line number, entry) for each ``entry`` of the JSON document at the stream's
    position; a single resource is yielded as one entry."""
    s.peek()
    start = s.line_at(s.pos)
    s.take("{")
    head: dict[str, Any] = {}
    seen_entry = False
    first_key = True
    while s.peek() != "}":
        if not first_key:
            s.take(",")
        first_key = False
        key = s.value(decoder)
        if not isinstance(key, str):
            raise BundleSyntaxError(s.line_at(s.pos), "not valid JSON (expected a key)")
        s.take(":")
        if key == "entry" and s.peek() == "[":
            seen_entry = True
            s.take("[")
            first = True
            while s.peek() != "]":
                if not first:
                    s.take(",")
                first = False
                s.peek()
                line = s.line_at(s.pos)
                yield line, s.value(decoder)
            s.take("]")
        else:
            head[key] = s.value(decoder)
    s.take("}")
    if not seen_entry and head.get("resourceType") not in (None, "Bundle"):
        yield start, {"resource": head}


def iter_bundle(path: Path, block: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    """Yield (line number, entry) for each ``entry`` of a Bundle file, one at a time.

    A file holding a single resource instead of a Bundle yields ``(line, {"resource": it})``.
    A file holding several JSON documents one after another (NDJSON saved as ``.json``, or
    Bundles appended to one another) yields the entries of every document, in order.
    Raises :class:`BundleSyntaxError` at the first syntax error.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig", errors="strict") as f:
        s = _TextStream(f, block)
        try:
            yield from _iter_document(s, decoder)
            while s.peek():
                yield from _iter_document(s, decoder)
        except UnicodeDecodeError:
            raise BundleSyntaxError(s.line_at(s.pos), "not valid UTF-8 text") from None


__all__ = [
    "BundleSyntaxError",
    "Export",
    "ExportFile",
    "discover",
    "iter_bundle",
    "iter_ndjson",
    "ndjson_ranges",
    "open_binary",
]
