"""Make the transfer set from the configured sources, each with its privacy cost recorded.

The pipeline decides (in its budget plan, before anything runs) how many rows each source
kind gives and the noise of every DP stage; :func:`build_transfer` then makes the rows and
writes each source's cost into the ledger:

- ``dp_synthesizer``: :class:`DPMarginalSynthesizer` on one row per sensitive patient
  (ledger stage ``transfer_synthesizer``);
- ``schema_prior``: declared public priors, DP one-way marginals for undeclared columns
  (ledger stage ``schema_statistics``);
- ``public_table``: a table from elsewhere, aligned to the schema (no cost to the sensitive
  patients; its own individuals get a separate guarantee from DP-SGD, see
  :func:`public_individual_event`);
- ``munge``: perturbed copies of sensitive rows, only with ``privacy.allow_nonprivate``
  (ledger stage ``transfer_munge``, ε = ∞).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.config import PipelineConfig, PublicTableConfig
from medistill.data.schema import TableSchema
from medistill.errors import ConfigError, DataError
from medistill.privacy.ledger import PrivacyLedger
from medistill.transfer.dp_marginals import marginals_event, release_marginals
from medistill.transfer.dp_synthesizer import DPMarginalSynthesizer
from medistill.transfer.mixing import mix_sources
from medistill.transfer.munge import munge
from medistill.transfer.munge import privacy_events as munge_events
from medistill.transfer.public_table import align_public_table
from medistill.transfer.schema_prior import (
    SchemaPriorSampler,
    columns_needing_marginals,
)

# A DP synthesizer whose one-way marginal cells would sit below this signal-to-noise ratio
# learns nothing a schema prior does not; ``source: auto`` then falls back to the prior.
MIN_SYNTHESIZER_SNR = 2.0
LEDGER_STAGE = {"dp_synthesizer": "transfer_synthesizer", "schema_prior": "schema_statistics",
                "munge": "transfer_munge", "public_table": None,
                "teacher_histograms": "dp_teacher"}


@dataclass
class TransferSet:
    """Transfer rows (schema feature columns), the source kind of each row, and notes."""

    rows: pd.DataFrame
    source: np.ndarray
    sizes: dict[str, int]
    notes: list[str] = field(default_factory=list)
    informative: dict[str, bool] = field(default_factory=dict)

    def of(self, kind: str) -> pd.DataFrame:
        return self.rows[self.source == kind].reset_index(drop=True)


def synthesizer_for(config: PipelineConfig, schema: TableSchema, noise_multiplier: float,
                    rng: np.random.Generator) -> DPMarginalSynthesizer:
    """The DP marginal synthesizer as the pipeline configures it."""
    transfer = config.transfer
    return DPMarginalSynthesizer(
        noise_multiplier=noise_multiplier,
        max_pairs=(transfer.max_pairs if transfer.max_pairs is not None
                   else len(schema.features) - 1),
        rng=rng, bounds={name: (p.min, p.max) for name, p in transfer.priors.items()
                         if name in schema.feature_names})


def synthesizer_snr(synthesizer: DPMarginalSynthesizer, schema: TableSchema, n_rows: int) -> float:
    """Expected count of a one-way marginal cell over its noise std (before fitting)."""
    cells = max(synthesizer.n_bins + 1,
                max((len(f.categories) + 1 for f in schema.features), default=2))
    return (n_rows / cells) / synthesizer.measurement_std(schema)


def resolve_sizes(config: PipelineConfig, kind_of_auto: str, n_rows: int) -> dict[str, int]:
    """Rows per source kind: ``mix`` as written, a single source gets all ``n_rows``."""
    transfer = config.transfer
    if transfer.source == "mix":
        return {k: int(v) for k, v in transfer.mix.items() if v > 0}
    kind = kind_of_auto if transfer.source == "auto" else transfer.source
    return {kind: int(n_rows)}


def load_public_table(public: PublicTableConfig, schema: TableSchema, *,
                      seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Read and align the public transfer table; its extra columns (ids, labels) are dropped.
    A CSV or Parquet table's cells equal to the schema's missing-value codes are missing."""
    from medistill.data.loaders import load_table

    path = Path(public.path)
    fmt = public.format
    if fmt == "auto":
        fmt = "fhir" if path.is_dir() or path.suffix in (".ndjson", ".json") else None
    if fmt == "fhir":
        from medistill.data.fhir_source import _in_run_salt, _ingest

        table = _ingest(path, public.mapping, on_error="stop", fhir_version="auto",
                        salt=_in_run_salt(seed), n_jobs=1).table
    else:
        table = load_table(path, fmt, schema.missing_values)
    return align_public_table(table, schema, column_map=public.column_map,
                              missing=public.missing, source=f"transfer.public '{path}'")


