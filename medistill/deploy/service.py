"""The HTTP service: ``create_app(model_path)`` returns a FastAPI app (the ``serve`` extra).

``POST /predict`` scores JSON rows (``{"rows": [{column: value}, ...]}``) or a FHIR Bundle
(answered with a Bundle of RiskAssessments); keys that are not model columns, inputs
imputed for every row and rows without any input value are warned about, a key differing
from a model column only in case is refused, and patient keys must be strings or integers
in one key column per request; ``GET /health``; ``GET /model`` (model card and
privacy claim). Optional bearer token (constant-time comparison; it also guards
``/openapi.json``, which names the label and features), a request size limit (413), a
malformed-value check (a number beyond float range, a string that is not valid Unicode,
JSON nested deeper than ``MAX_DEPTH``: 422), and no request body, query string, cell value
or identifier in any log line or error message (the access log has method, path, status).
"""

import difflib
import hmac
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from medistill import __version__
from medistill.deploy.inputs import (
    MAX_LISTED,
    Prepared,
    RowProblem,
    check_columns,
    columns_of_rows,
    missing_tokens,
    pick_key,
    prepare,
    rows_chunk,
)
from medistill.deploy.model import DeployedModel, load_model
from medistill.deploy.predict import predict_fhir_resources, score
from medistill.errors import DataError, MedistillError
from medistill.housekeeping import temp_prefix

try:
    from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise MedistillError("the HTTP service needs the 'serve' extra: "
                         "pip install 'medistill[serve]' (FastAPI and uvicorn).") from error

log = logging.getLogger("medistill.deploy.service")
access_log = logging.getLogger("medistill.access")
MAX_DEPTH = 64
FHIR_JSON = "application/fhir+json"
Scalar = float | int | str | bool | None
MAX_NAMED = 20
"""Column names (or rows) named in one warning or error; the rest are counted."""
NAME_CHARS = 64
"""A column name longer than this is cut in warnings and errors."""


