"""The declarative mapping from FHIR resources to one row of features per patient.

A mapping is YAML validated into frozen pydantic models; see ``docs/fhir.md`` for the format
and ``default_mapping.yaml`` / ``demo_mapping.yaml`` for complete examples. Errors name the
mapping file and the field path, and an unknown key comes with the closest valid key.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from medistill.data.fhir.codes import parse_code
from medistill.data.fhir.units import ANALYTES, UNITS, normalize_unit
from medistill.errors import ConfigError
from medistill.yamlio import did_you_mean, field_path, load_yaml, parse_yaml

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_COLUMNS = frozenset({"patient_key"})


class _Strict(BaseModel):
    """Frozen, no unknown keys; an unknown key is reported with the closest valid one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in allowed:
                    close = did_you_mean(str(key), allowed, cutoff=0.5)
                    hint = f"; did you mean {close!r}?" if close else "."
                    raise PydanticCustomError(
                        "unknown_key", "unknown key {key}{hint} Valid keys: {valid}.",
                        {"key": repr(key), "hint": hint, "valid": ", ".join(allowed)})
        return data


def _check_codes(codes: tuple[str, ...]) -> tuple[str, ...]:
    for code in codes:
        parse_code(code)
    return codes


def _check_lookback(value: Any) -> int | str | None:
    if value is None or value == "all" or (isinstance(value, int) and not isinstance(value, bool)
                                           and value >= 0):
        return value
    raise ValueError(f"must be a number of days >= 0 or 'all'. Got {value!r}")


def _check_default_lookback(value: Any) -> int | str:
    if value is None:
        raise ValueError("must be a number of days >= 0 or 'all'. Got None")
    return _check_lookback(value)  # type: ignore[return-value]


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"must be a column name (letters, digits, _). Got {value!r}")
    if value in RESERVED_COLUMNS:
        raise ValueError(f"{value!r} is reserved for the salted patient key")
    return value


def _check_unit(value: str | None) -> str | None:
    """The canonical UCUM code of ``value`` (common spellings such as mg/dl are accepted)."""
    if value is None:
        return None
    unit = normalize_unit(value)
    if unit is None:
        close = did_you_mean(value, sorted(UNITS), cutoff=0.4)
        hint = f"; did you mean {close!r}?" if close else ""
        raise ValueError(f"unknown unit {value!r}{hint} (UCUM codes such as mg/dL, mmol/L, "
                         f"kg, cm, %)")
    return unit


def _check_analyte(value: str | None) -> str | None:
    if value is not None and value not in ANALYTES:
        raise ValueError(f"unknown analyte {value!r}; known: {', '.join(sorted(ANALYTES))}")
    return value


def _non_empty(codes: tuple[str, ...]) -> tuple[str, ...]:
    if not codes:
        raise ValueError("needs at least one code")
    return codes


CodeList = Annotated[tuple[str, ...], AfterValidator(_check_codes)]
RequiredCodes = Annotated[CodeList, AfterValidator(_non_empty)]
Lookback = Annotated[int | Literal["all"] | None, PlainValidator(_check_lookback)]
ColumnName = Annotated[str, AfterValidator(_check_name)]
Unit = Annotated[str | None, AfterValidator(_check_unit)]
Analyte = Annotated[str | None, AfterValidator(_check_analyte)]


class _Feature(_Strict):
    name: ColumnName
    lookback_days: Lookback = None
    """Days before the index date to look back; None: the mapping's default; 'all': no limit."""


class IndexSpec(_Strict):
    """The index date of each patient: features look back from it, labels look ahead.

    ``fixed``: one date for everyone. ``first_encounter``: the day of the patient's first
    encounter of ``encounter_classes`` (any class when empty). ``export_date``: the Bulk
    Data manifest's ``transactionTime``, else the latest date found in the export.
    ``offset_days`` is added to the date found.
    """

    kind: Literal["fixed", "first_encounter", "export_date"]
    date: dt.date | None = None
    encounter_classes: CodeList = ()
    offset_days: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> IndexSpec:
        if self.kind == "fixed" and self.date is None:
            raise ValueError("kind 'fixed' needs a 'date' (YYYY-MM-DD)")
        if self.kind != "fixed" and self.date is not None:
            raise ValueError(f"'date' is only used with kind 'fixed', not {self.kind!r}")
        if self.kind != "first_encounter" and self.encounter_classes:
            raise ValueError("'encounter_classes' is only used with kind 'first_encounter'")
        return self


