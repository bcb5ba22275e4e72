"""The DP teacher's charged numeric ranges: zooming noisy histograms."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from medistill.privacy.ledger import epsilon_of, make_accountant
from medistill.teachers.dp_ranges import (
    PUBLISHED,
    ROUND_WEIGHTS,
    ColumnRange,
    RangeSettings,
    equal_rounds,
    ranges_event,
    release_ranges,
    round_multipliers,
    sample_range,
)


def _gaussian_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of a μ-GDP mechanism (Balle & Wang 2018, Thm. 8; Dong, Roth & Su 2022)."""
    return float(norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2))


@pytest.mark.parametrize("weights", [equal_rounds(1), equal_rounds(2), equal_rounds(3),
                                     ROUND_WEIGHTS, (0.7, 0.2, 0.1)])
def test_event_is_one_gaussian_of_the_planned_multiplier(weights: tuple[float, ...]) -> None:
    z, delta = 2.5, 1e-5
    event = ranges_event(z, weights)
    assert isinstance(event, dpa.ComposedDpEvent) and len(event.events) == len(weights)
    assert [e.noise_multiplier for e in event.events] == pytest.approx(
        [z / math.sqrt(w) for w in weights])
    for accountant in ("pld", "rdp"):
        assert epsilon_of([event], delta, accountant) == pytest.approx(
            epsilon_of([dpa.GaussianDpEvent(z)], delta, accountant), rel=2e-3)
    # Against the analytic Gaussian: the accountant's δ at its own ε is the 1/z-GDP δ.
    pld = make_accountant("pld")
    pld.compose(event)
    epsilon = pld.get_epsilon(delta)
    assert _gaussian_delta(epsilon, 1 / z) == pytest.approx(delta, rel=0.05)


def _patients(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 12, n)
    age[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"year": rng.integers(1975, 1996, n).astype(float),
                         "marker": rng.lognormal(np.log(3.0), 1.5, n),
                         "age": age, "offset": rng.normal(-40, 3, n)})


def _covers_and_fills(found, values: np.ndarray, *, scale=lambda x: x, upper_q: float = 0.95,
                      min_fill: float = 0.2) -> bool:
    """Whether the range holds the central values (5 %–``upper_q``) and they fill at least
    ``min_fill`` of its width (on ``scale``): not clipped away, not flattened."""
    finite = values[np.isfinite(values)]
    lo, hi = np.quantile(finite, [0.05, upper_q])
    fill = (scale(hi) - scale(lo)) / (scale(found.high) - scale(found.low))
    return bool(found.low <= lo and found.high >= hi and fill >= min_fill)


def test_ranges_find_a_calendar_year_a_heavy_tail_and_a_negative_column() -> None:
    """Over 20 fresh draws each column's range is right in all but at most 2 (measured:
    300 draws, failure rate 1 % for the year — a noise-only bin near it stretched one
    range to 951–4,121 — and 0 for the others)."""
    frame = _patients(600)
    columns = list(frame.columns)
    misses = {c: [] for c in columns}
    for _ in range(20):
        found = release_ranges(frame, columns, noise_multiplier=2.0,
                               rng=np.random.default_rng())
        assert found["year"].informative and found["year"].rounds_used >= 2
        for column in columns:
            heavy = column == "marker"
            if not _covers_and_fills(found[column], frame[column].to_numpy(),
                                     scale=np.arcsinh if heavy else (lambda x: x),
                                     upper_q=0.9 if heavy else 0.95):
                misses[column].append(found[column])
    assert all(len(m) <= 2 for m in misses.values()), misses


def test_a_calendar_year_at_the_planned_noise_of_380_patients() -> None:
    """What the small-data pipeline test meets (380 training patients, 4 columns, ε = 3:
    noise multiplier ≈ 2.5): the year range is usable — holds 1976–1994, at most 100 years
    wide — in about 90 % of releases (measured over 400 draws of the published release:
    88.5 %; the 2026-11-30 release: 92 % on this frame over 600). The misses are 140–280
    years wide: each 2-year bin of the last zoom holds 20–40 patients, under its stray-bin
    threshold, so it kept only merged groups of 8–16 bins. Held to 75 % of 40 seeded draws (no flakiness)."""
    frame = _patients(380)
    noise = np.random.default_rng(2024)
    usable = 0
    for _ in range(40):
        year = release_ranges(frame, ["year", "marker", "age", "offset"], noise_multiplier=2.5,
                              rng=noise)["year"]
        usable += year.low <= 1976 and year.high >= 1994 and year.high - year.low <= 100
    assert usable >= 30, usable