class RowsRequest(BaseModel):
    """Rows to score: one object per patient, feature columns by name. A missing key or
    null is a missing value; other keys are ignored with a warning (a key differing from a
    model column only in case is refused); the patient key (a string or an integer, in one
    key column per request) is echoed."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"rows": [{"patient_key": "a1", "age": 64, "sex": "female", "bmi": 31.2}]}]})
    rows: list[dict[str, Scalar]] = Field(min_length=1)


class BundleRequest(BaseModel):
    """A FHIR R4/R4B/R5 Bundle (Patient and the resources the model's mapping reads)."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["Bundle"]
    type: str | None = None
    entry: list[dict[str, Any]] = Field(default_factory=list)


class RowPrediction(BaseModel):
    """One row's result: its prediction, or why it was not scored."""

    row: int = Field(description="Index of the row in the request (from 0).")
    key: str | None = Field(None, description="The row's patient key, if it had one.")
    prediction: str | None = None
    probability: float | None = Field(None, description="Binary task: P(last class).")
    probabilities: dict[str, float] | None = Field(None, description="Per class.")
    error: str | None = Field(None, description="Why the row was skipped (on_error=skip).")


class PredictResponse(BaseModel):
    model_sha256: str
    classes: list[str]
    n_scored: int
    n_skipped: int
    predictions: list[RowPrediction]
    warnings: list[str]
    empty_inputs: list[str] = Field(default_factory=list, description=(
        "Model inputs with no value in any scored row: imputed for every patient."))
    unknown_columns: list[str] = Field(default_factory=list, description=(
        "Keys of the rows that are not model columns, so were ignored (up to 20, each "
        "cut to 64 characters)."))


class Problem(BaseModel):
    file: str | None = None
    row: int | None = None
    line: int | None = None
    column: str | None = None
    reason: str


class ErrorResponse(BaseModel):
    detail: str
    problems: list[Problem] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"]
    model_sha256: str


class _BodyLimit:
    """ASGI middleware: 413 when Content-Length, or the bytes actually received, exceed
    ``max_bytes`` (chunked uploads are counted as they arrive)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, receive, send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, detail=self._detail())
            return message

        await self.app(scope, limited, send)

    def _detail(self) -> str:
        return (f"request body larger than {self.max_bytes:,} bytes; send fewer rows per "
                "request")

    async def _reject(self, scope: dict, receive: Any, send: Any) -> None:
        await JSONResponse({"detail": self._detail()}, status_code=413)(scope, receive, send)


class _AccessLog:
    """ASGI middleware: one line per request with method, path and status only (never the
    query string, headers or body, which can carry patient data)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            access_log.info("%s %s %d", scope.get("method", "-"), scope.get("path", "-"), status)


def body_problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """What makes a parsed JSON body unscorable, or None: nesting deeper than
    ``max_depth``, an integer beyond float range, a string (or key) that is not valid
    Unicode. Iterative, so a deep body cannot exhaust the stack. Never quotes a value."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"JSON nested more than {max_depth} levels deep"
        if isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        if isinstance(item, int):
            try:
                float(item)
            except OverflowError:
                return "an integer too large to be a number"
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string that is not valid Unicode (a lone surrogate)"
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return None


def _auth(token: str | None) -> list:
    """The dependency list for protected routes: none without a token."""
    if not token:
        return []
    bearer = HTTPBearer(auto_error=False, description="The token given to `medistill serve`.")
    expected = token.encode()

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
              ) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not (credentials and hmac.compare_digest(given, expected)):
            raise HTTPException(401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    return [Depends(check)]


def _rejected(detail: str, problems: list[RowProblem]) -> JSONResponse:
    return JSONResponse({"detail": detail, "problems": [p.to_dict() for p in problems]},
                        status_code=422)


def _cut(name: str) -> str:
    """A column name cut to ``NAME_CHARS`` characters."""
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS] + "…"


def _listed(names: Sequence[str], limit: int = MAX_NAMED) -> str:
    """Column names quoted (each cut by :func:`_cut`), at most ``limit`` of them."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(f"'{_cut(n)}'" for n in names[:limit]) + more


def _rows_listed(indices: Sequence[int], limit: int = MAX_NAMED) -> str:
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return ", ".join(f"rows[{i}]" for i in indices[:limit]) + more


def _known_columns(model: DeployedModel) -> list[str]:
    return [*model.schema.feature_names, *model.id_columns]


def check_case(names: Sequence[str], model: DeployedModel) -> None:
    """Raise a DataError for keys that differ from a model column (feature or patient key)
    only in case or surrounding spaces: the value would be ignored and the input imputed,
    so such a request is refused rather than scored with a warning."""
    known = _known_columns(model)
    folded = {c.strip().casefold(): c for c in known}
    pairs = [(n, folded[n.strip().casefold()]) for n in names
             if n not in known and n.strip().casefold() in folded]
    if pairs:
        listed = ", ".join(f"'{_cut(n)}' for '{c}'" for n, c in pairs[:MAX_NAMED])
        raise DataError(f"rows: {len(pairs)} key(s) differ from a model column only in case or "
                        f"surrounding spaces: {listed}. Column names are case-sensitive; no row "
                        "was scored.", hint="Rename the key(s) to the model's spelling.")


def _suggestion(name: str, columns: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the model column closest to ``name``, or ''."""
    lowered = {c.casefold(): c for c in columns}
    close = difflib.get_close_matches(name.casefold(), list(lowered), n=1, cutoff=0.75)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def unknown_columns(names: Sequence[str], model: DeployedModel) -> list[str]:
    """Keys that are neither a feature, a patient-key column nor the label."""
    known = {*_known_columns(model), model.schema.label}
    return [n for n in names if n not in known]


def _unknown_warning(unknown: Sequence[str], model: DeployedModel) -> str:
    columns = _known_columns(model)
    listed = ", ".join(f"'{_cut(n)}'" + _suggestion(n, columns) for n in unknown[:MAX_NAMED])
    more = f" and {len(unknown) - MAX_NAMED} more" if len(unknown) > MAX_NAMED else ""
    return (f"{len(unknown)} key(s) are not model columns and were ignored: {listed}{more}. "
            "A row without a feature is scored with that feature imputed.")


def check_one_key(rows: Sequence[dict[str, Scalar]], key: str | None,
                  candidates: Sequence[str]) -> None:
    """Raise a DataError when some rows carry their patient key only in another key column
    than ``key`` (the first of ``candidates`` any row has): one key column per request."""
    others = [c for c in candidates if c != key]
    if key is None or not others:
        return
    mixed = [i for i, row in enumerate(rows) if row.get(key) is None
             and any(row.get(c) is not None for c in others)]
    if mixed:
        raise DataError(f"rows: the request's key column is '{key}', but "
                        f"{_rows_listed(mixed)} carry a key only in "
                        f"{_listed(others)}; no row was scored.",
                        hint="Send one patient-key column per request.")


def key_problems(rows: Sequence[dict[str, Scalar]], key: str | None) -> list[RowProblem]:
    """Rows whose patient key is neither a string, an integer nor null: a boolean or a
    floating-point number (``1.0``, ``-Infinity``) would come back reformatted."""
    if key is None:
        return []
    problems = []
    for i, row in enumerate(rows):
        value = row.get(key)
        if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
            continue
        kind = "true/false" if isinstance(value, bool) else "a floating-point number"
        problems.append(RowProblem(i, key, f"the patient key is {kind}; keys must be "
                                           "strings or integers", "rows[]"))
    return problems


def _row_fill(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Per prepared row, how many inputs have a value (are not imputed)."""
    counts = np.zeros(len(next(iter(feeds.values()))), dtype=np.int64)
    for values in feeds.values():
        column = values.ravel()
        counts += column != "" if column.dtype == object else ~np.isnan(column)
    return counts


def empty_warnings(prepared: Prepared, positions: np.ndarray) -> tuple[list[str], list[str]]:
    """The inputs without a value in any scored row (as batch scoring's ``empty_inputs``),
    and warnings about them and about scored rows without any input value."""
    if prepared.n_valid == 0:
        return [], []
    empty = [c for c, n in prepared.filled.items() if n == 0]
    warnings = []
    if empty:
        warnings.append(f"{len(empty)} of the model's inputs had no value in any scored row, "
                        f"so the model imputed them for every patient: {_listed(empty)}. "
                        "Check the rows' keys and missing-value codes.")
    blank = positions[prepared.valid][_row_fill(prepared.feeds) == 0].tolist()
    if blank:
        warnings.append(f"{len(blank)} row(s) had no value for any model input, so every "
                        f"input was imputed: {_rows_listed(blank)}.")
    return empty, warnings


def _prepare_rows(model: DeployedModel, rows: list[dict[str, Scalar]], kept: list[int]
                  ) -> tuple[Prepared, np.ndarray]:
    """The rows at indices ``kept``, checked by :func:`prepare` (problems by index in
    ``rows``), and those indices as an array."""
    positions = np.asarray(kept, dtype=np.int64)
    chunk = rows_chunk([rows[i] for i in kept], model.schema.feature_names,
                       missing_tokens(model.schema))
    chunk.positions = positions
    return prepare(chunk, model.schema, key_column=None, source="rows", unit="rows[]"), positions


def _prediction(model: DeployedModel, i: int, key: str | None, p: list[float]
                ) -> RowPrediction:
    classes = list(model.schema.classes)
    best = max(range(len(classes)), key=p.__getitem__)
    return RowPrediction(row=i, key=key, prediction=classes[best],
                         probability=p[-1] if model.binary else None,
                         probabilities=None if model.binary
                         else dict(zip(classes, p, strict=True)))


def _results(model: DeployedModel, rows: list[dict[str, Scalar]], key: str | None,
             prepared: Prepared, positions: np.ndarray, problems: list[RowProblem]
             ) -> list[RowPrediction]:
    """One result per row: its prediction, or the first problem that kept it unscored (a
    row whose key was refused gets no key back)."""
    probs = iter(score(model, prepared).tolist())
    errors: dict[int, str] = {}
    for p in problems:
        errors.setdefault(p.line, f"column '{p.column}': {p.reason}")
    valid = dict(zip(positions.tolist(), prepared.valid.tolist(), strict=True))
    results = []
    for i, row in enumerate(rows):
        row_key = row.get(key) if key and i in valid else None
        row_key = None if row_key is None else str(row_key)
        results.append(_prediction(model, i, row_key, next(probs)) if valid.get(i)
                       else RowPrediction(row=i, key=row_key, error=errors.get(i, "bad row")))
    return results


def _score_rows(model: DeployedModel, rows: list[dict[str, Scalar]], on_error: str
                ) -> JSONResponse | PredictResponse:
    names = columns_of_rows(rows)
    check_case(names, model)
    check_columns(names, model.schema, "rows")
    key = pick_key(names, model.id_columns)
    check_one_key(rows, key, model.id_columns)
    bad_keys = key_problems(rows, key)
    refused = {p.line for p in bad_keys}
    prepared, positions = _prepare_rows(model, rows, [i for i in range(len(rows))
                                                      if i not in refused])
    problems = sorted(bad_keys + prepared.problems)
    if problems and on_error == "stop":
        return _rejected(f"{len(problems)} bad value(s); no row was scored (use "
                         "on_error=skip to score the others)", problems)
    warnings = [f"column '{c}': {n} value(s) the model has not seen, scored as an unknown "
                "category" for c, n in prepared.unseen.items()]
    unknown = unknown_columns(names, model)
    if unknown:
        warnings.append(_unknown_warning(unknown, model))
    empty, empty_notes = empty_warnings(prepared, positions)
    return PredictResponse(
        model_sha256=model.sha256, classes=list(model.schema.classes),
        n_scored=prepared.n_valid, n_skipped=len(rows) - prepared.n_valid,
        predictions=_results(model, rows, key, prepared, positions, problems),
        warnings=warnings + empty_notes, empty_inputs=empty,
        unknown_columns=[_cut(n) for n in unknown[:MAX_NAMED]])


def _score_bundle(model: DeployedModel, bundle: BundleRequest, on_error: str, salt: str
                  ) -> JSONResponse:
    from medistill.deploy.fhir_output import bundle as make_bundle

    with tempfile.TemporaryDirectory(prefix=temp_prefix("serve")) as folder:
        path = Path(folder) / "bundle.json"
        path.write_text(json.dumps(bundle.model_dump(mode="json", exclude_none=True)),
                        encoding="utf-8")
        resources, problems = predict_fhir_resources(model, path, on_error=on_error,
                                                     salt=salt)
    if problems and on_error == "stop":
        return _rejected(f"{len(problems)} bad value(s); nothing was scored", problems)
    return JSONResponse(make_bundle(resources), media_type=FHIR_JSON)


def create_app(model_path: str | Path, *, token: str | None = None,
               max_body_bytes: int = 1_000_000, threads: int | None = None,
               verify: bool = True, access_log: bool = True) -> FastAPI:
    """A FastAPI app serving the student at ``model_path``.

    ``access_log``: one line per request (method, path, status) on the
    ``medistill.access`` logger; ``False`` for none.
    ``token``: if set, ``/predict`` and ``/model`` need ``Authorization: Bearer <token>``.
    ``max_body_bytes``: larger requests get 413. ``threads``: onnxruntime intra-op threads.
    """
    if max_body_bytes < 1:
        raise DataError(f"max_body_bytes must be positive. Got {max_body_bytes}.")
    model = load_model(model_path, threads=threads, verify=verify)
    # Warm up (first-call imports and allocations), so the first request is not slow.
    score(model, prepare(rows_chunk([{}], model.schema.feature_names), model.schema,
                         key_column=None, source="warm-up", unit="rows[]"))
    salt = secrets.token_hex(16)  # keys of FHIR input never leave the process
    app = FastAPI(title="medistill student", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None if token else "/openapi.json", description=(
                      f"Scores `{model.schema.label}` with the medistill student "
                      f"(student.onnx sha256 {model.sha256[:12]}…). Inputs: "
                      f"{', '.join(model.schema.feature_names)}."))
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    if access_log:
        app.add_middleware(_AccessLog)
    app.state.model = model
    protected = _auth(token)
    if token:
        @app.get("/openapi.json", dependencies=protected, include_in_schema=False)
        def openapi() -> JSONResponse:
            """The OpenAPI schema; behind the token, since it names the label and inputs."""
            return JSONResponse(app.openapi())

    errors = {401: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
              422: {"model": ErrorResponse}}

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Pydantic's errors echo the offending input; drop it (it may be patient data).
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                    for e in exc.errors()[:MAX_LISTED]]
        return JSONResponse({"detail": "the request body does not match the schema",
                             "problems": problems}, status_code=422)

    @app.exception_handler(MedistillError)
    async def _medistill(request: Request, exc: MedistillError) -> JSONResponse:
        return JSONResponse({"detail": exc.render(), "problems": []}, status_code=422)

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        """Liveness: the model is loaded. Needs no token."""
        return Health(status="ok", model_sha256=model.sha256)

    @app.get("/model", dependencies=protected, responses=errors, tags=["model"])
    def model_card() -> dict[str, Any]:
        """The model card: identity, inputs, privacy claim and the audit's verdict."""
        return model.card

    @app.post("/predict", dependencies=protected, response_model=PredictResponse,
              response_model_exclude_none=True, tags=["model"],
              responses={**errors, 200: {"content": {FHIR_JSON: {}}, "description":
                                         "JSON rows in: PredictResponse. A FHIR Bundle in: "
                                         "a Bundle of RiskAssessments."}})
    def predict(body: Annotated[RowsRequest | BundleRequest, Body()],
                on_error: Annotated[Literal["stop", "skip"], Query(
                    description="stop: any bad value rejects the request (422); skip: bad "
                                "rows are reported, the others scored.")] = "stop") -> Any:
        """Score JSON rows, or a FHIR Bundle (answered with RiskAssessments)."""
        started, status = time.perf_counter(), 500
        bundle = isinstance(body, BundleRequest)
        kind, n = ("bundle", len(body.entry)) if bundle else ("rows", len(body.rows))
        try:
            problem = body_problem([body.entry, body.model_extra] if bundle else body.rows)
            if problem:
                status = 422
                return _rejected(f"the request holds {problem}; nothing was scored", [])
            response = (_score_bundle(model, body, on_error, salt) if bundle
                        else _score_rows(model, body.rows, on_error))
            status = getattr(response, "status_code", 200)
            return response
        except MedistillError:
            status = 422
            raise
        except (ValueError, OverflowError, RecursionError, UnicodeError) as error:
            # Input the checks above did not foresee: still the client's request, never a 500.
            status = 422
            log.warning("predict: unreadable request (%s)", type(error).__name__)
            return _rejected("the request could not be read as model input; nothing was "
                             "scored", [])
        finally:  # counts and timing only: never the body
            log.info("predict: %s of %d, status %d, %.1f ms", kind, n, status,
                     (time.perf_counter() - started) * 1e3)

    return app


__all__ = ["MAX_DEPTH", "BundleRequest", "PredictResponse", "RowPrediction", "RowsRequest",
           "body_problem", "create_app"]
