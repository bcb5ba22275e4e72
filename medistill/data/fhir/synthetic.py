"""The built-in synthetic cohort as a Bulk Data-shaped FHIR R4 export in US Core shape.

Each patient of :func:`medistill.data.cohort.simulate_cohort` becomes a Patient (fake name,
MRN, phone, address, US Core race/ethnicity, narrative), Encounters, Observations (LOINC
vital signs, labs and smoking status with UCUM units; some glucose, cholesterol and
creatinine in molar units, some weights in lb and heights in inches), Conditions
(hypertension, type 2 diabetes, CKD, and the outcome: a myocardial infarction or stroke
starting 1-365 days after the index date for patients with ``cv_event_1y = 1``) and
MedicationRequests (RxNorm). The latest value of every measurement in the 3 years before
the index date equals the latent value; the export also holds older measurements,
measurements after the index date and cardiovascular events outside the label window, so
windows matter. Patients are written in chunks: memory does not grow with the cohort
beyond the latent table.

:func:`simulate_cohort` is the first user of ``rng``, so the latent table of an export is
``simulate_cohort(n_patients, rng=np.random.default_rng(seed))`` with the same seed.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np

from medistill.data.cohort import simulate_cohort
from medistill.data.fhir.units import MG_DL_PER_MMOL_L

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
RESOURCE_TYPES = ("Patient", "Encounter", "Condition", "Observation", "MedicationRequest")
FOLLOW_UP_DAYS = 730
"""The export's transactionTime is this many days after the index date."""

_STREETS = ("Oak Street", "Maple Avenue", "Cedar Lane", "Elm Street", "Pine Road",
            "Birch Way", "Willow Drive", "Lake Shore Road", "Hill Street", "Park Avenue")
_CITIES = (("Springfield", "MA", "011"), ("Worcester", "MA", "016"), ("Hartford", "CT", "061"),
           ("Providence", "RI", "029"), ("Albany", "NY", "122"), ("Burlington", "VT", "054"))
_RACES = (("2106-3", "White", 0.62), ("2054-5", "Black or African American", 0.13),
          ("2028-9", "Asian", 0.06), ("1002-5", "American Indian or Alaska Native", 0.01),
          ("2076-8", "Native Hawaiian or Other Pacific Islander", 0.01),
          ("2131-1", "Other Race", 0.17))
_CLASSES = (("AMB", "ambulatory", 0.8), ("EMER", "emergency", 0.12), ("IMP", "inpatient encounter",
                                                                    0.08))
_CONDITIONS = {
    "hypertension": ("38341003", "Hypertensive disorder, systemic arterial", "I10",
                     "Essential (primary) hypertension"),
    "diabetes": ("44054006", "Diabetes mellitus type 2", "E11.9",
                 "Type 2 diabetes mellitus without complications"),
    "ckd": ("709044004", "Chronic kidney disease", "N18.9", "Chronic kidney disease, unspecified"),
}
_CV_EVENTS = (("22298006", "Myocardial infarction", "I21.9",
               "Acute myocardial infarction, unspecified"),
              ("230690007", "Cerebrovascular accident", "I63.9",
               "Cerebral infarction, unspecified"))
