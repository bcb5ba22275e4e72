"""Build ``report.json`` from a finished pipeline and write the run folder's files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
import json
import math
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from medistill import __version__
from medistill.audit.gates import evaluate_gates, load_policy
from medistill.audit.bootstrap import bootstrap_metrics
from medistill.audit.canary import canary_audit
from medistill.audit.fairness import (AttackScores, JudgingRules, fairness_report, group_labels,
                                      sensitive_columns)
from medistill.audit.memory import peak_scoring_memory, peak_teacher_memory
from medistill.audit.mia import log_likelihood
from medistill.audit.mia_suite import run_attacks
from medistill.audit.report import render_html, render_markdown
from medistill.audit.speed import measure_speed, onnx_session
from medistill.audit.utility import reliability_bins, retention, utility_metrics
from medistill.compute import current_backend
from medistill.config import PipelineConfig
from medistill.data.splits import PatientSplit
from medistill.data.table import SensitiveData
from medistill.housekeeping import temp_prefix
from medistill.privacy.ledger import PrivacyLedger, epsilon_of, event_from_entry
from medistill.student.export import onnx_feeds
from medistill.plan import RunPlan
from medistill.privacy.randomness import REPRODUCIBLE_NOTE

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


def mia_population(data: SensitiveData, split: PatientSplit, member_rows: np.ndarray,
                   rng: np.random.Generator, max_per_side: int = MAX_MIA_PATIENTS) -> np.ndarray:
    """Row indices of the attack population: members (rows the student trained on, one per
    patient) and as many holdout non-members (one row per patient), balanced and capped."""
    _, first = np.unique(data.patient_ids[split.holdout], return_index=True)
    nonmembers = split.holdout[first]
    n = min(len(member_rows), len(nonmembers), max_per_side)
    members = rng.choice(member_rows, size=n, replace=False)
    return np.r_[members, rng.choice(nonmembers, size=n, replace=False)]


def _teacher_trainer(reference, features: pd.DataFrame, labels: np.ndarray):
    """Re-run the reference teacher's training on a subset of the population."""
    def train(indices: np.ndarray, seed: int):
        model = clone(reference)
        model.set_params(**{k: seed for k in model.get_params() if k.endswith("random_state")})
        model.fit(features.iloc[indices], labels[indices])
        return model.predict_proba
    return train


def _mia(config: PipelineConfig, data: SensitiveData, population: np.ndarray, n_members: int,
         predict, trainer_factory, delta: float, rng: np.random.Generator, who: str):
    X, y, ids = data.rows(population)
    train_fn = trainer_factory(X, y) if trainer_factory is not None else None
    is_member = np.arange(len(population)) < n_members
    block, raw = run_attacks(predict, X, y, ids, is_member, train_fn=train_fn,
                             n_reference=config.audit.reference_models, delta=delta, rng=rng,
                             seed=config.seed, n_jobs=config.audit.n_jobs)
    raw.insert(0, "model", who)
    return block, raw


def _fairness(config: PipelineConfig, data: SensitiveData, split: PatientSplit,
              probabilities: dict[str, np.ndarray | None], population: np.ndarray,
              mia_raw: pd.DataFrame, strongest: str, rng: np.random.Generator) -> dict:
    """Who pays for privacy: per group of each sensitive attribute, the teacher's, the DP
    teacher's and the student's AUROC, retention, calibration and the strongest attack's
    AUC (medistill.audit.fairness); small groups are flagged, not gated."""
    names = [f.name for f in data.schema.features]
    attributes = sensitive_columns(names, declared=tuple(config.data.sensitive_attributes),
                                   extra=tuple(config.audit.groups))
    X_test, y_test, test_ids = data.rows(split.test)
    X_pop = data.rows(population)[0]
    kinds = {a: data.schema.feature(a).kind for a in attributes}
    attack = AttackScores(
        groups={a: group_labels(X_pop[a], kinds[a]) for a in attributes},
        is_member=mia_raw["is_member"].to_numpy(dtype=bool),
        scores=mia_raw[strongest].to_numpy(dtype=float))
    return fairness_report(
        y_test, {a: group_labels(X_test[a], kinds[a]) for a in attributes}, probabilities,
        patient_ids=test_ids, attack=attack,
        rules=JudgingRules(min_patients=config.audit.fairness_min_patients,
                           min_events=config.audit.fairness_min_events),
        n_boot=config.audit.bootstrap, rng=rng)


