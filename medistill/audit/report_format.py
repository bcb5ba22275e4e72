"""Number and text formatting for the audit report (also its Jinja filters).

Every formatter accepts anything a report may hold — numbers, numeric strings, ``None``,
Jinja undefined — and never raises: missing values show as "—", infinite ε as "∞".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2

MISSING = "—"
OP_SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "="}


def number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None or isinstance(x, jinja2.Undefined):
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def fallback(x: Any) -> str:
    """How a value that is not a number is shown."""
    if x is None or isinstance(x, jinja2.Undefined) or x == "":
        return MISSING
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def _special(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return None


def fmt_sig(x: Any, digits: int = 3) -> str:
    """``digits`` significant figures without exponent notation for everyday magnitudes."""
    v = number(x)
    if v is None:
        return fallback(x)
    if (s := _special(v)) is not None:
        return s
    if v == 0:
        return "0"
    if abs(v) < 1e-4:
        return fmt_sci(v)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_num(x: Any, decimals: int = 3) -> str:
    """A metric with fixed decimals (AUROC 0.853); integers with thousands separators."""
    v = number(x)
    if v is None:
        return fallback(x)
    if (s := _special(v)) is not None:
        return s
    if isinstance(x, int) or (v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    if v != 0 and abs(v) < 10 ** -decimals:
        return fmt_sci(v)
    return f"{v:,.{decimals}f}"


def fmt_eps(x: Any) -> str:
    """ε to 3 decimals, ∞ for no guarantee."""
    v = number(x)
    if v is None:
        return fallback(x)
    return _special(v) or f"{v:.3f}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_sci(x: Any) -> str:
    """Scientific notation for small probabilities: 5×10⁻⁶."""
    v = number(x)
    if v is None:
        return fallback(x)
    if (s := _special(v)) is not None:
        return s
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def fmt_pct(x: Any) -> str:
    """A ratio as a percentage: 0.96 → 96.0 %."""
    v = number(x)
    if v is None:
        return fallback(x)
    return _special(v) or f"{100 * v:.1f} %"


def fmt_times(x: Any) -> str:
    """A speed-up factor: 40.0×."""
    v = number(x)
    if v is None:
        return fallback(x)
    return _special(v) or (f"{v:,.0f}×" if abs(v) >= 100 else f"{v:.1f}×")


def fmt_bytes(x: Any) -> str:
    """A size in bytes, decimal units: 19.5 kB."""
    v = number(x)
    if v is None:
        return fallback(x)
    if (s := _special(v)) is not None:
        return s
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_int(x: Any) -> str:
    """A count with thousands separators."""
    v = number(x)
    if v is None:
        return fallback(x)
    return _special(v) or (f"{int(v):,}" if v.is_integer() else fmt_sig(v))


def fmt_rate(x: Any) -> str:
    """A small rate (TPR at low FPR) as a percentage with 2 decimals: 1.10 %."""
    v = number(x)
    if v is None:
        return fallback(x)
    return _special(v) or f"{100 * v:.2f} %"


def fmt_ci(x: Any, unit: str = "num") -> str:
    """A confidence interval ``(lo–hi)``, as numbers or (``unit="rate"``) percentages."""
    if not (isinstance(x, Sequence) and not isinstance(x, str) and len(x) == 2):
        return ""
    if unit == "rate":
        return f"({fmt_rate(x[0]).removesuffix(' %')}–{fmt_rate(x[1])})"
    return f"({fmt_num(x[0])}–{fmt_num(x[1])})"


def fmt_value(x: Any) -> str:
    """A gate value or threshold: yes/no, 3 decimals below 10 (AUROC, ε), 40.0 above."""
    v = number(x) if isinstance(x, int | float) else None
    if v is None:
        return fallback(x)
    if (s := _special(v)) is not None:
        return s
    return f"{v:,.1f}" if abs(v) >= 10 else fmt_num(v)


def at_rate(table: Any, rate: str) -> Any:
    """``table["0.01"]`` tolerant of float keys and spellings like '0.010'."""
    if not isinstance(table, Mapping):
        return None
    if rate in table:
        return table[rate]
    for key, value in table.items():
        try:
            if math.isclose(float(key), float(rate)):
                return value
        except (TypeError, ValueError):
            continue
    return None


FILTERS: dict[str, Callable[..., str]] = {
    "num": fmt_num, "sig": fmt_sig, "eps": fmt_eps, "sci": fmt_sci, "pct": fmt_pct,
    "times": fmt_times, "bytes": fmt_bytes, "int": fmt_int, "ci": fmt_ci, "value": fmt_value, "rate": fmt_rate,
    "opsym": lambda op: OP_SYMBOL.get(str(op), fallback(op)),
}


__all__ = [
    "FILTERS", "MISSING", "OP_SYMBOL", "at_rate", "fallback", "fmt_bytes", "fmt_ci", "fmt_eps",
    "fmt_int", "fmt_num", "fmt_pct", "fmt_rate", "fmt_sci", "fmt_sig", "fmt_times", "fmt_value",
    "number",
]
