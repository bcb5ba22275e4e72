"""One exception hierarchy for medistill.

Every error a user can cause derives from :class:`MedistillError`. The CLI turns it into
one paragraph on stderr and exit code 2 — never a traceback. Messages name the file, the
line or the field, what was expected and how to fix it.
"""

from __future__ import annotations


class MedistillError(Exception):
    """Base class of every error medistill raises on purpose.

    ``exit_code`` is what the CLI exits with when this error stops a command.
    """

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message.strip()
        self.hint = hint.strip() if hint else None
        super().__init__(self.render())

    def render(self) -> str:
        """The one-paragraph message shown to the user."""
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class ConfigError(MedistillError):
    """The pipeline file or a policy file is invalid (syntax, unknown key, bad value)."""


class DataError(MedistillError):
    """An input table or export is missing, empty, malformed or unsuitable."""


class IdentifierColumnError(DataError):
    """A column looks like a direct identifier and was not declared."""


class PrivacyBudgetError(MedistillError):
    """The privacy plan cannot meet the target (ε, δ) with the requested work."""


class StageNoiseError(PrivacyBudgetError):
    """One planned stage (``stage``) would need more noise than its output can bear."""

    def __init__(self, message: str, *, stage: str, hint: str | None = None) -> None:
        self.stage = stage
        super().__init__(message, hint=hint)


class TrainingError(MedistillError):
    """A model could not be trained on the data it was given (e.g. one class only)."""


class NotFittedError(MedistillError, ValueError):
    """A model or transformer was used before ``fit``."""


class RunFolderError(MedistillError):
    """A run folder is missing, incomplete, or would overwrite something."""


class ModelIntegrityError(RunFolderError):
    """A model (or a run folder's file) does not match the hash recorded for it."""


class ComputeError(MedistillError):
    """The compute cluster cannot be reached, lost its workers, or a task on it failed."""


__all__ = [
    "ComputeError",
    "ConfigError",
    "DataError",
    "IdentifierColumnError",
    "MedistillError",
    "ModelIntegrityError",
    "NotFittedError",
    "PrivacyBudgetError",
    "RunFolderError",
    "TrainingError",
]
