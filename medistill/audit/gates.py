"""The audit policy (gates) and the verdict on a report.

A policy is a YAML file of gates. Each gate compares one value of ``report.json`` (a dotted
path such as ``utility.retention.auroc``) with a threshold, or with another value of the
report (``threshold_from``). The verdict is ``reject`` if a gate of severity ``reject``
failed, ``review`` if any other gate failed, and ``release`` otherwise.

Two built-in rules hold whatever the policy says: a run without a formal privacy guarantee
is at best ``review``, and an empirical ε lower bound above the ledger's ε (a possible
privacy bug) is ``reject``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medistill.errors import ConfigError
from medistill.yamlio import did_you_mean, field_path, load_yaml

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")

Op = Literal[">=", ">", "<=", "<", "=="]
Severity = Literal["reject", "review"]
OPS: tuple[str, ...] = (">=", ">", "<=", "<", "==")
SEVERITIES: tuple[str, ...] = ("reject", "review")

BUILTIN_PREFIX = "builtin:"
LEDGER_EPSILON = "privacy.epsilon"
FORMAL_GUARANTEE = "privacy.formal_guarantee"
EMPIRICAL_EPSILON = "mia.student.epsilon_lower_bound"

_MISSING: Any = object()


# --------------------------------------------------------------------------- the policy


def _check_path(value: str) -> str:
    parts = value.split(".")
    if not value or any(not p or p != p.strip() for p in parts):
        raise ValueError(f"'{value}' is not a dotted path into the report, e.g. 'utility.retention.auroc'")
    return value


class Gate(BaseModel):
    """One rule: ``metric op threshold`` (or ``metric op <value at threshold_from>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    metric: str
    op: Op
    threshold: bool | float | None = None
    threshold_from: str | None = None
    severity: Severity
    description: str = ""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith(BUILTIN_PREFIX):
            raise ValueError(f"names starting with '{BUILTIN_PREFIX}' are reserved for built-in rules")
        return value

    @field_validator("metric", "threshold_from")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)

    @field_validator("threshold", mode="before")
    @classmethod
    def _number_or_bool(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float) and not math.isnan(value):
            return float(value)
        raise ValueError(
            f"must be a number or true/false, got {value!r}; to compare with another "
            "value of the report use threshold_from (e.g. threshold_from: privacy.target_epsilon)"
        )

    @model_validator(mode="after")
    def _one_threshold(self) -> Gate:
        if (self.threshold is None) == (self.threshold_from is None):
            raise ValueError("give exactly one of 'threshold' and 'threshold_from'")
        if self.op != "==" and isinstance(self.threshold, bool):
            raise ValueError(f"op '{self.op}' needs a number; use op '==' to compare with true/false")
        return self


class AuditPolicy(BaseModel):
    """A named, ordered set of gates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    description: str = ""
    gates: tuple[Gate, ...]

    @field_validator("gates")
    @classmethod
    def _unique_names(cls, gates: tuple[Gate, ...]) -> tuple[Gate, ...]:
        if not gates:
            raise ValueError("the policy needs at least one gate")
        names = [g.name for g in gates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"gate names must be unique; repeated: {', '.join(duplicates)}")
        return gates


def load_policy(path: Path | str | None = None) -> AuditPolicy:
    """Read and validate an audit policy; ``None`` is the packaged default policy.

    Raises :class:`ConfigError` naming the file and the field for any problem.
    """
    path = DEFAULT_POLICY_PATH if path is None else Path(path)
    if not path.is_file():
        raise ConfigError(f"Cannot read audit policy {path}: it is not a file.",
                          hint="Pass an existing YAML file to --policy, or omit it to use the "
                               "default policy.")
    data = load_yaml(path, what="Audit policy", source=f"Audit policy {path}")
    return policy_from_dict(data, source=str(path))


def policy_from_dict(data: Any, source: str = "<policy>") -> AuditPolicy:
    """Validate an already-parsed policy mapping; errors name ``source`` and the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"Audit policy {source} must be a mapping with a 'gates' list, got {type(data).__name__}.",
            hint="See audits/policy.yaml for the format.",
        )
    try:
        return AuditPolicy.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(dict.fromkeys(_describe(err) for err in exc.errors()))
        raise ConfigError(
            f"Audit policy {source}: {problems}{'' if problems.endswith(('?', '.')) else '.'}",
            hint="See audits/README.md for the gate format.",
        ) from None


def _where(loc: tuple[Any, ...]) -> str:
    return field_path(loc) or "the policy"


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "extra_forbidden" and loc:
        key, parent = str(loc[-1]), loc[:-1]
        model = Gate if parent and isinstance(parent[-1], int) else AuditPolicy
        valid = list(model.model_fields)
        close = did_you_mean(key, valid)
        tail = f"did you mean '{close}'?" if close else f"valid keys are {', '.join(valid)}"
        return f"unknown key '{key}' in {_where(parent)}; {tail}"
    if kind == "missing" and loc:
        return f"missing key '{loc[-1]}' in {_where(loc[:-1])}"
    if kind == "literal_error" and loc:
        choices = OPS if loc[-1] == "op" else SEVERITIES
        given = error.get("input")
        close = did_you_mean(str(given), choices)
        tail = f"; did you mean '{close}'?" if close else ""
        allowed = ", ".join(f"'{c}'" for c in choices)
        return f"{_where(loc)}: {given!r} is not allowed, use one of {allowed}{tail}"
    if kind == "model_type":
        return f"{_where(loc)} must be a mapping of keys (name, metric, op, threshold, severity)"
    if kind in ("tuple_type", "list_type"):
        return f"{_where(loc)} must be a list"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{_where(loc)}: {message}"


