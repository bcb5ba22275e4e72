"""medistill — privacy-preserving knowledge distillation for healthcare data."""

from __future__ import annotations

__version__ = "0.1.0"

from medistill.errors import (
    ConfigError,
    DataError,
    IdentifierColumnError,
    MedistillError,
    NotFittedError,
    PrivacyBudgetError,
    RunFolderError,
    TrainingError,
)



def load_config(path, *, seed: int | None = None):
    """Read and validate a pipeline file (see :func:`medistill.config.load_config`)."""
    from medistill.config import load_config as _load

    return _load(path, seed=seed)


def run(config, out_dir, *, console=None):
    """Run the whole pipeline for ``config`` (a :class:`~medistill.config.PipelineConfig` or
    a path to a pipeline file) into the run folder ``out_dir``; returns a ``RunOutcome``
    (``run_dir``, ``report``). Imports torch only when called."""
    from pathlib import Path

    from medistill.pipeline import run_pipeline

    if isinstance(config, str | Path):
        config = load_config(config)
    return run_pipeline(config, Path(out_dir), console=console)


def plan(config, facts):
    """The run plan for ``config`` and public/charged ``facts`` (see :func:`medistill.plan.plan_run`)."""
    from medistill.plan import plan_run

    return plan_run(config, facts)


__all__ = [
    "ConfigError",
    "DataError",
    "IdentifierColumnError",
    "MedistillError",
    "NotFittedError",
    "PrivacyBudgetError",
    "RunFolderError",
    "TrainingError",
    "__version__",
    "load_config",
    "plan",
    "run",
]