def _speed(config: PipelineConfig, reference, student_path: Path, schema, X_test: pd.DataFrame,
           transfer_rows: pd.DataFrame | None) -> dict:
    """Speed at the configured thread count, again on all cores, and scoring memory."""
    speed = measure_speed(reference, student_path, schema, X_test, threads=config.audit.threads,
                          repeats=config.audit.speed_repeats,
                          batch_size=config.audit.throughput_batch)
    cores = os.cpu_count() or 1
    if cores > config.audit.threads:
        speed["all_cores"] = measure_speed(reference, student_path, schema, X_test,
                                           threads=cores, repeats=config.audit.speed_repeats,
                                           batch_size=config.audit.throughput_batch)
    if config.audit.memory and transfer_rows is not None:
        # Synthetic transfer rows, never sensitive ones, are written for the child process.
        with tempfile.TemporaryDirectory(prefix=temp_prefix("mem")) as tmp:
            rows = Path(tmp) / "rows.parquet"
            feeds = onnx_feeds(transfer_rows, schema)
            pd.DataFrame({k: v[:, 0] for k, v in feeds.items()}).to_parquet(rows, index=False)
            teacher_pickle = Path(tmp) / "teacher.pkl"
            teacher_pickle.write_bytes(pickle.dumps(reference, protocol=pickle.HIGHEST_PROTOCOL))
            transfer_rows.to_parquet(Path(tmp) / "teacher_rows.parquet", index=False)
            speed["student"]["memory"] = peak_scoring_memory(student_path, rows,
                                                             threads=config.audit.threads)
            speed["teacher"]["memory"] = peak_teacher_memory(
                teacher_pickle, Path(tmp) / "teacher_rows.parquet", config.audit.threads)
    return speed


@dataclass(frozen=True)
class AuditInputs:
    """What the audit judges: the run's artifacts, typed (see ``medistill.pipeline``)."""

    data: SensitiveData
    split: PatientSplit
    ledger: PrivacyLedger
    plan: RunPlan
    reference: object                      # the non-private reference teacher
    teacher_selection: dict
    ensemble: object | None                # PATE teachers (None when no labels were bought)
    student_path: Path
    network: object
    record: object                         # DpSgdRecord of the released student
    member_rows: np.ndarray                # rows the student's DP-SGD saw, one per patient
    baselines: dict = field(default_factory=dict)
    distillation: dict | None = None
    transfer_rows: pd.DataFrame | None = None   # synthetic rows for the memory probe
    transfer: dict = field(default_factory=dict)
    public_ledger: PrivacyLedger | None = None
    student_trainer: object = None         # reference-student factory for LiRA/RMIA
    canary: dict | None = None             # {"rows": indices, "included": bits}
    dp_teacher: object | None = None       # the DP teacher the student learned from
    dp_selection: object | None = None     # how it was chosen (private_selection.Selection)
    # the charged noisy per-class counts of training patients (ledger stage patient_counts,
    # RunFacts.class_counts); the model card's patient band comes from them, never the exact
    noisy_class_counts: tuple[int, ...] | None = None


def _dp_teacher_section(plan, selection) -> dict:
    """Which DP teacher labelled the transfer rows and, when chosen privately, the DP
    selection's released figures (noisy score sums: post-processing of its event)."""
    section = {"kind": plan.dp_teacher, "n_labelled": plan.n_teacher_rows,
               "labels_cost": "free (post-processing of its ledger entry)",
               "dp_ebm_max_bins": plan.dp_ebm_max_bins}
    if selection is not None:
        section.update(kind=selection.chosen, selection={
            "candidates": sorted(selection.noisy_scores), "score": selection.score,
            "noisy_score_sums": {k: round(v, 1) for k, v in selection.noisy_scores.items()},
            "noise_std": selection.noise_std,
            "validation_share": plan.selection_validation_share})
    return section


