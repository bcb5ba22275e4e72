"""Plots for the audit report, as self-contained SVG data URIs (no files, no pyplot state)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_FLOOR = 1e-5  # smallest rate drawn on the log axes
_MAX_POINTS = 1500  # per ROC curve, enough for a smooth log-log line
_WHO_STYLE = {"student": "-", "teacher": "--"}


def _svg_data_uri(fig: Any) -> str:
    """Render ``fig`` as a base64 SVG data URI, deterministically (fixed ids, no date)."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "medistill", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _new_figure(width: float, height: float) -> Any:
    """A figure on the Agg canvas, independent of any interactive backend or pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _curve(roc: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Sorted, positive, thinned (fpr, tpr) points of one ROC curve, or ``None`` if unusable."""
    if not isinstance(roc, Mapping):
        return None
    try:
        fpr = np.asarray(roc.get("fpr"), dtype=float).ravel()
        tpr = np.asarray(roc.get("tpr"), dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if fpr.size < 2 or fpr.shape != tpr.shape:
        return None
    keep = np.isfinite(fpr) & np.isfinite(tpr) & (fpr > 0)
    fpr, tpr = fpr[keep], np.clip(tpr[keep], _FLOOR, 1.0)
    if fpr.size < 2:
        return None
    order = np.argsort(fpr, kind="stable")
    fpr, tpr = fpr[order], tpr[order]
    if fpr.size > _MAX_POINTS:
        targets = np.geomspace(max(fpr[0], _FLOOR), fpr[-1], _MAX_POINTS)
        idx = np.unique(np.clip(np.searchsorted(fpr, targets), 0, fpr.size - 1))
        fpr, tpr = fpr[idx], tpr[idx]
    return np.maximum(fpr, _FLOOR), tpr


def roc_plot(mia: Any) -> str | None:
    """Log-log ROC of every membership-inference attack, student (solid) vs teacher (dashed)."""
    if not isinstance(mia, Mapping):
        return None
    curves: list[tuple[str, str, float | None, np.ndarray, np.ndarray]] = []
    for who in ("student", "teacher"):
        attacks = (mia.get(who) or {}).get("attacks") if isinstance(mia.get(who), Mapping) else None
        for attack in attacks if isinstance(attacks, Sequence) else []:
            if not isinstance(attack, Mapping):
                continue
            curve = _curve(attack.get("roc"))
            if curve is not None:
                auc = attack.get("auc")
                auc = float(auc) if isinstance(auc, int | float) and not isinstance(auc, bool) else None
                curves.append((who, str(attack.get("name", "attack")), auc, *curve))
    if not curves:
        return None
    names = list(dict.fromkeys(c[1] for c in curves))
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    low = max(_FLOOR, min(float(c[3][0]) for c in curves))
    low = 10 ** math.floor(math.log10(low))
    fig = _new_figure(6.4, 5.0)
    ax = fig.add_subplot()
    ax.plot([low, 1], [low, 1], color="0.6", linewidth=1, linestyle=":", label="chance (no leakage)")
    for rate in (0.01, 0.001):
        if rate > low:
            ax.axvline(rate, color="0.85", linewidth=0.8, zorder=0)
    for who, name, auc, fpr, tpr in curves:
        label = f"{name} on {who}" + (f" (AUC {auc:.3f})" if auc is not None else "")
        ax.plot(fpr, tpr, _WHO_STYLE[who], color=colours[name], linewidth=1.6, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1)
    ax.set_xlabel("False positive rate (non-members flagged as members)")
    ax.set_ylabel("True positive rate (members found)")
    ax.set_title("Membership inference: solid = student, dashed = teacher")
    ax.grid(True, which="major", color="0.92")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg_data_uri(fig)


def utility_plot(utility: Any) -> str | None:
    """Grouped bars of AUROC and accuracy for the teacher, the ensemble, the student and baselines."""
    if not isinstance(utility, Mapping):
        return None
    models: list[tuple[str, Mapping[str, Any]]] = [
        (label, utility[key])
        for key, label in (("teacher", "teacher"), ("dp_teacher", "DP teacher"),
                           ("ensemble", "ensemble"), ("student", "student"))
        if isinstance(utility.get(key), Mapping)
    ]
    baselines = utility.get("baselines")
    if isinstance(baselines, Mapping):
        models += [(f"baseline: {k}", v) for k, v in baselines.items() if isinstance(v, Mapping)]
    metrics = (("auroc", "AUROC"), ("accuracy", "Accuracy"))

    def value(stats: Mapping[str, Any], key: str) -> float:
        v = stats.get(key)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        return float(v) if ok else math.nan

    models = [(label, s) for label, s in models if any(not math.isnan(value(s, k)) for k, _ in metrics)]
    if not models:
        return None
    fig = _new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for i, (label, stats) in enumerate(models):
        xs = np.arange(len(metrics)) + (i - (len(models) - 1) / 2) * width
        heights = [value(stats, key) for key, _ in metrics]
        bars = ax.bar(xs, np.nan_to_num(heights), width * 0.95, label=label, color=f"C{i % 10}")
        for bar, h in zip(bars, heights, strict=True):
            text = "not measured" if math.isnan(h) else f"{h:.3f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, 0 if math.isnan(h) else h),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(np.arange(len(metrics)), [name for _, name in metrics])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("on the sensitive test patients")
    ax.set_title("Teacher vs student (higher is better)")
    ax.legend(fontsize=8, frameon=False, loc="upper center", ncols=min(len(models), 4),
              bbox_to_anchor=(0.5, -0.12))
    return _svg_data_uri(fig)


def reliability_plot(utility: Any) -> str | None:
    """Observed event rate against mean predicted risk per risk bin (test patients), one line
    per model, with the diagonal of perfect calibration."""
    bins = utility.get("reliability") if isinstance(utility, Mapping) else None
    if not isinstance(bins, Mapping) or not any(bins.values()):
        return None
    fig = _new_figure(4.6, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    labels = {"teacher": "teacher", "dp_teacher": "DP teacher", "ensemble": "ensemble",
              "student": "student"}
    for i, (who, rows) in enumerate(bins.items()):
        if not rows:
            continue
        xs = [r["predicted"] for r in rows]
        ys = [r["observed"] for r in rows]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=f"C{i % 10}",
                label=labels.get(who, who))
    top = max(max(r["predicted"], r["observed"]) for rows in bins.values() for r in rows)
    limit = min(1.0, max(0.1, top * 1.1))
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.set_xlabel("mean predicted risk (bin)")
    ax.set_ylabel("observed event rate")
    ax.set_title("Reliability on the test patients")
    ax.legend(fontsize=8, frameon=False)
    return _svg_data_uri(fig)


def _finite_number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def retention_plot(rows: Sequence[Mapping[str, Any]], threshold: float | None = None) -> str | None:
    """AUROC retention (student ÷ teacher) per group with its interval: judged groups filled,
    groups too small to judge hollow and grey; the gate's threshold and 1.0 (no cost) marked.

    ``rows`` are the report's fairness rows (``attribute``, ``group``, ``retention``,
    ``retention_ci``, ``judged``)."""
    points = [(r, _finite_number(r.get("retention"))) for r in rows]
    points = [(r, v) for r, v in points if v is not None]
    if not points:
        return None
    fig = _new_figure(6.4, 1.6 + 0.32 * len(points))
    ax = fig.add_subplot()
    ys = np.arange(len(points))[::-1]
    for y, (row, value) in zip(ys, points, strict=True):
        judged = row.get("judged") is not False
        colour = "C0" if judged else "0.6"
        ci = row.get("retention_ci")
        lo = _finite_number(ci[0]) if isinstance(ci, Sequence) and len(ci) == 2 else None
        hi = _finite_number(ci[1]) if isinstance(ci, Sequence) and len(ci) == 2 else None
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2, solid_capstyle="butt")
        ax.plot([value], [y], "o", color=colour, markersize=6,
                markerfacecolor=colour if judged else "white")
    labels = [f"{r.get('attribute')}: {r.get('group')}" + ("" if r.get("judged") is not False
                                                           else " (too small to judge)")
              for r, _ in points]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.axvline(1.0, color="0.5", linestyle=":", linewidth=1, label="1.0: no loss against the teacher")
    if threshold is not None:
        ax.axvline(threshold, color="C3", linestyle="--", linewidth=1,
                   label=f"gate: worst judged group ≥ {threshold:g}")
    ax.set_xlabel("AUROC retention, student ÷ non-private teacher (95 % interval)")
    ax.set_title("Who pays for privacy? Retention per group")
    ax.grid(True, axis="x", color="0.92")
    ax.set_ylim(-0.6, len(points) - 0.4)
    ax.legend(fontsize=7, frameon=False, loc="upper center", ncols=2, bbox_to_anchor=(0.5, -0.22))
    return _svg_data_uri(fig)