class Demographics(_Strict):
    """Patient-level columns: ``age`` (years at index), ``sex`` (administrative gender),
    ``deceased`` (1 if dead on or before the index date), US Core ``race`` / ``ethnicity``."""

    age: bool = True
    sex: bool = True
    deceased: bool = False
    race: bool = False
    ethnicity: bool = False


class ObservationFeature(_Feature):
    """Observations (or Observation components) with one of ``codes``, aggregated.

    ``value: quantity`` reads ``valueQuantity`` (or ``valueInteger``) converted to ``unit``
    (without ``unit``, all values must share one unit); ``value: coded``
    reads ``valueCodeableConcept`` and maps it to a category of ``categories`` ("other"
    when it matches none).
    """

    codes: RequiredCodes
    agg: Literal["latest", "mean", "min", "max", "count"] = "latest"
    value: Literal["quantity", "coded"] = "quantity"
    unit: Unit = None
    analyte: Analyte = None
    categories: dict[str, CodeList] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ObservationFeature:
        if self.value == "coded":
            if not self.categories:
                raise ValueError("'value: coded' needs 'categories' (category: [codes])")
            if self.agg not in ("latest", "count"):
                raise ValueError("a coded value can only be aggregated with 'latest' or 'count'")
            if self.unit or self.analyte:
                raise ValueError("'unit' and 'analyte' apply to quantity values only")
        elif self.categories is not None:
            raise ValueError("'categories' applies to 'value: coded' only")
        return self


class ConditionFeature(_Feature):
    """Conditions with one of ``codes`` (onset, else recorded date, in the window)."""

    codes: RequiredCodes
    agg: Literal["flag", "count"] = "flag"


class CountFeature(_Feature):
    """Procedures (or medications, see :class:`MedicationFeature`) with one of ``codes``;
    any if empty."""

    codes: CodeList = ()
    agg: Literal["count", "flag"] = "count"


MedicationResource = Literal["MedicationRequest", "MedicationStatement"]


