"""The releasable model card: ``model_card.json`` and ``model_card.md`` in the run folder.

The internal audit report stays inside the hospital; the card travels with the model
(``package``, ``serve``). By default it holds only facts covered by the privacy guarantee or
public by declaration — the model itself, its declared inputs, the guarantee and its ledger,
how the audit measured, and the order of magnitude of the *noisy* (charged) count of
training patients — mapped to the TRIPOD+AI items they answer. The audit's figures (utility,
membership inference, the empirical ε bound, latency) are computed on sensitive patients and
are not covered: they are in the card only when the pipeline file opts in
(``audit.card_figures: true``), coarsened and under a heading saying they are not covered.
Never in the card: exact counts or prevalence, fairness slices, test-set cut points,
per-record scores, training-gradient checks (``clipping_check_rel_diff``), the pipeline file
or its hash (local paths, seed), or the verdict of the internal gates.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import jinja2

CARD_VERSION = "2"
JSON_NAME, MD_NAME = "model_card.json", "model_card.md"
TEMPLATES = Path(__file__).with_name("templates")
LEDGER_KEYS = ("stage", "mechanism", "noise_multiplier", "sample_rate", "count", "epsilon_alone")
RELEASABLE = ("This model card holds only facts covered by the privacy guarantee or public by "
              "declaration. It may travel with student.onnx; the internal audit report may not.")
RELEASABLE_WITH_FIGURES = (
    "This model card holds only facts covered by the privacy guarantee or public by "
    "declaration, except the audit figures under 'Audit figures (NOT covered by the privacy "
    "guarantee)', which the hospital chose to release (audit.card_figures: true). It may "
    "travel with student.onnx; the internal audit report may not.")
FIGURES_WHY = ("they are computed on sensitive patients — test and holdout patients, training "
               "patients and canaries as attack members, and a non-private teacher fitted on "
               "all training patients — so they are not covered by the privacy guarantee: "
               "even rounded, one patient can move them")
FIGURES_LEFT_OUT = ("The audit's figures (utility, retention against the non-private teacher, "
                    "membership-inference attacks, the empirical ε lower bound, latency timed "
                    "on test rows) are in the internal audit report, not in this card: "
                    f"{FIGURES_WHY}. A hospital that accepts releasing them outside the "
                    "guarantee sets audit.card_figures: true in the pipeline file.")
FIGURES_RELEASED = ("NOT COVERED BY THE PRIVACY GUARANTEE. Released by the hospital's choice "
                    f"(audit.card_figures: true) although {FIGURES_WHY}. Rounded to two "
                    "decimals (the ε bound to one).")
NOT_INCLUDED = ("the outcome's prevalence",
                "the exact number of patients (only the order of magnitude of the noisy count "
                "of training patients, a charged release; δ and the DP-SGD sample rates of the "
                "ledger are derived from that noisy count, or declared)",
                "fairness slices (groups can be small enough to identify patients)",
                "cut points and other statistics of the test set",
                "per-patient audit scores (never written anywhere)",
                "checks computed from training gradients",
                "the pipeline file and its hash (local paths and the seed)",
                "the internal gates' verdict")
NOT_INCLUDED_FIGURES = ("the audit's figures on sensitive patients (utility, attacks, the "
                        "empirical ε bound, latency): in the internal audit report")
_DEFAULT_KEY = {"builtin": "patient_id", "fhir": "patient_key"}
_FIGURES_IN_CARD = "evaluation.figures.values (NOT covered by the privacy guarantee)"
_FIGURES_IN_REPORT = "the internal audit report (not released; see evaluation.figures.note)"

# TRIPOD+AI (Collins et al., BMJ 2024) items this card answers, and where. Item 23a's
# answer depends on audit.card_figures (see _tripod_ai).
TRIPOD_AI = (
    ("3b", "Target population, care setting and intended users", "intended_use"),
    ("4", "Objectives (development of a prediction model)", "intended_use"),
    ("8a", "Outcome: what is predicted", "outcome"),
    ("9a", "Predictors: which inputs, of which kind", "inputs"),
    ("11", "Missing data: how it is handled", "inputs.missing_values"),
    ("12c", "Model type and how it was built", "development"),
    ("12e", "Performance measures used", "evaluation.method"),
    ("14", "Fairness: how it was assessed", "evaluation.fairness"),
    ("15", "Model output", "outcome.output"),
    ("16", "Differences between development and evaluation data", "evaluation.method"),
    ("18e", "Data sharing: the sensitive data stay inside; what protects them", "privacy"),
    ("22", "Model specification: the full model, to make predictions", "model"),
    ("23a", "Model performance", _FIGURES_IN_REPORT),
    ("26", "Limitations", "limitations"),
    ("27a", "Handling of poor-quality or unavailable input data", "inputs.missing_values"),
)


def _coarse(value: Any, digits: int = 2) -> float | None:
    """A figure rounded for release (None when missing or not finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _magnitude(n: Any) -> str | None:
    """An order-of-magnitude band instead of a patient count."""
    if isinstance(n, bool) or not isinstance(n, int | float) or n < 1:
        return None
    low = 10 ** int(math.floor(math.log10(n)))
    return f"{low:,}–{low * 10:,}"


def noisy_training_patients(run: dict) -> int | None:
    """The charged noisy count of training patients (ledger stage ``patient_counts``) as
    ``report.json`` records it in ``run.plan`` (None when the report has none)."""
    plan = run.get("plan") or {}
    total = plan.get("n_train_noisy")
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    counts = plan.get("noisy_class_counts")
    if isinstance(counts, list) and counts and all(
            isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return max(0, sum(counts))
    return None


def _onnx_metadata(model_path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _strongest(block: dict) -> dict:
    attacks = [a for a in block.get("attacks") or [] if isinstance(a.get("auc"), int | float)]
    return max(attacks, key=lambda a: a["auc"]) if attacks else {}


def _teaching(run: dict) -> dict:
    """How the student learned: from a DP teacher's labels (DP-teacher path) or from a PATE
    ensemble's noisy votes. Only released or declared facts (the chosen kind is the output
    of the charged selection; the row count is the pipeline file's)."""
    dp, ensemble = run.get("dp_teacher") or {}, run.get("ensemble") or {}
    if dp:
        tuned = bool((run.get("student") or {}).get("fine_tune"))
        return {"method": "knowledge distillation from a differentially private teacher into "
                          "a small MLP: the teacher labelled transfer rows as post-processing "
                          "of its ledger entry" + ("; the student was then fine-tuned by "
                                                   "DP-SGD (Opacus) on the training patients"
                                                   if tuned else "")
                          + "; every stage as in the privacy ledger",
                "teachers": dp.get("kind"), "teacher_labelled_rows": dp.get("n_labelled")}
    return {"method": "knowledge distillation into a small MLP trained with DP-SGD (Opacus); "
                      "teachers and transfer data as in the privacy ledger",
            "teachers": ensemble.get("kind"), "aggregator": ensemble.get("aggregator")}


def _figures(report: dict, released: bool) -> dict[str, Any]:
    """``evaluation.figures``: by default only where the audit's figures are and why they are
    not here; with ``audit.card_figures: true`` also their coarsened values."""
    if not released:
        return {"in_card": False, "covered_by_privacy_guarantee": False,
                "note": FIGURES_LEFT_OUT}
    utility, mia, speed = (report.get(k) or {} for k in ("utility", "mia", "speed"))
    student_mia = _strongest(mia.get("student") or {})
    return {"in_card": True, "covered_by_privacy_guarantee": False, "note": FIGURES_RELEASED,
            "values": {
                "student_auroc": _coarse((utility.get("student") or {}).get("auroc")),
                "student_brier": _coarse((utility.get("student") or {}).get("brier")),
                "auroc_retention_vs_nonprivate_teacher": _coarse(
                    (utility.get("retention") or {}).get("auroc")),
                "strongest_attack": student_mia.get("name"),
                "strongest_attack_auc": _coarse(student_mia.get("auc")),
                "empirical_epsilon_lower_bound": _coarse(
                    (mia.get("student") or {}).get("epsilon_lower_bound"), 1),
                "latency_ms_p50_one_row": _coarse(
                    (speed.get("student") or {}).get("latency_ms_p50"), 2)}}


def _tripod_ai(figures_in_card: bool) -> list[dict[str, str]]:
    """The TRIPOD+AI mapping; item 23a points at the figures where they are."""
    figures = _FIGURES_IN_CARD if figures_in_card else _FIGURES_IN_REPORT
    return [{"item": item, "topic": topic, "answered_by": figures if item == "23a" else where}
            for item, topic, where in TRIPOD_AI]


def build_model_card(report: dict, config: Any, model_path: Path) -> dict[str, Any]:
    """The card's content from ``report.json``, the resolved config and ``student.onnx``.

    ``config`` is the run's :class:`~medistill.config.PipelineConfig`; its
    ``audit.card_figures`` decides whether the audit's (not covered) figures are included.
    """
    meta = _onnx_metadata(model_path)
    schema = json.loads(meta.get("schema", "{}"))
    run, privacy = report.get("run") or {}, report.get("privacy") or {}
    student = (run.get("student") or {})
    label, classes = schema.get("label"), list(schema.get("classes") or [])
    data = config.data
    with_figures = bool(config.audit.card_figures)
    return {
        "card_version": CARD_VERSION,
        "releasable": RELEASABLE_WITH_FIGURES if with_figures else RELEASABLE,
        "model": {"file": model_path.name,
                  "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
                  "size_bytes": model_path.stat().st_size, "format": "ONNX",
                  "runtime": "onnxruntime (CPU); preprocessing is inside the graph",
                  "medistill_version": meta.get("medistill_version"),
                  "created_at": run.get("created_at")},
        "intended_use": {
            "task": f"Estimate, for one patient, the probability of each class of '{label}' "
                    f"({', '.join(map(str, classes))}) from the inputs listed below.",
            "users": "Clinical systems of the hospital that trained it (batch scoring or an "
                     "HTTP endpoint inside the hospital network), under clinical oversight.",
            "population": "Patients like those of the sensitive training records (same "
                          "hospital, same coding of the inputs).",
            "not_for": ["patients from other populations without local validation",
                        "decisions without clinical review"]},
        "outcome": {"label": label, "classes": classes,
                    "output": "one probability per class ('probabilities', sums to 1)" + (
                        f"; medistill predict writes the probability of {label} = "
                        f"{classes[-1]} (the positive class) as 'probability'"
                        if len(classes) == 2 else "")},
        "inputs": {"features": [{"name": f.get("name"), "kind": f.get("kind")}
                                for f in schema.get("features") or []],
                   "key_column": data.id_column or _DEFAULT_KEY.get(data.source),
                   "missing_values": "Allowed: imputed inside the model from differentially "
                                     "private or public statistics; unseen categories are "
                                     "scored as unknown."},
        "privacy": {"unit": privacy.get("unit", "patient"),
                    "neighbouring": "add or remove one patient (all of their rows)",
                    "formal_guarantee": privacy.get("formal_guarantee"),
                    "epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
                    "accountant": privacy.get("accountant"),
                    "covered": privacy.get("covered"),
                    "ledger": [{k: e.get(k) for k in LEDGER_KEYS}
                               for e in privacy.get("ledger") or []]},
        "development": {
            **_teaching(run),
            "transfer_source": ((run.get("transfer") or {}).get("resolved")
                                or (run.get("transfer") or {}).get("source")),
            "student_hidden_layers": student.get("hidden_layers"),
            "student_parameters": student.get("n_parameters")},
        "evaluation": {
            "method": "Patients were split by patient into train, test and holdout; "
                      "test patients were never trained or tuned on. Utility on test patients: "
                      "AUROC, Brier score. Membership inference (loss threshold, RMIA, LiRA) "
                      "with train patients as members and holdout patients as non-members, "
                      "and an empirical ε lower bound (Clopper–Pearson, one-run canary audit).",
            # from the charged noisy count (ledger stage patient_counts), never the exact one
            "training_patients_order_of_magnitude": _magnitude(noisy_training_patients(run)),
            "figures": _figures(report, with_figures),
            "fairness": "Utility and attack success were measured per declared sensitive "
                        "attribute in the internal report; the slices are not released."},
        "limitations": [
            "Audit figures are estimates on this hospital's test patients and are not covered "
            "by the privacy guarantee" + ("; those in this card were released outside it by "
                                          "the hospital's choice." if with_figures else
                                          "; they are not in this card."),
            "The guarantee bounds what the model reveals about any one training patient; it "
            "says nothing about accuracy for a given patient.",
            *([] if privacy.get("formal_guarantee") else
              ["NO FORMAL PRIVACY GUARANTEE: a stage ran without differential privacy."])],
        "not_included": list(NOT_INCLUDED) + ([] if with_figures else [NOT_INCLUDED_FIGURES]),
        "tripod_ai": _tripod_ai(with_figures),
    }


def _markdown_escape(value: Any) -> str:
    if value is None:
        return "—"
    text = str(value).replace("\r", " ").replace("\n", " ")
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"),
                          ("`", "\\`"), ("[", "\\["), ("]", "\\]"), ("*", "\\*"), ("_", "\\_")):
        text = text.replace(char, escaped)
    return text


def _sig(value: Any, digits: int = 4) -> str:
    """A float with ``digits`` significant digits (integers and text unchanged)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.{digits}g}"
    return "—" if value is None else str(value)


def _sig_up(value: Any, digits: int = 4) -> str:
    """A float rounded *up* to ``digits`` significant digits, so a printed ε or δ read back
    is never below the value (integers and text unchanged)."""
    if not (isinstance(value, float) and math.isfinite(value)) or value == 0:
        return _sig(value, digits)
    shortest = Decimal(repr(value))  # reads back as the same float
    step = Decimal(1).scaleb(shortest.adjusted() - digits + 1)
    return f"{float(shortest.quantize(step, rounding=ROUND_CEILING)):.{digits}g}"


def render_model_card(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False,
                             finalize=_markdown_escape, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["sig"] = _sig
    env.filters["sig_up"] = _sig_up
    return env.get_template("model_card.md.j2").render(c=card)


def write_model_card(folder: Path, report: dict, config: Any) -> dict[str, Any]:
    """Write ``model_card.json`` and ``model_card.md`` beside ``student.onnx`` in ``folder``."""
    card = build_model_card(report, config, Path(folder) / "student.onnx")
    (Path(folder) / JSON_NAME).write_text(json.dumps(card, indent=2, allow_nan=False))
    (Path(folder) / MD_NAME).write_text(render_model_card(card), encoding="utf-8")
    return card


__all__ = ["JSON_NAME", "MD_NAME", "NOT_INCLUDED", "TRIPOD_AI", "build_model_card",
           "noisy_training_patients", "render_model_card", "write_model_card"]
