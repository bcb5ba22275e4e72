"""The whole pipeline: data → teachers → transfer → noisy labels → DP student → ONNX → audit.

Each stage is a module of its own; this file only wires them together, plans the privacy
budget before any training, and writes the run folder atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dp_accounting as dpa
import numpy as np
import pandas as pd
from rich.console import Console

from medistill import __version__
from medistill.audit.assemble import TRANSFER_STAGES, build_report, write_run_files
from medistill.audit.fairness import sensitive_columns
from medistill.config import PipelineConfig
from medistill.data.table import SensitiveData, load_sensitive
from medistill.data.splits import split_patients
from medistill.errors import ConfigError, PrivacyBudgetError
from medistill.audit.utility import utility_metrics
from medistill.privacy.ledger import PrivacyLedger, epsilon_of, event_from_entry
from medistill.privacy.planner import StagePlan, plan_budget
from medistill.runfolder import AtomicRunFolder
from medistill.student.export import export_student
from medistill.student.preprocess import as_model_input, make_preprocessor
from medistill.student.train import DpSgdSchedule, train_student
from medistill.teachers.aggregators import make_aggregator
from medistill.teachers.ensemble import PartitionedEnsemble, auto_n_teachers
from medistill.teachers.models import make_teacher
from medistill.teachers.selection import select_reference_teacher
from medistill.transfer.dp_marginals import marginals_event
from medistill.transfer.fidelity import fidelity_summary
from medistill.transfer.schema_prior import columns_needing_marginals
from medistill.transfer.sources import (
    LEDGER_STAGE, TransferSet, budget_is_tiny, build_transfer, load_public_table, public_ledger,
    synthesizer_for, synthesizer_snr)


MIN_PREPROCESSING_ROWS = 200


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _head_or_none(frame: pd.DataFrame, n: int) -> pd.DataFrame | None:
    return frame.head(n).reset_index(drop=True) if len(frame) else None


@dataclass(frozen=True)
class RunOutcome:
    """Where the run folder is and what its report says."""

    run_dir: Path
    report: dict


def one_row_per_patient(patient_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index of one random row per patient: DP stages see each patient at most once."""
    order = rng.permutation(len(patient_ids))
    _, first = np.unique(patient_ids[order], return_index=True)
    return np.sort(order[first])


