"""Unit conversions against hand-computed values."""

from __future__ import annotations

import pytest

from medistill.data.fhir.units import convert, normalize_unit


@pytest.mark.parametrize(("value", "src", "dst", "analyte", "expected"), [
    (5.5, "mmol/L", "mg/dL", "glucose", 99.088),          # 5.5 x 18.016
    (180.0, "mg/dL", "mmol/L", "glucose", 9.99112),       # 180 / 18.016
    (5.0, "mmol/L", "mg/dL", "cholesterol", 193.35),      # 5 x 38.67
    (232.02, "mg/dL", "mmol/L", "cholesterol", 6.0),      # 232.02 / 38.67
    (1.2, "mmol/L", "mg/dL", "triglycerides", 106.284),   # 1.2 x 88.57
    (88.4, "umol/L", "mg/dL", "creatinine", 1.0000),      # 88.4 x 0.001 x 11.312
    (150.0, "[lb_av]", "kg", None, 68.0388555),           # 150 x 0.45359237
    (70.0, "kg", "[lb_av]", None, 154.3236),              # 70 / 0.45359237
    (70.0, "[in_i]", "cm", None, 177.8),                  # 70 x 2.54
    (180.0, "cm", "[in_i]", None, 70.8661),               # 180 / 2.54
    (1.75, "m", "cm", None, 175.0),
    (2500.0, "g", "kg", None, 2.5),
    (1.4, "g/dL", "mg/dL", None, 1400.0),
    (98.6, "[degF]", "Cel", None, 37.0),
    (7.0, "%", "mmol/mol", "hba1c", 52.979),              # (7 - 2.152) x 10.929
    (53.0, "mmol/mol", "%", "hba1c", 7.00142),            # 53 / 10.929 + 2.152
    (120.0, "mm[Hg]", "mm[Hg]", None, 120.0),
])
def test_conversion_matches_hand_computed_value(value, src, dst, analyte, expected):
    assert convert(value, src, dst, analyte) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("spelling", ["lb", "lbs", "LB", "[lb_av]", "pounds"])
def test_spellings_of_pounds_convert(spelling):
    assert convert(10.0, spelling, "kg") == pytest.approx(4.5359237)


def test_common_spellings_normalize_to_ucum():
    assert normalize_unit("mg/dl") == "mg/dL"
    assert normalize_unit(" mmol/l ") == "mmol/L"
    assert normalize_unit("µmol/L") == "umol/L"
    assert normalize_unit("mmHg") == "mm[Hg]"
    assert normalize_unit("beats/min") == "/min"
    assert normalize_unit("furlongs") is None
    assert normalize_unit(None) is None


@pytest.mark.parametrize(("src", "dst", "analyte"), [
    ("mmol/L", "mg/dL", None),        # molar <-> mass needs the analyte
    ("mmol/L", "mg/dL", "hba1c"),     # hba1c has no molar mass factor
    ("kg", "cm", None),               # different dimensions
    ("furlongs", "cm", None),         # unknown unit
    (None, "kg", None),               # no unit
])
def test_impossible_conversions_return_none(src, dst, analyte):
    assert convert(1.0, src, dst, analyte) is None
