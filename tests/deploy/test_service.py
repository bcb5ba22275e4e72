"""The HTTP service through FastAPI's TestClient (no sockets): endpoints, parity with the
batch path, auth, size limits, OpenAPI, FHIR Bundles, and no patient data in logs."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # newer Starlette prefers httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from medistill.deploy.service import create_app

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _rows(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    return TestClient(create_app(run_dir / "student.onnx", token=TOKEN, max_body_bytes=50_000))


@pytest.fixture(scope="module")
def open_client(multiclass_dir) -> TestClient:
    return TestClient(create_app(multiclass_dir))


def test_health_needs_no_token(client, run_dir) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["model_sha256"] == client.app.state.model.sha256


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"}])
@pytest.mark.parametrize(("method", "path"), [("get", "/model"), ("post", "/predict")])
def test_auth_rejects_missing_or_wrong_token(client, headers, method, path) -> None:
    kwargs = {"json": {"rows": [{"age": 1}]}} if method == "post" else {}
    response = getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_model_card(client) -> None:
    card = client.get("/model", headers=AUTH).json()
    assert card["privacy"]["unit"] == "patient"
    assert card["privacy"]["epsilon"] == pytest.approx(2.4987)
    assert card["privacy"]["source"] == "model_card.json"
    assert "report" not in card and card["card"]["card_version"] == "2"
    assert "pipeline_sha256" not in json.dumps(card)
    assert card["model"]["label"] == "cv_event_1y"
    assert [f["name"] for f in card["model"]["features"]][:3] == ["sex", "age", "smoking"]


def test_rows_match_onnx_feeds(client, run_dir, cohort, reference) -> None:
    frame = cohort.head(25)
    response = client.post("/predict", json={"rows": _rows(frame)}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reference(run_dir / "student.onnx", frame)
    assert body["n_scored"] == 25 and body["classes"] == ["0", "1"]
    got = np.array([p["probability"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected[:, 1], atol=1e-6)
    assert [p["key"] for p in body["predictions"]] == frame["patient_id"].tolist()
    assert "probabilities" not in body["predictions"][0]


def test_multiclass_rows_without_token(open_client, multiclass_dir, cohort, reference) -> None:
    frame = cohort.head(5).drop(columns="patient_id")
    body = open_client.post("/predict", json={"rows": _rows(frame)}).json()
    expected = reference(multiclass_dir / "student.onnx", frame)
    for prediction, want in zip(body["predictions"], expected, strict=True):
        assert list(prediction["probabilities"]) == ["low", "mid", "high"]
        np.testing.assert_allclose(list(prediction["probabilities"].values()), want, atol=1e-6)
        assert prediction["prediction"] == ["low", "mid", "high"][int(want.argmax())]
        assert "key" not in prediction


def test_bad_rows_stop_or_skip(client, cohort) -> None:
    rows = _rows(cohort.head(3))
    rows[1]["bmi"] = "heavy"
    rows[2]["smoking"] = "vaping"
    stop = client.post("/predict", json={"rows": rows}, headers=AUTH)
    assert stop.status_code == 422
    assert stop.json()["problems"] == [{"file": None, "row": 1, "column": "bmi",
                                        "reason": "not a number"}]
    assert "heavy" not in stop.text
    skip = client.post("/predict?on_error=skip", json={"rows": rows}, headers=AUTH).json()
    assert (skip["n_scored"], skip["n_skipped"]) == (2, 1)
    assert skip["predictions"][1] == {"row": 1, "key": rows[1]["patient_id"],
                                      "error": "column 'bmi': not a number"}
    assert "vaping" not in json.dumps(skip) and "'smoking': 1 value(s)" in skip["warnings"][0]


def test_rows_with_declared_missing_codes(client, coded_dir, cohort, reference) -> None:
    rows = _rows(cohort.head(3))
    rows[0]["bmi"], rows[1]["smoking"], rows[2]["sbp"] = ".", ".", -99
    coded = TestClient(create_app(coded_dir / "student.onnx"))
    body = coded.post("/predict", json={"rows": rows}).json()
    assert body["n_scored"] == 3 and not [w for w in body["warnings"] if "not seen" in w]
    assert body["unknown_columns"] == ["name", "mrn", "phone"]  # warned about, not scored
    assert body["empty_inputs"] == ["creatinine"]  # missing in all three rows
    clean = cohort.head(3).copy().astype({"smoking": object})
    clean.loc[0, "bmi"], clean.loc[1, "smoking"], clean.loc[2, "sbp"] = np.nan, None, np.nan
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]],
                               reference(coded_dir / "student.onnx", clean)[:, 1], atol=1e-6)
    plain = client.post("/predict", json={"rows": rows}, headers=AUTH)
    assert plain.status_code == 422 and plain.json()["problems"][0]["column"] == "bmi"


def test_schema_errors_do_not_echo_values(client) -> None:
    response = client.post("/predict", json={"rows": [{"age": ["SECRET-VALUE"]}]},
                           headers=AUTH)
    assert response.status_code == 422
    assert "SECRET-VALUE" not in response.text
    missing = client.post("/predict", json={"rows": [{"age": 50}]}, headers=AUTH)
    assert missing.status_code == 422 and "'sex'" in missing.json()["detail"]
    empty = client.post("/predict", json={"rows": []}, headers=AUTH)
    assert empty.status_code == 422


def test_size_limit_by_header_and_by_stream(client) -> None:
    big = json.dumps({"rows": [{"age": 1, "note": "x" * 60_000}]})
    response = client.post("/predict", content=big, headers={
        **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413

    def chunks():
        for _ in range(10):
            yield b" " * 10_000

    streamed = client.post("/predict", content=chunks(), headers={
        **AUTH, "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert "50,000 bytes" in streamed.json()["detail"]


def test_openapi_schema(client, open_client) -> None:
    schema = client.get("/openapi.json", headers=AUTH).json()
    assert {"/predict", "/health", "/model"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    refs = json.dumps(body["schema"])
    assert "RowsRequest" in refs and "BundleRequest" in refs
    assert "PredictResponse" in json.dumps(schema["paths"]["/predict"]["post"]["responses"])
    assert {"401", "413", "422"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" in schema["paths"]["/model"]["get"]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "securitySchemes" not in open_client.get("/openapi.json").json().get("components", {})
    assert client.get("/docs").status_code == 404  # the docs UI would load scripts from a CDN


def test_no_request_content_in_logs(client, cohort, caplog) -> None:
    rows = _rows(cohort.head(2))
    rows[0]["patient_id"] = "KEY-ZZ-4711"
    rows[1]["bmi"] = "JUNK-QQ-0815"
    with caplog.at_level(logging.DEBUG):
        client.post("/predict?on_error=skip", json={"rows": rows}, headers=AUTH)
        client.post("/predict", json={"rows": rows}, headers=AUTH)
    assert "predict: rows of 2" in caplog.text
    assert "KEY-ZZ-4711" not in caplog.text and "JUNK-QQ-0815" not in caplog.text


def test_fhir_bundle_in_riskassessments_out(tmp_path, run_dir, reference) -> None:
    fhir = pytest.importorskip("medistill.data.fhir")
    from fhir.resources.R4B.bundle import Bundle

    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir)
    shutil.copy(Path(fhir.__file__).parent / "demo_mapping.yaml", model_dir / "mapping.yaml")
    export = fhir.write_synthetic_fhir_export(tmp_path / "export", 4,
                                              rng=np.random.default_rng(5))
    entries = [{"resource": json.loads(line)} for f in sorted(export.glob("*.ndjson"))
               for line in f.read_text().splitlines()]
    request = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    app_client = TestClient(create_app(model_dir, max_body_bytes=5_000_000))
    response = app_client.post("/predict", json=request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    Bundle.model_validate(bundle)
    subjects = sorted(e["resource"]["subject"]["reference"] for e in bundle["entry"])
    patients = sorted(f"Patient/{e['resource']['id']}" for e in entries
                      if e["resource"]["resourceType"] == "Patient")
    assert subjects == patients
    bundle_file = tmp_path / "b.json"
    bundle_file.write_text(json.dumps(request))
    result = fhir.ingest_fhir(bundle_file, fhir.load_mapping(model_dir / "mapping.yaml"),
                              salt="x", keep_patient_ids=True)
    expected = dict(zip(result.patient_ids,
                        reference(model_dir / "student.onnx", result.table)[:, 1], strict=True))
    for entry in bundle["entry"]:
        patient = entry["resource"]["subject"]["reference"].removeprefix("Patient/")
        got = entry["resource"]["prediction"][0]["probabilityDecimal"]
        assert abs(got - expected[patient]) <= 1e-6


def test_16_3_serve_refuses_tampered_model(tmp_path, run_dir) -> None:
    from medistill.errors import ModelIntegrityError

    other = tmp_path / "tampered"
    shutil.copytree(run_dir, other)
    import onnx

    proto = onnx.load(str(other / "student.onnx"))
    weights = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray((other / "student.onnx").read_bytes())
    start = bytes(data).index(weights.raw_data)
    for i in range(64):  # 64 sign bits flipped: a different model, same metadata
        data[start + 4 * i + 3] ^= 0x80
    (other / "student.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        create_app(other)
    app = create_app(other, verify=False)  # the explicit opt-out
    assert app.state.model.integrity.startswith("NOT VERIFIED")


BIG = "1" + "0" * 399


def _body(cohort: pd.DataFrame, column: str, raw: str) -> str:
    row = _rows(cohort.head(1))[0]
    row[column] = "PLACEHOLDER"
    return json.dumps({"rows": [row]}).replace('"PLACEHOLDER"', raw)


def _deep_bundle(depth: int) -> str:
    inner = "{}"
    for _ in range(depth):
        inner = '{"a": ' + inner + "}"
    return ('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
            '{"resourceType": "Patient", "id": "p", "extension": [' + inner + "]}}]}")


@pytest.mark.parametrize("case", ["int_400_digits_numeric", "int_400_digits_count",
                                  "lone_surrogate_category", "lone_surrogate_key",
                                  "bundle_500_deep", "bundle_5000_deep"])
def test_16_9_malformed_values_are_always_4xx(client, cohort, case) -> None:
    body = {"int_400_digits_numeric": lambda: _body(cohort, "age", BIG),
            "int_400_digits_count": lambda: _body(cohort, "n_encounters", BIG),
            "lone_surrogate_category": lambda: _body(cohort, "sex", '"\\ud800"'),
            "lone_surrogate_key": lambda: _body(cohort, "patient_id", '"\\ud800"'),
            "bundle_500_deep": lambda: _deep_bundle(500),
            "bundle_5000_deep": lambda: _deep_bundle(5000)}[case]()
    for on_error in ("stop", "skip"):
        response = client.post(f"/predict?on_error={on_error}", content=body,
                               headers={**AUTH, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (case, response.status_code)
        assert BIG not in response.text and "ud800" not in response.text


def test_16_9_body_problem_is_iterative_and_quotes_nothing() -> None:
    from medistill.deploy.service import body_problem

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert "nested" in body_problem(deep)
    assert body_problem({"\ud800": 1}) and body_problem([10 ** 400])
    assert body_problem({"rows": [{"age": 10 ** 300, "sex": "female"}]}) is None


def test_16_9_access_log_has_path_and_status_only(run_dir, cohort, caplog) -> None:
    logged = TestClient(create_app(run_dir))
    with caplog.at_level(logging.INFO, logger="medistill.access"):
        logged.post("/predict?on_error=skip&patient=Jane%20Doe", json={"rows": _rows(cohort.head(2))})
    lines = [r.getMessage() for r in caplog.records if r.name == "medistill.access"]
    assert lines == ["POST /predict 200"]
    caplog.clear()
    quiet = TestClient(create_app(run_dir, access_log=False))
    with caplog.at_level(logging.INFO, logger="medistill.access"):
        quiet.get("/health")
    assert not [r for r in caplog.records if r.name == "medistill.access"]


def test_16_9_openapi_needs_the_token_when_one_is_set(client, open_client) -> None:
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/openapi.json", headers=AUTH).status_code == 200
    assert open_client.get("/openapi.json").status_code == 200  # no token: loopback default


def test_16_9_serve_turns_off_uvicorn_access_log() -> None:
    from medistill.deploy.commands import _log_config

    config = _log_config("info")
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["loggers"]["medistill"]["handlers"] == ["default"]


def test_unknown_keys_are_named_with_a_suggestion(client, cohort) -> None:
    rows = _rows(cohort.head(2))
    rows[1]["glucos"] = rows[1].pop("glucose")
    rows[1]["ward"] = "SECRET-WARD-77"
    body = client.post("/predict", json={"rows": rows}, headers=AUTH).json()
    assert (body["n_scored"], body["n_skipped"]) == (2, 0)  # a missing feature is allowed
    assert body["unknown_columns"] == ["name", "mrn", "phone", "glucos", "ward"]
    warning = next(w for w in body["warnings"] if "not model columns" in w)
    assert "'glucos' (did you mean 'glucose'?)" in warning and "'ward'," not in warning
    assert "'ward'" in warning and "did you mean 'ward'" not in warning
    assert "cv_event_1y" not in warning  # the label is known, so not warned about
    assert "SECRET-WARD-77" not in json.dumps(body) and rows[1]["name"] not in json.dumps(body)


@pytest.mark.parametrize("wrong", ["Glucose", "GLUCOSE", " glucose", "Patient_ID"])
def test_key_differing_only_in_case_is_refused(client, cohort, wrong) -> None:
    rows = _rows(cohort.head(2))
    right = wrong.strip().lower()
    rows[1][wrong] = rows[1].pop(right)
    for on_error in ("stop", "skip"):
        response = client.post(f"/predict?on_error={on_error}", json={"rows": rows},
                               headers=AUTH)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert f"'{wrong}' for '{right}'" in detail and "case-sensitive" in detail
        assert str(rows[1][wrong]) not in detail


def test_empty_row_and_empty_input_are_warned(client, cohort, run_dir) -> None:
    rows = _rows(cohort.head(3))
    for row in rows:
        row["hba1c"] = None
    rows[1]["cholesterol"] = "NA"  # a missing-value token
    rows[0]["cholesterol"] = rows[2]["cholesterol"] = None
    rows[0]["creatinine"] = 1.0  # missing in all three rows of the cohort's head
    body = client.post("/predict", json={"rows": [*rows, {}]}, headers=AUTH).json()
    assert body["n_scored"] == 4
    assert body["empty_inputs"] == ["hba1c", "cholesterol"]
    assert any("2 of the model's inputs had no value in any scored row, so the model "
               "imputed them for every patient: 'hba1c', 'cholesterol'" in w
               for w in body["warnings"])
    assert any("1 row(s) had no value for any model input" in w and "rows[3]" in w
               for w in body["warnings"])
    only_nulls = {name: None for name in client.app.state.model.schema.feature_names}
    blank = client.post("/predict", json={"rows": [rows[0], only_nulls]}, headers=AUTH).json()
    assert any("rows[1]" in w for w in blank["warnings"])
    clean = client.post("/predict", json={"rows": _rows(cohort.head(20))}, headers=AUTH)
    assert clean.json()["empty_inputs"] == []
    assert not [w for w in clean.json()["warnings"] if "no value" in w]


def _keyed(cohort: pd.DataFrame, keys: list[str]) -> str:
    rows = _rows(cohort.head(len(keys)))
    for i, row in enumerate(rows):
        row["patient_id"] = f"@@{i}@@"
    text = json.dumps({"rows": rows})
    for i, key in enumerate(keys):
        text = text.replace(f'"@@{i}@@"', key)
    return text


def test_keys_must_be_strings_or_integers(client, cohort) -> None:
    ok = client.post("/predict", content=_keyed(cohort, ['"a1"', "12", "null"]),
                     headers={**AUTH, "Content-Type": "application/json"})
    assert ok.status_code == 200, ok.text
    assert [p.get("key") for p in ok.json()["predictions"]] == ["a1", "12", None]
    bad = _keyed(cohort, ['"a1"', "1.0", "true", "-Infinity", "7"])
    stop = client.post("/predict", content=bad,
                       headers={**AUTH, "Content-Type": "application/json"})
    assert stop.status_code == 422
    problems = stop.json()["problems"]
    assert [(p["row"], p["column"]) for p in problems] == [(1, "patient_id"), (2, "patient_id"),
                                                           (3, "patient_id")]
    assert "true/false" in problems[1]["reason"] and "floating-point" in problems[0]["reason"]
    assert "1.0" not in stop.text and "True" not in stop.text and "inf" not in stop.text.lower()
    skip = client.post("/predict?on_error=skip", content=bad,
                       headers={**AUTH, "Content-Type": "application/json"}).json()
    assert (skip["n_scored"], skip["n_skipped"]) == (2, 3)
    assert [p.get("key") for p in skip["predictions"]] == ["a1", None, None, None, "7"]
    assert "patient key" in skip["predictions"][2]["error"]


def test_one_key_column_per_request(client, cohort) -> None:
    rows = _rows(cohort.head(3))
    rows[0]["patient_key"] = "K0"
    response = client.post("/predict?on_error=skip", json={"rows": rows}, headers=AUTH)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'patient_key'" in detail and "rows[1], rows[2]" in detail
    assert "K0" not in detail and rows[1]["patient_id"] not in detail
    both = [{**row, "patient_key": f"K{i}"} for i, row in enumerate(rows)]
    body = client.post("/predict", json={"rows": both}, headers=AUTH).json()
    assert [p["key"] for p in body["predictions"]] == ["K0", "K1", "K2"]