def _fine_tune_section(config: PipelineConfig, plan: RunPlan) -> dict | None:
    if plan.fine_tune_schedule is None:
        return None
    student = plan.student or config.student
    return {"epochs": student.fine_tune_epochs, "learning_rate": student.fine_tune_learning_rate,
            "planned_steps": plan.fine_tune_schedule.steps,
            "planned_sample_rate": plan.fine_tune_schedule.sample_rate,
            "noise_multiplier": plan.noise("student_dp_sgd")}


def _noisy_counts(counts: tuple[int, ...] | None) -> dict:
    """``run.plan``'s noisy per-class training-patient counts (the charged
    ``patient_counts`` release) and their sum; nothing when the run has none."""
    if counts is None:
        return {}
    return {"noisy_class_counts": [int(c) for c in counts],
            "n_train_noisy": max(0, int(sum(counts)))}


def build_report(config: PipelineConfig, inputs: AuditInputs,
                 rng: np.random.Generator) -> tuple[dict, pd.DataFrame]:
    """Everything the audit measures, in the ``report.json`` contract's shape, and the raw
    membership-inference scores (no identifiers: model, membership bit, scores)."""
    data, split, ledger, plan = inputs.data, inputs.split, inputs.ledger, inputs.plan
    reference, ensemble, network, record = (inputs.reference, inputs.ensemble, inputs.network,
                                            inputs.record)
    student_path, baselines = inputs.student_path, inputs.baselines
    schema = data.schema
    X_test, y_test, _ = data.rows(split.test)
    session = onnx_session(student_path, config.audit.threads)
    student_test = _student_proba(session, X_test, schema)
    models = {"teacher": reference.predict_proba(X_test), "student": student_test}
    if inputs.dp_teacher is not None:
        models["dp_teacher"] = inputs.dp_teacher.predict_proba(X_test)
    if ensemble is not None:
        models["ensemble"] = ensemble.predict_proba(X_test)
    utility = {who: utility_metrics(y_test, proba) for who, proba in models.items()}
    if schema.n_classes == 2:   # aggregates of the test patients: internal report only
        utility["reliability"] = {who: reliability_bins(y_test, proba[:, 1])
                                  for who, proba in models.items()}
    utility["baselines"] = dict(baselines)
    # Who pays for privacy (medistill.audit.fairness): the DP teacher the student learned from
    # is the DP teacher model when there is one, else the PATE ensemble's mean vote.
    dp_source = ("dp_teacher" if "dp_teacher" in models
                 else "pate_ensemble_mean" if "ensemble" in models else None)
    fairness_models = {"teacher": models["teacher"], "student": student_test,
                       "dp_teacher": models.get("dp_teacher", models.get("ensemble"))}
    utility["retention"] = retention(utility["student"], utility["teacher"])
    if inputs.distillation:
        # Student against the direct DP-SGD baseline, means over audit.baseline_seeds seeds.
        utility["distillation"] = inputs.distillation
    test_ids = data.patient_ids[split.test]
    if config.audit.bootstrap:
        utility["confidence_intervals"] = {
            who: bootstrap_metrics(y_test, proba, n_boot=config.audit.bootstrap, rng=rng,
                                   groups=test_ids)
            for who, proba in models.items()}

    speed = _speed(config, reference, student_path, schema, X_test, inputs.transfer_rows)
    delta = ledger.delta
    population = mia_population(data, split, inputs.member_rows, rng)
    n_members = len(population) // 2
    student_block, student_raw = _mia(
        config, data, population, n_members, lambda X: _student_proba(session, X, schema),
        inputs.student_trainer, delta, rng, "student")
    teacher_block, teacher_raw = _mia(
        config, data, population, n_members, reference.predict_proba,
        lambda X, y: _teacher_trainer(reference, X, y), delta, rng, "teacher")
    canary = inputs.canary
    if canary is not None:
        X_c, y_c, _ = data.rows(canary["rows"])
        scores = log_likelihood(_student_proba(session, X_c, schema), y_c)
        student_block["canary"] = canary_audit(scores, canary["included"], delta=delta)
        student_block["epsilon_lower_bound"] = max(student_block["epsilon_lower_bound"],
                                                   student_block["canary"]["epsilon_lower_bound"])
    mia = {"student": student_block, "teacher": teacher_block}
    mia_scores = pd.concat([student_raw, teacher_raw], ignore_index=True)
    epsilon = ledger.epsilon()
    ledger_dict = ledger.to_dict()
    caveats = list(data.caveats)
    if not ledger.formal_guarantee:
        stages = sorted({e.stage for e in ledger.entries if e.mechanism == "non_private"})
        caveats.insert(0, f"No formal privacy guarantee: the stage(s) {', '.join(stages)} ran "
                          "without differential privacy (e.g. MUNGE transfer rows or a "
                          "noiseless plurality vote); ε is infinite and nothing formal "
                          "protects the patients.")
    if not ledger.formal:
        caveats.insert(0, REPRODUCIBLE_NOTE)
    caveats.extend(plan.notes)
    caveats.append(NOT_COVERED)
    transfer = inputs.transfer or {}
    caveats.extend(transfer.get("notes", []))
    caveats.extend(_transfer_caveats(transfer))
    privacy = {
        "unit": "patient", "formal_guarantee": ledger.formal_guarantee,
        "epsilon": _finite(epsilon), "delta": ledger.total_delta, "delta_accountant": delta,
        "threshold_delta": ledger.threshold_delta,
        "target_epsilon": config.privacy.target_epsilon, "accountant": ledger.accountant,
        "ledger": [{k: row[k] for k in ("stage", "mechanism", "noise_multiplier", "sample_rate",
                                        "count", "epsilon_alone", "description")}
                   for row in ledger_dict["entries"]],
        "covered": COVERED, "caveats": caveats,
        "noise_source": ledger.to_dict()["noise_source"],
        "transfer_ledger": _transfer_ledger(inputs.public_ledger)}
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
                "teacher": {"kind": inputs.teacher_selection.get(
                    "chosen", config.teachers.reference),
                            "selection": inputs.teacher_selection},
                # the PATE path's ensemble; None on the DP-teacher path, which has none
                "ensemble": None if plan.dp_teacher else {
                    "n_teachers": plan.n_teachers if ensemble is not None else 0,
                    "kind": config.teachers.kind, "aggregator": config.labels.aggregator,
                    "sigma": plan.noise("labels"), "n_queries": plan.n_queries},
                "dp_teacher": (_dp_teacher_section(plan, inputs.dp_selection)
                               if plan.dp_teacher else None),
                "plan": {"stages": [{"name": b.name, "share": b.share, "noise_multiplier": b.noise,
                                     "what": b.what} for b in plan.stages],
                         "alpha": plan.alpha, "n_queries": plan.n_queries,
                         "repeats": plan.repeats, "sample_rate": plan.schedule.sample_rate,
                         "steps": plan.schedule.steps, **_noisy_counts(inputs.noisy_class_counts)},
                "student": {"hidden_layers": [m.out_features for m in network.modules()
                                              if hasattr(m, "out_features")][:-1],
                            "n_parameters": int(sum(p.numel() for p in network.parameters())),
                            "alpha": plan.alpha, "epochs": (plan.student or config.student).epochs,
                            "noise_multiplier": record.noise_multiplier,
                            "sample_rate": record.sample_rate, "steps": record.steps,
                            "max_grad_norm": config.student.max_grad_norm,
                            # resolved per-sample clipping mode, and for "fused" the check
                            # against Opacus's hooks made before training (None otherwise)
                            "grad_sample_mode": getattr(record, "grad_sample_mode", None),
                            "clipping_check_rel_diff": getattr(record, "clipping_check", None),
                            # DP-teacher path: distilled (no noise), then fine-tuned by DP-SGD
                            # on the sensitive patients; the DP-SGD figures above are its
                            "fine_tune": _fine_tune_section(config, plan)},
                "transfer": {"source": transfer.get("source", config.transfer.source),
                             "resolved": transfer.get("resolved"),
                             "n_rows": sum(p["n_rows"] for p in transfer.get("sources", [])),
                             "n_labelled": plan.n_queries or plan.n_teacher_rows,
                             "dp_marginal_columns": list(plan.marginal_columns),
                             "epsilon_cost": _transfer_epsilon(ledger),
                             "sources": transfer.get("sources", [])},
                # where teachers, reference models and FHIR chunks ran (medistill.compute)
                "compute": current_backend().summary()},
        "utility": utility, "speed": speed, "privacy": privacy, "mia": mia,
        "input_checks": [note.to_dict() for note in getattr(data, "notes", ())],  # #16.4
        "fairness": _fairness(config, data, split, fairness_models, population, student_raw,
                              max(student_block["attacks"], key=lambda a: a["auc"])["name"], rng),
    }
    report["fairness"]["worst_group"]["dp_teacher"] = dp_source
    policy = load_policy(config.audit.policy)
    gates, verdict = evaluate_gates(report, policy)
    report.update(gates=gates, verdict=verdict, passed=all(g["passed"] for g in gates),
                  policy={"name": policy.name,
                          "file": str(config.audit.policy) if config.audit.policy else "default"})
    return report, mia_scores


