"""The ``predict``, ``serve`` and ``package`` commands, added to medistill's typer app by
``register(app)``. Heavy imports happen inside each command, so ``medistill --help`` stays
fast and ``predict`` never pulls in torch."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from medistill.errors import ConfigError, MedistillError

err = Console(stderr=True)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""uvicorn's log levels (``--log-level``)."""


def _fail(error: MedistillError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(error.render())}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


UNVERIFIED_HELP = ("Use a model whose sha256 does not verify against the manifest beside it "
                   "(or that has none). Never for clinical use; logged as a warning.")


def _warn_unverified(allowed: bool, model: Path) -> None:
    if allowed:
        err.print(f"warning: --allow-unverified-model: '{model}' is used WITHOUT checking its "
                  "sha256 against a manifest; a tampered model would not be detected.",
                  highlight=False, soft_wrap=True, markup=False)


def predict(
    input_path: Annotated[Path, typer.Argument(
        metavar="INPUT", help="CSV, Parquet, or a FHIR export (Bulk Data folder, .ndjson, "
                              "Bundle .json).")],
    model: Annotated[Path, typer.Option("--model", help="student.onnx (or its run folder).")],
    out: Annotated[Path, typer.Option("--out", help="Output: .csv, .parquet, or .ndjson "
                                                    "(FHIR R4 RiskAssessment).")],
    on_error: Annotated[str, typer.Option("--on-error", help="stop: a bad row stops the run "
                                          "and nothing is written; skip: bad rows are "
                                          "listed and the others scored.")] = "stop",
    output_format: Annotated[str | None, typer.Option(
        "--format", help="csv, parquet or fhir (default: from --out's extension).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk (memory is flat in the "
                                                 "input size).")] = 100_000,
    salt: Annotated[str | None, typer.Option(
        help="Secret salt of the patient-key hash (FHIR input; as for ingest-fhir).",
        envvar="MEDISTILL_SALT", show_default=False)] = None,
    summary_json: Annotated[Path | None, typer.Option(
        help="Also write the summary (counts, bad rows by line; no values) as JSON.")] = None,
    allow_unverified_model: Annotated[bool, typer.Option(
        "--allow-unverified-model", help=UNVERIFIED_HELP)] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace --out (and --summary-json) if it exists; by default an "
                            "existing file is refused.")] = False,
) -> None:
    """Score a table or FHIR export with the student (onnxruntime only, never torch)."""
    from medistill.deploy.predict import check_summary_path, predict_file

    _warn_unverified(allow_unverified_model, model)
    try:
        if summary_json is not None:   # before any scoring: a bad path must not cost a run
            check_summary_path(summary_json, source=input_path, out=out, model=model,
                               overwrite=overwrite)
        summary = predict_file(model, input_path, out, on_error=on_error,  # type: ignore[arg-type]
                               chunk_rows=chunk_rows, output_format=output_format, salt=salt,
                               verify=not allow_unverified_model, overwrite=overwrite)
    except MedistillError as error:
        _fail(error)
    for line in summary.lines():
        err.print(line, highlight=False, soft_wrap=True, markup=False)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_serve_options(port: int, log_level: str) -> str:
    """The log level, lower-cased; a ConfigError for a port outside 1–65535 or a log level
    uvicorn does not know (checked before the model is loaded)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535. Got {port}.")
    level = log_level.strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}. "
                          f"Got {log_level!r}.")
    return level


def serve(
    model: Annotated[Path, typer.Option("--model", help="student.onnx (or its run folder).")],
    host: Annotated[str, typer.Option(help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (1–65535).")] = 8080,
    token: Annotated[str | None, typer.Option(
        envvar="MEDISTILL_TOKEN", show_default=False,
        help="Bearer token required by /predict and /model. Prefer the MEDISTILL_TOKEN "
             "environment variable: options are visible to other users in `ps`.")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Larger requests get 413.")] = 1_000_000,
    threads: Annotated[int | None, typer.Option(help="onnxruntime threads per request.")] = None,
    log_level: Annotated[str, typer.Option(
        help=f"Log level: {', '.join(LOG_LEVELS)}.")] = "info",
    allow_unverified_model: Annotated[bool, typer.Option(
        "--allow-unverified-model", help=UNVERIFIED_HELP)] = False,
    access_log: Annotated[bool, typer.Option(
        help="Log one line per request: method, path and status (never query strings or "
             "bodies).")] = True,
) -> None:
    """Serve the student over HTTP: POST /predict, GET /health, GET /model."""
    try:
        log_level = _check_serve_options(port, log_level)
    except ConfigError as error:
        _fail(error)
    _warn_unverified(allow_unverified_model, model)
    try:
        import uvicorn

        from medistill.deploy.service import create_app

        app = create_app(model, token=token, max_body_bytes=max_body_bytes, threads=threads,
                         verify=not allow_unverified_model, access_log=access_log)
    except ImportError:
        _fail(MedistillError("`medistill serve` needs the 'serve' extra: "
                             "pip install 'medistill[serve]' (FastAPI and uvicorn)."))
    except MedistillError as error:
        _fail(error)
    if not _is_loopback(host) and not token:
        err.print(f"[bold yellow]warning:[/] serving on {escape(host)} without a token: anyone who "
                  "can reach this port can query the model. Set MEDISTILL_TOKEN.",
                  highlight=False, soft_wrap=True)
    err.print(f"serving {model} on http://{host}:{port} (POST /predict, GET /health, "
              "GET /model, GET /openapi.json)", highlight=False, soft_wrap=True, markup=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                access_log=False, log_config=_log_config(log_level))


def _log_config(level: str) -> dict:
    """uvicorn's logging set-up (its own access log off: it records query strings), plus
    medistill's loggers: one line per request with method, path and status, no bodies."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["medistill"] = {"handlers": ["default"], "level": level.upper(),
                                      "propagate": False}
    config["loggers"]["uvicorn.access"] = {"handlers": [], "level": "CRITICAL",
                                           "propagate": False}
    return config


def package(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    out: Annotated[Path, typer.Option("--out", help="The .tar.gz to write.")
                   ] = Path("student.tar.gz"),
) -> None:
    """Bundle student.onnx, the FHIR mapping and the model card, with sha256 hashes."""
    from medistill.deploy.package import package_run

    try:
        result = package_run(run_dir, out)
    except MedistillError as error:
        _fail(error)
    print(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``serve`` and ``package`` to medistill's command-line app."""
    app.command("predict")(predict)
    app.command("serve")(serve)
    app.command("package")(package)


__all__ = ["register"]
