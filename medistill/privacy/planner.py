"""Budget planning: split one target ε across stages and calibrate each stage's noise so
that the *composed* total meets the target — before any training starts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import dp_accounting as dpa

from medistill.errors import PrivacyBudgetError
from medistill.privacy.ledger import AccountantName, epsilon_of


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


def calibrate_noise(event_for: Callable[[float], dpa.DpEvent], epsilon: float, delta: float,
                    accountant: AccountantName, *, low: float = 0.3, high: float = 1e5,
                    iterations: int = 40) -> float:
    """The smallest noise multiplier (to 0.2 %) whose event alone costs at most ``epsilon``."""
    if accountant == "pld":
        # RDP is looser than PLD, so the RDP answer brackets the PLD one from above.
        upper = calibrate_noise(event_for, epsilon, delta, "rdp", low=low, high=high)
        if math.isinf(upper):
            return upper
        low, high = max(low, 0.4 * upper), upper
        if epsilon_of([event_for(high)], delta, accountant) > epsilon:  # not expected
            low, high = upper, 1e5
    if epsilon_of([event_for(high)], delta, accountant) > epsilon:
        return math.inf
    if epsilon_of([event_for(low)], delta, accountant) <= epsilon:
        return low
    for _ in range(iterations):
        mid = math.sqrt(low * high)
        if epsilon_of([event_for(mid)], delta, accountant) <= epsilon:
            high = mid
        else:
            low = mid
        if high / low < 1.002:
            break
    return high


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
        noise = calibrate_noise(stage.event_for, eps_share, delta, accountant)
        if noise > stage.max_noise:
            raise PrivacyBudgetError(
                f"The privacy plan cannot meet ε = {target_epsilon:g} at δ = {delta:.2g}: stage "
                f"'{stage.name}' ({stage.what}) gets ε = {eps_share:.3g} of it and would need a "
                f"noise multiplier of {noise:.4g}, above the {stage.max_noise:.4g} at which its "
                "output is still useful.",
                hint="Raise privacy.target_epsilon, give this stage a larger share "
                     "(privacy.shares), or ask it to do less (fewer label queries, fewer "
                     "epochs).")
        noises[stage.name] = noise

    def composed(scale: float) -> float:
        return epsilon_of([*spent, *(s.event_for(noises[s.name] * scale) for s in stages)],
                          delta, accountant)

    low, high = 0.05, 1.0
    if composed(high) > target_epsilon:  # not expected: composition should be sub-additive
        high = 1.0
        while composed(high) > target_epsilon:
            high *= 1.25
    if composed(low) <= target_epsilon * (1 - tolerance):
        low = 0.05
    for _ in range(30):
        if composed(high) >= target_epsilon * (1 - tolerance):
            break
        mid = 0.5 * (low + high)
        if composed(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return {name: noise * high for name, noise in noises.items()}


__all__ = ["StagePlan", "calibrate_noise", "plan_budget"]
