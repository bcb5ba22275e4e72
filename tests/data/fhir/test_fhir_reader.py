"""Streaming readers: NDJSON line by line and in byte ranges, Bundles entry by entry."""

from __future__ import annotations

import inspect
import json
import tracemalloc

import pytest

from medistill.data.fhir.reader import (
    BundleSyntaxError,
    discover,
    iter_bundle,
    iter_ndjson,
    ndjson_ranges,
)
from medistill.errors import DataError

MEMORY_BUDGET = 1 << 20  # 1 MiB of Python allocations for reading an 8 MiB file


def _big_ndjson(path, n_lines=14_000):
    line = json.dumps({"resourceType": "Observation", "id": "x", "note": [{"text": "y" * 600}]})
    path.write_text((line + "\n") * n_lines)
    return path


def test_ndjson_reader_is_a_lazy_generator(tmp_path):
    path = tmp_path / "Observation.000.ndjson"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    lines = iter_ndjson(path)
    assert inspect.isgenerator(lines)
    assert next(lines) == (1, b'{"a": 1}\n')
    assert next(lines) == (2, b'{"a": 2}\n')


def test_ndjson_reading_stays_within_a_memory_budget_smaller_than_the_file(tmp_path):
    path = _big_ndjson(tmp_path / "Observation.000.ndjson")
    size = path.stat().st_size
    assert size > 8 * MEMORY_BUDGET
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_ndjson(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 14_000
    assert peak < MEMORY_BUDGET


def test_bundle_reading_stays_within_a_memory_budget(tmp_path):
    entry = {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Observation",
                                                   "note": [{"text": "z" * 600}]}}
    path = tmp_path / "bundle.json"
    with open(path, "w") as f:
        f.write('{"resourceType": "Bundle", "type": "collection", "entry": [\n')
        f.write(",\n".join([json.dumps(entry)] * 14_000))
        f.write("\n]}\n")
    assert path.stat().st_size > 8 * MEMORY_BUDGET
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_bundle(path, block=1 << 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 14_000
    assert peak < MEMORY_BUDGET


def test_byte_ranges_cover_every_line_once(tmp_path):
    path = tmp_path / "Observation.000.ndjson"
    path.write_text("".join(json.dumps({"n": i, "pad": "p" * (i % 37)}) + "\n"
                            for i in range(5000)))
    ranges = ndjson_ranges(path, chunk_bytes=4096)
    assert len(ranges) > 10
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    seen = [json.loads(raw)["n"] for start, end in ranges
            for _, raw in iter_ndjson(path, start, end)]
    assert seen == list(range(5000))


def test_bundle_entries_stream_with_their_line_numbers(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{\n "resourceType": "Bundle",\n "type": "collection",\n "entry": [\n'
                    '  {"resource": {"resourceType": "Patient", "id": "a"}},\n'
                    '  {"fullUrl": "urn:uuid:2",\n   "resource": {"resourceType": "Patient"}}\n'
                    ' ],\n "total": 12345678901234567890\n}\n')
    # A tiny buffer forces entries and the long number to span buffer refills.
    items = list(iter_bundle(path, block=7))
    assert [line for line, _ in items] == [5, 6]
    assert items[0][1]["resource"]["id"] == "a"
    assert items[1][1]["fullUrl"] == "urn:uuid:2"


def test_a_single_resource_json_file_is_one_entry(tmp_path):
    path = tmp_path / "patient.json"
    path.write_text(json.dumps({"resourceType": "Patient", "id": "a"}))
    assert list(iter_bundle(path)) == [(1, {"resource": {"resourceType": "Patient", "id": "a"}})]


def test_bundle_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"resourceType": "Bundle", "entry": [\n {"resource": {}},\n'
                    ' {"resource": {"resourceType": "Patient" "id": "a"}}\n]}')
    reader = iter_bundle(path)
    assert next(reader)[0] == 2
    with pytest.raises(BundleSyntaxError) as info:
        next(reader)
    assert info.value.line == 3
    assert "not valid JSON" in info.value.reason


def test_truncated_bundle_is_a_syntax_error(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Pat')
    with pytest.raises(BundleSyntaxError, match="not valid JSON"):
        list(iter_bundle(path))


def test_discover_without_manifest_reads_type_named_files_and_bundles(tmp_path):
    for name in ("Patient.000.ndjson", "Observation.001.ndjson", "Observation.000.ndjson",
                 "bundle.json", "notes.txt", ".hidden.ndjson", "log.ndjson"):
        (tmp_path / name).write_text("")
    export = discover(tmp_path)
    assert [f.name for f in export.files] == ["Observation.000.ndjson", "Observation.001.ndjson",
                                              "Patient.000.ndjson", "bundle.json"]
    assert [f.kind for f in export.files] == ["ndjson", "ndjson", "ndjson", "json"]
    assert [name for name, _ in export.skipped_files] == ["log.ndjson", "notes.txt"]
    assert export.transaction_time is None


def test_discover_reads_the_manifest_files_and_date(tmp_path):
    for name in ("Patient.000.ndjson", "Observation.000.ndjson", "bundle.json"):
        (tmp_path / name).write_text("")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"transactionTime": "2026-05-01T10:00:00Z", "request": "x",
         "output": [{"type": "Patient", "url": "https://x/files/Patient.000.ndjson"}]}))
    export = discover(tmp_path)
    assert [f.name for f in export.files] == ["Patient.000.ndjson"]
    assert dict(export.skipped_files).keys() == {"Observation.000.ndjson", "bundle.json"}
    assert export.transaction_time.isoformat() == "2026-05-01"


def test_discover_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist. Expected a Bulk Data export folder"):
        discover(tmp_path / "nope")


def test_discover_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no FHIR here")
    with pytest.raises(DataError, match="holds no FHIR files"):
        discover(tmp_path)


def test_discover_single_file_of_wrong_kind(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="neither .ndjson, .jsonl nor .json"):
        discover(path)


def test_byte_order_marks_are_accepted(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b'\xef\xbb\xbf{"resourceType": "Bundle", "entry": [{"resource": {}}]}')
    assert list(iter_bundle(path)) == [(1, {"resource": {}})]


def test_ndjson_saved_as_json_yields_every_line(tmp_path):
    path = tmp_path / "Patient.json"
    path.write_text("".join(json.dumps({"resourceType": "Patient", "id": f"p{i}"}) + "\n"
                            for i in range(3)))
    assert [(line, e["resource"]["id"]) for line, e in iter_bundle(path)] == \
        [(1, "p0"), (2, "p1"), (3, "p2")]


def test_concatenated_bundles_yield_the_entries_of_each(tmp_path):
    path = tmp_path / "pages.json"
    page = {"resourceType": "Bundle", "type": "searchset"}
    path.write_text(json.dumps({**page, "entry": [{"resource": {"id": "a"}}]}) + "\n\n"
                    + json.dumps({**page, "entry": [{"resource": {"id": "b"}},
                                                    {"resource": {"id": "c"}}]}))
    assert [(line, e["resource"]["id"]) for line, e in iter_bundle(path)] == \
        [(1, "a"), (3, "b"), (3, "c")]


def test_garbage_after_a_bundle_is_a_syntax_error_at_its_line(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"resourceType": "Bundle", "entry": []}\n\n]')
    with pytest.raises(BundleSyntaxError) as info:
        list(iter_bundle(path))
    assert info.value.line == 3


def test_every_patient_of_a_json_file_holding_ndjson_is_ingested(build, tmp_path):
    from medistill.data.fhir import demo_mapping, ingest_fhir
    path = tmp_path / "Patient.json"
    path.write_text("".join(json.dumps(build.patient(f"p{i}")) + "\n" for i in range(3)))
    assert ingest_fhir(path, demo_mapping(), salt="s").summary.n_patients == 3