TRANSFER_STAGES = ("schema_statistics", "transfer_synthesizer", "transfer_munge")

_SOURCE_TEXT = {
    "dp_synthesizer": "a differentially private marginal synthesizer fitted on one row per "
                      "sensitive training patient (ledger stage 'transfer_synthesizer')",
    "schema_prior": "the schema prior: declared public priors cost nothing, columns without "
                    "one are sampled from differentially private one-way marginals (ledger "
                    "stage 'schema_statistics')",
    "public_table": "a public table from elsewhere (no cost to the sensitive patients; its own "
                    "individuals' guarantee is reported separately)",
    "munge": "MUNGE perturbations of sensitive rows (no privacy guarantee)",
}


def _transfer_caveats(transfer: dict) -> list[str]:
    """One sentence per transfer source: what it is and what it cost."""
    out = []
    for part in transfer.get("sources", []):
        text = _SOURCE_TEXT.get(part["kind"], part["kind"])
        out.append(f"Transfer data: {part['n_rows']} rows from {text}.")
    return out


def _transfer_epsilon(ledger: PrivacyLedger) -> float | None:
    """ε of the transfer stages alone, composed (0 when they cost nothing, None if ∞)."""
    events = [event_from_entry(e) for e in ledger.entries if e.stage in TRANSFER_STAGES]
    if not events:
        return 0.0
    return _finite(epsilon_of(events, ledger.delta, ledger.accountant))


