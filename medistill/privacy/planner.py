"""Budget planning: split one target ε across stages and calibrate each stage's noise so
that the *composed* total meets the target — before any training starts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import dp_accounting as dpa
from dp_accounting import mechanism_calibration

from medistill.errors import PrivacyBudgetError, StageNoiseError
from medistill.privacy.ledger import (
    AccountantName, epsilon_of, make_accountant, quiet_accounting)


@dataclass(frozen=True)
class StagePlan:
    """A stage that will spend budget: its share and how its event depends on its noise.

    ``event_for(noise_multiplier)`` returns the event the stage will record; ``max_noise`` is
    the largest noise at which the stage is still useful (beyond it the plan is an error).
    """

    name: str
    share: float
    event_for: Callable[[float], dpa.DpEvent]
    max_noise: float
    what: str
    min_noise: float = 0.3


def _fits(events: list[dpa.DpEvent], epsilon: float, delta: float,
          accountant: AccountantName) -> bool:
    return epsilon_of(events, delta, accountant) <= epsilon


def calibrate_noise(event_for: Callable[[float], dpa.DpEvent], epsilon: float, delta: float,
                    accountant: AccountantName, *, low: float = 0.3, high: float = 1e5) -> float:
    """The smallest noise multiplier in [low, high] whose event alone costs at most
    ``epsilon`` (to 0.2 %), found by dp-accounting's ``calibrate_dp_mechanism``; ∞ when
    even ``high`` costs more, ``low`` when ``low`` already fits.

    For PLD the search is first made with RDP, which is cheap and looser, so its answer
    brackets the PLD one from above; PLD is then evaluated only near the answer (a PLD at
    very small noise has millions of points).
    """
    if accountant == "pld":
        upper = calibrate_noise(event_for, epsilon, delta, "rdp", low=low, high=high)
        if math.isinf(upper):
            # RDP's orders stop at 256, too few for very small ε: search with PLD alone.
            if not _fits([event_for(high)], epsilon, delta, accountant):
                return math.inf
        else:
            low, high = max(low, 0.4 * upper), upper
            if not _fits([event_for(high)], epsilon, delta, accountant):  # not expected
                return upper
    elif not _fits([event_for(high)], epsilon, delta, accountant):
        return math.inf
    if _fits([event_for(low)], epsilon, delta, accountant):
        return low
    with quiet_accounting():
        noise = mechanism_calibration.calibrate_dp_mechanism(
            lambda: make_accountant(accountant), event_for, epsilon, delta,
            mechanism_calibration.ExplicitBracketInterval(low, high), tol=2e-3 * low)
    return float(noise)


def max_count(event_for: Callable[[int], dpa.DpEvent], epsilon: float, delta: float,
              accountant: AccountantName, cap: int) -> int:
    """The largest count q ≤ ``cap`` (e.g. label queries) whose event ``event_for(q)`` costs at
    most ``epsilon``; 0 when even one is too many (dp-accounting's discrete calibration)."""
    if cap < 1 or not _fits([event_for(1)], epsilon, delta, accountant):
        return 0
    if _fits([event_for(cap)], epsilon, delta, accountant):
        return int(cap)
    with quiet_accounting():
        return int(mechanism_calibration.calibrate_dp_mechanism(
            lambda: make_accountant(accountant), event_for, epsilon, delta,
            mechanism_calibration.ExplicitBracketInterval(1, cap), discrete=True))


def plan_budget(stages: list[StagePlan], *, target_epsilon: float, delta: float,
                accountant: AccountantName, tolerance: float = 0.02,
                spent: tuple[dpa.DpEvent, ...] = ()) -> dict[str, float]:
    """Noise multiplier per stage so the composed ε lands in [(1 - tolerance)·target, target].

    ``spent`` are events that already happened (their cost is fixed); the stages share what
    is left. Each stage first gets the noise that spends its share of the remainder alone;
    since composition is sub-additive, the composed total is then below the target, and all
    noises are scaled down together until the total is within ``tolerance`` below it.
    """
    if not stages:
        return {}
    already = epsilon_of(list(spent), delta, accountant) if spent else 0.0
    if already >= target_epsilon:
        raise PrivacyBudgetError(
            f"Earlier stages already spent ε = {already:.3g} of the target {target_epsilon:g}; "
            "nothing is left for the remaining stages.")
    remaining = target_epsilon - already
    total_share = sum(s.share for s in stages)
    noises: dict[str, float] = {}
    for stage in stages:
        eps_share = remaining * stage.share / total_share
        # Searched up to 4× the useful maximum: enough to say how much noise a stage would
        # need, without asking a mechanism about absurd noise levels.
        noise = calibrate_noise(stage.event_for, eps_share, delta, accountant,
                                low=stage.min_noise, high=min(1e5, 4 * stage.max_noise))
        if noise > stage.max_noise:
            needed = (f"{noise:.4g}" if math.isfinite(noise)
                      else f"more than {min(1e5, 4 * stage.max_noise):.4g}")
            raise StageNoiseError(
                f"The privacy plan cannot meet ε = {target_epsilon:g} at δ = {delta:.2g}: stage "
                f"'{stage.name}' ({stage.what}) gets ε = {eps_share:.3g} of it and would need a "
                f"noise multiplier of {needed}, above the {stage.max_noise:.4g} at which its "
                "output is still useful.",
                hint="Raise privacy.target_epsilon, give this stage a larger share "
                     "(privacy.shares), or ask it to do less (fewer label queries, fewer "
                     "epochs).", stage=stage.name)
        noises[stage.name] = noise

    def composed_event(scale: float) -> dpa.DpEvent:
        return dpa.ComposedDpEvent([*spent, *(s.event_for(noises[s.name] * scale)
                                              for s in stages)])

    def fits(scale: float) -> bool:
        return _fits([composed_event(scale)], target_epsilon, delta, accountant)

    high = 1.0
    while not fits(high):  # not expected: composition should be sub-additive
        high *= 1.25
    low = 0.5 * high
    while fits(low) and low > 0.05:
        high, low = low, 0.5 * low
    if fits(low):
        return {name: noise * low for name, noise in noises.items()}
    with quiet_accounting():
        scale = mechanism_calibration.calibrate_dp_mechanism(
            lambda: make_accountant(accountant), composed_event, target_epsilon, delta,
            mechanism_calibration.ExplicitBracketInterval(low, high), tol=tolerance * low / 4)
    return {name: noise * float(scale) for name, noise in noises.items()}


__all__ = ["StagePlan", "calibrate_noise", "max_count", "plan_budget"]
