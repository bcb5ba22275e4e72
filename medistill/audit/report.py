"""Render ``report.json`` for a privacy officer, an ethics board and a clinical-safety reviewer.

The verdict comes first, in plain words; a run without a formal privacy guarantee says so
in the very first line. ``render_html`` gives one self-contained file (inline CSS, SVG plots
as data URIs, nothing fetched); ``render_markdown`` gives the same content without plots;
``headline`` gives three lines for the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from medistill.audit.gates import get_path, no_guarantee_reason, privacy_bug, verdict_of
from medistill.audit.report_plots import roc_plot, utility_plot

TEMPLATES = Path(__file__).with_name("templates")
MISSING = "—"
NO_POWER_AUC = 0.55  # an attack below this AUC on the non-private teacher has no power
SMALL_GROUP = 100  # fairness groups with fewer patients are flagged
OP_SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "="}
SENSITIVE_NOTE = (
    "All metrics in this report are computed on the hospital's sensitive test and holdout "
    "patients. They are for internal review only: the report itself is not covered by the "
    "privacy guarantee and must not be shared outside the review."
)
_RANK = {"release": 0, "review": 1, "reject": 2}


# --------------------------------------------------------------------------- formatting


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None or isinstance(x, jinja2.Undefined):
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def _fallback(x: Any) -> str:
    """How a value that is not a number is shown."""
    if x is None or isinstance(x, jinja2.Undefined) or x == "":
        return MISSING
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def _special(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return None


def fmt_sig(x: Any, digits: int = 3) -> str:
    """``digits`` significant figures without exponent notation for everyday magnitudes."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    if (s := _special(v)) is not None:
        return s
    if v == 0:
        return "0"
    if abs(v) < 1e-4:
        return fmt_sci(v)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_num(x: Any, decimals: int = 3) -> str:
    """A metric with fixed decimals (AUROC 0.853); integers with thousands separators."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    if (s := _special(v)) is not None:
        return s
    if isinstance(x, int) or (v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    if v != 0 and abs(v) < 10 ** -decimals:
        return fmt_sci(v)
    return f"{v:,.{decimals}f}"


def fmt_eps(x: Any) -> str:
    """ε to 3 decimals, ∞ for no guarantee."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    return _special(v) or f"{v:.3f}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_sci(x: Any) -> str:
    """Scientific notation for small probabilities: 5×10⁻⁶."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    if (s := _special(v)) is not None:
        return s
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def fmt_pct(x: Any) -> str:
    """A ratio as a percentage: 0.96 → 96.0 %."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    return _special(v) or f"{100 * v:.1f} %"


def fmt_times(x: Any) -> str:
    """A speed-up factor: 40.0×."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    return _special(v) or (f"{v:,.0f}×" if abs(v) >= 100 else f"{v:.1f}×")


def fmt_bytes(x: Any) -> str:
    """A size in bytes, decimal units: 19.5 kB."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    if (s := _special(v)) is not None:
        return s
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_int(x: Any) -> str:
    """A count with thousands separators."""
    v = _number(x)
    if v is None:
        return _fallback(x)
    return _special(v) or (f"{int(v):,}" if v.is_integer() else fmt_sig(v))


def fmt_ci(x: Any, decimals: int = 3) -> str:
    """A confidence interval ``(lo–hi)``; empty if absent."""
    if isinstance(x, Sequence) and not isinstance(x, str) and len(x) == 2:
        return f"({fmt_num(x[0], decimals)}–{fmt_num(x[1], decimals)})"
    return ""


def fmt_value(x: Any) -> str:
    """A gate value or threshold: yes/no, 3 decimals below 10 (AUROC, ε), 40.0 above."""
    v = _number(x) if isinstance(x, int | float) else None
    if v is None:
        return _fallback(x)
    if (s := _special(v)) is not None:
        return s
    return f"{v:,.1f}" if abs(v) >= 10 else fmt_num(v)


