"""The releasable model card holds only covered or public facts (#15.7)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from medistill.audit.model_card import TRIPOD_AI, build_model_card, write_model_card
from medistill.config import parse_config

SCHEMA = {"label": "cv_event_1y", "classes": ["0", "1"],
          "features": [{"name": "age", "kind": "numeric", "categories": []},
                       {"name": "HbA1c (%)", "kind": "numeric", "categories": []},
                       {"name": "smoking", "kind": "categorical",
                        "categories": ["never", "RareDiagnosisXYZ"]}]}
REPORT = {
    "schema_version": "1", "verdict": "release", "passed": True,
    "run": {"created_at": "2026-01-02T03:04:05Z", "pipeline_sha256": "ab",
            "dataset": {"n_patients": 2345, "n_test": 469, "prevalence": 0.123456},
            "student": {"hidden_layers": [64, 32], "n_parameters": 3210,
                        "clipping_check_rel_diff": 0.000777},
            "ensemble": {"kind": "partitioned", "aggregator": "gnmax"}},
    "utility": {"student": {"auroc": 0.81234, "brier": 0.10987},
                "retention": {"auroc": 0.94321}},
    "speed": {"student": {"latency_ms_p50": 0.0712}},
    "privacy": {"unit": "patient", "formal_guarantee": True, "epsilon": 2.98, "delta": 1e-6,
                "accountant": "pld", "covered": "the released student",
                "ledger": [{"stage": "labels", "mechanism": "gaussian", "noise_multiplier": 40.0,
                            "sample_rate": None, "count": 300, "epsilon_alone": 1.2,
                            "description": "gnmax on 300 queries of 2345 patients"}]},
    "mia": {"student": {"epsilon_lower_bound": 0.2345,
                        "attacks": [{"name": "rmia", "auc": 0.5234}, {"name": "lira", "auc": 0.51}]}},
    "fairness": {"sex": {"female": {"n": 11, "auroc": 0.66666}}},
}


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                             [None, 2])])
    proto = helper.make_model(graph)
    helper.set_model_props(proto, {"schema": json.dumps(SCHEMA), "medistill_version": "0.1.0",
                                   "pipeline_sha256": "ab"})
    path = tmp_path / "student.onnx"
    onnx.save(proto, str(path))
    return path


def _config():
    return parse_config({"data": {"source": "csv", "path": "/data/x.csv", "label": "cv_event_1y",
                                  "id_column": "mrn"}, "privacy": {"target_epsilon": 3.0}})


def test_15_7_card_holds_no_internal_figure(model: Path) -> None:
    card = build_model_card(REPORT, _config(), model)
    blob = json.dumps(card)
    for leaked in ("0.123456", "0.12", "2345", "469", "0.000777", "0.66666", "female",
                   "RareDiagnosisXYZ", "\"release\"", "\"verdict\":", "/data/x.csv", "2345 patients"):
        assert leaked not in blob, leaked
    figures = card["evaluation"]["figures"]
    assert figures["student_auroc"] == 0.81 and figures["strongest_attack_auc"] == 0.52
    assert figures["empirical_epsilon_lower_bound"] == 0.2
    assert card["evaluation"]["patients_order_of_magnitude"] == "1,000–10,000"
    assert card["privacy"]["epsilon"] == 2.98 and card["privacy"]["ledger"][0]["count"] == 300
    assert "description" not in card["privacy"]["ledger"][0]
    assert [f["name"] for f in card["inputs"]["features"]] == ["age", "HbA1c (%)", "smoking"]
    assert card["inputs"]["key_column"] == "mrn"
    assert {t["item"] for t in card["tripod_ai"]} >= {"8a", "9a", "14", "22", "23a"}
    assert len(TRIPOD_AI) == len(card["tripod_ai"])


def test_15_7_card_files_are_written_and_render(model: Path) -> None:
    card = write_model_card(model.parent, REPORT, _config())
    text = (model.parent / "model_card.md").read_text()
    assert text.startswith("# Model card: cv\\_event\\_1y")
    assert "| HbA1c (%) | numeric |" in text and card["model"]["sha256"] in text
    assert "0.123456" not in text and "2345" not in text
    assert json.loads((model.parent / "model_card.json").read_text()) == card


def test_15_7_card_without_guarantee_says_so(model: Path) -> None:
    report = json.loads(json.dumps(REPORT))
    report["privacy"]["formal_guarantee"] = False
    write_model_card(model.parent, report, _config())
    assert "NO FORMAL PRIVACY GUARANTEE" in (model.parent / "model_card.md").read_text()


def test_card_names_the_dp_teacher_on_the_dp_teacher_path(model: Path) -> None:
    """The DP-teacher path has no ensemble: the card names the DP teacher and the rows it
    labelled, says the student was fine-tuned when it was, and shows no PATE aggregator."""
    report = json.loads(json.dumps(REPORT))
    report["run"].update(ensemble=None, dp_teacher={"kind": "dp_ebm", "n_labelled": 20000})
    report["run"]["student"]["fine_tune"] = {"epochs": 3}
    card = write_model_card(model.parent, report, _config())
    development = card["development"]
    assert development["teachers"] == "dp_ebm" and development["teacher_labelled_rows"] == 20000
    assert "aggregator" not in development
    assert "differentially private teacher" in development["method"]
    assert "fine-tuned by DP-SGD" in development["method"]
    text = (model.parent / "model_card.md").read_text()
    assert "DP teacher: dp\\_ebm (20000 transfer rows labelled)" in text
    assert "aggregator" not in text
    report["run"]["student"]["fine_tune"] = None
    assert "fine-tuned" not in build_model_card(report, _config(), model)["development"]["method"]
    # the PATE path keeps its ensemble and aggregator
    pate = build_model_card(REPORT, _config(), model)["development"]
    assert pate["teachers"] == "partitioned" and pate["aggregator"] == "gnmax"
