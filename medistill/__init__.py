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
]
