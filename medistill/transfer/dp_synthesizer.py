"""A differentially private marginal synthesizer (tree-structured, MST-like), on Gaussian noise.

Why not ``mbi`` (private-pgm)? Its current wheel (2.0.0) pulls in jax/jaxlib/optax/chex and
ships no MST/AIM mechanism (those live in the repository's examples); this module needs
numpy only and records its cost in the ledger's own terms.

How it works, for one row per patient (the caller guarantees it):

1. **Ranges** (numeric columns without declared ``bounds``): a noisy histogram of each column
   on a coarsened copy of the fixed public asinh grid of
   :mod:`medistill.transfer.dp_marginals` (400 bins). Bins that do not stand out of the
   noise are dropped (``clean_numeric_histogram``: 4 noise standard deviations, merging
   neighbours on small tables); the rest give ``n_bins`` quantile-spaced coarse
   bins (edges on the public grid) and the within-bin shape used when sampling.
   Columns with declared public ``bounds`` use ``n_bins`` equal-width bins and cost nothing.
2. **Selection** (``selection="mst"``): noisy 2-way marginals of *all* pairs at low
   resolution (numeric columns in about 4 bins); the maximum spanning tree of their noisy
   mutual information picks which pairs to measure, keeping at most ``max_pairs`` edges.
   ``selection="chain"`` uses the data-independent chain f0–f1–f2… in schema order and
   costs nothing.
3. **Measurement**: noisy 1-way marginals of every column (coarse bins + a missing bin) and
   noisy 2-way marginals of the selected pairs.
4. **Sampling**: each tree's root from its 1-way marginal, then each child given its parent
   from the 2-way table, made consistent with both 1-way marginals by iterative
   proportional fitting. Everything after the noisy counts is post-processing.

**Privacy.** Adding or removing one patient changes one cell of every marginal by 1, so every
measured marginal has L2 sensitivity 1 and a group of ``k`` marginals has √k. A marginal
measured with noise std ``s_j`` is a Gaussian mechanism with noise multiplier ``s_j``; the
adaptive composition of Gaussian mechanisms is exactly one Gaussian mechanism with
``1/σ² = Σ_j 1/s_j²`` (Gaussian DP composes in μ = 1/σ). The stages split ``1/σ²`` by the
shares ``range_share`` (default 0.10), ``selection_share`` (default 0.25) and the rest; a group of ``k_g`` marginals with
share ``ρ_g`` gets std ``σ·√(k_g/ρ_g)``. With one group (declared bounds, chain) this is the
familiar std ``σ·√k``. The number of marginals in each stage depends only on the schema and
the parameters, never on the data, so the whole fit is one ``GaussianDpEvent(σ)``.
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.data.schema import BINARY, CATEGORICAL, TableSchema
from medistill.errors import NotFittedError
from medistill.transfer.dp_marginals import GRID_EDGES, clean_numeric_histogram

# The range stage uses every _STRIDE-th edge of the public asinh grid (400 bins over ±10⁶,
# about 5 % of the value wide): wide enough that populated bins stand out of the noise.
_STRIDE = 2
_EDGES = GRID_EDGES[::_STRIDE]
_N_FINE = len(_EDGES) - 1
_SELECTION_BINS = 4
_IPF_ITERATIONS = 20
# Fine bins kept for ranges: those standing out of the noise (merging neighbours when the
# table is small, see dp_marginals.clean_numeric_histogram); then the outer _TRIM of mass on
# each side is cut.
_TRIM = 0.002


class _Column:
    """How one column is coded into bins (the last bin is 'missing') and decoded back."""

    def __init__(self, name: str, kind: str, categories: tuple[str, ...] = ()) -> None:
        self.name, self.kind, self.categories = name, kind, categories
        self.edges: np.ndarray | None = None          # numeric: value edges of coarse bins
        self.fine: list[tuple[np.ndarray, np.ndarray]] | None = None  # per bin: fine idx, probs

    @property
    def size(self) -> int:
        if self.kind == CATEGORICAL:
            return len(self.categories) + 1
        if self.kind == BINARY:
            return 3
        return len(self.edges) - 1 + 1

    def encode(self, values: pd.Series) -> np.ndarray:
        missing = values.isna().to_numpy()
        if self.kind == CATEGORICAL:
            codes = pd.Categorical(values.astype(object).where(~missing, None),
                                   categories=list(self.categories)).codes.astype(np.int64)
            codes[codes < 0] = len(self.categories)  # missing or not in the public list
            return codes
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        missing = np.isnan(numbers)
        if self.kind == BINARY:
            codes = (numbers == 1).astype(np.int64)
        else:
            filled = np.where(missing, self.edges[0], numbers)
            codes = np.clip(np.searchsorted(self.edges, filled, side="right") - 1,
                            0, len(self.edges) - 2)
        codes[missing] = self.size - 1
        return codes

    def coarsen(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """Codes at selection resolution (numeric: about 4 bins + missing)."""
        if self.kind != "numeric":
            return codes, self.size
        m = self.size - 1
        groups = min(_SELECTION_BINS, m)
        coarse = np.where(codes == m, groups, codes * groups // m)
        return coarse, groups + 1

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        missing = codes == self.size - 1
        if self.kind == CATEGORICAL:
            return np.array(list(self.categories) + [None], dtype=object)[codes]
        if self.kind == BINARY:
            out = codes.astype(float)
            out[missing] = np.nan
            return out
        out = np.full(len(codes), np.nan)
        for b in range(self.size - 1):
            rows = np.flatnonzero(codes == b)
            if not len(rows):
                continue
            if self.fine is None:
                out[rows] = rng.uniform(self.edges[b], self.edges[b + 1], size=len(rows))
            else:
                idx, probs = self.fine[b]
                chosen = idx[rng.choice(len(idx), size=len(rows), p=probs)]
                out[rows] = rng.uniform(_EDGES[chosen], _EDGES[chosen + 1])
        return out


def _fine_histogram(values: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = numbers[np.isfinite(numbers)]
    bins = np.clip(np.searchsorted(_EDGES, finite, side="right") - 1, 0, _N_FINE - 1)
    return np.bincount(bins, minlength=_N_FINE).astype(float)


def _bins_from_noisy_fine(column: _Column, noisy: np.ndarray, std: float, n_bins: int) -> None:
    """Coarse quantile bins (edges on the public grid) from a released fine histogram."""
    weights, _ = clean_numeric_histogram(noisy, std)
    cdf = np.cumsum(weights) / weights.sum()
    # The outer edges drop the outer 0.2 % of mass (and any stray noisy bin out there).
    first = int(np.searchsorted(cdf, _TRIM, side="left"))
    last = int(np.searchsorted(cdf, 1 - _TRIM, side="left")) + 1
    weights = weights.copy()
    weights[:first] = 0.0
    weights[last:] = 0.0
    inner = np.searchsorted(cdf, np.linspace(0, 1, n_bins + 1)[1:-1], side="left") + 1
    bounds = np.unique(np.clip(np.r_[first, inner, last], first, last))
    column.edges = _EDGES[bounds]
    column.fine = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = np.arange(lo, hi)
        w = weights[lo:hi]
        column.fine.append((idx, w / w.sum() if w.sum() > 0 else np.full(len(idx), 1 / len(idx))))


def _mutual_information(table: np.ndarray) -> float:
    joint = np.clip(table, 0, None)
    total = joint.sum()
    if total <= 0:
        return 0.0
    joint = joint / total
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    mask = joint > 0
    return float(np.sum(joint[mask] * np.log(joint[mask] / outer[mask])))


def _max_spanning_tree(n: int, scores: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = []
    for (i, j), _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
            edges.append((i, j))
    return edges


def _ipf(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Scale a non-negative table towards the given row and column totals."""
    t = np.clip(table, 0, None) + 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_IPF_ITERATIONS):
            sums = t.sum(1)
            t *= np.where(sums > 0, rows / sums, 0.0)[:, None]
            sums = t.sum(0)
            t *= np.where(sums > 0, cols / sums, 0.0)[None, :]
    # A row with no mass (a bin the 1-way marginal says is empty) gets the column marginal,
    # so that every conditional distribution is defined.
    empty = t.sum(1) <= 1e-12
    t[empty] = (cols + 1e-6) / (cols.sum() + 1e-6 * len(cols)) * 1e-9
    return t