def test_one_extreme_patient_does_not_set_the_range() -> None:
    frame = _patients(600)
    frame.loc[0, "marker"] = 1e5              # the data's max: a range must not be it
    found = release_ranges(frame, ["marker"], noise_multiplier=2.0,
                           rng=np.random.default_rng())
    assert found["marker"].high < 5_000


def test_noise_is_drawn_the_same_way_whatever_the_data() -> None:
    """Every round counts every column: the number of noise draws, and so the mechanism,
    does not depend on what the rounds found."""

    class Counting:
        def __init__(self) -> None:
            self.draws, self._rng = 0, np.random.default_rng()

        def normal(self, loc, scale, size):
            self.draws += int(size)
            return self._rng.normal(loc, scale, size)

    draws = []
    for frame in (_patients(600), _patients(30) * 1e3, _patients(600).assign(age=np.nan)):
        rng = Counting()
        release_ranges(frame, ["year", "age"], noise_multiplier=2.0, rng=rng,
                       settings=RangeSettings(weights=equal_rounds(3)))
        draws.append(rng.draws)
    assert draws == [2 * (PUBLISHED.locate_bins + 2 * PUBLISHED.zoom_bins)] * 3


def test_under_overwhelming_noise_a_column_is_marked_uninformative() -> None:
    # A noise-only bin stands out now and then (≈ 5 % per merge level, by design); most
    # releases of 50 patients under noise of std ≈ 700 per bin say they found nothing.
    found = [release_ranges(_patients(50), ["age"], noise_multiplier=500.0,
                            rng=np.random.default_rng())["age"] for _ in range(20)]
    assert sum(not r.informative for r in found) >= 10
    assert all(r.rounds_used == 1 for r in found if not r.informative)
    assert all(r.low < r.high for r in found)


def test_samples_follow_the_released_histogram() -> None:
    """A released range keeps the histogram that set it; draws land in its kept bins, in
    proportion to their weights, and their median is near the data's (a year, a heavy tail)."""
    frame = _patients(600)
    found = release_ranges(frame, ["year", "marker"], noise_multiplier=2.0,
                           rng=np.random.default_rng(3))
    for column in ("year", "marker"):
        released = found[column]
        draws = sample_range(released, 20_000, np.random.default_rng(0))
        kept = np.flatnonzero(released.weights > 0)
        assert draws.min() >= released.edges[kept[0]] and draws.max() <= released.edges[kept[-1] + 1]
        true_median = np.nanmedian(frame[column])
        assert abs(np.median(draws) - true_median) <= 0.25 * np.subtract(
            *np.nanquantile(frame[column], [0.75, 0.25]))
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    skewed = ColumnRange(0.0, 3.0, True, 2, edges, np.array([0.0, 3.0, 1.0]))
    draws = sample_range(skewed, 40_000, np.random.default_rng(1))
    assert draws.min() >= 1.0 and abs(np.mean(draws < 2.0) - 0.75) < 0.01


def test_without_an_informative_histogram_samples_are_uniform_over_the_range() -> None:
    for released in (ColumnRange(-2.0, 6.0, False, 1, np.array([0.0, 1.0]), np.array([1.0])),
                     ColumnRange(-2.0, 6.0, True, 1)):
        draws = sample_range(released, 20_000, np.random.default_rng(0))
        assert -2.0 <= draws.min() < -1.9 and 5.9 < draws.max() <= 6.0
        assert abs(draws.mean() - 2.0) < 0.1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="round weights"):
        RangeSettings(weights=())
    with pytest.raises(ValueError, match="rounds"):
        equal_rounds(0)
    with pytest.raises(ValueError, match="lower"):
        release_ranges(_patients(10), ["age"], noise_multiplier=1.0,
                       rng=np.random.default_rng(), lower=0.9, upper=0.1)
    assert release_ranges(_patients(10), [], noise_multiplier=1.0,
                          rng=np.random.default_rng()) == {}


@pytest.mark.parametrize("weights", [(), (0.5, 0.4), (1.0, 0.0), (1.2, -0.2)])
def test_round_weights_must_be_positive_and_sum_to_one(weights) -> None:
    with pytest.raises(ValueError, match="round weights"):
        round_multipliers(2.0, weights)