def _at_rate(table: Any, rate: str) -> Any:
    """``table["0.01"]`` tolerant of float keys and spellings like '0.010'."""
    if not isinstance(table, Mapping):
        return None
    if rate in table:
        return table[rate]
    for key, value in table.items():
        try:
            if math.isclose(float(key), float(rate)):
                return value
        except (TypeError, ValueError):
            continue
    return None


FILTERS: dict[str, Callable[..., str]] = {
    "num": fmt_num, "sig": fmt_sig, "eps": fmt_eps, "sci": fmt_sci, "pct": fmt_pct,
    "times": fmt_times, "bytes": fmt_bytes, "int": fmt_int, "ci": fmt_ci, "value": fmt_value,
    "opsym": lambda op: OP_SYMBOL.get(str(op), _fallback(op)),
}


# --------------------------------------------------------------------------- the verdict


def _gate_failure(row: Mapping[str, Any]) -> str:
    name = row.get("name", "gate")
    if row.get("value") is None and "not measured" in str(row.get("note") or ""):
        return f"{name} (not measured)"
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
        f"Privacy per {_fallback(get_path(report, 'privacy.unit', 'patient'))}: "
        f"ε = {fmt_eps(get_path(report, 'privacy.epsilon'))}, "
        f"δ = {fmt_sci(get_path(report, 'privacy.delta'))} "
        f"({_fallback(get_path(report, 'privacy.accountant'))} accountant) — "
        + ("formal guarantee" if formal else "NO formal guarantee")
    )
    return [verdict_line(report), utility, privacy]


# --------------------------------------------------------------------------- the content


