"""The releasable model card holds only covered or public facts (#15.7)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from medistill.audit.model_card import (TRIPOD_AI, build_model_card, noisy_training_patients,
                                        write_model_card)
from medistill.config import parse_config

SCHEMA = {"label": "cv_event_1y", "classes": ["0", "1"],
          "features": [{"name": "age", "kind": "numeric", "categories": []},
                       {"name": "HbA1c (%)", "kind": "numeric", "categories": []},
                       {"name": "smoking", "kind": "categorical",
                        "categories": ["never", "RareDiagnosisXYZ"]}]}
REPORT = {
    "schema_version": "1", "verdict": "release", "passed": True,
    "run": {"created_at": "2026-01-02T03:04:05Z", "pipeline_sha256": "ab" * 32,
            "dataset": {"n_patients": 2345, "n_train": 1641, "n_test": 469,
                        "prevalence": 0.123456},
            "plan": {"noisy_class_counts": [1436, 217], "n_train_noisy": 1653},
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
    # a model exported before the fix still carries the pipeline hash: the card drops it
    helper.set_model_props(proto, {"schema": json.dumps(SCHEMA), "medistill_version": "0.1.0",
                                   "pipeline_sha256": "cd" * 32})
    path = tmp_path / "student.onnx"
    onnx.save(proto, str(path))
    return path


def _config(**audit):
    return parse_config({"data": {"source": "csv", "path": "/data/x.csv", "label": "cv_event_1y",
                                  "id_column": "mrn"}, "privacy": {"target_epsilon": 3.0},
                         "audit": audit})


def _report(**run) -> dict:
    report = json.loads(json.dumps(REPORT))
    report["run"].update(run)
    return report


def test_15_7_card_holds_no_internal_figure(model: Path) -> None:
    card = build_model_card(REPORT, _config(), model)
    blob = json.dumps(card)
    for leaked in ("0.123456", "0.12", "2345", "1641", "1653", "1436", "469", "0.000777",
                   "0.66666", "female", "RareDiagnosisXYZ", "\"release\"", "\"verdict\":",
                   "/data/x.csv", "2345 patients", "pipeline_sha256", "ab" * 32, "cd" * 32):
        assert leaked not in blob, leaked
    assert card["evaluation"]["training_patients_order_of_magnitude"] == "1,000–10,000"
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


@pytest.mark.parametrize(("exact", "noisy", "band"), [
    (1003, {"noisy_class_counts": [900, 99]}, "100–1,000"),      # exact above, noisy below
    (999, {"noisy_class_counts": [950, 60]}, "1,000–10,000"),    # exact below, noisy above
    (999, {"n_train_noisy": 1010, "noisy_class_counts": [1, 1]}, "1,000–10,000")])
def test_patient_band_comes_from_the_noisy_count_of_training_patients(
        model: Path, exact: int, noisy: dict, band: str) -> None:
    """At a band boundary one patient flips the exact count's band: the card's band is the
    charged noisy count's (report.json run.plan), whatever the exact counts are."""
    report = _report(dataset={"n_patients": exact, "n_train": exact}, plan=noisy)
    card = write_model_card(model.parent, report, _config())
    assert card["evaluation"]["training_patients_order_of_magnitude"] == band
    assert "patients_order_of_magnitude" not in card["evaluation"]
    text = (model.parent / "model_card.md").read_text()
    assert "Training patients, order of magnitude of the noisy count" in text
    assert f": {band}." in text and str(exact) not in text


def test_no_patient_band_without_a_charged_count(model: Path) -> None:
    report = _report(plan={"stages": []})
    assert noisy_training_patients(report["run"]) is None
    card = write_model_card(model.parent, report, _config())
    assert card["evaluation"]["training_patients_order_of_magnitude"] is None
    assert "2,345" not in json.dumps(card) and "1,000–10,000" not in json.dumps(card)
    assert "Training patients" not in (model.parent / "model_card.md").read_text()


FIGURE_VALUES = ("student_auroc", "0.81", "0.11", "0.94", "rmia", "0.52", "0.07")


def test_card_carries_no_audit_figure_by_default(model: Path) -> None:
    card = write_model_card(model.parent, REPORT, _config())
    blob, text = json.dumps(card), (model.parent / "model_card.md").read_text()
    for figure in FIGURE_VALUES:
        assert figure not in blob and figure not in text, figure
    figures = card["evaluation"]["figures"]
    assert figures["in_card"] is False and "values" not in figures
    assert "internal audit report" in figures["note"] and "not covered" in figures["note"]
    assert "audit.card_figures: true" in figures["note"]
    assert "NOT covered" not in card["releasable"] and "NOT covered" not in text
    (item,) = [t for t in card["tripod_ai"] if t["item"] == "23a"]
    assert "internal audit report" in item["answered_by"]
    assert any("audit's figures" in n for n in card["not_included"])


def test_card_figures_opt_in_releases_them_as_not_covered(model: Path) -> None:
    card = write_model_card(model.parent, REPORT, _config(card_figures=True))
    figures = card["evaluation"]["figures"]
    assert figures["in_card"] is True and figures["covered_by_privacy_guarantee"] is False
    assert figures["note"].startswith("NOT COVERED BY THE PRIVACY GUARANTEE")
    values = figures["values"]
    assert values["student_auroc"] == 0.81 and values["strongest_attack_auc"] == 0.52
    assert values["strongest_attack"] == "rmia" and values["student_brier"] == 0.11
    assert values["auroc_retention_vs_nonprivate_teacher"] == 0.94
    assert values["empirical_epsilon_lower_bound"] == 0.2
    assert values["latency_ms_p50_one_row"] == 0.07
    assert "audit.card_figures: true" in card["releasable"]
    (item,) = [t for t in card["tripod_ai"] if t["item"] == "23a"]
    assert item["answered_by"].startswith("evaluation.figures.values")
    assert "NOT covered" in item["answered_by"]
    assert not any("audit's figures" in n for n in card["not_included"])
    text = (model.parent / "model_card.md").read_text()
    heading = "## Audit figures (NOT covered by the privacy guarantee) (23a)"
    assert heading in text
    table = text[text.index(heading):text.index("## Limitations")]
    assert "| student\\_auroc | 0.81 |" in table and "| strongest\\_attack | rmia |" in table
    # the exact figures never reach the card, only the coarsened ones
    assert "0.81234" not in text and "0.2345" not in json.dumps(card)


def test_card_never_prints_epsilon_or_delta_below_the_ledger(model: Path) -> None:
    report = json.loads(json.dumps(REPORT))
    report["privacy"].update(epsilon=2.9853435123, delta=1.0000123e-6)
    report["privacy"]["ledger"][0]["epsilon_alone"] = 1.23449
    write_model_card(model.parent, report, _config())
    text = (model.parent / "model_card.md").read_text()
    eps, delta = re.search(r"ε = ([0-9.e+-]+), δ = ([0-9.e+-]+)", text).groups()
    assert float(eps) >= 2.9853435123 and float(eps) == 2.986
    assert float(delta) >= 1.0000123e-6
    assert "| 1.235 |" in text


def test_card_json_and_markdown_hold_no_pipeline_hash(model: Path) -> None:
    card = write_model_card(model.parent, REPORT, _config())
    for name in ("model_card.json", "model_card.md"):
        text = (model.parent / name).read_text()
        assert "pipeline_sha256" not in text and "pipeline sha256" not in text, name
        assert "ab" * 32 not in text and "cd" * 32 not in text, name
    assert "pipeline_sha256" not in card["model"]


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
