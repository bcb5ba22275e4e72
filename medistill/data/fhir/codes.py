"""Code lists in mappings and matching them against FHIR codings.

A code in a mapping is written ``[system:]code[*]``:

- ``loinc:8867-4`` — a code in a known system (aliases below);
- ``http://loinc.org|8867-4`` — a code in a system given by its full URL;
- ``8867-4`` — the code in any system;
- ``icd10:I21*`` — every code starting with ``I21`` (ICD-10 categories and their children).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

SYSTEMS: dict[str, tuple[str, ...]] = {
    "loinc": ("http://loinc.org",),
    "snomed": ("http://snomed.info/sct",),
    "sct": ("http://snomed.info/sct",),
    "icd10": ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"),
    "icd10cm": ("http://hl7.org/fhir/sid/icd-10-cm",),
    "icd9": ("http://hl7.org/fhir/sid/icd-9-cm",),
    "rxnorm": ("http://www.nlm.nih.gov/research/umls/rxnorm",),
    "ndc": ("http://hl7.org/fhir/sid/ndc",),
    "cpt": ("http://www.ama-assn.org/go/cpt",),
    "actcode": ("http://terminology.hl7.org/CodeSystem/v3-ActCode",),
}
"""System aliases usable as ``alias:code`` in a mapping."""


@dataclass(frozen=True)
class Code:
    """One parsed code of a code list."""

    systems: tuple[str, ...] | None  # None: any system
    code: str
    prefix: bool = False


def parse_code(text: str) -> Code:
    """Parse ``[system:]code[*]``; raise ValueError with a suggestion when it is malformed."""
    raw = text.strip()
    systems: tuple[str, ...] | None = None
    code = raw
    if "|" in raw:
        url, code = raw.rsplit("|", 1)
        if not url:
            raise ValueError(f"code {text!r} has an empty system before '|'")
        systems = (url,)
    elif ":" in raw and not raw.lower().startswith(("urn:", "http")):
        alias, code = raw.split(":", 1)
        key = alias.strip().lower()
        if key not in SYSTEMS:
            close = difflib.get_close_matches(key, SYSTEMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"code {text!r} uses the unknown system alias {alias!r}{hint} "
                             f"Known aliases: {', '.join(sorted(SYSTEMS))}, or write "
                             f"'<system url>|<code>'")
        systems = SYSTEMS[key]
    code = code.strip()
    prefix = code.endswith("*")
    code = code.rstrip("*")
    if not code or "*" in code:
        raise ValueError(f"code {text!r} is not of the form [system:]code[*]")
    return Code(systems, code, prefix)


@dataclass
class CodeMatcher:
    """Maps codings to the slots (feature numbers) whose code list contains them."""

    exact: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    any_system: dict[str, list[int]] = field(default_factory=dict)
    prefixes: list[tuple[tuple[str, ...] | None, str, int]] = field(default_factory=list)
    match_all: list[int] = field(default_factory=list)

    def add(self, slot: int, codes: Sequence[Code]) -> None:
        """Register ``slot`` for ``codes``; an empty list matches every resource."""
        if not codes:
            self.match_all.append(slot)
        for c in codes:
            if c.prefix:
                self.prefixes.append((c.systems, c.code, slot))
            elif c.systems is None:
                self.any_system.setdefault(c.code, []).append(slot)
            else:
                for s in c.systems:
                    self.exact.setdefault((s, c.code), []).append(slot)

    @property
    def empty(self) -> bool:
        return not (self.exact or self.any_system or self.prefixes or self.match_all)

    def match_codes(self, codings: Iterable[tuple[str | None, str]]) -> set[int]:
        """The slots matched by one of ``codings`` through a code (not by matching all)."""
        return self.match(codings) - set(self.match_all)

    def match(self, codings: Iterable[tuple[str | None, str]]) -> set[int]:
        """The slots matched by any of ``codings`` (pairs of system, code)."""
        hits = set(self.match_all)
        for system, code in codings:
            if system is not None:
                hits.update(self.exact.get((system, code), ()))
            hits.update(self.any_system.get(code, ()))
            for systems, pre, slot in self.prefixes:
                if code.startswith(pre) and (systems is None or system in systems):
                    hits.add(slot)
        return hits


__all__ = ["SYSTEMS", "Code", "CodeMatcher", "parse_code"]
