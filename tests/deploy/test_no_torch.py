"""Scoring never imports torch or scikit-learn (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
import medistill.deploy.predict
imported = time.perf_counter() - started
from medistill.deploy.predict import predict_file
predict_file(sys.argv[1], sys.argv[2], sys.argv[3])
if sys.argv[4] == "service":
    from fastapi.testclient import TestClient
    from medistill.deploy.service import create_app
    client = TestClient(create_app(sys.argv[1]))
    assert client.get("/health").status_code == 200
print(json.dumps({"heavy": sorted(m for m in sys.modules
                                  if m.split(".")[0] in ("torch", "sklearn", "skl2onnx",
                                                         "opacus", "scipy")),
                  "import_s": imported}))
"""


@pytest.mark.parametrize("what", ["csv-to-fhir", "service", "fhir-export"])
def test_scoring_never_imports_torch(tmp_path, run_dir, cohort, what) -> None:
    model, source, out = run_dir, tmp_path / "in.csv", tmp_path / "out.ndjson"
    if what == "fhir-export":
        fhir = pytest.importorskip("medistill.data.fhir")
        import numpy as np

        model = tmp_path / "model"
        shutil.copytree(run_dir, model)
        shutil.copy(Path(fhir.__file__).parent / "demo_mapping.yaml", model / "mapping.yaml")
        source = fhir.write_synthetic_fhir_export(tmp_path / "export", 5,
                                                  rng=np.random.default_rng(0))
        out = tmp_path / "out.csv"
    else:
        cohort.head(20).to_csv(source, index=False)
    if what == "service":
        pytest.importorskip("fastapi")
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(model), str(source), str(out),
                             "service" if what == "service" else "-"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert out.exists()