class DPMarginalSynthesizer:
    """Tree-structured synthetic rows from Gaussian-noised 1-way and 2-way marginals.

    ``noise_multiplier`` is the noise multiplier σ of the whole fit as one Gaussian
    mechanism (see the module docstring); ``max_pairs`` caps the number of 2-way marginals
    (0 gives independent columns). ``bounds`` are public ``{column: (min, max)}`` ranges for
    numeric columns (e.g. the pipeline's declared priors); undeclared ranges are estimated
    with DP. ``integer_columns`` (public knowledge, e.g. counts) are rounded when sampled.
    Learned state ends in ``_``.
    """

    def __init__(self, *, noise_multiplier: float, max_pairs: int, rng: np.random.Generator,
                 n_bins: int = 12, selection: str = "mst",
                 bounds: dict[str, tuple[float, float]] | None = None,
                 range_share: float = 0.1, selection_share: float = 0.25,
                 integer_columns: tuple[str, ...] = ()) -> None:
        self.noise_multiplier = noise_multiplier
        self.max_pairs = max_pairs
        self.rng = rng
        self.n_bins = n_bins
        self.selection = selection
        self.bounds = bounds
        self.range_share = range_share
        self.selection_share = selection_share
        self.integer_columns = integer_columns

    # ---- privacy ---------------------------------------------------------------------------
    @staticmethod
    def event_for(noise_multiplier: float, n_marginals: int) -> dpa.DpEvent:
        """The ledger event of one fit with noise multiplier σ over ``n_marginals`` marginals.

        The concatenated histogram of ``n_marginals`` marginals has L2 sensitivity
        √n_marginals; noise std ``σ·√n_marginals`` per cell makes it ``GaussianDpEvent(σ)``,
        whatever the number of marginals (which sets the per-cell std, not ε).
        """
        if not (isinstance(noise_multiplier, int | float) and noise_multiplier > 0):
            raise ValueError("The 'noise_multiplier' parameter must be a float in the range "
                             f"(0, inf). Got {noise_multiplier!r} instead.")
        if int(n_marginals) < 1:
            raise ValueError(f"n_marginals must be at least 1. Got {n_marginals} instead.")
        return dpa.GaussianDpEvent(float(noise_multiplier))

    @staticmethod
    def noise_std(noise_multiplier: float, n_marginals: int) -> float:
        """Per-cell noise std when ``n_marginals`` marginals share σ equally: σ·√n."""
        return float(noise_multiplier) * math.sqrt(int(n_marginals))

    def measurement_std(self, schema: TableSchema) -> float:
        """Noise std of each measured 1- and 2-way marginal cell (known before fitting)."""
        return self._stds(self._plan(schema))["measure"]

    def privacy_events(self) -> dpa.DpEvent:
        """What :meth:`fit` spent on the sensitive rows: one Gaussian event."""
        self._check_fitted()
        return self.event_for(self.noise_multiplier, self.n_marginals_)

    # ---- fitting ---------------------------------------------------------------------------
    def _validate(self, schema: TableSchema) -> None:
        if not (isinstance(self.noise_multiplier, int | float) and self.noise_multiplier > 0):
            raise ValueError("The 'noise_multiplier' parameter of DPMarginalSynthesizer must be "
                             f"a float in the range (0, inf). Got {self.noise_multiplier!r} instead.")
        if not (isinstance(self.max_pairs, int) and self.max_pairs >= 0):
            raise ValueError("The 'max_pairs' parameter of DPMarginalSynthesizer must be an int "
                             f"in the range [0, inf). Got {self.max_pairs!r} instead.")
        if not isinstance(self.rng, np.random.Generator):
            raise ValueError("The 'rng' parameter must be a numpy Generator "
                             f"(np.random.default_rng(seed)). Got {type(self.rng).__name__}.")
        if self.selection not in ("mst", "chain"):
            raise ValueError(f"The 'selection' parameter must be 'mst' or 'chain'. "
                             f"Got {self.selection!r} instead.")
        if not (isinstance(self.n_bins, int) and self.n_bins >= 2):
            raise ValueError(f"The 'n_bins' parameter must be an int >= 2. Got {self.n_bins!r}.")
        for share in ("range_share", "selection_share"):
            value = getattr(self, share)
            if not 0 < value < 0.5:
                raise ValueError(f"The '{share}' parameter must be in (0, 0.5). Got {value!r}.")
        for name, (lo, hi) in (self.bounds or {}).items():
            if name not in schema.feature_names or schema.feature(name).kind != "numeric":
                raise ValueError(f"bounds names {name!r}, which is not a numeric feature.")
            if not lo < hi:
                raise ValueError(f"bounds for {name!r} must have min < max. Got ({lo}, {hi}).")

    def _plan(self, schema: TableSchema) -> dict[str, int]:
        """Marginals per stage: a function of the schema and parameters only."""
        d = len(schema.features)
        bounds = self.bounds or {}
        n_range = sum(1 for f in schema.features if f.kind == "numeric" and f.name not in bounds)
        n_pairs = min(self.max_pairs, max(d - 1, 0))
        n_select = d * (d - 1) // 2 if self.selection == "mst" and 0 < n_pairs else 0
        if n_select == n_pairs:  # the only spanning tree of 2 columns: nothing to choose
            n_select = 0
        return {"range": n_range, "selection": n_select, "measure": d + n_pairs}

    def _stds(self, plan: dict[str, int]) -> dict[str, float]:
        shares = {"range": self.range_share if plan["range"] else 0.0,
                  "selection": self.selection_share if plan["selection"] else 0.0}
        shares["measure"] = 1.0 - sum(shares.values())
        sigma = float(self.noise_multiplier)
        return {g: sigma * math.sqrt(k / shares[g]) for g, k in plan.items() if k}

    def _noisy(self, counts: np.ndarray, std: float) -> np.ndarray:
        self.measurement_stds_.append(std)
        return counts + self.rng.normal(0.0, std, size=counts.shape)

    def fit(self, features: pd.DataFrame, schema: TableSchema) -> DPMarginalSynthesizer:
        """Measure noisy marginals of ``features`` (one row per patient) for ``schema``."""
        self._validate(schema)
        missing = [n for n in schema.feature_names if n not in features.columns]
        if missing:
            raise ValueError(f"features lack the schema columns {missing}.")
        plan = self._plan(schema)
        stds = self._stds(plan)
        self.n_marginals_ = sum(plan.values())
        self.plan_ = plan
        self.measurement_stds_: list[float] = []
        bounds = self.bounds or {}
        columns = [_Column(f.name, f.kind, f.categories) for f in schema.features]
        for column in columns:
            if column.kind != "numeric":
                continue
            if column.name in bounds:
                lo, hi = bounds[column.name]
                column.edges = np.linspace(lo, hi, self.n_bins + 1)
            else:
                noisy = self._noisy(_fine_histogram(features[column.name]), stds["range"])
                _bins_from_noisy_fine(column, noisy, stds["range"], self.n_bins)
        codes = [c.encode(features[c.name].reset_index(drop=True)) for c in columns]
        edges = self._select(columns, codes, plan, stds.get("selection", 0.0))
        one_way = []
        for column, code in zip(columns, codes):
            noisy = self._noisy(np.bincount(code, minlength=column.size).astype(float),
                                stds["measure"])
            one_way.append(np.clip(noisy, 0, None))
        total = max(float(np.mean([m.sum() for m in one_way])), 1.0)
        one_way = [m / m.sum() if m.sum() > 0 else np.full(len(m), 1 / len(m)) for m in one_way]
        tables = {}
        for i, j in edges:
            counts = np.zeros((columns[i].size, columns[j].size))
            np.add.at(counts, (codes[i], codes[j]), 1.0)
            noisy = self._noisy(counts, stds["measure"])
            tables[(i, j)] = _ipf(noisy, one_way[i] * total, one_way[j] * total)
        self.columns_, self.one_way_, self.tables_, self.edges_ = columns, one_way, tables, edges
        self.n_rows_estimate_ = total
        return self

    def _select(self, columns: list[_Column], codes: list[np.ndarray], plan: dict[str, int],
                std: float) -> list[tuple[int, int]]:
        d = len(columns)
        n_pairs = plan["measure"] - d
        if n_pairs == 0:
            return []
        if self.selection == "chain" or plan["selection"] == 0:
            return [(i, i + 1) for i in range(n_pairs)]
        coarse = [c.coarsen(code) for c, code in zip(columns, codes)]
        scores = {}
        for i in range(d):
            for j in range(i + 1, d):
                (ci, si), (cj, sj) = coarse[i], coarse[j]
                counts = np.zeros((si, sj))
                np.add.at(counts, (ci, cj), 1.0)
                scores[(i, j)] = _mutual_information(self._noisy(counts, std))
        tree = _max_spanning_tree(d, scores)
        return sorted(tree, key=lambda e: -scores[e])[:n_pairs]

    def _check_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise NotFittedError("This DPMarginalSynthesizer is not fitted yet. Call 'fit' "
                                 "with the sensitive training features first.")

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, n: int) -> pd.DataFrame:
        """``n`` synthetic rows with the schema's feature columns (post-processing only)."""
        self._check_fitted()
        if int(n) < 0:
            raise ValueError(f"n must be a non-negative integer. Got {n}.")
        n = int(n)
        d = len(self.columns_)
        neighbours: dict[int, list[tuple[int, np.ndarray]]] = {i: [] for i in range(d)}
        for (i, j), table in self.tables_.items():
            padded = table + 1e-12
            neighbours[i].append((j, padded / padded.sum(1, keepdims=True)))
            neighbours[j].append((i, (padded / padded.sum(0, keepdims=True)).T))
        codes: dict[int, np.ndarray] = {}
        for root in range(d):
            if root in codes:
                continue
            codes[root] = self.rng.choice(len(self.one_way_[root]), size=n, p=self.one_way_[root])
            queue = [root]
            while queue:
                parent = queue.pop(0)
                for child, conditional in neighbours[parent]:
                    if child in codes:
                        continue
                    cumulative = np.cumsum(conditional, axis=1)[codes[parent]]
                    u = self.rng.random(n) * cumulative[:, -1]
                    codes[child] = np.minimum((u[:, None] > cumulative).sum(1),
                                              conditional.shape[1] - 1)
                    queue.append(child)
        frame = pd.DataFrame({c.name: c.decode(codes[i], self.rng)
                              for i, c in enumerate(self.columns_)})
        for name in self.integer_columns:
            frame[name] = np.round(frame[name])
        return frame


__all__ = ["DPMarginalSynthesizer"]
