"""Export the released student to ``student.onnx`` with releasable metadata only.

The metadata travels with the model (``package``, ``serve``, FHIR RiskAssessments): the
medistill version and the guarantee (ε, δ, accountant, whether it is formal), ε and δ
written exactly (shortest round-trip repr), so the metadata never understates them. Never
the pipeline file's hash: ``pipeline.yaml`` holds local paths and the seed, and its hash
would let anyone confirm guesses of them; the run's ``manifest.json`` (which stays in the
run folder) records both files' hashes.
"""

from __future__ import annotations

from pathlib import Path

from medistill import __version__
from medistill.privacy.ledger import PrivacyLedger
from medistill.steps.prepare import Prepared
from medistill.steps.student import Student
from medistill.student.export import export_student


def _exact(value: float) -> str:
    """``value`` as text that reads back as the same float (``inf`` for ∞)."""
    return repr(float(value))


def model_metadata(ledger: PrivacyLedger) -> dict[str, str]:
    """The ONNX metadata of the released student: version and guarantee, nothing else."""
    return {"medistill_version": __version__, "epsilon": _exact(ledger.epsilon()),
            "delta": _exact(ledger.total_delta), "accountant": ledger.accountant,
            "formal_guarantee": str(ledger.formal_guarantee).lower()}


def export(prepared: Prepared, student: Student, path: Path) -> None:
    """Write ``student.onnx`` (preprocessing and network in one graph) with the guarantee
    in its metadata."""
    export_student(path, student.preprocessor, student.network, prepared.data.schema,
                   model_metadata(prepared.ledger))


__all__ = ["export", "model_metadata"]