def _transfer_ledger(public_ledger: PrivacyLedger | None) -> dict | None:
    """``privacy.transfer_ledger``: the public transfer individuals' own guarantee."""
    if public_ledger is None:
        return None
    entries = public_ledger.to_dict()["entries"]
    return {"unit": "public transfer individual", "epsilon": _finite(public_ledger.epsilon()),
            "delta": public_ledger.delta, "accountant": public_ledger.accountant,
            "ledger": [{k: row[k] for k in ("stage", "mechanism", "noise_multiplier",
                                            "sample_rate", "count", "epsilon_alone",
                                            "description")} for row in entries]}


def write_run_files(folder: Path, config: PipelineConfig, ledger: PrivacyLedger, report: dict,
                    mia_scores: pd.DataFrame | None = None) -> None:
    """report.json/.html/.md (internal), the model card (releasable), ledger.json and the
    resolved pipeline.yaml. ``mia_scores`` is accepted and never written: per-patient audit
    scores give membership away to anyone holding the model (#15.1); report.json keeps the
    aggregates (ROC points, AUC, TPR at low FPR)."""
    from medistill.audit.model_card import write_model_card

    del mia_scores
    (folder / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (folder / "report.html").write_text(render_html(report), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (folder / "ledger.json").write_text(ledger.to_json())
    (folder / "pipeline.yaml").write_text(config.to_yaml())
    if (folder / "student.onnx").is_file():
        write_model_card(folder, report, config)
    mapping = _fhir_mapping_file(config)
    if mapping is not None:  # predict on FHIR input maps the export the same way
        (folder / "mapping.yaml").write_text(mapping.read_text(encoding="utf-8"), encoding="utf-8")


def _fhir_mapping_file(config: PipelineConfig) -> Path | None:
    from importlib.resources import files

    data = config.data
    if data.source == "fhir":
        return Path(data.mapping) if data.mapping else Path(str(
            files("medistill.data.fhir").joinpath("default_mapping.yaml")))
    if data.source == "builtin" and data.builtin.name == "fhir_cohort":
        return Path(str(files("medistill.data.fhir").joinpath("demo_mapping.yaml")))
    return None


__all__ = ["SCHEMA_VERSION", "AuditInputs", "build_report", "write_run_files"]
