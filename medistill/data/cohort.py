"""A seeded simulator of a clinical cohort with a real, learnable, non-linear outcome.

Each simulated patient has demographics, lifestyle, vital signs, labs, comorbidities and
utilisation counts drawn from clinically plausible distributions, plus fake direct
identifiers (name, medical-record number, phone) so tests can prove those never reach an
artifact. The outcome — a cardiovascular event within one year — depends non-linearly on
age, blood pressure, lipids, glycaemia, smoking, kidney function and their interactions, so
that a strong model (gradient boosting) beats a linear one.

The same latent table feeds the tabular built-in dataset and the synthetic FHIR export.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OUTCOME = "cv_event_1y"

_FIRST = ["Ada", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Kira", "Liam", "Maya", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara"]
_LAST = ["Adams", "Brown", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanova",
         "Jensen", "Kowalski", "Larsen", "Moreau", "Novak", "Olsen", "Petrov", "Rossi", "Silva"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def simulate_cohort(n_patients: int, *, rng: np.random.Generator) -> pd.DataFrame:
    """Simulate ``n_patients`` patients, one row each.

    Columns: ``patient_id``, ``name``, ``mrn``, ``phone`` (fake identifiers), ``sex``,
    ``age``, ``smoking``, ``bmi``, ``sbp``, ``dbp``, ``heart_rate``, ``glucose`` (mg/dL),
    ``hba1c`` (%), ``cholesterol`` (mg/dL), ``hdl`` (mg/dL), ``creatinine`` (mg/dL),
    ``hypertension``, ``diabetes``, ``ckd``, ``n_encounters``, ``n_medications`` and the
    outcome ``cv_event_1y``. Some labs are missing (NaN), as in real records.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer. Got {n_patients}.")
    n = int(n_patients)
    sex = rng.choice(np.array(["female", "male"], dtype=object), size=n, p=[0.52, 0.48])
    male = (sex == "male").astype(float)
    age = np.clip(rng.gamma(shape=3.2, scale=10.0, size=n) + 18.0, 18.0, 95.0)
    smoking = rng.choice(np.array(["never", "former", "current"], dtype=object), size=n,
                         p=[0.55, 0.27, 0.18])
    current = (smoking == "current").astype(float)

    bmi = np.clip(rng.lognormal(mean=np.log(27.0), sigma=0.18, size=n), 15.0, 60.0)
    sbp = np.clip(105 + 0.45 * (age - 18) + 0.6 * (bmi - 27) + 5 * male
                  + rng.normal(0, 13, n), 85, 220)
    dbp = np.clip(0.45 * sbp + 18 + rng.normal(0, 7, n), 45, 130)
    heart_rate = np.clip(72 + 6 * current + 0.3 * (bmi - 27) + rng.normal(0, 10, n), 40, 150)
    insulin_resistance = 0.09 * (bmi - 27) + 0.02 * (age - 45) + rng.normal(0, 0.8, n)
    diabetes = (insulin_resistance > 1.1).astype(int)
    hba1c = np.clip(5.3 + 0.55 * np.maximum(insulin_resistance, -1) + 1.1 * diabetes
                    + rng.normal(0, 0.25, n), 4.0, 14.0)
    glucose = np.clip(28.7 * hba1c - 46.7 + rng.normal(0, 12, n), 55, 450)
    cholesterol = np.clip(rng.normal(195 + 0.4 * (age - 45) - 6 * male, 35, n), 100, 380)
    hdl = np.clip(rng.normal(55 - 8 * male - 0.6 * (bmi - 27), 12, n), 20, 110)
    creatinine = np.clip(rng.lognormal(np.log(0.8 + 0.2 * male + 0.004 * (age - 45)), 0.2, n)
                         + 0.6 * (rng.random(n) < 0.04 + 0.002 * np.maximum(age - 60, 0)),
                         0.3, 8.0)
    egfr = 140 * np.minimum(creatinine / 0.8, 1) ** -0.3 \
        * np.maximum(creatinine / 0.8, 1) ** -1.2 * 0.993 ** age
    ckd = (egfr < 60).astype(int)
    hypertension = ((sbp > 140) | (dbp > 90) | (rng.random(n) < 0.05)).astype(int)

    # Non-linear risk: a steep age effect after 55, a J-shaped blood-pressure effect,
    # threshold effects of glycaemia, lipid ratio, and interactions with smoking and CKD.
    female = 1.0 - male
    risk = (
        -4.6
        + 2.0 * _sigmoid((age - 62) / 4)
        + 0.0012 * (sbp - 118) ** 2
        + 1.3 * (hba1c > 7.0) * (current + diabetes)
        + 1.2 * (hdl < 40) * (cholesterol > 220)
        + 1.2 * current * (age > 50) - 0.3 * current * (age <= 50)
        + 1.2 * ckd * (1 + diabetes)
        + 1.4 * (np.abs(heart_rate - 70) > 20)
        + 1.1 * (bmi > 35) + 1.1 * (bmi < 19.5)
        + 0.9 * male * (age < 55) + 0.9 * female * (age > 68)
    )
    outcome = (rng.random(n) < _sigmoid(risk)).astype(int)

    n_encounters = rng.poisson(1.5 + 1.2 * hypertension + 1.5 * diabetes + 2 * ckd
                               + 0.03 * np.maximum(age - 50, 0))
    n_medications = rng.poisson(0.5 + 1.1 * hypertension + 1.3 * diabetes + 0.8 * ckd)

    # Realistic missingness: labs are ordered more often for older or sicker patients.
    p_lab = np.clip(0.55 + 0.006 * (age - 40) + 0.2 * diabetes + 0.1 * hypertension, 0.3, 0.98)
    hba1c = np.where(rng.random(n) < p_lab, hba1c, np.nan)
    cholesterol = np.where(rng.random(n) < p_lab, cholesterol, np.nan)
    hdl = np.where(np.isnan(cholesterol), np.nan, hdl)
    creatinine = np.where(rng.random(n) < p_lab + 0.05, creatinine, np.nan)

    first = rng.choice(np.array(_FIRST, dtype=object), size=n)
    last = rng.choice(np.array(_LAST, dtype=object), size=n)
    ids = rng.permutation(n) + 100000
    return pd.DataFrame({
        "patient_id": [f"PT{i:07d}" for i in ids],
        "name": [f"{f} {l}" for f, l in zip(first, last, strict=True)],
        "mrn": [f"MRN-{rng_i:09d}" for rng_i in rng.integers(0, 10**9, size=n)],
        "phone": [f"+1-555-{a:03d}-{b:04d}" for a, b in
                  zip(rng.integers(0, 1000, n), rng.integers(0, 10000, n), strict=True)],
        "sex": sex.astype(str),
        "age": np.round(age, 1),
        "smoking": smoking.astype(str),
        "bmi": np.round(bmi, 1),
        "sbp": np.round(sbp),
        "dbp": np.round(dbp),
        "heart_rate": np.round(heart_rate),
        "glucose": np.round(glucose),
        "hba1c": np.round(hba1c, 1),
        "cholesterol": np.round(cholesterol),
        "hdl": np.round(hdl),
        "creatinine": np.round(creatinine, 2),
        "hypertension": hypertension,
        "diabetes": diabetes,
        "ckd": ckd,
        "n_encounters": n_encounters,
        "n_medications": n_medications,
        OUTCOME: outcome,
    })


__all__ = ["OUTCOME", "simulate_cohort"]