def build_transfer(sizes: dict[str, int], *, config: PipelineConfig, schema: TableSchema,
                   sensitive_rows: pd.DataFrame, noises: dict[str, float],
                   ledger: PrivacyLedger, rngs: dict[str, np.random.Generator],
                   public: pd.DataFrame | None = None) -> TransferSet:
    """Make ``sizes[kind]`` rows of every kind and mix them; record each DP cost.

    ``sensitive_rows`` hold one row per sensitive patient (the DP stages rely on it);
    ``public`` is the aligned public table when a ``public_table`` source is asked for.
    """
    parts: list[tuple[str, pd.DataFrame]] = []
    notes: list[str] = []
    informative: dict[str, bool] = {}
    for kind, n in sizes.items():
        if kind == "dp_synthesizer":
            synthesizer = synthesizer_for(config, schema, noises["synthesizer"], rngs["marginals"])
            synthesizer.fit(sensitive_rows, schema)
            ledger.record(LEDGER_STAGE[kind], synthesizer.privacy_events(),
                          f"DP marginal synthesizer: {synthesizer.n_marginals_} noisy marginals "
                          "of one row per patient")
            parts.append((kind, synthesizer.sample(n)))
        elif kind == "schema_prior":
            transfer = config.transfer
            columns = columns_needing_marginals(schema, transfer.priors, transfer.categories)
            marginals = {}
            if columns:
                marginals = release_marginals(sensitive_rows, schema, columns,
                                              noise_multiplier=noises["schema_statistics"],
                                              rng=rngs["marginals"])
                ledger.record(LEDGER_STAGE[kind], marginals_event(noises["schema_statistics"]),
                              f"noisy one-way marginals of {len(marginals)} columns")
                informative = {c: m.informative for c, m in marginals.items()}
                vague = [c for c, ok in informative.items() if not ok]
                if vague:
                    notes.append(
                        f"Schema-prior transfer data: the DP marginals of {', '.join(vague)} "
                        "showed no bin above the noise, so their transfer values are "
                        "uninformative; declare public priors for them in transfer.priors.")
            sampler = SchemaPriorSampler(schema, priors=transfer.priors,
                                         categories=transfer.categories, marginals=marginals)
            parts.append((kind, sampler.sample(n, rngs["transfer"])))
        elif kind == "public_table":
            if public is None:
                raise ConfigError("transfer: a public_table source needs transfer.public.")
            parts.append((kind, public))
        elif kind == "munge":
            munge_config = config.transfer.munge
            rows = munge(sensitive_rows, schema, n=n,
                         swap_probability=munge_config.swap_probability,
                         local_variance=munge_config.local_variance, rng=rngs["transfer"],
                         allow_nonprivate=config.privacy.allow_nonprivate)
            ledger.record(LEDGER_STAGE[kind], munge_events(),
                          f"MUNGE: {n} perturbed copies of sensitive rows (no DP guarantee)")
            parts.append((kind, rows))
        else:  # pragma: no cover - the config only allows the kinds above
            raise ConfigError(f"transfer: unknown source kind {kind!r}.")
    rows, source = mix_sources(parts, sizes, rngs["transfer"])
    return TransferSet(rows=rows, source=source.to_numpy(dtype=object), sizes=dict(sizes),
                       notes=notes, informative=informative)


def public_individual_event(sample_rate: float, steps: int, noise_multiplier: float,
                            repeats: int) -> dpa.DpEvent:
    """DP-SGD's guarantee for one public individual whose row appears ``repeats`` times.

    Each copy is Poisson-sampled with rate q. In one step the individual is absent with
    probability (1−q)^r; otherwise between 1 and r clipped gradients of theirs enter the sum.
    The hockey-stick divergence is jointly convex, so the mixture over how many copies were
    drawn is dominated by the worst case, r copies: a Gaussian of sensitivity r·C, i.e. noise
    multiplier σ/r, sampled with probability 1−(1−q)^r. With r = 1 this is exactly the
    sensitive patients' DP-SGD event.
    """
    repeats = max(1, int(repeats))
    rate = 1.0 - (1.0 - sample_rate) ** repeats
    return dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(min(1.0, rate), dpa.GaussianDpEvent(noise_multiplier / repeats)),
        int(steps))


def public_ledger(public: PublicTableConfig, n_individuals: int, *, accountant: str,
                  sample_rate: float, steps: int, noise_multiplier: float,
                  repeats: int) -> PrivacyLedger:
    """The second ledger: the public transfer table's individuals under DP-SGD."""
    if n_individuals < 1:
        raise DataError("no public transfer rows entered training; there is no second ledger.")
    delta = public.delta or 1.0 / (10 * n_individuals)
    ledger = PrivacyLedger(delta=delta, accountant=accountant,  # type: ignore[arg-type]
                           name="public transfer individuals")
    ledger.record("student_dp_sgd", public_individual_event(sample_rate, steps,
                                                             noise_multiplier, repeats),
                  f"DP-SGD on {n_individuals} labelled public rows, each used {repeats}× "
                  f"per epoch")
    return ledger


def budget_is_tiny(snr: float) -> bool:
    return not math.isfinite(snr) or snr < MIN_SYNTHESIZER_SNR


__all__ = ["LEDGER_STAGE", "MIN_SYNTHESIZER_SNR", "TransferSet", "budget_is_tiny",
           "build_transfer", "load_public_table", "public_individual_event", "public_ledger",
           "resolve_sizes", "synthesizer_for", "synthesizer_snr"]
