"""Code lists in mappings and matching them against FHIR codings.

A code in a mapping is written ``[system:]code[*]``:

- ``loinc:8867-4`` — a code in a known system (aliases below);
- ``http://loinc.org|8867-4`` — a code in a system given by its full URL;
- ``8867-4`` — the code in any system;
- ``icd10:I21*`` — every code starting with ``I21`` (ICD-10 categories and their children).

Systems and codes are compared in a canonical spelling (:func:`canonical_system`,
:func:`canonical_code`): ``https://loinc.org/`` and ``urn:oid:2.16.840.1.113883.6.1`` are
``http://loinc.org``; codes are trimmed; ICD codes lose their dot and are upper-cased.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
CPT = "http://www.ama-assn.org/go/cpt"
ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

SYSTEMS: dict[str, tuple[str, ...]] = {
    "loinc": (LOINC,),
    "snomed": (SNOMED,),
    "sct": (SNOMED,),
    "icd10": (ICD10CM, ICD10, ICD10GM),
    "icd10cm": (ICD10CM,),
    "icd10gm": (ICD10GM,),
    "icd9": (ICD9CM,),
    "rxnorm": (RXNORM,),
    "ndc": (NDC,),
    "cpt": (CPT,),
    "actcode": (ACTCODE,),
}
"""System aliases usable as ``alias:code`` in a mapping."""

OIDS: dict[str, str] = {
    "2.16.840.1.113883.6.1": LOINC,
    "2.16.840.1.113883.6.96": SNOMED,
    "2.16.840.1.113883.6.88": RXNORM,
    "2.16.840.1.113883.6.3": ICD10,
    "2.16.840.1.113883.6.90": ICD10CM,
    "2.16.840.1.113883.6.103": ICD9CM,
    "2.16.840.1.113883.6.69": NDC,
    "2.16.840.1.113883.6.12": CPT,
    "2.16.840.1.113883.5.4": ACTCODE,
}
"""The OIDs (``urn:oid:…``) of the known systems, as HL7 Terminology (THO) publishes them.
ICD-10-GM has one OID per yearly version and is left out."""

ICD_SYSTEMS = frozenset({ICD10, ICD10CM, ICD10GM, ICD9CM})
"""Systems whose codes are compared without the dot and case-insensitively."""

_BARE_OID = re.compile(r"^\d+(?:\.\d+)+$")


@lru_cache(maxsize=4096)
def canonical_system(system: str) -> str:
    """The spelling systems are compared in: trimmed; ``http``/``https``, the case of the
    host and a trailing ``/`` ignored (``https://LOINC.org/`` is ``http://loinc.org``); a known
    OID (``urn:oid:…`` or bare) is the system's URL."""
    text = system.strip()
    lower = text.lower()
    if lower.startswith("urn:oid:"):
        oid = text[8:].strip()
        return OIDS.get(oid, f"urn:oid:{oid}")
    if _BARE_OID.match(text):
        return OIDS.get(text, text)
    for scheme in ("http://", "https://"):
        if lower.startswith(scheme):
            host, sep, path = text[len(scheme):].rstrip("/").partition("/")
            return f"http://{host.lower()}{sep}{path}"
    return text


def canonical_code(system: str | None, code: str) -> str:
    """The spelling a code of ``system`` (canonical, or None) is compared in: trimmed, and
    for ICD systems without dots and in upper case (``e11.9`` -> ``E119``)."""
    code = code.strip()
    if system in ICD_SYSTEMS:
        return code.replace(".", "").upper()
    return code


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
        if not url.strip():
            raise ValueError(f"code {text!r} has an empty system before '|'")
        systems = (url.strip(),)
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
    code = code.rstrip("*").strip()
    if not code or "*" in code:
        raise ValueError(f"code {text!r} is not of the form [system:]code[*]")
    return Code(systems, code, prefix)


@dataclass
class CodeMatcher:
    """Maps codings to the slots (feature numbers) whose code list contains them. Systems
    and codes are stored and looked up in their canonical spelling."""

    exact: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    any_system: dict[str, list[int]] = field(default_factory=dict)
    prefixes: dict[str | None, list[tuple[str, int]]] = field(default_factory=dict)
    """System (None: any) -> (prefix, slot)."""
    match_all: list[int] = field(default_factory=list)

    def add(self, slot: int, codes: Sequence[Code]) -> None:
        """Register ``slot`` for ``codes``; an empty list matches every resource."""
        if not codes:
            self.match_all.append(slot)
        for c in codes:
            if c.systems is None:
                if c.prefix:
                    self.prefixes.setdefault(None, []).append((c.code, slot))
                else:
                    self.any_system.setdefault(c.code, []).append(slot)
                continue
            for system in dict.fromkeys(canonical_system(s) for s in c.systems):
                code = canonical_code(system, c.code)
                if c.prefix:
                    self.prefixes.setdefault(system, []).append((code, slot))
                else:
                    self.exact.setdefault((system, code), []).append(slot)

    @property
    def empty(self) -> bool:
        return not (self.exact or self.any_system or self.prefixes or self.match_all)

    def match_codes(self, codings: Iterable[tuple[str | None, str]]) -> set[int]:
        """The slots matched by one of ``codings`` through a code (not by matching all)."""
        return self.match(codings) - set(self.match_all)

    def match(self, codings: Iterable[tuple[str | None, str]]) -> set[int]:
        """The slots matched by any of ``codings`` (pairs of system, code as written)."""
        hits = set(self.match_all)
        for raw_system, raw_code in codings:
            system = canonical_system(raw_system) if raw_system is not None else None
            trimmed = raw_code.strip()
            code = canonical_code(system, trimmed)
            if system is not None:
                hits.update(self.exact.get((system, code), ()))
            hits.update(self.any_system.get(trimmed, ()))
            if self.prefixes:
                hits.update(s for pre, s in self.prefixes.get(None, ()) if trimmed.startswith(pre))
                if system is not None:
                    hits.update(s for pre, s in self.prefixes.get(system, ())
                                if code.startswith(pre))
        return hits


__all__ = ["ICD_SYSTEMS", "OIDS", "SYSTEMS", "Code", "CodeMatcher", "canonical_code",
           "canonical_system", "parse_code"]