def _section(report: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = report.get(key)
    return value if isinstance(value, Mapping) else {}


def _mia_rows(mia: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool | None]:
    """Table rows (attack × model) and whether at least one attack has power on the teacher."""

    def row(attack: str, who: str, stats: Any, teacher_auc: Any = None) -> dict[str, Any]:
        stats = stats if isinstance(stats, Mapping) else {}
        cis = stats.get("tpr_at_fpr_ci")
        rates = stats.get("tpr_at_fpr")
        powerless = None
        if who == "student":
            t = _number(teacher_auc)
            powerless = None if t is None else t < NO_POWER_AUC
        return {
            "attack": attack, "who": who, "auc": stats.get("auc"), "auc_ci": stats.get("auc_ci"),
            "tpr1": _at_rate(rates, "0.01"), "tpr1_ci": _at_rate(cis, "0.01"),
            "tpr01": _at_rate(rates, "0.001"), "tpr01_ci": _at_rate(cis, "0.001"),
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


def _fairness_rows(fairness: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for attribute, groups in fairness.items():
        for group, stats in (groups.items() if isinstance(groups, Mapping) else []):
            stats = stats if isinstance(stats, Mapping) else {}
            n = _number(stats.get("n"))
            rows.append({"attribute": attribute, "group": group, "n": stats.get("n"),
                         "auroc": stats.get("auroc"), "mia_auc": stats.get("mia_auc"),
                         "small": n is not None and n < SMALL_GROUP})
    return rows


def _join(*parts: str | None, sep: str = ", ") -> str:
    kept = [p for p in parts if p and MISSING not in p]
    return sep.join(kept) if kept else MISSING


def _run_facts(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Dataset and run facts as (label, text) pairs; hashes and counts, never rows."""
    data = _section(run, "dataset")
    ens, student, transfer = _section(run, "ensemble"), _section(run, "student"), _section(run, "transfer")
    layers = student.get("hidden_layers")
    layers_text = "–".join(str(x) for x in layers) if isinstance(layers, list) and layers else None
    facts = [
        ("Dataset", _join(_fallback(data.get("name")), f"source: {_fallback(data.get('source'))}")),
        ("Patients", fmt_int(data.get("n_patients"))),
        ("Train / test / holdout patients",
         " / ".join(fmt_int(data.get(k)) for k in ("n_train", "n_test", "n_holdout"))),
        ("Features", fmt_int(data.get("n_features"))),
        ("Outcome", _join(_fallback(data.get("label")), f"prevalence {fmt_pct(data.get('prevalence'))}")),
        ("Teacher", _fallback(_section(run, "teacher").get("kind"))),
        ("Teacher ensemble", _join(
            f"{fmt_int(ens.get('n_teachers'))} teachers" if ens.get("n_teachers") is not None else None,
            f"aggregator {_fallback(ens.get('aggregator'))}" if ens.get("aggregator") else None,
            f"σ = {fmt_sig(ens.get('sigma'))}" if ens.get("sigma") is not None else None,
            f"{fmt_int(ens.get('n_queries'))} queries" if ens.get("n_queries") is not None else None)),
        ("Student", _join(
            f"MLP {layers_text}" if layers_text else None,
            f"{fmt_int(student.get('n_parameters'))} parameters" if student.get("n_parameters") is not None else None,
            f"α = {fmt_sig(student.get('alpha'))}" if student.get("alpha") is not None else None,
            f"{fmt_int(student.get('epochs'))} epochs" if student.get("epochs") is not None else None)),
        ("Transfer data", _join(
            _fallback(transfer.get("source")) if transfer.get("source") else None,
            f"{fmt_int(transfer.get('n_rows'))} rows" if transfer.get("n_rows") is not None else None,
            f"ε cost {fmt_eps(transfer.get('epsilon_cost'))}" if transfer.get("epsilon_cost") is not None else None)),
        ("medistill version", _fallback(run.get("medistill_version"))),
        ("Report created", _fallback(run.get("created_at"))),
        ("Pipeline file SHA-256", _fallback(run.get("pipeline_sha256"))),
        ("Seed", _fallback(run.get("seed"))),
    ]
    known = {"dataset", "teacher", "ensemble", "student", "transfer", "medistill_version",
             "created_at", "pipeline_sha256", "seed"}
    facts += [(str(k), _fallback(v)) for k, v in run.items()
              if k not in known and (v is None or isinstance(v, str | int | float | bool))]
    return facts


def _utility_rows(utility: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows = [(label, utility[key]) for key, label in (
        ("teacher", "Teacher (non-private reference)"),
        ("ensemble", "Teacher ensemble (noisy votes)"),
        ("student", "Student (the model to release)"),
    ) if isinstance(utility.get(key), Mapping)]
    baselines = utility.get("baselines")
    if isinstance(baselines, Mapping):
        rows += [(f"Baseline: {name}", stats) for name, stats in baselines.items() if isinstance(stats, Mapping)]
    return rows


def _context(report: Mapping[str, Any], *, plots: bool) -> dict[str, Any]:
    privacy, mia = _section(report, "privacy"), _section(report, "mia")
    mia_rows, mia_has_power = _mia_rows(mia)
    caveats = privacy.get("caveats")
    transfer = privacy.get("transfer_ledger")
    return {
        "r": report,
        "verdict": effective_verdict(report) or "unjudged",
        "verdict_line": verdict_line(report),
        "no_guarantee": no_guarantee_line(report),
        "privacy_bug": privacy_bug(report),
        "gates": _gates(report),
        "policy_name": get_path(report, "policy.name"),
        "privacy": privacy,
        "ledger": [e for e in privacy.get("ledger") or [] if isinstance(e, Mapping)],
        "transfer": transfer if isinstance(transfer, Mapping) else None,
        "caveats": [str(c) for c in caveats] if isinstance(caveats, list) else [],
        "utility_rows": _utility_rows(_section(report, "utility")),
        "retention": _section(_section(report, "utility"), "retention"),
        "speed": _section(report, "speed"),
        "mia": mia,
        "mia_rows": mia_rows,
        "mia_has_power": mia_has_power,
        "no_power_auc": NO_POWER_AUC,
        "fairness_rows": _fairness_rows(_section(report, "fairness")),
        "small_group": SMALL_GROUP,
        "run_facts": _run_facts(_section(report, "run")),
        "sensitive_note": SENSITIVE_NOTE,
        "roc_plot": roc_plot(mia) if plots else None,
        "utility_plot": utility_plot(_section(report, "utility")) if plots else None,
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
    "effective_verdict",
    "headline",
    "no_guarantee_line",
    "render_html",
    "render_markdown",
    "verdict_line",
]