_DRUGS = {
    "hypertension": (("314076", "lisinopril 10 MG Oral Tablet"),
                     ("197361", "amlodipine 5 MG Oral Tablet"),
                     ("310798", "hydrochlorothiazide 25 MG Oral Tablet")),
    "diabetes": (("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
                 ("310488", "glipizide 5 MG Oral Tablet")),
    "ckd": (("310429", "furosemide 20 MG Oral Tablet"),),
    "any": (("617312", "atorvastatin 10 MG Oral Tablet"), ("243670", "aspirin 81 MG Oral Tablet"),
            ("198211", "simvastatin 40 MG Oral Tablet")),
}
_SMOKING = {"never": ("266919005", "Never smoked tobacco"),
            "former": ("8517006", "Ex-smoker"),
            "current": ("449868002", "Smokes tobacco daily")}
_OWN_FILE = re.compile(r"^(Patient|Encounter|Condition|Observation|MedicationRequest)"
                       r"\.\d{3}\.ndjson$")


class _Writers:
    """One rolling NDJSON writer per resource type (``Type.000.ndjson``, ``Type.001``…)."""

    def __init__(self, out: Path, max_lines: int) -> None:
        self.out, self.max_lines = out, max_lines
        self.files: dict[str, tuple[IO[str], int, int]] = {}
        self.outputs: list[tuple[str, str, int]] = []

    def write(self, resource: dict[str, Any]) -> None:
        rtype = resource["resourceType"]
        handle, part, lines = self.files.get(rtype, (None, -1, 0))
        if handle is None or lines >= self.max_lines:
            if handle is not None:
                self._close(rtype)
            part += 1
            name = f"{rtype}.{part:03d}.ndjson"
            handle = open(self.out / name, "w", encoding="utf-8", newline="\n")
            lines = 0
        handle.write(json.dumps(resource, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.files[rtype] = (handle, part, lines + 1)

    def _close(self, rtype: str) -> None:
        handle, part, lines = self.files.pop(rtype)
        handle.close()
        self.outputs.append((rtype, f"{rtype}.{part:03d}.ndjson", lines))

    def close(self) -> None:
        for rtype in list(self.files):
            self._close(rtype)


class _Patient:
    """Renders the resources of one latent patient."""

    def __init__(self, row: Any, rng: random.Random, index: date, w: _Writers) -> None:
        self.row, self.rng, self.index, self.w = row, rng, index, w
        self.ref = {"reference": f"Patient/{row.patient_id}"}

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def stamp(self, day: date) -> str:
        h, m = self.rng.randrange(7, 19), self.rng.randrange(60)
        return f"{day.isoformat()}T{h:02d}:{m:02d}:00-05:00"

    def days_before(self, lo: int, hi: int) -> date:
        return self.index - timedelta(days=self.rng.randint(lo, hi))

    def render(self) -> None:
        self.patient()
        self.encounters()
        self.conditions()
        self.observations()
        self.medications()

    def patient(self) -> None:
        r, rng = self.row, self.rng
        given, family = r.name.split(" ", 1)
        city, state, zip3 = rng.choice(_CITIES)
        race = rng.choices(_RACES, weights=[p for *_, p in _RACES])[0]
        hispanic = rng.random() < 0.18
        birth = self.index - timedelta(days=int(round(float(r.age) * 365.25)))
        self.w.write({
            "resourceType": "Patient", "id": r.patient_id,
            "meta": {"profile": [f"{US_CORE}us-core-patient"]},
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{r.name}, '
                            f'MRN {r.mrn}</div>'},
            "extension": [
                {"url": f"{US_CORE}us-core-race", "extension": [
                    {"url": "ombCategory", "valueCoding": {
                        "system": "urn:oid:2.16.840.1.113883.6.238", "code": race[0],
                        "display": race[1]}},
                    {"url": "text", "valueString": race[1]}]},
                {"url": f"{US_CORE}us-core-ethnicity", "extension": [
                    {"url": "ombCategory", "valueCoding": {
                        "system": "urn:oid:2.16.840.1.113883.6.238",
                        "code": "2135-2" if hispanic else "2186-5",
                        "display": "Hispanic or Latino" if hispanic
                        else "Not Hispanic or Latino"}},
                    {"url": "text", "valueString": "Hispanic or Latino" if hispanic
                     else "Not Hispanic or Latino"}]}],
            "identifier": [{"use": "usual", "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR",
                "display": "Medical record number"}]},
                "system": "urn:oid:2.16.840.1.113883.19.5.99999.1", "value": r.mrn}],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "telecom": [{"system": "phone", "value": r.phone, "use": "home"}],
            "gender": r.sex,
            "birthDate": birth.isoformat(),
            "address": [{"use": "home",
                         "line": [f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)}"],
                         "city": city, "state": state,
                         "postalCode": f"{zip3}{rng.randrange(100):02d}",
                         "country": "US"}],
        })

    def encounter(self, day: date, code: str, display: str) -> None:
        start = self.stamp(day)
        end_day = day + timedelta(days=self.rng.randrange(1, 6)) if code == "IMP" else day
        self.w.write({
            "resourceType": "Encounter", "id": self.uid(),
            "meta": {"profile": [f"{US_CORE}us-core-encounter"]},
            "status": "finished",
            "class": {"system": ACT, "code": code, "display": display},
            "type": [{"coding": [{"system": SNOMED, "code": "185349003",
                                  "display": "Encounter for check up"}]}],
            "subject": self.ref,
            "period": {"start": start, "end": f"{end_day.isoformat()}{start[10:13]}:59:00-05:00"},
        })

    def encounters(self) -> None:
        weights = [p for *_, p in _CLASSES]
        for _ in range(int(self.row.n_encounters)):
            code, display, _ = self.rng.choices(_CLASSES, weights=weights)[0]
            self.encounter(self.days_before(1, 1094), code, display)

    def condition(self, codes: tuple[str, str, str, str], onset: date, category: str,
                  profile: str) -> None:
        snomed, snomed_text, icd, icd_text = codes
        self.w.write({
            "resourceType": "Condition", "id": self.uid(),
            "meta": {"profile": [f"{US_CORE}{profile}"]},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": category}]}],
            "code": {"coding": [{"system": SNOMED, "code": snomed, "display": snomed_text},
                                {"system": ICD10, "code": icd, "display": icd_text}],
                     "text": snomed_text},
            "subject": self.ref,
            "onsetDateTime": self.stamp(onset),
            "recordedDate": self.stamp(onset),
        })

    def conditions(self) -> None:
        r, rng = self.row, self.rng
        for name, codes in _CONDITIONS.items():
            if int(getattr(r, name)):
                self.condition(codes, self.days_before(30, 3650), "problem-list-item",
                               "us-core-condition-problems-health-concerns")
        event = rng.choice(_CV_EVENTS)
        if int(r.cv_event_1y):  # the outcome: onset in (index, index + 365 days]
            day = self.index + timedelta(days=rng.randint(1, 365))
            self.condition(event, day, "encounter-diagnosis",
                           "us-core-condition-encounter-diagnosis")
            self.encounter(day, "IMP", "inpatient encounter")
        elif rng.random() < 0.03:  # an event after the label window
            self.condition(event, self.index + timedelta(days=rng.randint(366, 699)),
                           "encounter-diagnosis", "us-core-condition-encounter-diagnosis")
        if rng.random() < 0.03:  # a history of an event long before the index date
            self.condition(_CV_EVENTS[0], self.days_before(400, 3000), "problem-list-item",
                           "us-core-condition-problems-health-concerns")

    def observation(self, profile: str, category: str, code: str, display: str, when: str,
                    value: dict[str, Any]) -> None:
        self.w.write({
            "resourceType": "Observation", "id": self.uid(),
            "meta": {"profile": [f"{US_CORE}{profile}"]},
            "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": self.ref,
            "effectiveDateTime": when,
            **value,
        })

    @staticmethod
    def quantity(value: float, code: str, unit: str | None = None) -> dict[str, Any]:
        return {"valueQuantity": {"value": value, "unit": unit or code, "system": UCUM,
                                  "code": code}}

    def vitals(self, day: date, v: dict[str, float]) -> None:
        rng, when = self.rng, self.stamp(day)
        vs = "vital-signs"
        self.observation("us-core-bmi", vs, "39156-5", "Body mass index (BMI) [Ratio]", when,
                         self.quantity(round(v["bmi"], 1), "kg/m2"))
        height = v["height"]
        weight = v["bmi"] * (height / 100) ** 2
        if rng.random() < 0.15:
            wq = self.quantity(round(weight / 0.45359237, 1), "[lb_av]", "lb")
        else:
            wq = self.quantity(round(weight, 1), "kg")
        self.observation("us-core-body-weight", vs, "29463-7", "Body weight", when, wq)
        hq = self.quantity(round(height / 2.54, 1), "[in_i]", "in") if rng.random() < 0.1 \
            else self.quantity(round(height, 1), "cm")
        self.observation("us-core-body-height", vs, "8302-2", "Body height", when, hq)
        self.observation("us-core-blood-pressure", vs, "85354-9", "Blood pressure panel", when, {
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6",
                                      "display": "Systolic blood pressure"}]},
                 **self.quantity(int(round(v["sbp"])), "mm[Hg]", "mmHg")},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4",
                                      "display": "Diastolic blood pressure"}]},
                 **self.quantity(int(round(v["dbp"])), "mm[Hg]", "mmHg")}]})
        self.observation("us-core-heart-rate", vs, "8867-4", "Heart rate", when,
                         self.quantity(int(round(v["heart_rate"])), "/min", "beats/minute"))
        code, display = _SMOKING[self.row.smoking]
        self.observation("us-core-smokingstatus", "social-history", "72166-2",
                         "Tobacco smoking status", when, {"valueCodeableConcept": {
                             "coding": [{"system": SNOMED, "code": code, "display": display}],
                             "text": display}})

    def labs(self, day: date, v: dict[str, float]) -> None:
        rng, when, lab = self.rng, self.stamp(day), "laboratory"
        p = "us-core-observation-lab"
        g = MG_DL_PER_MMOL_L["glucose"]
        if rng.random() < 0.15:
            self.observation(p, lab, "15074-8", "Glucose [Moles/volume] in Blood", when,
                             self.quantity(round(v["glucose"] / g, 2), "mmol/L"))
        else:
            self.observation(p, lab, "2339-0", "Glucose [Mass/volume] in Blood", when,
                             self.quantity(int(round(v["glucose"])), "mg/dL"))
        if not math.isnan(v["hba1c"]):
            self.observation(p, lab, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", when,
                             self.quantity(round(v["hba1c"], 1), "%"))
        c = MG_DL_PER_MMOL_L["cholesterol"]
        molar = rng.random() < 0.1
        for key, mass_code, molar_code, text in (
                ("cholesterol", "2093-3", "14647-2", "Cholesterol"),
                ("hdl", "2085-9", "14646-4", "Cholesterol in HDL")):
            if math.isnan(v[key]):
                continue
            if molar:
                self.observation(p, lab, molar_code, f"{text} [Moles/volume] in Serum or Plasma",
                                 when, self.quantity(round(v[key] / c, 2), "mmol/L"))
            else:
                self.observation(p, lab, mass_code, f"{text} [Mass/volume] in Serum or Plasma",
                                 when, self.quantity(int(round(v[key])), "mg/dL"))
        if not math.isnan(v["creatinine"]):
            cr = MG_DL_PER_MMOL_L["creatinine"]
            if rng.random() < 0.1:
                self.observation(p, lab, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma",
                                 when, self.quantity(round(v["creatinine"] * 1000 / cr, 1),
                                                     "umol/L", "µmol/L"))
            else:
                self.observation(p, lab, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma",
                                 when, self.quantity(round(v["creatinine"], 2), "mg/dL"))

    def observations(self) -> None:
        r, rng = self.row, self.rng
        mean_height = 176.0 if r.sex == "male" else 163.0
        latest = {k: float(getattr(r, k)) for k in (
            "bmi", "sbp", "dbp", "heart_rate", "glucose", "hba1c", "cholesterol", "hdl",
            "creatinine")}
        latest["height"] = rng.gauss(mean_height, 7.0)
        vitals_day, labs_day = self.days_before(1, 730), self.days_before(1, 730)
        self.vitals(vitals_day, latest)
        self.labs(labs_day, latest)
        # Other measurements, which "latest" in the 3-year window must not pick:
        # an older one, and one after the index date.
        earliest = min(vitals_day, labs_day)
        for day, p in ((earliest - timedelta(days=rng.randint(30, 699)), 0.35),
                       (self.index + timedelta(days=rng.randint(1, 299)), 0.08)):
            if rng.random() < p:
                noisy = {k: x * rng.gauss(1.0, 0.06) for k, x in latest.items()}
                noisy["height"] = latest["height"]
                self.vitals(day, noisy)
                self.labs(day, noisy)

    def medications(self) -> None:
        r, rng = self.row, self.rng
        pool = [d for name in ("hypertension", "diabetes", "ckd") if int(getattr(r, name))
                for d in _DRUGS[name]] + list(_DRUGS["any"])
        for _ in range(int(r.n_medications)):
            code, text = rng.choice(pool)
            self.w.write({
                "resourceType": "MedicationRequest", "id": self.uid(),
                "meta": {"profile": [f"{US_CORE}us-core-medicationrequest"]},
                "status": "active" if rng.random() < 0.7 else "completed",
                "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                          "display": text}], "text": text},
                "subject": self.ref,
                "authoredOn": self.days_before(1, 1094).isoformat(),
            })


