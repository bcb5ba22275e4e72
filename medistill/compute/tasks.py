"""What runs on a cluster worker: one unit of work, its failure turned into a safe value.

A worker logs the message and arguments of a task that raises; an exception raised deep in
pandas or scikit-learn may quote a sensitive cell. So a unit prints no warning on the worker
and never raises there: a
:class:`MedistillError` (whose messages never quote values) comes back as it is, any other
exception as its type and the code location where it happened, without its message.
"""

from __future__ import annotations

import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

from medistill.errors import ComputeError, MedistillError

LABEL = re.compile(r"[a-z][a-z0-9-]{0,39}")
"""Task labels are fixed words of the code (``teacher``, ``reference-model``), never data."""


@dataclass(frozen=True)
class TaskFailure:
    """A unit that failed: a medistill error to re-raise, or where another error happened."""

    error_type: type[MedistillError] | None
    message: str


def run_unit(fn: Callable[[Any], Any], item: Any) -> Any:
    """``fn(item)`` with one BLAS/OpenMP thread (as local workers have); never raises and
    prints no warning (a worker's stderr is a log the run does not control)."""
    try:
        with threadpool_limits(limits=1), warnings.catch_warnings(record=True):
            return fn(item)
    except MedistillError as exc:
        return TaskFailure(type(exc), exc.render())
    except Exception as exc:  # noqa: BLE001 - turned into a value on purpose (see module doc)
        return TaskFailure(None, describe_failure(exc))


def describe_failure(exc: BaseException) -> str:
    """The exception's type and innermost code location — never its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" in {last.name} ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    return f"{type(exc).__name__}{where}"


def unwrap(value: Any, key: str) -> Any:
    """The unit's result, or its failure raised on the calling side."""
    if not isinstance(value, TaskFailure):
        return value
    if value.error_type is not None:
        try:
            raise value.error_type(value.message)
        except TypeError:  # a subclass with another constructor
            raise MedistillError(value.message) from None
    raise ComputeError(
        f"Task {key} failed on the cluster with {value.message}. The error's message is not "
        "shown, because it could quote a sensitive value.",
        hint="Run without --scheduler (local processes) to see the full error.")


def check_label(label: str) -> str:
    """Refuse a task label that is not a fixed lowercase word (labels name tasks on the
    scheduler and its dashboard, so they must never carry data)."""
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise ValueError(f"A task label must be a lowercase word ([a-z][a-z0-9-]*, at most 40 "
                         f"characters). Got {label!r} instead.")
    return label


__all__ = ["TaskFailure", "check_label", "describe_failure", "run_unit", "unwrap"]