# --------------------------------------------------------------------------- evaluation


def get_path(report: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` in nested dicts/lists, or ``default``.

    Keys that contain dots (``tpr_at_fpr."0.01"``) resolve too: at each level the longest
    matching key wins. Integer segments index lists (``mia.student.auc_ci.1``).
    """
    found = _walk(report, path.split("."))
    return default if found is _MISSING else found


def report_value(report: Any, path: str) -> Any:
    """``get_path``, reading a null ledger ε of a run without formal guarantee as ∞.

    ``report.json`` is strict JSON, so an infinite ε is stored as ``null``.
    """
    value = get_path(report, path)
    if value is None and path == LEDGER_EPSILON and get_path(report, FORMAL_GUARANTEE) is False:
        return math.inf
    return value


def _walk(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    if isinstance(node, Mapping):
        for k in range(len(parts), 0, -1):
            key = ".".join(parts[:k])
            if key in node:
                found = _walk(node[key], parts[k:])
                if found is not _MISSING:
                    return found
        return _MISSING
    if isinstance(node, list | tuple) and parts[0].isdigit() and int(parts[0]) < len(node):
        return _walk(node[int(parts[0])], parts[1:])
    return _MISSING


def _as_number(value: Any) -> float | None:
    """A real number from an int, float or numeric string ('inf'); ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0),
}


def _judge(value: Any, op: str, threshold: Any, gate: Gate) -> tuple[bool, str | None]:
    """Whether ``value op threshold`` holds, and a note when it could not be decided."""
    if value is None:
        return False, f"not measured: '{gate.metric}' is missing from the report"
    if threshold is None:
        return False, f"no threshold: '{gate.threshold_from}' is missing from the report"
    if isinstance(threshold, bool):
        if not isinstance(value, bool):
            return False, f"expected true or false at '{gate.metric}', got {value!r}"
        return value is threshold, None
    number, limit = _as_number(value), _as_number(threshold)
    if number is None:
        return False, f"expected a number at '{gate.metric}', got {value!r}"
    if limit is None:
        return False, f"expected a number at '{gate.threshold_from}', got {threshold!r}"
    if math.isnan(number):
        return False, f"not measured: '{gate.metric}' is NaN"
    if math.isnan(limit):
        return False, f"no threshold: '{gate.threshold_from}' is NaN"
    return bool(_COMPARE[op](number, limit)), None


def _row_value(value: Any) -> Any:
    """What a gate row records: strict-JSON friendly (no NaN or ∞, no sections)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping | list | tuple):
        return None
    return value


def evaluate_gate(report: Mapping[str, Any], gate: Gate) -> dict[str, Any]:
    """One gate row: ``{name, metric, op, threshold, threshold_from, value, passed, severity, note}``."""
    value = report_value(report, gate.metric)
    threshold = gate.threshold if gate.threshold_from is None else report_value(report, gate.threshold_from)
    if isinstance(value, Mapping | list | tuple):
        passed, note = False, f"'{gate.metric}' is a section of the report, not a single value"
    else:
        passed, note = _judge(value, gate.op, threshold, gate)
    note = note or _infinity_note(gate, value, threshold)
    return {
        "name": gate.name,
        "metric": gate.metric,
        "op": gate.op,
        "threshold": _row_value(threshold),
        "threshold_from": gate.threshold_from,
        "value": _row_value(value),
        "passed": passed,
        "severity": gate.severity,
        "description": gate.description,
        "note": note,
    }


def _infinity_note(gate: Gate, value: Any, threshold: Any) -> str | None:
    """Say so when an infinite value or threshold is recorded as null in the row."""
    def infinite(path: str | None, x: Any) -> str | None:
        number = _as_number(x)
        if number is None or math.isfinite(number):
            return None
        why = ": the run has no formal privacy guarantee" if path == LEDGER_EPSILON else ""
        return f"'{path}' is {'' if number > 0 else '-'}infinite{why}"

    notes = [n for n in (infinite(gate.metric, value), infinite(gate.threshold_from, threshold)) if n]
    return "; ".join(notes) or None


def _format_epsilon(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3f}"


def _lower_bounds(node: Any, path: str) -> list[tuple[str, float]]:
    """Every numeric ``epsilon_lower_bound`` under ``node`` (the student's attacks and canaries)."""
    found: list[tuple[str, float]] = []
    if isinstance(node, Mapping):
        for key, child in node.items():
            child_path = f"{path}.{key}"
            number = _as_number(child)
            if key == "epsilon_lower_bound" and number is not None and not math.isnan(number):
                found.append((child_path, number))
            else:
                found.extend(_lower_bounds(child, child_path))
    elif isinstance(node, list | tuple):
        for i, child in enumerate(node):
            found.extend(_lower_bounds(child, f"{path}.{i}"))
    return found


def _excess_leakage(report: Mapping[str, Any]) -> tuple[str, float, float] | None:
    """(where, bound, ledger ε) of the largest student ε lower bound above the ledger ε."""
    ledger = _as_number(report_value(report, LEDGER_EPSILON))
    if ledger is None or math.isnan(ledger):
        return None
    worst = max(_lower_bounds(get_path(report, "mia.student"), "mia.student"), key=lambda t: t[1], default=None)
    if worst is None or worst[1] <= ledger * (1 + 1e-9):
        return None
    return worst[0], worst[1], ledger


def privacy_bug(report: Mapping[str, Any]) -> str | None:
    """A message if an empirical ε lower bound of the student exceeds the ledger's ε."""
    excess = _excess_leakage(report)
    if excess is None:
        return None
    where, bound, ledger = excess
    return (
        f"possible privacy bug: the empirical ε lower bound {_format_epsilon(bound)} ({where}) "
        f"exceeds the ledger ε {_format_epsilon(ledger)}"
    )


def no_guarantee_reason(report: Mapping[str, Any]) -> str | None:
    """Why the run has no formal guarantee (first caveat), or ``None`` if it has one."""
    if get_path(report, FORMAL_GUARANTEE) is True:
        return None
    caveats = get_path(report, "privacy.caveats")
    if isinstance(caveats, list | tuple) and caveats and str(caveats[0]).strip():
        return str(caveats[0]).strip()
    if get_path(report, FORMAL_GUARANTEE) is False:
        return "the pipeline reports no formal (ε, δ) guarantee for the released student"
    return "the report does not state a formal privacy guarantee"


def _builtin_rows(report: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the built-in rules when the policy's own gates do not already enforce them."""
    extra: list[dict[str, Any]] = []
    bug, excess = privacy_bug(report), _excess_leakage(report)
    if bug and excess:
        for row in rows:
            if row["metric"] == EMPIRICAL_EPSILON:
                row["note"] = f"{row['note']}; {bug}" if row["note"] else bug
        if not any(r["metric"] == EMPIRICAL_EPSILON and not r["passed"] and r["severity"] == "reject" for r in rows):
            extra.append({
                "name": f"{BUILTIN_PREFIX}empirical_epsilon",
                "metric": excess[0],
                "op": "<=",
                "threshold": _row_value(excess[2]),
                "threshold_from": LEDGER_EPSILON,
                "value": _row_value(excess[1]),
                "passed": False,
                "severity": "reject",
                "description": "Built-in rule: no attack may show more leakage than the ledger allows.",
                "note": bug,
            })
    reason = no_guarantee_reason(report)
    if reason and not any(r["metric"] == FORMAL_GUARANTEE and not r["passed"] for r in rows):
        extra.append({
            "name": f"{BUILTIN_PREFIX}formal_guarantee",
            "metric": FORMAL_GUARANTEE,
            "op": "==",
            "threshold": True,
            "threshold_from": None,
            "value": _row_value(get_path(report, FORMAL_GUARANTEE)),
            "passed": False,
            "severity": "review",
            "description": "Built-in rule: a run without a formal privacy guarantee needs human review.",
            "note": f"no formal privacy guarantee: {reason}",
        })
    return extra


def verdict_of(rows: list[Mapping[str, Any]]) -> str:
    """``reject`` if a reject-severity row failed, ``review`` if any failed, else ``release``."""
    failed = [r for r in rows if not r.get("passed")]
    if any(r.get("severity") == "reject" for r in failed):
        return "reject"
    return "review" if failed else "release"


def evaluate_gates(report: Mapping[str, Any], policy: AuditPolicy) -> tuple[list[dict[str, Any]], str]:
    """The gate rows (policy gates, then any built-in rule that fired) and the verdict."""
    rows = [evaluate_gate(report, gate) for gate in policy.gates]
    rows += _builtin_rows(report, rows)
    return rows, verdict_of(rows)


def rejudge(report: Mapping[str, Any], policy: AuditPolicy) -> dict[str, Any]:
    """A copy of ``report`` with ``gates``, ``passed``, ``verdict`` (and ``policy``) recomputed."""
    judged = copy.deepcopy(dict(report))
    rows, verdict = evaluate_gates(judged, policy)
    judged["gates"] = rows
    judged["passed"] = all(r["passed"] for r in rows)
    judged["verdict"] = verdict
    judged["policy"] = {"name": policy.name}
    return judged


__all__ = [
    "DEFAULT_POLICY_PATH",
    "AuditPolicy",
    "Gate",
    "evaluate_gate",
    "evaluate_gates",
    "get_path",
    "load_policy",
    "no_guarantee_reason",
    "policy_from_dict",
    "privacy_bug",
    "rejudge",
    "report_value",
    "verdict_of",
]
