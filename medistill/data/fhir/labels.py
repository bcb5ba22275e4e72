"""Outcome labels: the window after the index date, the deceased label, and a description.

Condition and Observation labels are slots aggregated with ``flag`` over the days
``(index, index + horizon_days]``: an event on the index day belongs to the features, not
to the outcome, and an event on day ``index + horizon_days`` still counts. A deceased label
needs a date of death; patients who died on or before the index date, or whose record says
deceased without a date, cannot be labelled and are left out.
"""

from __future__ import annotations

import numpy as np

from medistill.data.fhir.mapping import LabelSpec


def deceased_label(deceased: np.ndarray, deceased_day: np.ndarray, index_day: np.ndarray,
                   horizon_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(label, labelable) per patient for ``kind: deceased``.

    ``deceased_day`` is a date ordinal or -1 when unknown; ``index_day`` a date ordinal.
    """
    offset = deceased_day - index_day
    dated = deceased & (deceased_day >= 0)
    labelable = ~deceased | (dated & (offset > 0))
    label = (dated & (offset > 0) & (offset <= horizon_days)).astype(np.int64)
    return label, labelable


def describe_label(spec: LabelSpec) -> str:
    """One sentence saying what the label means, for reports."""
    window = f"in the {spec.horizon_days} days after the index date (index day excluded)"
    if spec.kind == "condition_onset":
        return f"1 if a Condition with one of {len(spec.codes)} codes starts {window}"
    if spec.kind == "deceased":
        return f"1 if the patient dies {window}"
    side = "above" if spec.kind == "observation_above" else "below"
    unit = f" {spec.unit}" if spec.unit else ""
    return (f"1 if an Observation with one of {len(spec.codes)} codes is {side} "
            f"{spec.threshold:g}{unit} {window}")


__all__ = ["deceased_label", "describe_label"]