def _check_medication_resources(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("needs at least one of MedicationRequest, MedicationStatement")
    if len(set(value)) != len(value):
        raise ValueError("lists a resource type twice")
    return value


class MedicationFeature(CountFeature):
    """Medications (RxNorm codes…) with one of ``codes``; any if empty. ``resources`` says
    which resources are counted: MedicationRequests (orders, the default) and/or
    MedicationStatements (what the patient reports taking), each resource counted once."""

    resources: Annotated[tuple[MedicationResource, ...],
                         AfterValidator(_check_medication_resources)] = ("MedicationRequest",)


class EncounterFeature(_Feature):
    """Encounters whose class is one of ``classes`` (v3 ActCode: AMB, EMER, IMP…); any if
    empty."""

    classes: CodeList = ()
    agg: Literal["count", "flag"] = "count"


class LabelSpec(_Strict):
    """The outcome, looked for in the ``horizon_days`` after the index date (the index day
    itself excluded, index + horizon_days included).

    ``condition_onset``: a Condition with one of ``codes`` starts in the window.
    ``deceased``: ``Patient.deceasedDateTime`` falls in the window (patients marked deceased
    without a date get no label and are left out). ``observation_above`` /
    ``observation_below``: an Observation with one of ``codes`` has a value (in ``unit``)
    strictly above / below ``threshold`` in the window.
    """

    name: ColumnName
    kind: Literal["condition_onset", "deceased", "observation_above", "observation_below"]
    horizon_days: int = Field(ge=1)
    codes: CodeList = ()
    threshold: float | None = None
    unit: Unit = None
    analyte: Analyte = None

    @model_validator(mode="after")
    def _consistent(self) -> LabelSpec:
        observation = self.kind.startswith("observation")
        if self.kind != "deceased" and not self.codes:
            raise ValueError(f"kind {self.kind!r} needs a non-empty 'codes' list")
        if self.kind == "deceased" and self.codes:
            raise ValueError("kind 'deceased' takes no 'codes'")
        if observation and self.threshold is None:
            raise ValueError(f"kind {self.kind!r} needs a 'threshold'")
        if not observation and (self.threshold is not None or self.unit or self.analyte):
            raise ValueError("'threshold', 'unit' and 'analyte' apply to observation labels only")
        return self


class FhirMapping(_Strict):
    """A validated mapping; build it with :func:`load_mapping` or :func:`default_mapping`."""

    version: Literal[1] = 1
    description: str = ""
    index: IndexSpec
    lookback_days: Annotated[int | Literal["all"], PlainValidator(_check_default_lookback)] = 1095
    demographics: Demographics = Demographics()
    observations: tuple[ObservationFeature, ...] = ()
    conditions: tuple[ConditionFeature, ...] = ()
    encounters: tuple[EncounterFeature, ...] = ()
    medications: tuple[MedicationFeature, ...] = ()
    procedures: tuple[CountFeature, ...] = ()
    label: LabelSpec | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> FhirMapping:
        seen: set[str] = set()
        for name in self.column_names():
            if name in seen:
                raise ValueError(f"the column name {name!r} is used twice")
            seen.add(name)
        return self

    def column_names(self) -> list[str]:
        """Feature and label columns, in table order (``patient_key`` excluded)."""
        demo = [k for k in ("age", "sex", "deceased", "race", "ethnicity")
                if getattr(self.demographics, k)]
        names = demo + [f.name for group in (self.observations, self.conditions,
                                             self.encounters, self.medications,
                                             self.procedures) for f in group]
        return names + ([self.label.name] if self.label else [])


def mapping_from_dict(data: Any, *, source: str = "the mapping") -> FhirMapping:
    """Validate a parsed mapping; raise :class:`ConfigError` naming ``source`` and the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a YAML mapping (key: value pairs) at the top "
                          f"level, got {type(data).__name__}.")
    try:
        return FhirMapping.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False)[:3]:
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{field_path(tuple(err['loc']), data) or '(top level)'}: {msg}")
        more = exc.error_count() - len(lines)
        tail = f" ({more} more error(s) not shown.)" if more > 0 else ""
        raise ConfigError(f"{source}: invalid FHIR mapping. " + " ".join(
            s if s.endswith(".") else s + "." for s in lines) + tail,
            hint="See docs/fhir.md for the mapping format.") from None


def load_mapping(path: str | Path) -> FhirMapping:
    """Read and validate a mapping YAML file."""
    p = Path(path)
    data = load_yaml(p, what="FHIR mapping file", source=p.name)
    return mapping_from_dict(data, source=p.name)


def _packaged(name: str) -> FhirMapping:
    text = resources.files("medistill.data.fhir").joinpath(name).read_text(encoding="utf-8")
    return mapping_from_dict(parse_yaml(text, source=name), source=name)


def default_mapping() -> FhirMapping:
    """The built-in mapping for any US Core export: demographics, common conditions as flags,
    common vital signs and labs as latest values, encounter and medication counts; index =
    the export date; no label."""
    return _packaged("default_mapping.yaml")


def demo_mapping() -> FhirMapping:
    """The mapping of ``medistill demo`` for :func:`write_synthetic_fhir_export` cohorts:
    index 2025-01-01, 3-year look-back, label ``cv_event_1y``."""
    return _packaged("demo_mapping.yaml")


__all__ = [
    "ConditionFeature",
    "CountFeature",
    "Demographics",
    "EncounterFeature",
    "FhirMapping",
    "IndexSpec",
    "LabelSpec",
    "MedicationFeature",
    "ObservationFeature",
    "default_mapping",
    "demo_mapping",
    "load_mapping",
    "mapping_from_dict",
]
