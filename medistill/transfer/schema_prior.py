"""Transfer rows sampled from the schema: declared public priors, and for undeclared
columns, differentially private marginals (charged to the ledger by the caller)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medistill.config import NumericPrior
from medistill.data.schema import BINARY, CATEGORICAL, TableSchema
from medistill.transfer.dp_marginals import NoisyMarginal, sample_marginal


def _sample_prior(prior: NumericPrior, n: int, rng: np.random.Generator) -> np.ndarray:
    if prior.distribution == "uniform":
        return rng.uniform(prior.min, prior.max, size=n)
    mean = prior.mean if prior.mean is not None else 0.5 * (prior.min + prior.max)
    sd = prior.sd if prior.sd is not None else (prior.max - prior.min) / 4
    if prior.distribution == "normal":
        draws = rng.normal(mean, sd, size=n)
    else:  # lognormal with the given mean and sd on the natural scale
        sigma2 = np.log1p((sd / mean) ** 2)
        draws = rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), size=n)
    return np.clip(draws, prior.min, prior.max)


class SchemaPriorSampler:
    """Samples independent columns: declared priors first, DP marginals for the rest.

    It never sees sensitive rows: it is given only public priors, public category lists
    and already-released DP marginals.
    """

    def __init__(self, schema: TableSchema, *, priors: dict[str, NumericPrior],
                 categories: dict[str, tuple[str, ...]],
                 marginals: dict[str, NoisyMarginal]) -> None:
        self.schema = schema
        self.priors = priors
        self.categories = categories
        self.marginals = marginals

    def sample(self, n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
        columns = {}
        for spec in self.schema.features:
            name = spec.name
            if name in self.priors:
                columns[name] = _sample_prior(self.priors[name], n_rows, rng)
            elif spec.kind == CATEGORICAL and name in self.categories:
                cats = np.array(self.categories[name], dtype=object)
                columns[name] = cats[rng.integers(0, len(cats), size=n_rows)]
            elif name in self.marginals:
                columns[name] = sample_marginal(self.marginals[name], n_rows, rng)
            elif spec.kind == BINARY:
                columns[name] = rng.integers(0, 2, size=n_rows).astype(float)
            else:
                raise ValueError(f"no prior, category list or marginal for column {name!r}")
        return pd.DataFrame(columns)


def columns_needing_marginals(schema: TableSchema, priors: dict[str, NumericPrior],
                              categories: dict[str, tuple[str, ...]]) -> list[str]:
    """Feature columns with no declared public prior."""
    return [f.name for f in schema.features
            if f.name not in priors and not (f.kind == CATEGORICAL and f.name in categories)]


__all__ = ["SchemaPriorSampler", "columns_needing_marginals"]