def test_each_round_draws_noise_at_its_own_multiplier() -> None:
    """Round k's noise std per bin is z/√w_k · √d (d columns share the L2 sensitivity)."""

    class Recording:
        def __init__(self) -> None:
            self.scales: list[float] = []
            self._rng = np.random.default_rng(0)

        def normal(self, loc, scale, size):
            self.scales.append(float(scale))
            return self._rng.normal(loc, scale, size)

    rng = Recording()
    release_ranges(_patients(200), ["year", "age"], noise_multiplier=3.0, rng=rng)
    assert len(rng.scales) == 2 * len(ROUND_WEIGHTS)
    expected = [m * math.sqrt(2) for m in round_multipliers(3.0) for _ in range(2)]
    assert rng.scales == pytest.approx(expected)


def test_thirty_wide_columns_of_a_few_hundred_patients_are_located() -> None:
    """The case that set the coarse locating grid and the uneven rounds (breast cancer at
    ε = 1: 342 patients, 30 columns, noise multiplier ≈ 6.3, so a noise std of ≈ 49 per
    bin in the first round): nearly every column's range must overlap its data, and most
    hold the central 90 %. The fine 232-bin grid found nothing in 39 % of such columns and fell back
    to a noise bin far from the data (coverage 0 in 23 %)."""
    rng = np.random.default_rng(7)
    n, d = 342, 30
    scales = np.exp(rng.uniform(np.log(0.01), np.log(1000.0), d))
    frame = pd.DataFrame({f"x{j}": scales[j] * rng.lognormal(0.0, 0.3, n) for j in range(d)})
    held, overlaps = [], []
    noise = np.random.default_rng(11)      # seeded: a fixed set of releases, no flakiness
    for _ in range(8):
        found = release_ranges(frame, list(frame.columns), noise_multiplier=6.3, rng=noise)
        for column, r in found.items():
            values = frame[column].to_numpy()
            lo, hi = np.quantile(values, [0.05, 0.95])
            held.append(r.low <= lo and r.high >= hi)
            overlaps.append(r.high > values.min() and r.low < values.max())
    # measured: overlap 0.996, central 90 % held 0.73 (the old grid: 0.80 and 0.76)
    assert np.mean(overlaps) >= 0.97 and np.mean(held) >= 0.65, (np.mean(overlaps),
                                                                   np.mean(held))


def test_a_zoom_that_keeps_only_the_peak_does_not_shrink_the_range() -> None:
    """A spread-out column where the zooms often see only its peak above the noise: with the
    kept-mass rule a zoom that holds less than half the earlier mass is not taken, so the
    range holds the central values (5–95 %) more often than when every informative zoom is
    taken — on the same seeded releases (measured: 79 against 63 of 100)."""
    frame = pd.DataFrame({"glucose": np.random.default_rng(3).normal(120, 30, 1000)})
    lo, hi = np.quantile(frame["glucose"], [0.05, 0.95])

    def held(settings: RangeSettings) -> int:
        noise = np.random.default_rng(5)   # seeded: the same releases for both rules
        found = [release_ranges(frame, ["glucose"], noise_multiplier=20.0, rng=noise,
                                settings=settings)["glucose"] for _ in range(100)]
        return sum(r.low <= lo and r.high >= hi for r in found)

    with_rule, without = held(PUBLISHED), held(RangeSettings(zoom_kept_mass=0.0))
    assert with_rule >= without + 8 and with_rule >= 70, (with_rule, without)


def test_the_old_release_lost_wide_columns_the_published_one_finds() -> None:
    """The 2026-11-30 release (232 locating bins, two equal rounds, every zoom taken, located
    ranges widened) on the thirty-column case: most of the ranges that miss their column
    entirely are its; both see the same seeded data."""
    old = RangeSettings(locate_bins=232, weights=equal_rounds(2), zoom_kept_mass=0.0,
                        zoom_stray_bins=0.005, widen_located=True)
    rng = np.random.default_rng(7)
    scales = np.exp(rng.uniform(np.log(0.01), np.log(1000.0), 30))
    frame = pd.DataFrame({f"x{j}": scales[j] * rng.lognormal(0.0, 0.3, 342) for j in range(30)})

    def misses(settings: RangeSettings) -> int:
        noise = np.random.default_rng(11)
        count = 0
        for _ in range(4):
            found = release_ranges(frame, list(frame.columns), noise_multiplier=6.3, rng=noise,
                                   settings=settings)
            count += sum(not (r.high > frame[c].min() and r.low < frame[c].max())
                         for c, r in found.items())
        return count

    assert misses(old) >= 3 * max(misses(PUBLISHED), 1)