def auto_queries(event_for: Callable[[int], dpa.DpEvent], epsilon: float, delta: float,
                 accountant: str, cap: int) -> int:
    """The most queries whose event ``event_for(q)`` fits in ``epsilon`` (at most ``cap``)."""

    def fits(q: int) -> bool:
        return epsilon_of([event_for(q)], delta, accountant) <= epsilon

    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= cap and fits(high):
        low, high = high, high * 2
    high = min(high, cap + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


class Pipeline:
    """One run of the pipeline for a resolved configuration."""

    def __init__(self, config: PipelineConfig, *, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        seeds = np.random.SeedSequence(config.seed).spawn(8)
        self.rngs = {name: np.random.default_rng(s) for name, s in zip(
            ("split", "dp_rows", "marginals", "transfer", "labels", "audit", "mix", "spare"),
            seeds, strict=True)}

    def _say(self, text: str) -> None:
        self.console.print(f"[bold cyan]•[/] {text}")

    def run(self, out_dir: Path) -> RunOutcome:
        cfg = self.config
        if cfg.labels.aggregator == "plurality" and not cfg.privacy.allow_nonprivate:
            raise ConfigError("labels.aggregator 'plurality' has no formal privacy guarantee "
                              "(ε = ∞); it is allowed only with privacy.allow_nonprivate: true.")
        if "munge" in cfg.transfer.kinds() and not cfg.privacy.allow_nonprivate:
            raise ConfigError(
                "transfer: MUNGE rows are perturbed copies of sensitive patients and have no "
                "formal privacy guarantee (ε = ∞); they are refused by default.",
                hint="Set privacy.allow_nonprivate: true to use them anyway; the report then "
                     "says first that the student has no privacy guarantee.")
        if not cfg.student.secure_mode:
            self.console.print("[yellow]![/] student.secure_mode is off: DP-SGD noise comes "
                               "from a seeded pseudo-random generator (fine for trials; set "
                               "it on for production releases, needs torchcsprng).")
        with AtomicRunFolder(out_dir) as tmp, warnings.catch_warnings():
            # Said once above and in the report, not once per training run.
            warnings.filterwarnings("ignore", message="student.secure_mode is off")
            report = self._run_into(tmp)
        return RunOutcome(run_dir=Path(out_dir), report=report)

    def _run_into(self, folder: Path) -> dict:
        cfg, rngs = self.config, self.rngs
        with self.console.status("Reading the sensitive records…"):
            data = load_sensitive(cfg.data, seed=cfg.seed)
        sensitive_columns([f.name for f in data.schema.features],  # fail before any training
                          declared=cfg.data.sensitive_attributes, extra=cfg.audit.groups)
        n_patients = data.n_patients
        delta = cfg.privacy.delta or 1.0 / (10 * n_patients)
        ledger = PrivacyLedger(delta=delta, accountant=cfg.privacy.accountant)
        split = split_patients(data.patient_ids, data.labels, test=cfg.split.test,
                               holdout=cfg.split.holdout, seed=cfg.seed)
        train_X, train_y, train_ids = data.rows(split.train)
        self._say(f"{data.name}: {n_patients} patients, {len(data.schema.features)} features; "
                  f"train {len(np.unique(train_ids))} / test / holdout patients split by patient")

        with self.console.status("Training the reference teacher and the partitioned ensemble…"):
            if cfg.teachers.reference == "auto":
                reference, self.selection = select_reference_teacher(
                    train_X, train_y, data.schema, groups=train_ids, random_state=cfg.seed,
                    n_jobs=1)
            else:
                reference = make_teacher(cfg.teachers.reference, data.schema,
                                         random_state=cfg.seed).fit(train_X, train_y)
                self.selection = {"chosen": cfg.teachers.reference}
            n_train_patients = len(np.unique(train_ids))
            k = (auto_n_teachers(n_train_patients, int(np.bincount(train_y).min())) if cfg.teachers.n_teachers == "auto"
                 else cfg.teachers.n_teachers)
            ensemble = PartitionedEnsemble(n_teachers=k, kind=cfg.teachers.kind,
                                           schema=data.schema, random_state=cfg.seed,
                                           n_jobs=cfg.teachers.n_jobs).fit(train_X, train_y, train_ids)
        self._say(f"teachers: reference {self.selection['chosen']}; {k} {cfg.teachers.kind} "
                  "teachers on disjoint patient partitions")

        self.public = None
        if "public_table" in cfg.transfer.kinds():
            self.public, public_notes = load_public_table(cfg.transfer.public, data.schema,
                                                          seed=cfg.seed)
        plan = self._plan(data, train_X, train_y, train_ids, k, delta)
        if self.public is not None:
            plan["notes"].extend(public_notes)
        self.plan_notes = plan["notes"]
        if not cfg.student.secure_mode:
            plan["notes"].append(
                "student.secure_mode was off: DP-SGD's noise and sampling came from a seeded "
                "pseudo-random generator, which is reproducible but predictable. Production "
                "releases should run with student.secure_mode: true (needs torchcsprng).")
        noises = plan["noises"]

        with self.console.status("Making transfer data…"):
            transfer_set = build_transfer(
                plan["transfer_sizes"], config=cfg, schema=data.schema,
                sensitive_rows=train_X.iloc[plan["dp_rows"]].reset_index(drop=True),
                noises=noises, ledger=ledger, rngs=rngs, public=self.public)
            transfer = transfer_set.rows
        self._say("transfer data: " + ", ".join(
            f"{n} {kind.replace('_', ' ')} rows" for kind, n in transfer_set.sizes.items()))

        n_queries = plan["n_queries"]
        query_rows = transfer.iloc[:n_queries].reset_index(drop=True)
        transfer_labels = np.empty(0, dtype=np.int64)
        if n_queries:
            with self.console.status(f"Labelling {n_queries} transfer rows by noisy vote…"):
                aggregator = self._aggregator(noises.get("labels"), k)
                votes = (ensemble.teacher_probabilities(query_rows)
                         if aggregator.input == "probabilities"
                         else ensemble.vote_histogram(query_rows))
                transfer_labels = aggregator.aggregate(votes)
                answered = np.asarray(getattr(aggregator, "answered_",
                                              np.ones(len(query_rows), dtype=bool)))
                if len(transfer_labels) == len(query_rows):  # "abstain" keeps every row
                    transfer_labels = transfer_labels[answered]
                query_rows = query_rows[answered].reset_index(drop=True)
                ledger.record("labels", aggregator.privacy_events(),
                              f"{aggregator.name} on {n_queries} transfer rows "
                              f"({int(answered.sum())} answered), {k} teachers")
        self.n_answered = len(query_rows) if n_queries else 0
        query_sources = transfer_set.source[:n_queries][answered] if n_queries else \
            np.empty(0, dtype=object)

        preprocessor = make_preprocessor(data.schema).fit(
            as_model_input(self._preprocessing_rows(transfer_set), data.schema))
        inputs, targets, is_transfer = self._student_data(
            preprocessor, data, query_rows, transfer_labels, train_X, train_y, plan)
        progress_text = "Training the student with DP-SGD (epoch {}/{}, loss {:.3f})…"
        with self.console.status("Training the student with DP-SGD…") as status:
            network, record = train_student(
                inputs, targets, n_classes=data.schema.n_classes, config=cfg.student,
                is_transfer=is_transfer,
                noise_multiplier=noises.get("student", plan["student_noise_free"]),
                seed=cfg.seed, batch_size=plan["schedule"].batch_size,
                on_epoch=lambda e, loss: status.update(progress_text.format(
                    e + 1, cfg.student.epochs, loss)))
        if plan["student_touches_sensitive"]:
            schedule = DpSgdSchedule(len(inputs), plan["schedule"].batch_size, record.sample_rate,
                                     record.steps)
            ledger.record("student_dp_sgd", schedule.event(record.noise_multiplier),
                          f"DP-SGD on one row of each of {plan['n_sensitive_dp_rows']} sensitive "
                          "patients" + (f", mixed with {n_queries} labelled transfer rows"
                                        if n_queries else ""))
        public_ledger_ = self._public_ledger(query_sources, record, plan)
        epsilon = ledger.epsilon()
        if ledger.formal_guarantee and epsilon > cfg.privacy.target_epsilon * 1.0001:
            raise PrivacyBudgetError(
                f"Internal check failed: the ledger's ε = {epsilon:.4f} exceeds the target "
                f"{cfg.privacy.target_epsilon}. This is a bug; nothing was written.")
        self._say(f"student trained: {record.steps} DP-SGD steps, noise multiplier "
                  f"{record.noise_multiplier:.3f}; ledger ε = {epsilon:.3f} at δ = {delta:.2g}")

        metadata = {"medistill_version": __version__, "epsilon": f"{epsilon:.6g}",
                    "delta": f"{delta:.6g}", "accountant": ledger.accountant,
                    "formal_guarantee": str(ledger.formal_guarantee).lower(),
                    "pipeline_sha256": cfg.sha256()}
        export_student(folder / "student.onnx", preprocessor, network, data.schema, metadata)

        baselines, distillation = {}, None
        if cfg.audit.baselines and plan["student_touches_sensitive"] and n_queries:
            n_seeds = cfg.audit.baseline_seeds
            with self.console.status(f"Training the direct DP-SGD baseline (no teacher, "
                                     f"{n_seeds} seed{'s' * (n_seeds > 1)})…"):
                spent = tuple(event_from_entry(e) for e in ledger.entries
                              if e.stage in TRANSFER_STAGES)
                baselines["dp_sgd_direct"] = self._direct_baseline(
                    preprocessor, data, split, train_X, train_y, plan, delta, spent)
            with self.console.status("Retraining the student with other seeds (audit only, "
                                     "never released)…"):
                distillation = self._distillation_gain(
                    network, preprocessor, data, split, inputs, targets, is_transfer, record,
                    plan, baselines["dp_sgd_direct"])

        context = {
            "member_rows": split.train[plan["dp_rows"]],
            "teacher_selection": self.selection,
            # Rows made from sensitive patients (MUNGE) never go to the memory probe's files.
            "transfer_rows": _head_or_none(transfer[transfer_set.source != "munge"], 5000),
            "transfer": self._transfer_summary(transfer_set, data, split, ledger, plan),
            "public_ledger": public_ledger_,
            "distillation": distillation,
            "student_trainer": self._reference_student_factory(
                preprocessor, data, inputs, targets, is_transfer, record, plan),
            "canary": ({"rows": split.train[plan["canary_rows"]], "included": plan["canary_in"]}
                       if len(plan["canary_rows"]) else None)}
        with self.console.status("Auditing: utility, speed, membership inference "
                                 f"({cfg.audit.reference_models} reference models)…"):
            report, mia_scores = build_report(
                config=cfg, data=data, split=split, reference=reference, ensemble=ensemble,
                student_path=folder / "student.onnx", ledger=ledger, plan=plan,
                network=network, record=record, rng=rngs["audit"], baselines=baselines,
                audit_context=context)
        write_run_files(folder, cfg, ledger, report, mia_scores)
        return report

    def _preprocessing_rows(self, transfer_set: TransferSet) -> pd.DataFrame:
        """Rows the student's preprocessing statistics come from: synthetic transfer rows
        when there are enough, so that no public individual's values enter them unnoised."""
        synthetic = transfer_set.rows[np.isin(transfer_set.source,
                                              ["dp_synthesizer", "schema_prior"])]
        if len(synthetic) >= MIN_PREPROCESSING_ROWS:
            return synthetic
        if (transfer_set.source == "public_table").any():
            self.plan_notes.append(
                "The student's preprocessing statistics (means, scales, category lists) were "
                "computed from the public transfer table without noise; the public "
                "individuals' guarantee covers the DP-SGD training, not these statistics.")
        return transfer_set.rows

    def _public_ledger(self, query_sources: np.ndarray, record, plan: dict):
        """The second ledger, for public transfer individuals used in DP-SGD (or None)."""
        n_public = int(np.sum(query_sources == "public_table"))
        if not n_public:
            return None
        ledger = public_ledger(self.config.transfer.public, n_public,
                               accountant=self.config.privacy.accountant,
                               sample_rate=record.sample_rate, steps=record.steps,
                               noise_multiplier=record.noise_multiplier, repeats=plan["repeats"])
        epsilon = ledger.epsilon()
        if plan["repeats"] > 1 and epsilon > self.config.privacy.target_epsilon:
            self.plan_notes.append(
                f"The public transfer individuals' guarantee is weak (ε = {epsilon:.3g}): to "
                f"weigh α, each of the {n_public} labelled public rows entered DP-SGD "
                f"{plan['repeats']} times, and a row repeated r times is charged as one of "
                "r-fold sensitivity. More labelled public rows (a larger label budget) or a "
                "smaller student.alpha lowers it.")
        return ledger

    def _transfer_summary(self, transfer_set: TransferSet, data: SensitiveData, split,
                          ledger: PrivacyLedger, plan: dict) -> dict:
        """Each source's size, labelled rows, ledger stage and ε alone, and its fidelity to
        the sensitive test split (an internal-review metric, like the rest of the audit)."""
        X_test, _, _ = data.rows(split.test)
        entries = {e.stage: e for e in ledger.entries}
        labelled = transfer_set.source[:plan["n_queries"]]
        sources = []
        for kind, n in transfer_set.sizes.items():
            stage = LEDGER_STAGE[kind]
            entry = entries.get(stage) if stage else None
            rows = transfer_set.of(kind)
            sources.append({
                "kind": kind, "n_rows": int(n), "n_labelled": int(np.sum(labelled == kind)),
                "ledger_stage": stage if entry is not None else None,
                "epsilon": (_finite_or_none(ledger.epsilon_alone(entry)) if entry is not None
                            else 0.0 if kind != "munge" else None),
                "fidelity": fidelity_summary(X_test, rows, data.schema) if len(rows) else None})
        return {"source": self.config.transfer.source, "resolved": plan["transfer_kind"],
                "sources": sources, "notes": transfer_set.notes}

    def _reference_student_factory(self, preprocessor, data: SensitiveData, inputs: np.ndarray,
                                   targets: np.ndarray, is_transfer: np.ndarray, record,
                                   plan: dict):
        """Re-runs the student's own training (same transfer rows, noise and batch size)
        on a subset of an attack population: the reference models of LiRA and RMIA."""
        cfg, n_classes = self.config, data.schema.n_classes
        transfer_x, transfer_y = inputs[is_transfer], targets[is_transfer]

        def factory(features: pd.DataFrame, labels: np.ndarray):
            population = preprocessor.transform(as_model_input(features, data.schema))

            def train(indices: np.ndarray, seed: int):
                import torch

                x = np.vstack([transfer_x, population[indices]]).astype(np.float32)
                y = np.vstack([transfer_y, np.eye(n_classes, dtype=np.float32)[labels[indices]]])
                flags = np.r_[np.ones(len(transfer_x), bool), np.zeros(len(indices), bool)]
                net, _ = train_student(x, y, n_classes=n_classes, config=cfg.student,
                                       is_transfer=flags, noise_multiplier=record.noise_multiplier,
                                       seed=seed, batch_size=plan["schedule"].batch_size)

                def predict(rows: pd.DataFrame) -> np.ndarray:
                    z = preprocessor.transform(as_model_input(rows, data.schema))
                    with torch.no_grad():
                        return torch.softmax(net(torch.as_tensor(z, dtype=torch.float32)), 1).numpy()
                return predict
            return train
        return factory

    def _direct_baseline(self, preprocessor, data: SensitiveData, split, train_X: pd.DataFrame,
                         train_y: np.ndarray, plan: dict, delta: float,
                         spent: tuple) -> dict:
        """Students of the same architecture trained by DP-SGD on sensitive rows only (no
        teacher), at the same total ε: what distillation has to beat. One per seed of
        ``audit.baseline_seeds``; the metrics are their means, with each seed's AUROC."""
        cfg = self.config
        rows = train_X.iloc[plan["dp_rows"]].reset_index(drop=True)
        inputs = preprocessor.transform(as_model_input(rows, data.schema)).astype(np.float32)
        batch = cfg.student.resolved_batch_size(len(inputs))
        schedule = DpSgdSchedule.for_data(len(inputs), batch, cfg.student.epochs)
        noise = plan_budget([StagePlan("student", 1.0, schedule.event, 50.0, "direct DP-SGD")],
                            target_epsilon=cfg.privacy.target_epsilon, delta=delta,
                            accountant=cfg.privacy.accountant, spent=spent)["student"]
        per_seed = []
        for i in range(cfg.audit.baseline_seeds):
            network, _ = train_student(inputs, train_y[plan["dp_rows"]],
                                       n_classes=data.schema.n_classes, config=cfg.student,
                                       noise_multiplier=noise, seed=replicate_seed(cfg.seed, 1, i),
                                       batch_size=batch)
            per_seed.append(self._test_metrics(network, preprocessor, data, split))
        eps = epsilon_of([*spent, schedule.event(noise)], delta, cfg.privacy.accountant)
        means = {key: float(np.mean([m[key] for m in per_seed])) for key in per_seed[0]}
        return {**means, "auroc_per_seed": [m["auroc"] for m in per_seed],
                "seeds": len(per_seed), "epsilon": eps, "noise_multiplier": noise}

    def _distillation_gain(self, network, preprocessor, data: SensitiveData, split,
                           inputs: np.ndarray, targets: np.ndarray, is_transfer: np.ndarray,
                           record, plan: dict, direct: dict) -> dict:
        """The student's AUROC against the direct baseline's, over seeds.

        The released student is one draw of DP-SGD's noise; ``audit.baseline_seeds - 1``
        more students are trained on the same rows with the same noise multiplier and other
        seeds, for this comparison only (never written, like the attack's reference
        models). The difference of means comes with its standard error."""
        cfg = self.config
        student_auroc = [self._test_metrics(network, preprocessor, data, split)["auroc"]]
        for i in range(1, cfg.audit.baseline_seeds):
            replicate, _ = train_student(inputs, targets, n_classes=data.schema.n_classes,
                                         config=cfg.student, is_transfer=is_transfer,
                                         noise_multiplier=record.noise_multiplier,
                                         seed=replicate_seed(cfg.seed, 2, i),
                                         batch_size=plan["schedule"].batch_size)
            student_auroc.append(self._test_metrics(replicate, preprocessor, data, split)["auroc"])
        return seed_comparison(student_auroc, direct["auroc_per_seed"])

    def _test_metrics(self, network, preprocessor, data: SensitiveData, split) -> dict:
        """Utility of a torch student on the sensitive test split."""
        import torch

        X_test, y_test, _ = data.rows(split.test)
        x = torch.as_tensor(preprocessor.transform(as_model_input(X_test, data.schema)),
                            dtype=torch.float32)
        with torch.no_grad():
            proba = torch.softmax(network(x), dim=1).numpy()
        return utility_metrics(y_test, proba)

    def _plan(self, data: SensitiveData, train_X: pd.DataFrame, train_y: np.ndarray,
              train_ids: np.ndarray, n_teachers: int, delta: float) -> dict:
        """Decide every stage's work and calibrate its noise before any of it runs."""
        cfg = self.config
        target, accountant = cfg.privacy.target_epsilon, cfg.privacy.accountant
        shares = cfg.privacy.shares
        dp_rows = one_row_per_patient(train_ids, self.rngs["dp_rows"])
        canary_rows, canary_in = np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
        n_canaries = (min(1000, len(dp_rows) // 10) if cfg.audit.canaries == "auto"
                      else int(cfg.audit.canaries))
        if cfg.student.alpha < 1 and n_canaries >= 20:
            # One-run audit (Steinke et al. 2023): each canary patient's row enters DP-SGD
            # with probability ½; the excluded half is left out of every DP stage.
            rng = self.rngs["spare"]
            canary_rows = rng.choice(dp_rows, size=n_canaries, replace=False)
            canary_in = rng.random(n_canaries) < 0.5
            dp_rows = np.setdiff1d(dp_rows, canary_rows[~canary_in])
        kind = "dp_synthesizer" if cfg.transfer.source == "auto" else cfg.transfer.source
        kinds = [kind] if cfg.transfer.source != "mix" else cfg.transfer.kinds()
        marginal_columns = columns_needing_marginals(
            data.schema, cfg.transfer.priors, cfg.transfer.categories)
        alpha = cfg.student.alpha
        notes: list[str] = []
        uses_labels = alpha > 0
        touches_sensitive = alpha < 1

        def active_stages(kinds: list[str], labels: bool) -> list[str]:
            return [s for s, on in (
                ("schema_statistics", "schema_prior" in kinds and bool(marginal_columns)),
                ("synthesizer", "dp_synthesizer" in kinds),
                ("labels", labels and cfg.labels.aggregator != "plurality"),
                ("student", touches_sensitive)) if on]

        if cfg.transfer.source == "auto":
            # The DP synthesizer, unless its share of the budget is too small to measure the
            # marginals: then the schema prior (one-way marginals only) does as well for less.
            noise = plan_budget(self._stages(active_stages(kinds, False), 0, n_teachers, None),
                                target_epsilon=target * shares.get("synthesizer", 0.15)
                                / sum(shares.get(s, 0.0) for s in active_stages(kinds, uses_labels)),
                                delta=delta, accountant=accountant)["synthesizer"]
            snr = synthesizer_snr(synthesizer_for(cfg, data.schema, noise, self.rngs["spare"]),
                                  data.schema, len(dp_rows))
            if budget_is_tiny(snr):
                kinds = ["schema_prior"]
                notes.append(f"Transfer source 'auto': the DP synthesizer's share of the budget "
                             f"would measure its marginals at a signal-to-noise ratio of "
                             f"{snr:.2g} (< 2) on {len(dp_rows)} patients, so the schema "
                             "prior was used instead.")
        active = active_stages(kinds, uses_labels)
        total_share = sum(shares.get(s, 0.0) for s in active) or 1.0
        cap = self._transfer_capacity(kinds)
        n_queries = 0
        if uses_labels:
            if cfg.labels.n_queries != "auto":
                n_queries = int(cfg.labels.n_queries)
                if cap is not None and n_queries > cap:
                    notes.append(f"labels.n_queries {n_queries} exceeds the {cap} transfer rows "
                                 f"available; {cap} were labelled.")
                    n_queries = cap
            elif cfg.labels.aggregator == "plurality":
                n_queries = min(cap or cfg.transfer.n_rows, 2000)
            else:
                eps_labels = target * shares.get("labels", 0.0) / total_share
                sigma = cfg.labels.sigma_over_teachers * n_teachers
                n_queries = auto_queries(
                    lambda q: self._aggregator(sigma, n_teachers).planned_event(q), eps_labels,
                    delta, accountant, cap=cap or cfg.transfer.n_rows)
                if n_queries < cfg.labels.min_queries:
                    if not touches_sensitive:
                        raise PrivacyBudgetError(
                            f"The label budget (ε = {eps_labels:.3g} of the target {target:g}) "
                            f"affords only {n_queries} GNMax queries to {n_teachers} teachers "
                            f"(fewer than labels.min_queries = {cfg.labels.min_queries}), and "
                            "with student.alpha: 1 the student has nothing else to learn from.",
                            hint="Raise privacy.target_epsilon, set labels.n_queries "
                                 "explicitly, or lower student.alpha so that the student also "
                                 "learns from sensitive rows by DP-SGD.")
                    notes.append(
                        f"The label budget (ε = {eps_labels:.3g} of the target {target:g}) "
                        f"affords only {n_queries} GNMax queries to {n_teachers} teachers at "
                        f"σ = {cfg.labels.sigma_over_teachers}·K, fewer than labels.min_queries "
                        f"= {cfg.labels.min_queries}: too few to pay for their share of the "
                        "budget, so the student was trained on sensitive rows by DP-SGD alone "
                        "and the label share went to it.")
                    n_queries, uses_labels, alpha = 0, False, 0.0
                    active = [s for s in active if s != "labels"]
        n_sensitive = len(dp_rows) if touches_sensitive else 0
        repeats = 1
        if uses_labels and touches_sensitive and n_queries:
            repeats = max(1, round(alpha / (1 - alpha) * n_sensitive / n_queries))
        n_examples = n_sensitive + repeats * n_queries
        schedule = DpSgdSchedule.for_data(n_examples, cfg.student.resolved_batch_size(n_examples),
                                          cfg.student.epochs)
        stages = self._stages(active, n_queries, n_teachers, schedule)
        noises = plan_budget(stages, target_epsilon=target, delta=delta, accountant=accountant)
        sizes = self._transfer_sizes(kinds, n_queries, notes)
        return {"noises": noises, "notes": notes, "alpha": alpha, "dp_rows": dp_rows,
                "canary_rows": canary_rows, "canary_in": canary_in,
                "marginal_columns": marginal_columns if "schema_prior" in kinds else [],
                "transfer_sizes": sizes, "transfer_kind": "+".join(sizes),
                "n_queries": n_queries, "repeats": repeats, "n_teachers": n_teachers,
                "student_touches_sensitive": touches_sensitive,
                "n_sensitive_dp_rows": n_sensitive, "schedule": schedule,
                # Training only on teacher-labelled transfer rows is post-processing of the
                # labels; DP-SGD noise then protects no sensitive patient, so keep it modest.
                "student_noise_free": 0.5}

    def _stages(self, active: list[str], n_queries: int, n_teachers: int,
                schedule: DpSgdSchedule | None) -> list[StagePlan]:
        """The budget planner's view of the active stages (shares, events, noise bounds)."""
        cfg, shares = self.config, self.config.privacy.shares
        stages = []
        if "schema_statistics" in active:
            stages.append(StagePlan("schema_statistics", shares.get("schema_statistics", 0.05),
                                    marginals_event, 1e4, "noisy marginals for transfer data"))
        if "synthesizer" in active:
            stages.append(StagePlan("synthesizer", shares.get("synthesizer", 0.15),
                                    dpa.GaussianDpEvent, 1e3, "DP marginal synthesizer"))
        if "labels" in active:
            stages.append(StagePlan("labels", shares.get("labels", 0.35),
                                    lambda s: self._aggregator(s, n_teachers).planned_event(n_queries),
                                    4.0 * n_teachers,
                                    f"{cfg.labels.aggregator} on {n_queries} queries"))
        if "student" in active and schedule is not None:
            stages.append(StagePlan("student", shares.get("student", 0.6), schedule.event, 50.0,
                                    f"DP-SGD, {schedule.steps} steps at sample rate "
                                    f"{schedule.sample_rate:.4f}"))
        return stages

    def _transfer_capacity(self, kinds: list[str]) -> int | None:
        """The most transfer rows there can be (None: synthetic sources make any number)."""
        transfer = self.config.transfer
        if transfer.source == "mix":
            return transfer.total_rows()
        if kinds == ["public_table"]:
            return len(self.public)
        return None

    def _transfer_sizes(self, kinds: list[str], n_queries: int, notes: list[str]) -> dict[str, int]:
        """Rows per source kind: at least the labelled queries for a synthetic source."""
        transfer = self.config.transfer
        if transfer.source == "mix":
            return {k: int(v) for k, v in transfer.mix.items() if v > 0}
        (kind,) = kinds
        if kind == "public_table":
            n = min(transfer.n_rows, len(self.public))
            if n < transfer.n_rows:
                notes.append(f"The public transfer table has {len(self.public)} rows, fewer than "
                             f"transfer.n_rows = {transfer.n_rows}; all of them were used.")
            return {kind: max(n, n_queries)}
        return {kind: max(transfer.n_rows, n_queries)}

    def _student_data(self, preprocessor, data: SensitiveData, query_rows: pd.DataFrame,
                      transfer_labels: np.ndarray, train_X: pd.DataFrame, train_y: np.ndarray,
                      plan: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labelled transfer rows (repeated to weigh α) plus one row per sensitive patient.

        Targets are probability vectors: soft labels for transfer rows, one-hot otherwise.
        """
        n_classes = data.schema.n_classes
        eye = np.eye(n_classes, dtype=np.float32)
        parts_x, parts_y, parts_t = [], [], []
        if len(transfer_labels):
            x = preprocessor.transform(as_model_input(query_rows, data.schema))
            y = transfer_labels if transfer_labels.ndim == 2 else eye[transfer_labels]
            parts_x.append(np.repeat(x, plan["repeats"], axis=0))
            parts_y.append(np.repeat(y.astype(np.float32), plan["repeats"], axis=0))
            parts_t.append(np.ones(len(x) * plan["repeats"], dtype=bool))
        if plan["student_touches_sensitive"]:
            rows = train_X.iloc[plan["dp_rows"]].reset_index(drop=True)
            parts_x.append(preprocessor.transform(as_model_input(rows, data.schema)))
            parts_y.append(eye[train_y[plan["dp_rows"]]])
            parts_t.append(np.zeros(len(rows), dtype=bool))
        inputs = np.vstack(parts_x).astype(np.float32)
        order = self.rngs["mix"].permutation(len(inputs))
        return inputs[order], np.vstack(parts_y)[order], np.concatenate(parts_t)[order]

    def _aggregator(self, noise: float | None, n_teachers: int):
        """The configured aggregator at main noise ``noise`` (σ, σ₂ or Laplace scale)."""
        labels = self.config.labels
        if labels.aggregator == "plurality":
            return make_aggregator("plurality")
        params = {}
        if labels.aggregator == "confident_gnmax":
            params = {"sigma1": labels.sigma1_over_teachers * n_teachers,
                      "threshold": labels.threshold_over_teachers * n_teachers}
        return make_aggregator(labels.aggregator, sigma=noise, rng=self.rngs["labels"], **params)


def replicate_seed(seed: int, arm: int, index: int) -> int:
    """Seed of the ``index``-th audit training of ``arm`` (1: direct baseline, 2: student
    replicate). ``train_student`` draws from seed, seed + 1 and seed + 2, and the released
    student uses the pipeline's seed, so audit seeds start at seed + 10 and are spaced by 5:
    no two trainings share a random stream."""
    return seed + 10 * (index + 1) + 5 * (arm - 1)


def seed_comparison(student_auroc: list[float], direct_auroc: list[float]) -> dict:
    """Mean AUROCs of the two arms, their difference and its standard error (Welch)."""
    s, d = np.asarray(student_auroc, float), np.asarray(direct_auroc, float)
    se = (float(np.sqrt(s.var(ddof=1) / len(s) + d.var(ddof=1) / len(d)))
          if len(s) > 1 and len(d) > 1 else None)
    return {"seeds": min(len(s), len(d)), "student_auroc": s.tolist(), "direct_auroc": d.tolist(),
            "student_mean": float(s.mean()), "direct_mean": float(d.mean()),
            "difference": float(s.mean() - d.mean()), "difference_se": se}


def run_pipeline(config: PipelineConfig, out_dir: Path, *, console: Console | None = None) -> RunOutcome:
    """Run the whole pipeline and write the run folder ``out_dir`` atomically."""
    return Pipeline(config, console=console).run(Path(out_dir))


__all__ = ["Pipeline", "RunOutcome", "auto_queries", "one_row_per_patient", "replicate_seed",
           "run_pipeline", "seed_comparison"]
