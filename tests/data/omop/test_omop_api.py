"""Every public name of the OMOP package and the Bulk Data layout module imports."""

from __future__ import annotations

import importlib

import pytest

MODULES = ("medistill.data.omop", "medistill.data.omop.loader", "medistill.data.omop.source",
           "medistill.data.omop.selection", "medistill.data.omop.sql",
           "medistill.data.fhir.bulk")


@pytest.mark.parametrize("module", MODULES)
def test_all_names_import(module):
    mod = importlib.import_module(module)
    assert mod.__all__
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"
