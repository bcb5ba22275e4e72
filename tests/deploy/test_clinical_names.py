"""#16.5: a student exported from a table with clinical headers scores a CSV with the same
headers through ``medistill predict`` (onnxruntime), matching the audit's own feeding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from medistill.data.schema import FeatureSpec, TableSchema

NAMES = {"sbp": "bp.sys", "dbp": "bp.dia (mmHg)", "hba1c": "HbA1c (%)",
         "heart_rate": "heart rate", "smoking": "smoking [status]", "sex": "Sex/Gender"}


@pytest.fixture()
def clinical(tmp_path, cohort):
    import torch

    from medistill.runfolder import write_manifest
    from medistill.student.export import export_student
    from medistill.student.model import StudentMLP
    from medistill.student.preprocess import as_model_input, make_preprocessor

    table = cohort[list(NAMES)].rename(columns=NAMES)
    schema = TableSchema((FeatureSpec("bp.sys", "numeric"), FeatureSpec("bp.dia (mmHg)", "numeric"),
                          FeatureSpec("HbA1c (%)", "numeric"), FeatureSpec("heart rate", "numeric"),
                          FeatureSpec("smoking [status]", "categorical",
                                      ("current", "former", "never")),
                          FeatureSpec("Sex/Gender", "categorical", ("F", "M"))),
                         "cv_event_1y", ("0", "1"))
    pre = make_preprocessor(schema).fit(as_model_input(table, schema))
    torch.manual_seed(0)
    net = StudentMLP(pre.transform(as_model_input(table.head(2), schema)).shape[1], 2, (8,)).eval()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(
        {"data": {"source": "csv", "path": "r.csv", "label": "cv_event_1y"}}))
    export_student(folder / "student.onnx", pre, net, schema,
                   {"epsilon": "2.5", "delta": "1e-05", "formal_guarantee": "true"})
    write_manifest(folder)
    csv = tmp_path / "clinical.csv"
    table.to_csv(csv, index=False)
    with torch.no_grad():
        x = torch.as_tensor(pre.transform(as_model_input(table, schema)), dtype=torch.float32)
        torch_proba = torch.softmax(net(x), dim=1).numpy()
    return folder / "student.onnx", csv, table, torch_proba


def test_16_5_clinical_column_names_through_onnx_and_predict(clinical, tmp_path, reference):
    from medistill.cli import app

    model, csv, table, torch_proba = clinical
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["predict", "--model", str(model), str(csv), "--out",
                                      str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    expected = reference(model, table)
    assert list(scored.columns) == ["probability", "prediction"] and len(scored) == len(table)
    np.testing.assert_allclose(scored["probability"].to_numpy(), expected[:, 1], atol=1e-5)
    # the renamed inputs feed the columns they name: same as scikit-learn + torch
    np.testing.assert_allclose(scored["probability"].to_numpy(), torch_proba[:, 1], atol=1e-5)
    assert 0.05 < expected[:, 1].std() < 0.5    # the columns reach the network


def test_16_5_spaces_around_headers_are_dropped_as_in_training(clinical, tmp_path):
    from medistill.deploy.predict import predict_file

    model, _, table, torch_proba = clinical
    csv = tmp_path / "spaced.csv"
    table.rename(columns={"HbA1c (%)": " HbA1c (%) ", "bp.sys": "bp.sys  "}).to_csv(csv, index=False)
    out = tmp_path / "scores.csv"
    predict_file(model, csv, out)
    np.testing.assert_allclose(pd.read_csv(out)["probability"], torch_proba[:, 1], atol=1e-5)