def write_synthetic_fhir_export(out_dir: Path, n_patients: int, *, rng: np.random.Generator,
                                start_date: date = date(2025, 1, 1), chunk_size: int = 5000,
                                max_lines_per_file: int = 1_000_000) -> Path:
    """Write a synthetic US Core R4 Bulk Data export of ``n_patients`` to ``out_dir``.

    ``start_date`` is the index date of the cohort (see ``demo_mapping.yaml``). Files are
    ``<Type>.000.ndjson`` (a new part every ``max_lines_per_file`` lines) and a
    ``manifest.json`` in the shape of a Bulk Data ``$export`` response; files of an earlier
    export with these names are replaced. Returns ``out_dir``.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer. Got {n_patients}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if _OWN_FILE.match(old.name) or old.name == "manifest.json":
            old.unlink()
    latent = simulate_cohort(n_patients, rng=rng)
    render_rng = random.Random(int(rng.integers(2**63)))  # fast scalar draws, seeded by rng
    writers = _Writers(out, max_lines_per_file)
    try:
        for start in range(0, len(latent), chunk_size):
            for row in latent.iloc[start:start + chunk_size].itertuples(index=False):
                _Patient(row, render_rng, start_date, writers).render()
    finally:
        writers.close()
    export_time = start_date + timedelta(days=FOLLOW_UP_DAYS)
    manifest = {
        "transactionTime": f"{export_time.isoformat()}T00:00:00Z",
        "request": "[base]/Patient/$export?_type=" + ",".join(RESOURCE_TYPES),
        "requiresAccessToken": False,
        "output": [{"type": t, "url": name, "count": n}
                   for t, name, n in sorted(writers.outputs, key=lambda o: o[1])],
        "error": [],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


__all__ = ["FOLLOW_UP_DAYS", "RESOURCE_TYPES", "write_synthetic_fhir_export"]
