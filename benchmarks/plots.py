"""The privacy–utility plot: AUROC against ε, one panel per dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def privacy_utility_plot(results: dict, path: Path, *, title_note: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from benchmarks.privacy_utility import summary

    names = [n for n, e in results["datasets"].items() if "skipped" not in e and e.get("seeds")]
    if not names:
        return None
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    series = (("student", "medistill student", "C0", "o"), ("direct", "direct DP-SGD", "C1", "s"),
              ("diffprivlib", "diffprivlib DP-LR", "C2", "^"),
              ("pate", "PATE GNMax (hard)", "C3", "v"))
    for ax, name in zip(axes.flat, names):
        s = summary(results["datasets"][name])
        eps = list(s["rows"])
        for key, label, color, marker in series:
            means, spreads, xs = [], [], []
            for e in eps:
                vals = [v for v in s["rows"][e][key] if v is not None]
                if vals:
                    xs.append(e)
                    means.append(np.mean(vals))
                    spreads.append((max(vals) - min(vals)) / 2)
            if xs:
                ax.errorbar(xs, means, yerr=spreads, label=label, color=color, marker=marker,
                            capsize=3, lw=1.4, ms=5)
        npv = s["nonprivate"]
        for key, label, style in (("teacher", "reference teacher", "k--"),
                                  ("student_np", "non-private student", "k:"),
                                  ("best", "best non-private", "0.6")):
            if npv[key][0] is not None:
                ax.axhline(npv[key][0], color=style if style[0] not in "k" else "k",
                           ls="--" if style == "k--" else (":" if style == "k:" else "-"),
                           lw=1, label=label)
        ax.set_xscale("log")
        ax.set_xticks(eps)
        ax.set_xticklabels([f"{e:g}" for e in eps])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("total ε (δ = 1/(10·n))")
        ax.set_ylabel("test AUROC")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    seen: dict = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    labels, handles = list(seen), list(seen.values())
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("AUROC against ε (mean ± half-range over seeds)" + title_note, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_results(path: Path) -> dict:
    """privacy_utility.json as written (keys turned to strings) back into the in-memory form."""
    import json

    raw = json.loads(Path(path).read_text())
    for entry in raw.get("datasets", {}).values():
        if "seeds" not in entry:
            continue
        by_text = {str(e): e for e in entry["epsilons"]}
        seeds = {}
        for seed, block in entry["seeds"].items():
            block["cells"] = {by_text[k]: v for k, v in block["cells"].items()}
            runs = block["outside"]["diffprivlib"].get("runs", {})
            block["outside"]["diffprivlib"]["runs"] = {
                (None if k == "null" else by_text.get(k, k)): v for k, v in runs.items()}
            seeds[int(seed)] = block
        entry["seeds"] = seeds
    return raw


if __name__ == "__main__":  # python -m benchmarks.plots RESULTS.json OUT.png
    import sys

    print(privacy_utility_plot(load_results(Path(sys.argv[1])), Path(sys.argv[2])))
