"""Build ``report.json`` from a finished pipeline and write the run folder's files."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from medistill import __version__
from medistill.audit.gates import evaluate_gates, load_policy
from medistill.audit.mia import loss_scores, loss_threshold_attack, summarise
from medistill.audit.report import render_html, render_markdown
from medistill.audit.speed import measure_speed, onnx_session
from medistill.audit.utility import retention, utility_metrics
from medistill.config import PipelineConfig
from medistill.data.schema import CATEGORICAL
from medistill.data.splits import PatientSplit
from medistill.data.table import SensitiveData
from medistill.privacy.ledger import PrivacyLedger
from medistill.student.export import onnx_feeds
from medistill.teachers.models import make_teacher

SCHEMA_VERSION = "1"
MAX_MIA_PATIENTS = 5000

COVERED = (
    "The guarantee covers the released student model (student.onnx) and everything derived "
    "from it, with respect to adding or removing one patient — all of their rows — of the "
    "sensitive training set. Every channel by which sensitive rows reach the student is an "
    "entry of the privacy ledger, composed by one accountant.")
NOT_COVERED = (
    "The metrics in this report (utility, speed, membership inference, fairness) are computed "
    "on sensitive test and holdout rows for internal review; they are not covered by the "
    "guarantee and this report should not be published as is.")


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and (math.isinf(x) or math.isnan(x))) else x


def _student_proba(session, features: pd.DataFrame, schema) -> np.ndarray:
    return session.run(None, onnx_feeds(features, schema))[0]


def _mia_block(predict, data: SensitiveData, split: PatientSplit, delta: float,
               rng: np.random.Generator) -> dict:
    blocks = []
    for rows in (split.train, split.holdout):
        ids = data.patient_ids[rows]
        patients = np.unique(ids)
        if len(patients) > MAX_MIA_PATIENTS:
            keep = set(rng.choice(patients, size=MAX_MIA_PATIENTS, replace=False))
            rows = rows[np.fromiter((i in keep for i in ids), bool, len(ids))]
        X, y, ids = data.rows(rows)
        blocks.append(loss_scores(predict(X), y, ids)[1])
    return summarise([loss_threshold_attack(blocks[0], blocks[1], delta=delta, rng=rng)])


def _groups(values: pd.Series, kind: str) -> pd.Series:
    if kind == CATEGORICAL:
        return values.astype(object).where(values.notna(), "missing").astype(str)
    if values.name and "age" in str(values.name).lower():
        bands = pd.cut(values, [-np.inf, 40, 65, np.inf], right=False,
                       labels=["<40", "40-64", "65+"])
        return bands.astype(object).where(bands.notna(), "missing").astype(str)
    cuts = np.unique(np.nanpercentile(values, [33.3, 66.7]))
    return pd.cut(values, [-np.inf, *cuts, np.inf]).astype(str)


def _fairness(config: PipelineConfig, data: SensitiveData, split: PatientSplit,
              student_proba: np.ndarray, mia_scores: tuple[np.ndarray, np.ndarray] | None) -> dict:
    attributes = list(config.data.sensitive_attributes)
    if not attributes:
        attributes = [f.name for f in data.schema.features if f.name.lower() in ("sex", "gender", "age")]
    X_test, y_test, _ = data.rows(split.test)
    out: dict = {}
    for attribute in attributes:
        if attribute not in X_test.columns:
            continue
        groups = _groups(X_test[attribute], data.schema.feature(attribute).kind)
        out[attribute] = {}
        for group in sorted(groups.unique()):
            mask = (groups == group).to_numpy()
            n = int(mask.sum())
            entry = {"n": n, "auroc": None, "small_group": n < 100}
            if n >= 10 and len(np.unique(y_test[mask])) == data.schema.n_classes:
                entry["auroc"] = utility_metrics(y_test[mask], student_proba[mask])["auroc"]
            out[attribute][group] = entry
    return out


def build_report(*, config: PipelineConfig, data: SensitiveData, split: PatientSplit,
                 reference, ensemble, student_path: Path, ledger: PrivacyLedger, plan: dict,
                 network, record, rng: np.random.Generator,
                 baselines: dict | None = None) -> dict:
    """Everything the audit measures, in the ``report.json`` contract's shape."""
    schema = data.schema
    X_test, y_test, _ = data.rows(split.test)
    X_train, y_train, _ = data.rows(split.train)
    session = onnx_session(student_path, config.audit.threads)
    student_test = _student_proba(session, X_test, schema)
    utility = {"teacher": utility_metrics(y_test, reference.predict_proba(X_test)),
               "ensemble": utility_metrics(y_test, ensemble.predict_proba(X_test)),
               "student": utility_metrics(y_test, student_test)}
    baseline = make_teacher("logistic_regression", schema, random_state=config.seed)
    baseline.fit(X_train, y_train)
    utility["baselines"] = {**(baselines or {}), "logistic_regression_nonprivate":
                            utility_metrics(y_test, baseline.predict_proba(X_test))}
    utility["retention"] = retention(utility["student"], utility["teacher"])

    speed = measure_speed(reference, student_path, schema, X_test, threads=config.audit.threads,
                          repeats=config.audit.speed_repeats,
                          batch_size=config.audit.throughput_batch)
    delta = ledger.delta
    mia = {"student": _mia_block(lambda X: _student_proba(session, X, schema), data, split,
                                 delta, rng),
           "teacher": _mia_block(reference.predict_proba, data, split, delta, rng)}
    epsilon = ledger.epsilon()
    ledger_dict = ledger.to_dict()
    caveats = list(data.caveats)
    if not ledger.formal_guarantee:
        caveats.insert(0, "A stage ran without differential privacy (e.g. a noiseless "
                          "plurality vote): ε is infinite and nothing formal protects patients.")
    caveats.extend(plan.get("notes", []))
    caveats.append(NOT_COVERED)
    caveats.append("Schema-prior transfer data: declared priors cost nothing; columns without "
                   "a declared prior are sampled from differentially private marginals "
                   "(ledger stage 'schema_statistics').")
    privacy = {
        "unit": "patient", "formal_guarantee": ledger.formal_guarantee,
        "epsilon": _finite(epsilon), "delta": delta,
        "target_epsilon": config.privacy.target_epsilon, "accountant": ledger.accountant,
        "ledger": [{k: row[k] for k in ("stage", "mechanism", "noise_multiplier", "sample_rate",
                                        "count", "epsilon_alone", "description")}
                   for row in ledger_dict["entries"]],
        "covered": COVERED, "caveats": caveats, "transfer_ledger": None}
    n_features = len(schema.features)
    train_patients = len(np.unique(data.patient_ids[split.train]))
    report = {
        "schema_version": SCHEMA_VERSION, "verdict": None, "passed": None, "gates": [],
        "run": {"medistill_version": __version__,
                "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "pipeline_sha256": config.sha256(), "seed": config.seed,
                "dataset": {"name": data.name if config.data.source != "builtin"
                            else f"built-in {config.data.builtin.name}",
                            "source": config.data.source, "n_patients": data.n_patients,
                            "n_train": train_patients,
                            "n_test": len(np.unique(data.patient_ids[split.test])),
                            "n_holdout": len(np.unique(data.patient_ids[split.holdout])),
                            "n_features": n_features, "label": schema.label,
                            "classes": list(schema.classes),
                            "prevalence": float(np.mean(data.labels == data.schema.n_classes - 1))},
                "teacher": {"kind": config.teachers.reference},
                "ensemble": {"n_teachers": plan["n_teachers"], "kind": config.teachers.kind,
                             "aggregator": config.labels.aggregator,
                             "sigma": plan["noises"].get("labels"),
                             "n_queries": plan["n_queries"]},
                "student": {"hidden_layers": list(config.student.hidden_layers),
                            "n_parameters": int(sum(p.numel() for p in network.parameters())),
                            "alpha": plan["alpha"], "epochs": config.student.epochs,
                            "noise_multiplier": record.noise_multiplier,
                            "sample_rate": record.sample_rate, "steps": record.steps,
                            "max_grad_norm": config.student.max_grad_norm},
                "transfer": {"source": config.transfer.source,
                             "n_rows": max(config.transfer.n_rows, plan["n_queries"]),
                             "n_labelled": plan["n_queries"],
                             "dp_marginal_columns": list(plan["marginal_columns"]),
                             "epsilon_cost": next((r["epsilon_alone"] for r in ledger_dict["entries"]
                                                   if r["stage"] == "schema_statistics"), 0.0)}},
        "utility": utility, "speed": speed, "privacy": privacy, "mia": mia,
        "fairness": _fairness(config, data, split, student_test, None),
    }
    policy = load_policy(config.audit.policy)
    gates, verdict = evaluate_gates(report, policy)
    report.update(gates=gates, verdict=verdict, passed=all(g["passed"] for g in gates))
    return report


def write_run_files(folder: Path, config: PipelineConfig, ledger: PrivacyLedger, report: dict) -> None:
    """report.json/.html/.md, ledger.json and the resolved pipeline.yaml."""
    (folder / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (folder / "report.html").write_text(render_html(report), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (folder / "ledger.json").write_text(ledger.to_json())
    (folder / "pipeline.yaml").write_text(config.to_yaml())


__all__ = ["SCHEMA_VERSION", "build_report", "write_run_files"]
