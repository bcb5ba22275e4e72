"""Batch scoring: every input and output format, parity with the audit's feeding, bad input
caught at the door (stop vs skip), atomic output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medistill.deploy.model import file_sha256, load_model
from medistill.deploy.predict import infer_format, predict_file
from medistill.errors import ConfigError, DataError, MedistillError, ModelIntegrityError

ATOL = 1e-6


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"patient_id": str}) if path.suffix == ".csv" \
        else pd.read_parquet(path)


def _with_gaps(cohort: pd.DataFrame) -> pd.DataFrame:
    frame = cohort.copy()
    frame["sex"] = frame["sex"].astype(object)
    frame.loc[::17, "sex"] = None
    frame.loc[::13, "bmi"] = np.nan
    return frame


def _assert_no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("source_fmt", ["csv", "parquet"])
@pytest.mark.parametrize("out_fmt", ["csv", "parquet"])
def test_tables_match_onnx_feeds(tmp_path, run_dir, cohort, reference, source_fmt,
                                 out_fmt) -> None:
    frame = _with_gaps(cohort)
    source = tmp_path / f"in.{source_fmt}"
    frame.to_csv(source, index=False) if source_fmt == "csv" else frame.to_parquet(source)
    out = tmp_path / f"out.{out_fmt}"
    summary = predict_file(run_dir / "student.onnx", source, out, chunk_rows=37)
    assert (summary.n_rows, summary.n_scored, summary.n_skipped) == (len(frame), len(frame), 0)
    got = _read(out)
    assert list(got.columns) == ["patient_id", "probability", "prediction"]
    expected = reference(run_dir / "student.onnx", _read(source))
    np.testing.assert_allclose(got["probability"], expected[:, 1], atol=ATOL)
    assert got["patient_id"].tolist() == frame["patient_id"].tolist()
    assert got["prediction"].astype(str).tolist() == \
        np.array(["0", "1"])[expected.argmax(axis=1)].tolist()
    _assert_no_leftovers(tmp_path)


def test_multiclass_columns(tmp_path, multiclass_dir, cohort, reference) -> None:
    source = tmp_path / "in.parquet"
    cohort.drop(columns="patient_id").to_parquet(source)  # no key column: none in output
    out = tmp_path / "out.csv"
    predict_file(multiclass_dir / "student.onnx", source, out)
    got = pd.read_csv(out)
    assert list(got.columns) == ["probability_low", "probability_mid", "probability_high",
                                 "prediction"]
    expected = reference(multiclass_dir / "student.onnx", cohort)
    np.testing.assert_allclose(got.iloc[:, :3].to_numpy(), expected, atol=ATOL)
    assert got["prediction"].tolist() == \
        np.array(["low", "mid", "high"])[expected.argmax(axis=1)].tolist()


def test_riskassessment_ndjson_validates(tmp_path, run_dir, cohort, reference) -> None:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    source = tmp_path / "in.csv"
    cohort.head(60).to_csv(source, index=False)
    out = tmp_path / "risk.ndjson"
    summary = predict_file(run_dir / "student.onnx", source, out)
    assert summary.format == "fhir"
    lines = out.read_text().splitlines()
    assert len(lines) == 60
    expected = reference(run_dir / "student.onnx", cohort.head(60))[:, 1]
    sha = file_sha256(run_dir / "student.onnx")
    ids = set()
    for line, want, pid in zip(lines, expected, cohort["patient_id"].head(60), strict=True):
        resource = RiskAssessment.model_validate_json(line)
        data = json.loads(line)
        ids.add(data["id"])
        assert resource.status == "final"
        assert data["subject"]["identifier"]["value"] == pid
        assert data["subject"]["identifier"]["system"].endswith("patient_id")
        assert data["method"]["coding"][0]["code"] == sha
        assert data["basis"][0]["identifier"]["value"] == sha
        assert data["occurrenceDateTime"].endswith("Z")
        (prediction,) = data["prediction"]
        assert prediction["outcome"]["text"] == "cv_event_1y = 1"
        assert abs(prediction["probabilityDecimal"] - want) <= ATOL
    assert len(ids) == 60


def test_fhir_needs_a_patient_key(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.csv"
    cohort.drop(columns="patient_id").head(5).to_csv(source, index=False)
    with pytest.raises(DataError, match="needs a patient key column"):
        predict_file(run_dir / "student.onnx", source, tmp_path / "r.ndjson")
    frame = cohort.head(5).astype({"patient_id": object})
    frame.loc[2, "patient_id"] = None
    frame.to_csv(source, index=False)
    with pytest.raises(DataError, match="line 4, column 'patient_id': the patient key is empty"):
        predict_file(run_dir / "student.onnx", source, tmp_path / "r.ndjson")
    summary = predict_file(run_dir / "student.onnx", source, tmp_path / "r.ndjson",
                           on_error="skip")
    assert summary.n_scored == 4 and [p.line for p in summary.problems] == [4]


def test_fhir_export_input(tmp_path, run_dir, cohort, reference) -> None:
    fhir = pytest.importorskip("medistill.data.fhir")
    from fhir.resources.R4B.riskassessment import RiskAssessment

    export = fhir.write_synthetic_fhir_export(tmp_path / "export", 30,
                                              rng=np.random.default_rng(3))
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir)
    shutil.copy(Path(fhir.__file__).parent / "demo_mapping.yaml", model_dir / "mapping.yaml")
    out = tmp_path / "risk.ndjson"
    summary = predict_file(model_dir / "student.onnx", export, out, salt="s")
    assert summary.n_scored == 30
    result = fhir.ingest_fhir(export, fhir.load_mapping(model_dir / "mapping.yaml"), salt="s",
                              keep_patient_ids=True)
    expected = dict(zip(result.patient_ids,
                        reference(model_dir / "student.onnx", result.table)[:, 1], strict=True))
    for line in out.read_text().splitlines():
        RiskAssessment.model_validate_json(line)
        data = json.loads(line)
        patient = data["subject"]["reference"].removeprefix("Patient/")
        assert abs(data["prediction"][0]["probabilityDecimal"] - expected[patient]) <= ATOL
    table = tmp_path / "risk.csv"
    predict_file(model_dir / "student.onnx", export, table, salt="s")
    got = pd.read_csv(table)
    assert got["patient_key"].tolist() == result.table["patient_key"].tolist()
    unsalted = predict_file(model_dir / "student.onnx", export, table, overwrite=True)
    assert "random one was used" in unsalted.notes[0]
    assert set(pd.read_csv(table)["patient_key"]).isdisjoint(got["patient_key"])


# ---------------------------------------------------------------- bad input

def test_missing_columns_named(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.csv"
    cohort.drop(columns=["bmi", "hdl"]).to_csv(source, index=False)
    out = tmp_path / "out.csv"
    with pytest.raises(DataError) as caught:
        predict_file(run_dir / "student.onnx", source, out)
    assert "missing 2 column(s)" in str(caught.value)
    assert "'bmi', 'hdl'" in str(caught.value)
    assert not out.exists()
    _assert_no_leftovers(tmp_path)


def test_junk_number_stops_with_line_and_writes_nothing(tmp_path, run_dir, cohort) -> None:
    frame = cohort.copy().astype({"bmi": object})
    frame.loc[41, "bmi"] = "n/a?"
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(source, index=False)
    out.write_text("previous results\n")
    with pytest.raises(DataError) as caught:
        predict_file(run_dir / "student.onnx", source, out, chunk_rows=10, overwrite=True)
    message = str(caught.value)
    assert "in.csv: line 43, column 'bmi': not a number" in message
    assert "n/a?" not in message  # cell values may be sensitive: never echoed
    assert "--on-error skip" in message
    assert out.read_text() == "previous results\n"
    _assert_no_leftovers(tmp_path)


def test_skip_scores_good_rows_and_lists_bad_lines(tmp_path, run_dir, cohort,
                                                   reference) -> None:
    frame = cohort.head(50).copy().astype({"bmi": object, "age": object})
    frame.loc[4, "bmi"] = "heavy"
    frame.loc[30, "age"] = "1e999"      # overflows: not a finite number
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    lines = source.read_text().splitlines()
    lines.insert(20, "x,y,z")           # a ragged line: line 21
    lines.insert(10, "")                # a blank line: skipped, and not counted
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.parquet"
    summary = predict_file(run_dir / "student.onnx", source, out, on_error="skip",
                           chunk_rows=8)
    assert [str(p) for p in summary.problems] == [
        "line 6, column 'bmi': not a number",
        f"line 21: expected {len(frame.columns)} fields, found 3",
        "line 33, column 'age': not a finite number"]
    assert (summary.n_rows, summary.n_scored, summary.n_skipped) == (51, 48, 3)
    got = pd.read_parquet(out)
    kept = frame.drop(index=[4, 30])
    assert got["patient_id"].tolist() == kept["patient_id"].tolist()
    np.testing.assert_allclose(got["probability"],
                               reference(run_dir / "student.onnx", kept)[:, 1], atol=ATOL)
    assert any("skipped 3" in line for line in summary.lines())


def test_unseen_categories_are_scored_as_unknown_and_counted(tmp_path, run_dir, cohort,
                                                             reference) -> None:
    frame = cohort.head(20).copy().astype({"smoking": object})
    frame.loc[[2, 5], "smoking"] = "vaping"
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    summary = predict_file(run_dir / "student.onnx", source, tmp_path / "out.csv")
    assert summary.unseen_categories == {"smoking": 2} and summary.n_scored == 20
    assert any("'smoking': 2 value(s) the model has not seen" in s for s in summary.lines())
    got = pd.read_csv(tmp_path / "out.csv")["probability"].to_numpy()
    blank = frame.copy()
    blank.loc[[2, 5], "smoking"] = None   # unknown and missing both encode to all-zero
    np.testing.assert_allclose(got, reference(run_dir / "student.onnx", blank)[:, 1],
                               atol=ATOL)


def test_text_variants_of_numbers(tmp_path, run_dir, cohort, reference) -> None:
    frame = cohort.head(6).copy().astype({"bmi": object, "hypertension": object})
    frame.loc[0, "bmi"] = f" {cohort.loc[0, 'bmi']} "
    frame.loc[1, "hypertension"] = "True"
    frame.loc[2, "hypertension"] = "false"
    frame.loc[3, "bmi"] = "NA"
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    predict_file(run_dir / "student.onnx", source, tmp_path / "out.csv")
    clean = cohort.head(6).copy()
    clean.loc[1, "hypertension"], clean.loc[2, "hypertension"] = 1, 0
    clean.loc[3, "bmi"] = np.nan
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["probability"],
                               reference(run_dir / "student.onnx", clean)[:, 1], atol=ATOL)


def test_declared_missing_codes_are_read_as_missing(tmp_path, run_dir, coded_dir, cohort,
                                                   reference) -> None:
    frame = cohort.head(30).copy().astype({"bmi": object, "smoking": object})
    frame.loc[[2, 9], "bmi"] = "."
    frame.loc[4, "bmi"] = " -99 "
    frame.loc[6, "smoking"] = "."
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    summary = predict_file(coded_dir / "student.onnx", source, tmp_path / "out.csv")
    assert summary.n_scored == 30 and not summary.unseen_categories
    clean = cohort.head(30).copy().astype({"smoking": object})
    clean.loc[[2, 4, 9], "bmi"] = np.nan
    clean.loc[6, "smoking"] = None
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["probability"],
                               reference(coded_dir / "student.onnx", clean)[:, 1], atol=ATOL)
    with pytest.raises(DataError, match=r"in.csv: line 4, column 'bmi': not a number"):
        predict_file(run_dir / "student.onnx", source, tmp_path / "plain.csv")


@pytest.mark.parametrize(("content", "fragment"), [
    ("", "the file is empty"),
    ("sex,age\n", "missing"),
    (None, "has no data rows"),
])
def test_empty_inputs(tmp_path, run_dir, cohort, content, fragment) -> None:
    source = tmp_path / "in.csv"
    if content is None:
        cohort.head(0).to_csv(source, index=False)
    else:
        source.write_text(content)
    with pytest.raises(DataError, match=fragment):
        predict_file(run_dir / "student.onnx", source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    _assert_no_leftovers(tmp_path)


def test_all_rows_bad_writes_nothing(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.csv"
    cohort.head(3).assign(age="old").to_csv(source, index=False)
    with pytest.raises(DataError, match="none of the 3 rows could be scored"):
        predict_file(run_dir / "student.onnx", source, tmp_path / "o.csv", on_error="skip")
    assert not (tmp_path / "o.csv").exists()


def test_wrong_parquet_type(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.parquet"
    cohort.head(3).assign(age=pd.Timestamp("2020-01-01")).to_parquet(source)
    with pytest.raises(DataError, match="column 'age' has type timestamp"):
        predict_file(run_dir / "student.onnx", source, tmp_path / "o.csv")


def test_model_problems(tmp_path, records_csv) -> None:
    with pytest.raises(DataError, match="does not exist"):
        predict_file(tmp_path / "nope" / "student.onnx", records_csv, tmp_path / "o.csv")
    junk = tmp_path / "student.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="not an ONNX model"):
        load_model(junk, verify=False)


def test_model_folder_accepted_and_input_missing(tmp_path, run_dir) -> None:
    assert load_model(run_dir).path == run_dir / "student.onnx"
    with pytest.raises(DataError, match="does not exist"):
        predict_file(run_dir, tmp_path / "absent.csv", tmp_path / "o.csv")


def test_formats_and_options() -> None:
    assert infer_format(Path("a.CSV")) == "csv"
    assert infer_format(Path("a.pq")) == "parquet"
    assert infer_format(Path("a.ndjson")) == "fhir"
    assert infer_format(Path("a.txt"), "parquet") == "parquet"
    with pytest.raises(ConfigError, match="--format"):
        infer_format(Path("a.txt"))
    with pytest.raises(ConfigError):
        infer_format(Path("a.csv"), "xlsx")
    assert issubclass(ConfigError, MedistillError)


def test_bad_on_error_and_same_file(tmp_path, run_dir, records_csv) -> None:
    with pytest.raises(ConfigError, match="'stop' or 'skip'"):
        predict_file(run_dir, records_csv, tmp_path / "o.csv", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="is the input file"):
        predict_file(run_dir, records_csv, records_csv)


def test_15_7_model_card_is_the_releasable_card_never_the_report(tmp_path, run_dir) -> None:
    card = load_model(run_dir).card
    assert card["privacy"]["source"] == "model_card.json"
    assert card["privacy"]["epsilon"] == pytest.approx(2.4987)
    assert card["card"]["releasable"].startswith("This model card holds only")
    assert "report" not in card and '"verdict":' not in json.dumps(card)
    assert card["model"]["integrity"].startswith("ok: matches manifest.json")
    other = tmp_path / "copy"
    shutil.copytree(run_dir, other)
    released = json.loads((other / "model_card.json").read_text())
    released["model"]["sha256"] = "0" * 64
    (other / "model_card.json").write_text(json.dumps(released))
    card = load_model(other).card
    assert card["privacy"]["source"] == "student.onnx metadata"
    assert card["privacy"]["epsilon"] == pytest.approx(2.5) and card["card"] is None
    assert "another model" in card["card_note"]


def test_deployed_card_never_echoes_an_old_models_pipeline_hash(tmp_path, run_dir) -> None:
    """A model exported before the pipeline hash was withheld still carries it in its
    metadata; the card that predict and serve build does not repeat it."""
    import onnx

    from medistill.integrity import seal
    from medistill.runfolder import write_manifest

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    model = onnx.load(str(old / "student.onnx"))
    entry = model.metadata_props.add()
    entry.key, entry.value = "pipeline_sha256", "ab" * 32
    (old / "student.onnx").write_bytes(seal(model))
    write_manifest(old)
    loaded = load_model(old)
    assert loaded.metadata["pipeline_sha256"] == "ab" * 32
    blob = json.dumps(loaded.card)
    assert "pipeline_sha256" not in blob and "ab" * 32 not in blob


def test_16_3_predict_refuses_tampered_model(tmp_path, run_dir, records_csv) -> None:
    other = tmp_path / "tampered"
    shutil.copytree(run_dir, other)
    _flip_weights(other / "student.onnx")
    with pytest.raises(ModelIntegrityError, match="does not match the sha256"):
        predict_file(other, records_csv, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["sha256"]["student.onnx"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError):
        predict_file(other, records_csv, tmp_path / "o.csv")


def _strip_content_hash(path: Path) -> None:
    import onnx

    from medistill.integrity import CONTENT_KEY

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != CONTENT_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(path))


def _flip_weights(path: Path, n: int = 64) -> None:
    """Flip the sign bits of ``n`` float32 weights of the largest initializer."""
    import onnx

    weights = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(path.read_bytes())
    start = bytes(data).index(weights.raw_data)
    for i in range(n):
        data[start + 4 * i + 3] ^= 0x80
    path.write_bytes(bytes(data))


def test_16_3_bare_model_verifies_by_its_embedded_hash(tmp_path, run_dir, records_csv) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "student.onnx", bare / "student.onnx")
    assert load_model(bare).integrity == "ok: matches its embedded content hash"
    assert load_model(run_dir).integrity == ("ok: matches manifest.json and its embedded "
                                             "content hash")
    _flip_weights(bare / "student.onnx")
    with pytest.raises(ModelIntegrityError, match="content hash in its own metadata"):
        predict_file(bare, records_csv, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_16_3_model_without_any_hash_needs_explicit_opt_out(tmp_path, run_dir, records_csv,
                                                           caplog) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "student.onnx", bare / "student.onnx")
    _strip_content_hash(bare / "student.onnx")
    with pytest.raises(ModelIntegrityError, match="no manifest.json"):
        load_model(bare)
    with caplog.at_level("WARNING", logger="medistill.deploy"):
        summary = predict_file(bare, records_csv, tmp_path / "o.csv", verify=False)
    assert "WITHOUT integrity verification" in caplog.text
    assert any("NOT VERIFIED" in n for n in summary.notes)


def test_numbers_written_as_text_name_their_format(tmp_path, run_dir, cohort) -> None:
    """A spreadsheet's ``1,234`` or ``<0.5`` in a numeric column is named by its format per
    listed row, never by its value; other text stays "not a number"."""
    source = tmp_path / "in.csv"
    frame = cohort.head(6).astype({"age": object})
    frame.loc[frame.index[1], "age"] = "1,061"
    frame.loc[frame.index[3], "age"] = "<18"
    frame.loc[frame.index[4], "age"] = "old"
    frame.to_csv(source, index=False)
    summary = predict_file(run_dir, source, tmp_path / "o.csv", on_error="skip")
    reasons = {p.line: p.reason for p in summary.problems}
    assert "comma inside the number" in reasons[3] and "comparison sign" in reasons[5]
    assert reasons[6] == "not a number" and summary.n_scored == 3
    assert not any(v in str(summary.problems) for v in ("1,061", "<18", "old"))


def test_non_utf8_csv(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.csv"
    cohort.head(5).assign(smoking="né").to_csv(source, index=False, encoding="latin-1")
    with pytest.raises(DataError, match=r"in\.csv is not UTF-8 text: line 2 .*Windows-1252"
                                        r".*iconv -f CP1252") as info:
        predict_file(run_dir, source, tmp_path / "o.csv")
    assert "né" not in str(info.value)
    source.write_bytes("séx,age\n".encode("latin-1"))
    with pytest.raises(DataError, match="in.csv is not UTF-8 text: line 1 "):
        predict_file(run_dir, source, tmp_path / "o.csv")
    source.write_bytes("sex,age\n".encode("utf-16"))
    with pytest.raises(DataError, match="in.csv is UTF-16 text"):
        predict_file(run_dir, source, tmp_path / "o.csv")
    bom = tmp_path / "bom.csv"
    cohort.head(5).to_csv(bom, index=False, encoding="utf-8-sig")
    assert predict_file(run_dir, bom, tmp_path / "o.csv").n_scored == 5


def test_the_summary_names_the_class_of_probability(tmp_path, run_dir, records_csv) -> None:
    summary = predict_file(run_dir, records_csv, tmp_path / "o.csv")
    assert "'probability' is of cv_event_1y = 1 (the model's positive class)" in summary.notes


def test_inputs_empty_in_every_row_are_named(tmp_path, run_dir, cohort) -> None:
    """A column present but blank in every row (a renamed export field, a FHIR mapping that
    found nothing) is scored by imputation alone: the summary names it."""
    source = tmp_path / "in.csv"
    cohort.head(8).assign(age=np.nan).to_csv(source, index=False)
    summary = predict_file(run_dir, source, tmp_path / "o.csv")
    assert summary.empty_inputs == ("age",) and summary.to_dict()["empty_inputs"] == ["age"]
    assert any("'age'" in line and "imputed them for every patient" in line
               for line in summary.lines())
    cohort.head(8).to_csv(source, index=False)
    assert predict_file(run_dir, source, tmp_path / "o2.csv").empty_inputs == ()


def test_outputs_never_replace_the_model_or_a_file_medistill_did_not_write(
        tmp_path, run_dir, records_csv) -> None:
    """--out inside the model's folder (its student.onnx, manifest, reports) is refused, and
    so is an existing file unless overwrite is asked for; nothing is written either way."""
    for name in ("student.onnx", "manifest.json", "scores.csv"):
        with pytest.raises(DataError, match="inside the model's folder"):
            predict_file(run_dir, records_csv, run_dir / name, output_format="csv")
    assert not (run_dir / "scores.csv").exists()
    theirs = tmp_path / "report_by_nurse.csv"
    theirs.write_text("kept\n")
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        predict_file(run_dir, records_csv, theirs)
    assert theirs.read_text() == "kept\n"
    assert predict_file(run_dir, records_csv, theirs, overwrite=True).n_scored > 0
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        predict_file(run_dir, records_csv, blocker / "scores.csv")


def test_a_quoted_line_break_never_makes_a_row_of_its_own(tmp_path, run_dir, cohort,
                                                           monkeypatch) -> None:
    """A free-text column whose quoted values hold line breaks (and look like records) is
    read as one value per cell across the reader's blocks (64 KiB here, so that many block
    boundaries fall inside notes): one output row per record."""
    from medistill.deploy import inputs

    monkeypatch.setattr(inputs, "_BLOCK_BYTES", 1 << 16)
    frame = pd.concat([cohort] * 5, ignore_index=True)
    frame["patient_id"] = [f"K{i:06d}" for i in range(len(frame))]
    frame["notes"] = [f"seen,\nGHOST{i},1,2,3,seen again " + "x" * 300
                      for i in range(len(frame))]
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    assert source.stat().st_size > 10 * (1 << 16)
    out = tmp_path / "o.csv"
    summary = predict_file(run_dir, source, out)
    scored = pd.read_csv(out)
    assert summary.n_scored == len(frame) == len(scored)
    assert scored["patient_id"].str.startswith("K").all()


def test_keys_spelled_like_missing_markers_are_kept(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.csv"
    cohort.head(3).assign(patient_id=["NA", "null", " P5 "]).to_csv(source, index=False)
    out = tmp_path / "o.csv"
    predict_file(run_dir, source, out)
    assert pd.read_csv(out, keep_default_na=False)["patient_id"].tolist() == ["NA", "null",
                                                                              " P5 "]


def test_booleans_count_as_numbers_only_in_binary_columns(tmp_path, run_dir, cohort) -> None:
    """A Parquet boolean in a measurement column is not a number (as the text 'true' is not);
    in a binary column it is 1/0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = cohort.head(4)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("bmi"), "bmi",
                             pa.array([True, False, None, True]))
    source = tmp_path / "in.parquet"
    pq.write_table(table, source)
    summary = predict_file(run_dir, source, tmp_path / "o.csv", on_error="skip")
    assert {(p.line, p.column, p.reason) for p in summary.problems} == {
        (1, "bmi", "not a number"), (2, "bmi", "not a number"), (4, "bmi", "not a number")}
    assert summary.n_scored == 1
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("diabetes"), "diabetes",
                             pa.array([True, False, False, True]))
    pq.write_table(table, source)
    assert predict_file(run_dir, source, tmp_path / "o2.csv").n_scored == 4


def test_a_repeated_column_name_is_refused(tmp_path, run_dir, cohort) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = cohort.head(3)
    text = frame.to_csv(index=False).splitlines()
    source = tmp_path / "in.csv"
    source.write_text("\n".join([text[0] + ",bmi,,"] + [t + ",1,," for t in text[1:]]) + "\n")
    with pytest.raises(DataError, match="column 'bmi' appears twice"):
        predict_file(run_dir, source, tmp_path / "o.csv")
    source.write_text("\n".join([text[0] + ",,"] + [t + ",," for t in text[1:]]) + "\n")
    assert predict_file(run_dir, source, tmp_path / "o.csv").n_scored == 3   # empty, unnamed
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = pa.Table.from_arrays(table.columns + [table.column("bmi")],
                                 names=table.column_names + ["bmi"])
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(DataError, match="column 'bmi' appears twice"):
        predict_file(run_dir, tmp_path / "in.parquet", tmp_path / "o2.csv")


def test_classic_mac_line_ends_are_refused_by_name(tmp_path, run_dir, cohort) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(cohort.head(3).to_csv(index=False).replace("\n", "\r").encode())
    with pytest.raises(DataError, match="carriage return alone"):
        predict_file(run_dir, source, tmp_path / "o.csv")
