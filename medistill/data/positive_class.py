"""Which class of a binary label is the positive one: the class whose probability the model
outputs (``probability`` of ``medistill predict``, a RiskAssessment's ``probabilityDecimal``)
and the positive class of AUROC, calibration and the fairness gaps.

Classes are sorted (numbers by value), and the positive class is the second. That is right
for ``0``/``1``, ``1``/``2`` (R's survival status), ``False``/``True``, ``no``/``yes`` and
``alive``/``dead``, and wrong for ``survived``/``died`` or ``normal``/``abnormal``, where a
bedside reader would take a probability of survival for a risk of death. So:
``data.positive_class`` names it; undeclared, a class spelled as a negative outcome (``no``,
``negative``, ``alive``, ``survived``, ``normal``, ``benign``, ``control``, …) makes the
other one positive, else a class spelled as a positive outcome (``yes``, ``died``,
``abnormal``, ``case``, …) is; else the sorted order stands, with a warning note that asks
for ``data.positive_class``.
"""

from __future__ import annotations

import numpy as np

from medistill.data.checks import InputNote
from medistill.errors import DataError

NEGATIVE_WORDS = frozenset({
    "0", "no", "n", "false", "f", "negative", "neg", "absent", "alive", "living", "survived",
    "survival", "healthy", "benign", "normal", "none", "control", "censored", "not died",
    "no event", "no disease", "non-case", "noncase"})
POSITIVE_WORDS = frozenset({
    "1", "yes", "y", "true", "t", "positive", "pos", "present", "dead", "died", "death",
    "deceased", "expired", "case", "malignant", "abnormal", "event", "disease", "diseased",
    "readmitted", "relapse", "recurrence", "progression"})
_PLAIN = frozenset({("0", "1"), ("false", "true"), ("no", "yes"), ("n", "y")})


def _word(name: str) -> str:
    return " ".join(name.split()).casefold()


def _by_words(classes: tuple[str, str]) -> int | None:
    """The index of the positive class by its spelling, or None."""
    words = [_word(c) for c in classes]
    negative = [w in NEGATIVE_WORDS for w in words]
    if sum(negative) == 1:
        return negative.index(False)
    positive = [w in POSITIVE_WORDS for w in words]
    if sum(positive) == 1:
        return positive.index(True)
    return None


# YAML 1.1 reads an unquoted yes/no/on/off as a boolean, which the config keeps as text
_BOOLEAN_SPELLINGS = {"true": {"true", "yes", "y", "t", "on"},
                      "false": {"false", "no", "n", "f", "off"}}


def _declared_index(declared: str, classes: tuple[str, ...], *, source: str,
                    label: str) -> int:
    text = declared.strip()
    spellings = _BOOLEAN_SPELLINGS.get(_word(text), set())
    for match in (lambda c: c == text, lambda c: _word(c) == _word(text),
                  lambda c: _word(c) in spellings):
        hits = [i for i, c in enumerate(classes) if match(c)]
        if len(hits) == 1:
            return hits[0]
    raise DataError(f"{source}: data.positive_class names a class the label '{label}' does "
                    f"not have; its classes are {', '.join(repr(c) for c in classes)}.",
                    hint="Spell data.positive_class as one of these classes.")


def order_binary_classes(codes: np.ndarray, classes: tuple[str, ...], *, declared: str | None,
                         source: str, label: str, numeric: bool
                         ) -> tuple[np.ndarray, tuple[str, ...], InputNote | None]:
    """``codes`` and ``classes`` with the positive class second, and a note saying which
    class it is when that was not declared and the classes are not plain (``0``/``1``,
    ``false``/``true``, ``no``/``yes`` or numbers)."""
    if len(classes) != 2:
        if declared is not None:
            raise DataError(f"{source}: data.positive_class applies to a label with two "
                            f"classes; '{label}' has {len(classes)}.",
                            hint="Remove data.positive_class, or merge the label's classes "
                                 "into two.")
        return codes, classes, None
    pair = (classes[0], classes[1])
    if declared is not None:
        index, how = _declared_index(declared, classes, source=source, label=label), None
    elif numeric or tuple(_word(c) for c in pair) in _PLAIN:
        index, how = 1, None
    else:
        found = _by_words(pair)
        index = 1 if found is None else found
        how = "sorted" if found is None else "words"
    if index == 0:
        codes, classes = 1 - codes, (classes[1], classes[0])
    if how is None:
        return codes, classes, None
    positive, negative = classes[1], classes[0]
    if how == "words":
        message = (f"The label '{label}' has two classes; the model gives the probability of "
                   f"'{positive}' (the positive class, read from the class names), against "
                   f"'{negative}'. Set data.positive_class to choose the other one.")
        return codes, classes, InputNote("positive_class", label, message)
    message = (f"The label '{label}' has two classes and neither name says which is the "
               f"outcome: the model gives the probability of '{positive}', the second in "
               f"sorted order, against '{negative}'. Set data.positive_class to say which "
               "class is the outcome.")
    return codes, classes, InputNote("positive_class", label, message, severity="warning")


__all__ = ["NEGATIVE_WORDS", "POSITIVE_WORDS", "order_binary_classes"]
