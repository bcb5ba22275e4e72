"""The ``medistill`` command line: demo, run, audit, ingest-fhir.

Errors a user can cause print one paragraph and exit 2 — never a traceback. A run whose
report was written but failed a gate exits 3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from medistill.errors import MedistillError

EXIT_OK, EXIT_BAD_INPUT, EXIT_GATE_FAILED = 0, 2, 3
_SCHEDULER_HELP = ("Run teachers, reference models and FHIR chunks on this Dask scheduler "
                   "(tcp://HOST:PORT, or 'local' for a cluster on this machine).")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Privacy-preserving knowledge distillation for healthcare data.")
err = Console(stderr=True)
out = Console()


def _fail(error: MedistillError) -> None:
    err.print(f"[bold red]error:[/] {escape(error.render())}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


def _finish(report: dict, run_dir: Path) -> None:
    from medistill.audit.report import headline

    out.print(f"Report: {run_dir / 'report.html'}  (also report.md, report.json)", markup=False)
    for line in headline(report):
        out.print(f"  {line}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK if report.get("passed") else EXIT_GATE_FAILED)


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Run folder to write.")] = Path("runs/demo"),
         patients: Annotated[int, typer.Option(help="Patients in the built-in cohort.")] = 20000,
         seed: Annotated[int, typer.Option(help="Seed of the whole run.")] = 0,
         scheduler: Annotated[str | None, typer.Option(help=_SCHEDULER_HELP)] = None) -> None:
    """Run the bundled end-to-end pipeline on the built-in synthetic cohort."""
    from medistill.compute import with_scheduler
    from medistill.config import parse_config
    from medistill.pipeline import run_pipeline
    from medistill.runfolder import check_destination

    try:
        check_destination(out_dir)
        config = parse_config(_demo_pipeline(patients, seed), source="built-in demo pipeline")
        config = with_scheduler(config, scheduler)
        outcome = run_pipeline(config, out_dir, console=err)
    except MedistillError as error:
        _fail(error)
    _finish(outcome.report, out_dir)


def _demo_pipeline(patients: int, seed: int) -> dict:
    import yaml
    from importlib.resources import files

    raw = yaml.safe_load(files("medistill").joinpath("demo_pipeline.yaml").read_text())
    raw["data"].setdefault("builtin", {})["n_patients"] = patients
    raw["seed"] = seed
    return raw


@app.command()
def run(pipeline: Annotated[Path, typer.Argument(help="The pipeline YAML file.")],
        out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder to write.")] = None,
        seed: Annotated[int | None, typer.Option(help="Override the pipeline's seed.")] = None,
        scheduler: Annotated[str | None, typer.Option(help=_SCHEDULER_HELP)] = None) -> None:
    """Run the whole pipeline described by PIPELINE."""
    from medistill.compute import with_scheduler
    from medistill.config import load_config
    from medistill.pipeline import run_pipeline
    from medistill.runfolder import check_destination

    try:
        target = out_dir or Path("runs") / pipeline.stem
        check_destination(target)
        config = with_scheduler(load_config(pipeline, seed=seed), scheduler)
        outcome = run_pipeline(config, target, console=err)
    except MedistillError as error:
        _fail(error)
    _finish(outcome.report, target)


@app.command()
def audit(run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
          policy: Annotated[Path | None, typer.Option(help="Audit policy YAML.")] = None) -> None:
    """Re-judge a finished run against a policy, after verifying its manifest (a mismatch is
    exit 2); the report files are replaced atomically and each re-judgement is kept."""
    from medistill.audit.rejudge import rejudge_run

    try:
        report = rejudge_run(run_dir, policy)
    except MedistillError as error:
        _fail(error)
    _finish(report, run_dir)


@app.command("ingest-fhir")
def ingest_fhir(source: Annotated[Path, typer.Argument(help="FHIR Bulk export folder or Bundle file.")],
                out: Annotated[Path, typer.Option("--out", help="Parquet table to write.")],
                mapping: Annotated[Path | None, typer.Option(help="Mapping YAML.")] = None,
                on_error: Annotated[str, typer.Option(help="stop or skip bad lines.")] = "stop",
                fhir_version: Annotated[str, typer.Option(help="auto, R4, R4B or R5.")] = "auto",
                salt: Annotated[str | None, typer.Option(
                    help="Secret salt of the patient-key hash (keep it to link tables).",
                    envvar="MEDISTILL_SALT")] = None,
                validate: Annotated[str, typer.Option(help="full or mapped validation.")] = "full",
                jobs: Annotated[int, typer.Option(help="Worker processes.")] = 1) -> None:
    """Turn a FHIR export into one row per patient (no names, addresses or FHIR ids)."""
    try:
        from medistill.data.fhir_source import ingest_to_parquet

        from medistill.data.fhir_source import run_salt

        if salt is None:
            err.print("note: no --salt (or MEDISTILL_SALT) given: a random one was used, so "
                      "patient keys will not match another ingestion of the same export.")
        summary = ingest_to_parquet(source, out, mapping=mapping, on_error=on_error,
                                    fhir_version=fhir_version, salt=salt or run_salt(),
                                    n_jobs=jobs, validate=validate)
    except MedistillError as error:
        _fail(error)
    # Plain stdout: rich would wrap long strings and break the JSON.
    typer.echo(json.dumps(summary, indent=2, default=str))


def _register_deploy_commands() -> None:
    from medistill.deploy.commands import register

    register(app)


_register_deploy_commands()


def main() -> None:
    """Console-script entry point. SIGINT and SIGTERM clean up alike (#16.10)."""
    from medistill.housekeeping import (
        Interrupted, clear_stale_temp_dirs, install_signal_handlers, stop_workers)

    install_signal_handlers()
    clear_stale_temp_dirs()
    try:
        app()
    except (Interrupted, KeyboardInterrupt) as stop:
        stop_workers()
        name = str(stop) if isinstance(stop, Interrupted) else "SIGINT"
        err.print(f"interrupted ({name}); no run folder was written and temporary files "
                  "were removed.", highlight=False, markup=False)
        sys.exit(stop.exit_code if isinstance(stop, Interrupted) else 130)


if __name__ == "__main__":
    main()
