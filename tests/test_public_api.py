import importlib

import medistill


def test_every_public_name_imports() -> None:
    for name in medistill.__all__:
        assert getattr(medistill, name) is not None


def test_module_all_lists_are_importable() -> None:
    for module in ("medistill.config", "medistill.errors", "medistill.pipeline",
                   "medistill.privacy.ledger", "medistill.privacy.planner",
                   "medistill.data.table", "medistill.student.export", "medistill.audit.mia"):
        mod = importlib.import_module(module)
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.{name}"


def test_errors_share_one_root() -> None:
    for name in ("ConfigError", "DataError", "PrivacyBudgetError", "TrainingError",
                 "RunFolderError", "IdentifierColumnError", "NotFittedError"):
        assert issubclass(getattr(medistill, name), medistill.MedistillError)
