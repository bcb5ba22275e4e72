"""Render ``report.json`` for a privacy officer, an ethics board and a clinical-safety reviewer.

The verdict comes first, in plain words; a run without a formal privacy guarantee says so
in the very first line. ``render_html`` gives one self-contained file (inline CSS, SVG plots
as data URIs, nothing fetched); ``render_markdown`` gives the same content without plots;
``headline`` gives three lines for the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from medistill.audit.gates import (
    LEDGER_EPSILON,
    get_path,
    no_guarantee_reason,
    privacy_bug,
    report_value,
    verdict_of,
)
from medistill.audit.report_format import (
    FILTERS,
    MISSING,
    OP_SYMBOL,
    at_rate,
    fallback,
    fmt_eps,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_sci,
    fmt_sig,
    fmt_times,
    fmt_value,
    number,
)
from medistill.audit.fairness import WORST_GROUP
from medistill.audit.report_plots import reliability_plot, retention_plot, roc_plot, utility_plot

TEMPLATES = Path(__file__).with_name("templates")
NO_POWER_AUC = 0.55  # an attack below this AUC on the non-private teacher has no power
SMALL_GROUP = 100  # fairness groups with fewer patients are flagged
SENSITIVE_NOTE = (
    "All metrics in this report are computed on the hospital's sensitive test and holdout "
    "patients. They are for internal review only: the report itself is not covered by the "
    "privacy guarantee and must not be shared outside the review."
)
_RANK = {"release": 0, "review": 1, "reject": 2}


# --------------------------------------------------------------------------- the verdict


def _gate_failure(row: Mapping[str, Any]) -> str:
    name = row.get("name", "gate")
    note = str(row.get("note") or "")
    if "not measured" in note:
        return f"{name} (not measured)"
    if row.get("value") is None or row.get("threshold") is None and note:
        return f"{name} ({note or 'no value'})"
    op = OP_SYMBOL.get(str(row.get("op")), str(row.get("op")))
    return f"{name} (measured {fmt_value(row.get('value'))}, required {op} {fmt_value(row.get('threshold'))})"


def _gates(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    gates = report.get("gates")
    return [g for g in gates if isinstance(g, Mapping)] if isinstance(gates, list) else []


def effective_verdict(report: Mapping[str, Any]) -> str | None:
    """The recorded verdict, made stricter if the built-in rules demand it; ``None`` if unjudged."""
    gates = _gates(report)
    verdict = report.get("verdict")
    if verdict not in _RANK:
        verdict = verdict_of(gates) if gates else None
    if privacy_bug(report):
        return "reject"
    if verdict == "release" and no_guarantee_reason(report):
        return "review"
    return verdict


def verdict_line(report: Mapping[str, Any]) -> str:
    """'RELEASE — all gates passed' / 'REVIEW — 1 gate failed: …' / 'REJECT — …'."""
    verdict = effective_verdict(report)
    if verdict is None:
        return "NOT JUDGED — no audit gates were evaluated for this run"
    failed = [g for g in _gates(report) if not g.get("passed")]
    failed.sort(key=lambda g: g.get("severity") != "reject")
    reasons: list[str] = []
    bug = privacy_bug(report)
    if bug:
        reasons.append(bug)
    if failed:
        reasons.append(f"{len(failed)} gate{'s' if len(failed) > 1 else ''} failed: "
                       + "; ".join(_gate_failure(g) for g in failed))
    elif verdict != "release" and no_guarantee_reason(report):
        reasons.append("no formal privacy guarantee")
    if verdict == "release" and not reasons:
        reasons.append("all gates passed")
    return f"{verdict.upper()} — {'; '.join(reasons) or 'see the gates table'}"


def no_guarantee_line(report: Mapping[str, Any]) -> str | None:
    """'NO FORMAL PRIVACY GUARANTEE: <reason>' when the run has none."""
    reason = no_guarantee_reason(report)
    return f"NO FORMAL PRIVACY GUARANTEE: {reason}" if reason else None


def headline(report: Mapping[str, Any]) -> list[str]:
    """Three terminal lines: the verdict; retention and speed-up; ε, δ and the guarantee."""
    utility = (
        f"AUROC: student {fmt_num(get_path(report, 'utility.student.auroc'))} vs teacher "
        f"{fmt_num(get_path(report, 'utility.teacher.auroc'))} "
        f"(retention {fmt_pct(get_path(report, 'utility.retention.auroc'))}); "
        f"batch-1 latency speed-up {fmt_times(get_path(report, 'speed.speedup.latency'))}"
    )
    formal = get_path(report, "privacy.formal_guarantee") is True
    privacy = (
        f"Privacy per {fallback(get_path(report, 'privacy.unit', 'patient'))}: "
        f"ε = {fmt_eps(report_value(report, LEDGER_EPSILON))}, "
        f"δ = {fmt_sci(get_path(report, 'privacy.delta'))} "
        f"({fallback(get_path(report, 'privacy.accountant'))} accountant) — "
        + ("formal guarantee" if formal else "NO formal guarantee")
    )
    return [verdict_line(report), utility, privacy]


# --------------------------------------------------------------------------- the content


def _section(report: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = report.get(key)
    return value if isinstance(value, Mapping) else {}


def _canary_row(student: Mapping[str, Any]) -> dict[str, Any] | None:
    """The one-run canary audit's line: its bound and what it rests on (None: no canaries)."""
    canary = _section(student, "canary")
    if not canary:
        return None
    best = next((t for t in canary.get("trials") or () if isinstance(t, Mapping)
                 and t.get("k_pos") == canary.get("k_pos") and t.get("k_neg") == canary.get("k_neg")),
                {})
    detail = ", ".join(text for text in (
        f"{fmt_int(canary.get('n_canaries'))} canaries, {fmt_int(canary.get('n_included'))} "
        "trained on" if canary.get("n_canaries") is not None else "",
        f"{fmt_int(best.get('correct'))} of {fmt_int(best.get('guesses'))} guesses right"
        if best else "") if text)
    return {"epsilon": canary.get("epsilon_lower_bound"), "detail": detail}


