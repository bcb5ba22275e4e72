"""Unit normalisation and conversion for Observation values (UCUM codes and common spellings).

Conversions within one dimension (mass, length, mass or molar concentration, temperature)
need no context. Converting between mass and molar concentration depends on the analyte's
molar mass, so it needs an ``analyte``: mg/dL = mmol/L × 18.016 for glucose and × 38.67 for
cholesterol (total, HDL and LDL). HbA1c converts between % (NGSP) and mmol/mol (IFCC).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

# Spellings seen in exports -> canonical UCUM code. Keys are lower-case.
_ALIASES: dict[str, str] = {
    "kg": "kg", "kilogram": "kg", "kilograms": "kg",
    "g": "g", "gram": "g", "grams": "g",
    "[lb_av]": "[lb_av]", "lb": "[lb_av]", "lbs": "[lb_av]", "pound": "[lb_av]",
    "pounds": "[lb_av]",
    "cm": "cm", "m": "m", "mm": "mm",
    "[in_i]": "[in_i]", "in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]",
    "mg/dl": "mg/dL", "g/dl": "g/dL", "g/l": "g/L", "mg/l": "mg/L",
    "mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L",
    "mmol/mol": "mmol/mol",
    "%": "%",
    "cel": "Cel", "°c": "Cel", "degc": "Cel",
    "[degf]": "[degF]", "°f": "[degF]", "degf": "[degF]",
    "mm[hg]": "mm[Hg]", "mmhg": "mm[Hg]",
    "/min": "/min", "{beats}/min": "/min", "beats/min": "/min", "{breaths}/min": "/min",
    "breaths/min": "/min", "bpm": "/min",
    "kg/m2": "kg/m2", "kg/m^2": "kg/m2",
    "ml/min/{1.73_m2}": "mL/min/{1.73_m2}", "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "ml/min/1.73_m2": "mL/min/{1.73_m2}",
    "1": "1", "{score}": "{score}",
}

UNITS: frozenset[str] = frozenset(_ALIASES.values())
"""Canonical units a mapping may ask for."""

# Linear scales to a base unit of each dimension.
_MASS = {"kg": 1.0, "g": 1e-3, "[lb_av]": 0.45359237}
_LENGTH = {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54}
_MASS_CONC = {"mg/dL": 1.0, "g/dL": 1000.0, "g/L": 100.0, "mg/L": 0.1}
_MOLAR_CONC = {"mmol/L": 1.0, "umol/L": 1e-3}

MG_DL_PER_MMOL_L: dict[str, float] = {
    "glucose": 18.016,
    "cholesterol": 38.67,
    "triglycerides": 88.57,
    "creatinine": 11.312,  # 1 mg/dL = 88.4 umol/L
}
"""mg/dL per mmol/L for each analyte that converts between mass and molar concentration."""

ANALYTES: frozenset[str] = frozenset({*MG_DL_PER_MMOL_L, "hba1c"})


def normalize_unit(unit: str | None) -> str | None:
    """The canonical UCUM code for ``unit``, or None when it is not a known spelling."""
    if unit is None:
        return None
    return _ALIASES.get(unit.strip().lower())


def _linear(table: dict[str, float], src: str, dst: str) -> Callable[[float], float] | None:
    if src in table and dst in table:
        factor = table[src] / table[dst]
        return lambda x: x * factor
    return None


@lru_cache(maxsize=1024)
def converter(src: str | None, dst: str, analyte: str | None = None
              ) -> Callable[[float], float] | None:
    """A function converting a value from unit ``src`` to ``dst``, or None if impossible.

    ``src`` may be any spelling :func:`normalize_unit` knows; ``dst`` a canonical unit.
    """
    s = normalize_unit(src)
    if s is None:
        return None
    if s == dst:
        return lambda x: x
    for table in (_MASS, _LENGTH, _MASS_CONC, _MOLAR_CONC):
        f = _linear(table, s, dst)
        if f is not None:
            return f
    if {s, dst} == {"Cel", "[degF]"}:
        return (lambda x: x * 9.0 / 5.0 + 32.0) if dst == "[degF]" else \
            (lambda x: (x - 32.0) * 5.0 / 9.0)
    if analyte == "hba1c" and {s, dst} == {"%", "mmol/mol"}:
        return (lambda x: (x - 2.152) * 10.929) if dst == "mmol/mol" else \
            (lambda x: x / 10.929 + 2.152)
    factor = MG_DL_PER_MMOL_L.get(analyte or "")
    if factor is not None:
        if s in _MOLAR_CONC and dst in _MASS_CONC:
            to_mmol = _MOLAR_CONC[s]
            to_dst = _MASS_CONC[dst]
            return lambda x: x * to_mmol * factor / to_dst
        if s in _MASS_CONC and dst in _MOLAR_CONC:
            to_mgdl = _MASS_CONC[s]
            to_dst = _MOLAR_CONC[dst]
            return lambda x: x * to_mgdl / factor / to_dst
    return None


def convert(value: float, src: str | None, dst: str, analyte: str | None = None) -> float | None:
    """``value`` in unit ``src`` expressed in ``dst``; None when the units do not convert."""
    f = converter(src, dst, analyte)
    return None if f is None else f(value)


__all__ = ["ANALYTES", "MG_DL_PER_MMOL_L", "UNITS", "convert", "converter", "normalize_unit"]
