"""The predict / serve / package commands: exit codes, one-paragraph errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from medistill.deploy import commands
from medistill.deploy.commands import register

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


def _run(app, args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def test_register_adds_three_commands(app) -> None:
    names = {c.name for c in app.registered_commands}
    assert names == {"predict", "serve", "package"}


def test_predict_ok_and_summary(tmp_path, app, run_dir, records_csv) -> None:
    out = tmp_path / "scores.parquet"
    summary = tmp_path / "summary.json"
    result = _run(app, ["predict", "--model", str(run_dir / "student.onnx"), str(records_csv),
                        "--out", str(out), "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output
    assert "scored 400 of 400 rows" in result.stderr
    assert len(pd.read_parquet(out)) == 400
    assert json.loads(summary.read_text())["n_scored"] == 400


def test_predict_bad_row_exit_2_then_skip(tmp_path, app, run_dir, cohort) -> None:
    frame = cohort.head(10).astype({"sbp": object})
    frame.loc[3, "sbp"] = "high"
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    stop = _run(app, ["predict", "--model", str(run_dir), str(source), "--out", str(out)])
    assert stop.exit_code == 2
    assert stop.stderr.startswith("error: in.csv: line 5, column 'sbp': not a number.")
    assert "Traceback" not in stop.output and not out.exists()
    skip = _run(app, ["predict", "--model", str(run_dir), str(source), "--out", str(out),
                      "--on-error", "skip", "--format", "csv"])
    assert skip.exit_code == 0
    assert "skipped 1" in skip.stderr and "line 5, column 'sbp': not a number" in skip.stderr
    assert len(pd.read_csv(out)) == 9


def test_summary_json_is_checked_before_scoring(tmp_path, app, run_dir, records_csv) -> None:
    """--summary-json over the input, over --out or over an existing file is refused before
    anything is written; a folder that does not exist yet is created; --overwrite replaces
    existing outputs."""
    model = ["predict", "--model", str(run_dir), str(records_csv)]
    out = tmp_path / "scores.csv"
    kept = records_csv.read_text()
    for summary, fragment in ((records_csv, "is the input file"), (out, "same file as --out")):
        result = _run(app, [*model, "--out", str(out), "--summary-json", str(summary)])
        assert result.exit_code == 2 and fragment in result.stderr, result.stderr
        assert not out.exists() and records_csv.read_text() == kept
    nested = tmp_path / "new" / "s.json"
    assert _run(app, [*model, "--out", str(out), "--summary-json", str(nested)]).exit_code == 0
    assert json.loads(nested.read_text())["n_scored"] == 400
    again = _run(app, [*model, "--out", str(out), "--summary-json", str(nested)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert _run(app, [*model, "--out", str(out), "--summary-json", str(nested),
                      "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(("args", "fragment"), [
    (["--model", "{tmp}/none.onnx", "{csv}", "--out", "{tmp}/o.csv"], "does not exist"),
    (["--model", "{run}", "{csv}", "--out", "{tmp}/o.xlsx"], "output format"),
    (["--model", "{run}", "{csv}", "--out", "{tmp}/o.csv", "--on-error", "x"], "'stop' or"),
])
def test_predict_errors(tmp_path, app, run_dir, records_csv, args, fragment) -> None:
    filled = [a.format(tmp=tmp_path, csv=records_csv, run=run_dir) for a in args]
    result = _run(app, ["predict", *filled])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert "Traceback" not in result.output


def test_package_command(tmp_path, app, run_dir) -> None:
    out = tmp_path / "bundle.tar.gz"
    result = _run(app, ["package", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["members"]["student.onnx"]
    missing = _run(app, ["package", str(tmp_path), "--out", str(tmp_path / "b.tar.gz")])
    assert missing.exit_code == 2 and "has no student.onnx" in missing.stderr


def test_serve_reports_bad_model_and_warns_off_loopback(tmp_path, app, monkeypatch) -> None:
    result = _run(app, ["serve", "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert commands._is_loopback("127.0.0.1") and commands._is_loopback("::1")
    assert commands._is_loopback("localhost") and not commands._is_loopback("0.0.0.0")


def test_serve_starts_uvicorn_on_loopback(app, run_dir, monkeypatch) -> None:
    pytest.importorskip("uvicorn")
    import uvicorn

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    monkeypatch.setenv("MEDISTILL_TOKEN", "t0ken")
    result = _run(app, ["serve", "--model", str(run_dir), "--port", "8099"])
    assert result.exit_code == 0, result.output
    assert (calls["host"], calls["port"]) == ("127.0.0.1", 8099)
    assert "warning" not in result.stderr
    open_result = _run(app, ["serve", "--model", str(run_dir), "--host", "0.0.0.0",
                             "--token", ""])
    assert "without a token" in open_result.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (["--port", "99999"], "--port must be between 1 and 65535. Got 99999."),
    (["--port", "0"], "--port must be between 1 and 65535"),
    (["--port", "-1"], "--port must be between 1 and 65535"),
    (["--log-level", "verbose"], "--log-level must be one of critical, error, warning"),
])
def test_serve_checks_port_and_log_level_first(tmp_path, app, args, fragment) -> None:
    # the model does not exist: the option error comes before the model is loaded
    result = _run(app, ["serve", "--model", str(tmp_path / "none.onnx"), *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_serve_log_level_is_case_insensitive(app, run_dir, monkeypatch) -> None:
    pytest.importorskip("uvicorn")
    import uvicorn

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(**kw))
    result = _run(app, ["serve", "--model", str(run_dir), "--log-level", "DEBUG",
                        "--port", "65535"])
    assert result.exit_code == 0, result.output
    assert (calls["log_level"], calls["port"]) == ("debug", 65535)


def test_help_is_fast_and_lazy() -> None:
    code = ("import sys, typer, medistill.deploy; from medistill.deploy.commands import register; "
            "app = typer.Typer(); register(app); "
            "print(sorted(m for m in ('onnxruntime', 'pyarrow', 'fastapi', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_package_namespace_is_lazy() -> None:
    import medistill.deploy as deploy

    assert deploy.predict_file.__module__ == "medistill.deploy.predict"
    assert deploy.package_run.__module__ == "medistill.deploy.package"
    with pytest.raises(AttributeError):
        deploy.no_such_name  # noqa: B018


def test_16_3_predict_refuses_unverified_model_unless_opted_out(tmp_path, app, run_dir,
                                                                records_csv) -> None:

    import onnx

    from medistill.integrity import CONTENT_KEY

    bare = tmp_path / "bare"
    bare.mkdir()
    model = onnx.load(str(run_dir / "student.onnx"))  # a model with no hash of its own
    kept = [p for p in model.metadata_props if p.key != CONTENT_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(bare / "student.onnx"))
    args = ["predict", "--model", str(bare / "student.onnx"), str(records_csv)]
    refused = _run(app, [*args, "--out", str(tmp_path / "a.csv")])
    assert refused.exit_code == 2 and "no manifest.json" in refused.stderr
    assert not (tmp_path / "a.csv").exists()
    allowed = _run(app, [*args, "--out", str(tmp_path / "b.csv"), "--allow-unverified-model"])
    assert allowed.exit_code == 0, allowed.output
    assert "WITHOUT checking its sha256" in allowed.stderr and "NOT VERIFIED" in allowed.stderr