def _mia_rows(mia: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool | None]:
    """Table rows (attack × model) and whether at least one attack has power on the teacher."""

    def row(attack: str, who: str, stats: Any, teacher_auc: Any = None) -> dict[str, Any]:
        stats = stats if isinstance(stats, Mapping) else {}
        cis = stats.get("tpr_at_fpr_ci")
        rates = stats.get("tpr_at_fpr")
        powerless = None
        if who == "student":
            t = number(teacher_auc)
            powerless = None if t is None else t < NO_POWER_AUC
        return {
            "attack": attack, "who": who, "auc": stats.get("auc"), "auc_ci": stats.get("auc_ci"),
            "tpr1": at_rate(rates, "0.01"), "tpr1_ci": at_rate(cis, "0.01"),
            "tpr01": at_rate(rates, "0.001"), "tpr01_ci": at_rate(cis, "0.001"),
            "eps_lb": stats.get("epsilon_lower_bound"), "powerless": powerless,
        }

    student, teacher = _section(mia, "student"), _section(mia, "teacher")
    rows: list[dict[str, Any]] = []
    if student or teacher:
        rows += [row("summary (as reported)", "student", student, teacher.get("auc")),
                 row("summary (as reported)", "teacher", teacher)]

    def by_name(stats: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        attacks = stats.get("attacks")
        items = attacks if isinstance(attacks, list) else []
        return {str(a.get("name", f"attack {i + 1}")): a for i, a in enumerate(items) if isinstance(a, Mapping)}

    s_attacks, t_attacks = by_name(student), by_name(teacher)
    for name in dict.fromkeys([*s_attacks, *t_attacks]):
        t_auc = (t_attacks.get(name) or {}).get("auc")
        rows += [row(name, "student", s_attacks.get(name), t_auc), row(name, "teacher", t_attacks.get(name))]
    verdicts = [r["powerless"] for r in rows if r["powerless"] is not None]
    has_power = None if not verdicts else not all(verdicts)
    return rows, has_power


def _interval(value: Any) -> list[float] | None:
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(number(v) is not None for v in value)
    return list(value) if ok else None


def _pct_interval(value: Any) -> str:
    """``(84.2–103.4 %)`` for a ratio's interval, or empty."""
    ci = _interval(value)
    return f"({fmt_pct(ci[0]).removesuffix(' %')}–{fmt_pct(ci[1])})" if ci else ""


def _fairness_rows(fairness: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per group of each attribute; reports made before the per-group teacher
    metrics existed give the student's AUROC only."""
    rows = []
    for attribute, groups in fairness.items():
        if attribute == WORST_GROUP or not isinstance(groups, Mapping):
            continue
        for group, stats in groups.items():
            stats = stats if isinstance(stats, Mapping) else {}
            n = number(stats.get("n_patients", stats.get("n")))
            small = stats.get("small_group") is True or (n is not None and n < SMALL_GROUP)
            judged = stats.get("judged")
            rows.append({
                "attribute": attribute, "group": group, "n": stats.get("n"),
                "teacher_auroc": stats.get("teacher_auroc"),
                "dp_teacher_auroc": stats.get("dp_teacher_auroc"),
                "student_auroc": stats.get("student_auroc", stats.get("auroc")),
                "auroc": stats.get("student_auroc", stats.get("auroc")),
                "retention": stats.get("retention"),
                "retention_ci": _interval(stats.get("retention_ci")),
                "retention_ci_text": _pct_interval(stats.get("retention_ci")),
                "student_auroc_ci": _interval(stats.get("student_auroc_ci")),
                "calibration_in_the_large": stats.get("calibration_in_the_large"),
                "ece": stats.get("ece"), "mia_auc": stats.get("mia_auc"),
                "judged": (not small) if judged is None else judged is True,
                "reason": stats.get("reason"), "small": small})
    return rows


def who_pays_line(fairness: Mapping[str, Any]) -> str:
    """The fairness section's first line: which group loses most to privacy, by how much,
    and what could not be judged."""
    worst = fairness.get(WORST_GROUP)
    attributes = [k for k, v in fairness.items() if k != WORST_GROUP and isinstance(v, Mapping)]
    if not attributes:
        return ("Who pays for privacy? Not measured: no sensitive attribute (sex, age or "
                "audit.groups) was found in the table.")
    if not isinstance(worst, Mapping):
        return ("Who pays for privacy? Not measured: this report has no per-group teacher "
                "metrics (it predates them), only the student's AUROC per group.")
    unjudged = worst.get("unjudged") if isinstance(worst.get("unjudged"), list) else []
    tail = (f" {len(unjudged)} group{'s' if len(unjudged) != 1 else ''} too small to judge "
            f"{'are' if len(unjudged) != 1 else 'is'} flagged below, not gated." if unjudged else "")
    retention = number(worst.get("auroc_retention"))
    if retention is None:
        return f"Who pays for privacy? Not measured: {fallback(worst.get('reason'))}.{tail}"
    ci = _interval(worst.get("auroc_retention_ci"))
    text = (f"Who pays for privacy? Most: {worst.get('attribute')} = {worst.get('group')}, where "
            f"the student keeps {fmt_pct(retention)} of the non-private teacher's AUROC "
            f"({fmt_num(worst.get('student_auroc'))} vs {fmt_num(worst.get('teacher_auroc'))}"
            + (f"; 95 % interval {fmt_pct(ci[0])}–{fmt_pct(ci[1])}" if ci else "") + ").")
    gap = number(worst.get("retention_gap"))
    pair = worst.get("gap_groups")
    if gap is not None and isinstance(pair, list) and len(pair) == 2:
        text += (f" The largest gap between groups is {fmt_num(gap)} in {worst.get('gap_attribute')} "
                 f"({pair[0]} against {pair[1]}).")
    return text + tail


def _retention_threshold(report: Mapping[str, Any]) -> float | None:
    for gate in _gates(report):
        if gate.get("metric") == "fairness.worst_group.auroc_retention":
            return number(gate.get("threshold"))
    return None


def _describe(source: Mapping[str, Any], *parts: tuple[str, str, Callable[[Any], str]]) -> str:
    """Join ``template.format(fmt(source[key]))`` for each present key; "—" if none is."""
    texts = [template.format(fmt(source[key])) for key, template, fmt in parts
             if source.get(key) not in (None, "")]
    return ", ".join(texts) if texts else MISSING


def _resolved_source(transfer: Mapping[str, Any]) -> Any:
    """``auto → dp_synthesizer`` when the configured source was resolved to another."""
    source, resolved = transfer.get("source"), transfer.get("resolved")
    if source and resolved and resolved != source:
        return f"{source} → {str(resolved).replace('+', ' + ')}"
    return source


def _transfer_source_facts(transfer: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One fact per transfer source: rows, labelled rows, ε alone, fidelity to the test split."""
    facts = []
    for part in transfer.get("sources") or []:
        if not isinstance(part, Mapping):
            continue
        fidelity = part.get("fidelity") if isinstance(part.get("fidelity"), Mapping) else {}
        cost = ("no DP guarantee (ε = ∞)" if part.get("kind") == "munge"
                else f"ε alone {fmt_eps(part.get('epsilon'))}")
        text = _describe({**part, **fidelity, "cost": cost},
                         ("n_rows", "{} rows", fmt_int),
                         ("n_labelled", "{} labelled", fmt_int), ("cost", "{}", fallback),
                         ("mean_ks", "mean KS {} vs the test split", fmt_sig),
                         ("mean_tv", "mean TV {}", fmt_sig),
                         ("correlation_error", "correlation error {}", fmt_sig))
        facts.append((f"  source: {str(part.get('kind', '')).replace('_', ' ')}", text))
    return facts


def _clipping_facts(student: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The per-sample clipping mode the student was trained with and, for medistill's
    ``fused`` clipping, its check against Opacus's; nothing for reports without the key."""
    mode = student.get("grad_sample_mode")
    if mode in (None, ""):
        return []
    if mode != "fused":
        return [("Per-sample clipping", f"{fallback(mode)} (Opacus)")]
    check = number(student.get("clipping_check_rel_diff"))
    if check is None:
        return [("Per-sample clipping", "fused (medistill), not checked against Opacus")]
    text = ("fused (medistill), checked against Opacus's hooks clipping on a probe batch "
            f"before training: relative difference {fmt_sci(check)}")
    return [("Per-sample clipping", text)]


def _teacher_facts(run: Mapping[str, Any], ens: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The teacher(s) the student learned from: the DP teacher, or the PATE ensemble."""
    dp = _section(run, "dp_teacher")
    if dp:
        chosen = _section(dp, "selection")
        choice = (f", chosen by report-noisy-max from {', '.join(map(str, chosen['candidates']))}"
                  if isinstance(chosen.get("candidates"), list) else "")
        return [("DP teacher", _describe(
            dp, ("kind", "{}", fallback), ("n_labelled", "{} transfer rows labelled", fmt_int),
            ("labels_cost", "{}", fallback), ("dp_ebm_max_bins", "DP-EBM max bins {}", fmt_int))
            + choice)]
    return [("Teacher ensemble", _describe(
        ens, ("n_teachers", "{} teachers", fmt_int), ("aggregator", "aggregator {}", fallback),
        ("sigma", "σ = {}", fmt_sig), ("n_queries", "{} queries", fmt_int)))]


def _run_facts(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Dataset and run facts as (label, text) pairs; hashes and counts, never rows."""
    data, ens = _section(run, "dataset"), _section(run, "ensemble")
    student, transfer = _section(run, "student"), _section(run, "transfer")
    layers = student.get("hidden_layers")
    mlp = {"mlp": "–".join(str(x) for x in layers)} if isinstance(layers, list) and layers else {}
    facts = [
        ("Dataset", _describe(data, ("name", "{}", fallback), ("source", "source: {}", fallback))),
        ("Patients", fmt_int(data.get("n_patients"))),
        ("Train / test / holdout patients",
         " / ".join(fmt_int(data.get(k)) for k in ("n_train", "n_test", "n_holdout"))),
        ("Features", fmt_int(data.get("n_features"))),
        ("Outcome", _describe(data, ("label", "{}", fallback), ("prevalence", "prevalence {}", fmt_pct))),
        ("Teacher", fallback(_section(run, "teacher").get("kind"))),
        *_teacher_facts(run, ens),
        ("Student", _describe(
            {**student, **mlp}, ("mlp", "MLP {}", fallback), ("n_parameters", "{} parameters", fmt_int),
            ("alpha", "α = {}", fmt_sig), ("epochs", "{} epochs", fmt_int))),
        ("Student DP-SGD", _describe(
            student, ("noise_multiplier", "noise multiplier {}", fmt_sig), ("sample_rate", "sample rate {}", fmt_sig),
            ("steps", "{} steps", fmt_int), ("max_grad_norm", "clipping norm {}", fmt_sig))),
        *_clipping_facts(student),
        ("Transfer data", _describe(
            {**transfer, "source": _resolved_source(transfer)}, ("source", "{}", fallback), ("n_rows", "{} rows", fmt_int),
            ("n_labelled", "{} labelled by the teachers", fmt_int), ("epsilon_cost", "ε cost {}", fmt_eps))),
        *_transfer_source_facts(transfer),
        ("medistill version", fallback(run.get("medistill_version"))),
        ("Report created", fallback(run.get("created_at"))),
        ("Pipeline file SHA-256", fallback(run.get("pipeline_sha256"))),
        ("Seed", fallback(run.get("seed"))),
        *_compute_facts(_section(run, "compute")),
    ]
    known = {"dataset", "teacher", "ensemble", "dp_teacher", "student", "transfer", "medistill_version",
             "created_at", "pipeline_sha256", "seed", "compute"}
    facts += [(str(k), fallback(v)) for k, v in run.items()
              if k not in known and (v is None or isinstance(v, str | int | float | bool))]
    return facts


def _compute_facts(compute: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where teachers, reference models and FHIR chunks ran (``run.compute``)."""
    if not compute:
        return []
    if compute.get("backend") == "dask":
        where = (f"Dask cluster {compute.get('scheduler')}, {fmt_int(compute.get('n_workers'))} "
                 f"workers, {fmt_int(compute.get('tasks'))} tasks")
    else:
        where = f"local processes ({fmt_int(compute.get('tasks'))} units of work)"
    return [("Compute", where)]


def _utility_rows(utility: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows = [(label, utility[key]) for key, label in (
        ("teacher", "Teacher (non-private reference)"),
        ("dp_teacher", "DP teacher (the student learned from it)"),
        ("ensemble", "Teacher ensemble (noisy votes)"),
        ("student", "Student (the model to release)"),
    ) if isinstance(utility.get(key), Mapping)]
    baselines = utility.get("baselines")
    if isinstance(baselines, Mapping):
        rows += [(f"Baseline: {name}" + (f" (mean of {fmt_int(stats['seeds'])} DP-SGD seeds)"
                                         if (number(stats.get("seeds")) or 0) > 1 else ""), stats)
                 for name, stats in baselines.items() if isinstance(stats, Mapping)]
    return rows


def _distillation_rows(utility: Mapping[str, Any],
                       student_run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The student against the direct DP-SGD baseline over seeds, as (label, text) rows;
    one row saying so when the plan bought no labels (the student is a direct one)."""
    gain = utility.get("distillation")
    if not isinstance(gain, Mapping) or number(gain.get("difference")) is None:
        if student_run.get("alpha") == 0:
            return [("Teacher labels in the student's training",
                     "none: the plan bought no labels (see the caveats), so the student is "
                     "itself a direct DP-SGD student")]
        return []
    seeds = fmt_int(gain.get("seeds"))

    def seeds_text(values: Any) -> str:
        return ", ".join(fmt_num(v) for v in values) if isinstance(values, list) else "–"

    se = number(gain.get("difference_se"))
    difference = f"{number(gain['difference']):+.4f}" + (f" ± {se:.4f}" if se is not None else "")
    return [
        (f"Student AUROC, mean of {seeds} DP-SGD seeds (the first is the released model; "
         "the others are audit-only retrainings)",
         f"{fmt_num(gain.get('student_mean'))} ({seeds_text(gain.get('student_auroc'))})"),
        (f"Direct DP-SGD AUROC (no teacher, noise set for the same ε, same architecture), "
         f"mean of {seeds} seeds",
         f"{fmt_num(gain.get('direct_mean'))} ({seeds_text(gain.get('direct_auroc'))})"),
        ("Difference (student − direct) ± standard error", difference),
        *_direct_preprocessing_rows(utility),
    ]


def _direct_preprocessing_rows(utility: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Whose preprocessing the direct baseline used, and that its ε is the run's total."""
    baselines = utility.get("baselines")
    direct = baselines.get("dp_sgd_direct") if isinstance(baselines, Mapping) else None
    own = direct.get("preprocessing") if isinstance(direct, Mapping) else None
    if not isinstance(own, Mapping) or own.get("source") != "own_ranges":
        return []
    columns = fmt_int(own.get("ranged_columns"))
    bought = (f"noisy ranges of {columns} numeric columns bought for ε "
              f"{fmt_num(own.get('ranges_epsilon'))} alone, the rest of ε to its DP-SGD"
              if number(own.get("ranged_columns")) else "the declared ranges, all of ε to its "
                                                       "DP-SGD")
    return [("Direct DP-SGD's preprocessing",
             f"its own, not the student's (fitted on the DP teacher's rows): {bought}; "
             f"ε {fmt_num(direct.get('epsilon'))} in all")]


def _ledger_rows(entries: Any) -> list[dict[str, Any]]:
    """Ledger entries for display; a non-private stage (stored ε null) costs ∞."""
    rows = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping):
            row = dict(entry)
            if row.get("epsilon_alone") is None and row.get("mechanism") == "non_private":
                row["epsilon_alone"] = math.inf
            rows.append(row)
    return rows


INTERNAL_NOTICE = (
    "INTERNAL AUDIT REPORT: keep it inside the hospital. Its figures come from sensitive test "
    "and holdout patients and are not covered by the privacy guarantee; release "
    "model_card.md with the model, never this report.")


def _context(report: Mapping[str, Any], *, plots: bool) -> dict[str, Any]:
    privacy, mia = _section(report, "privacy"), _section(report, "mia")
    mia_rows, mia_has_power = _mia_rows(mia)
    caveats = privacy.get("caveats")
    transfer = privacy.get("transfer_ledger")
    fairness_rows = _fairness_rows(_section(report, "fairness"))
    return {
        "r": report,
        "internal_notice": INTERNAL_NOTICE,
        "verdict": effective_verdict(report) or "unjudged",
        "verdict_line": verdict_line(report),
        "no_guarantee": no_guarantee_line(report),
        "privacy_bug": privacy_bug(report),
        "gates": _gates(report),
        "policy_name": get_path(report, "policy.name"),
        "privacy": privacy,
        "epsilon": report_value(report, LEDGER_EPSILON),
        "ledger": _ledger_rows(privacy.get("ledger")),
        "transfer": transfer if isinstance(transfer, Mapping) else None,
        "transfer_ledger": _ledger_rows(transfer.get("ledger")) if isinstance(transfer, Mapping) else [],
        "caveats": [str(c) for c in caveats] if isinstance(caveats, list) else [],
        "input_checks": [n for n in report.get("input_checks") or () if isinstance(n, Mapping)],
        "utility_rows": _utility_rows(_section(report, "utility")),
        "retention": _section(_section(report, "utility"), "retention"),
        "distillation_rows": _distillation_rows(_section(report, "utility"),
                                                _section(_section(report, "run"), "student")),
        "speed": _section(report, "speed"),
        "mia": mia,
        "mia_rows": mia_rows,
        "canary": _canary_row(_section(mia, "student")),
        "mia_has_power": mia_has_power,
        "no_power_auc": NO_POWER_AUC,
        "fairness_rows": fairness_rows,
        "who_pays": who_pays_line(_section(report, "fairness")),
        "fairness_worst": _section(_section(report, "fairness"), WORST_GROUP),
        "retention_plot": (retention_plot(fairness_rows, _retention_threshold(report))
                           if plots else None),
        "small_group": SMALL_GROUP,
        "run_facts": _run_facts(_section(report, "run")),
        "sensitive_note": SENSITIVE_NOTE,
        "roc_plot": roc_plot(mia) if plots else None,
        "utility_plot": utility_plot(_section(report, "utility")) if plots else None,
        "reliability_plot": reliability_plot(_section(report, "utility")) if plots else None,
    }


# --------------------------------------------------------------------------- rendering


def _markdown_escape(value: Any) -> Any:
    """Keep report values from breaking tables or injecting HTML into rendered Markdown."""
    if isinstance(value, jinja2.Undefined) or value is None:
        return ""
    if isinstance(value, markupsafe.Markup):  # already-escaped macro output
        return str(value)
    text = str(value).replace("\r", " ").replace("\n", " ")
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"),
                          ("`", "\\`"), ("[", "\\["), ("]", "\\]"), ("*", "\\*")):
        text = text.replace(char, escaped)
    return text


@cache
def _environment(kind: str) -> jinja2.Environment:
    options: dict[str, Any] = {
        "loader": jinja2.FileSystemLoader(str(TEMPLATES)),
        "undefined": jinja2.ChainableUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
    }
    if kind == "html":
        env = jinja2.Environment(autoescape=True, **options)
    else:
        env = jinja2.Environment(autoescape=False, finalize=_markdown_escape, **options)
    env.filters.update(FILTERS)
    return env


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG plots)."""
    return _environment("html").get_template("report.html.j2").render(_context(report, plots=True))


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (same content as the HTML page, without plots)."""
    return _environment("md").get_template("report.md.j2").render(_context(report, plots=False))


__all__ = [
    "INTERNAL_NOTICE",
    "effective_verdict",
    "headline",
    "no_guarantee_line",
    "render_html",
    "render_markdown",
    "verdict_line",
    "who_pays_line",
]
