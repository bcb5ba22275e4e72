"""``python -m benchmarks [part ...] [--quick] [--out DIR]``: medistill against what a
hospital would use instead, measured side by side (issue 9).

Parts (default: all, in this order: privacy_utility, speed, scale):

- ``speed``: latency/throughput of teacher, ensemble and student, 1 thread and all cores;
  the full mode runs the demo's own configuration (20,000 FHIR patients), whose wall time
  is the "whole demo pipeline" figure;
- ``privacy_utility``: AUROC and leakage (MIA) of the medistill student, the direct DP-SGD
  student, diffprivlib's DP logistic regression, PATE with hard GNMax labels, a non-private
  student and the teacher, at several ε and seeds, on five datasets; plot of AUROC vs ε;
- ``scale``: the whole pipeline on the simulated cohort at 10k, 100k and 1M patients, time
  and peak memory per stage;
- ``fairness`` (only when named): worst-group AUROC retention of the student and of the
  direct DP-SGD student against ε (benchmarks/fairness.py);
- ``cluster`` (only when named): membership-inference reference models 16 and 64 on the
  demo cohort, local threads against a 2-worker Dask LocalCluster (benchmarks/cluster.py).

Every part writes ``DIR/<part>.json`` (raw figures) and ``DIR/<part>.md`` (tables naming the
command and the package versions) as soon as it has them; ``DIR/results.md`` collects all.
``--quick`` uses tiny sizes and finishes in a few minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

# On shared cores, OpenMP's active spin-waiting (scikit-learn's all-cores speed pass) can
# stall a run for many minutes; passive waiting is set before numpy/scikit-learn load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks import common, datasets

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("privacy_utility", "speed", "scale")  # run in this order
EXTRA_PARTS = ("cluster", "fairness")  # only when named: reference models local vs Dask (issue 18); worst-group retention against ε (issue 20)

FULL = {
    "datasets": ["breast_cancer", "pima", "pbc", "flchain", "cohort"],
    # The full ε grid on one small table; fewer ε where runs are heavy, to fit the hour.
    "epsilons": {"breast_cancer": [0.5, 1, 2, 3, 8], "pima": [1, 3, 8], "pbc": [1, 3, 8],
                 "flchain": [1, 3], "cohort": [1, 3]},
    "seeds": [0, 1, 2], "cohort_patients": 5000,
    "scale_sizes": [10_000, 100_000, 1_000_000], "scale_timeout": 1200,
    "plot": ROOT / "docs" / "benchmark_privacy_utility.png",
}
QUICK = {
    "datasets": ["breast_cancer"],
    "epsilons": {name: [1, 3] for name in datasets.ALL},
    "seeds": [0, 1], "cohort_patients": 1000,
    "scale_sizes": [1000, 3000], "scale_timeout": 300,
    "plot": None,  # DIR/privacy_utility.png
}
# Every privacy–utility run: the teacher kind is fixed (no cross-validated selection) and
# one process does the work, so that ~150 runs fit in the hour on 2 shared cores.
RUN_OVERRIDES = {"teachers": {"reference": "hist_gradient_boosting", "n_jobs": 1},
                 "audit": {"n_jobs": 1}}


def speed_config(quick: bool) -> dict:
    import yaml

    if quick:
        return {"data": {"source": "builtin", "builtin": {"name": "cohort", "n_patients": 1000}},
                "privacy": {"target_epsilon": 3.0},
                "teachers": {"reference": "hist_gradient_boosting"},
                "audit": {**common.LIGHT_AUDIT, "speed_repeats": 50}}
    demo = ROOT / "medistill" / "demo_pipeline.yaml"
    return yaml.safe_load(demo.read_text())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=[],
                        help=f"parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few minutes")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default runs/bench or runs/bench-quick)")
    parser.add_argument("--datasets", nargs="+", choices=datasets.ALL, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--epsilons", nargs="+", type=float, default=None,
                        help="one ε grid for every dataset (default: per dataset)")
    parser.add_argument("--scale-sizes", nargs="+", type=int, default=None)
    parser.add_argument("--scale-timeout", type=float, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="privacy–utility PNG path")
    parser.add_argument("--no-diffprivlib", action="store_true",
                        help="do not create or use the diffprivlib environment")
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS + EXTRA_PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(PARTS + EXTRA_PARTS)}")
    args.parts = list(args.parts) or list(PARTS)
    return args


class Output:
    def __init__(self, folder: Path, command: str) -> None:
        self.folder = folder
        self.command = command
        self.versions = common.versions()
        self.versions_line = common.versions_line(self.versions)
        self.sections: dict[str, str] = {}
        folder.mkdir(parents=True, exist_ok=True)
        self.log_file = (folder / "log.txt").open("a", encoding="utf-8")

    def log(self, text: str) -> None:
        line = f"[{dt.datetime.now():%H:%M:%S}] {text}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self, part: str, raw: dict, md: str) -> None:
        (self.folder / f"{part}.json").write_text(json.dumps(raw, indent=1, default=str))
        (self.folder / f"{part}.md").write_text(md + "\n", encoding="utf-8")
        self.sections[part] = md
        m = common.machine()
        header = (f"# Benchmark results\n\nDate: {dt.date.today().isoformat()}. Machine: "
                  f"{m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}. Command: "
                  f"`{self.command}`. Versions: {self.versions_line}.\n")
        body = "\n\n".join(f"## {p}\n\n{text}" for p, text in self.sections.items())
        (self.folder / "results.md").write_text(header + "\n" + body + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    out_dir = args.out or ROOT / "runs" / ("bench-quick" if args.quick else "bench")
    out = Output(out_dir, common.command_line(argv))
    out.log(f"benchmarks {' '.join(args.parts)} ({'quick' if args.quick else 'full'}) → {out_dir}")
    started = time.perf_counter()

    if "privacy_utility" in args.parts:
        from benchmarks import privacy_utility as pu
        from benchmarks.plots import privacy_utility_plot

        t = time.perf_counter()
        names = args.datasets or preset["datasets"]
        eps_for = {n: (args.epsilons or preset["epsilons"][n]) for n in names}
        seeds = args.seeds or preset["seeds"]
        # A run over a subset of the datasets must not replace the docs' full-run plot.
        docs_plot = preset["plot"] if not args.datasets else None
        plot_path = args.plot or docs_plot or out_dir / "privacy_utility.png"
        results: dict = {}

        def save(partial: dict) -> None:
            nonlocal results
            results = partial
            md = pu.markdown(partial, out.command, out.versions_line)
            png = privacy_utility_plot(partial, plot_path)
            if png is not None:
                md += f"\n\nPlot: `{png}`."
            out.save("privacy_utility", partial, md)
            out.save("leakage", partial | {"note": "same runs as privacy_utility"},
                     pu.leakage_markdown(partial, out.command, out.versions_line))

        pu.run(names, eps_for, seeds, cohort_patients=preset["cohort_patients"],
               overrides_for={n: RUN_OVERRIDES for n in names}, log=out.log,
               use_diffprivlib=not args.no_diffprivlib, on_dataset=save)
        out.log(f"privacy_utility done in {time.perf_counter() - t:.0f} s")

    if "speed" in args.parts:
        from benchmarks import speed

        t = time.perf_counter()
        res = speed.run(speed_config(args.quick), log=out.log)
        out.save("speed", res, speed.markdown(res, out.command, out.versions_line))
        out.log(f"speed done in {time.perf_counter() - t:.0f} s")

    if "scale" in args.parts:
        from benchmarks import scale

        t = time.perf_counter()
        res = scale.run(args.scale_sizes or preset["scale_sizes"], quick=args.quick,
                        timeout=args.scale_timeout or preset["scale_timeout"], log=out.log)
        out.save("scale", res, scale.markdown(res, out.command, out.versions_line))
        out.log(f"scale done in {time.perf_counter() - t:.0f} s")

    if "fairness" in args.parts:
        import tempfile

        from benchmarks import fairness

        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="medistill-fairness-") as tmp:
            fairness.run(args.datasets or ["cohort", "flchain", "pbc"],
                         args.epsilons or [1.0, 3.0, 8.0], args.seeds or [0, 1],
                         folder=Path(tmp), cohort_patients=3000, log=out.log,
                         on_dataset=lambda res: out.save(
                             "fairness", res,
                             fairness.markdown(res, out.command, out.versions_line)))
        out.log(f"fairness done in {time.perf_counter() - t:.0f} s")

    if "cluster" in args.parts:
        from benchmarks import cluster

        t = time.perf_counter()
        res = (cluster.run(1000, [2, 4], 2, ["teacher"], log=out.log) if args.quick
               else cluster.run(20_000, [16, 64], 2, ["teacher"], log=out.log))
        out.save("cluster", res, cluster.markdown(res))
        out.log(f"cluster done in {time.perf_counter() - t:.0f} s")

    out.log(f"all done in {time.perf_counter() - started:.0f} s; tables in {out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
