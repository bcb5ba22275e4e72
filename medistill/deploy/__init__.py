"""Deployment inside the hospital: batch scoring, the HTTP service, deployable bundles.

Names are imported on first use, so ``import medistill.deploy`` loads nothing heavy and the
scoring path never imports torch or scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DeployedModel": "medistill.deploy.model",
    "load_model": "medistill.deploy.model",
    "PredictSummary": "medistill.deploy.predict",
    "predict_file": "medistill.deploy.predict",
    "predict_fhir_resources": "medistill.deploy.predict",
    "package_run": "medistill.deploy.package",
    "create_app": "medistill.deploy.service",
    "register": "medistill.deploy.commands",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medistill.deploy' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
