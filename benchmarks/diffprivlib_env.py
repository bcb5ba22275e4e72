"""IBM diffprivlib's DP logistic regression, run in a virtual environment of its own.

diffprivlib 0.6.x does not import with scikit-learn ≥ 1.6 (the project's), so the benchmark
makes ``.bench-envs/diffprivlib`` with ``python -m venv`` and installs diffprivlib with an
older scikit-learn there. Data go in and out through files; the model is fitted by a small
script run in a subprocess. If the environment cannot be made, :func:`ensure_env` returns
``None`` with the reason and the tables say so.

    python -m benchmarks.diffprivlib_env          # create (or check) the environment
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = ROOT / ".bench-envs" / "diffprivlib"
REQUIREMENTS = ("diffprivlib==0.6.6", "scikit-learn>=1.4,<1.6", "numpy<2.3", "scipy<1.16")

# Runs inside the diffprivlib environment: reads an .npz, fits one DP logistic regression per
# ε (and one non-private scikit-learn model), writes probabilities on test/member/nonmember.
SCRIPT = r'''
import json, sys, warnings
import numpy as np
import diffprivlib, sklearn
from diffprivlib.models import LogisticRegression
from sklearn.linear_model import LogisticRegression as SkLR
from sklearn.metrics import roc_auc_score
warnings.filterwarnings("ignore")
d = np.load(sys.argv[1])
spec = json.loads(open(sys.argv[2]).read())
out = {"versions": {"diffprivlib": diffprivlib.__version__, "scikit-learn": sklearn.__version__,
                    "numpy": np.__version__}, "runs": []}
arrays = {}
for i, eps in enumerate(spec["epsilons"]):
    for seed in spec["seeds"]:
        if eps is None:
            model = SkLR(max_iter=2000)
        else:
            model = LogisticRegression(epsilon=eps, data_norm=spec["data_norm"],
                                       max_iter=2000, random_state=seed)
        model.fit(d["x_train"], d["y_train"])
        p_test = model.predict_proba(d["x_test"])[:, 1]
        key = f"{i}_{seed}"
        arrays[f"member_{key}"] = model.predict_proba(d["x_member"])
        arrays[f"nonmember_{key}"] = model.predict_proba(d["x_nonmember"])
        auc = float(roc_auc_score(d["y_test"], p_test)) if len(set(d["y_test"])) > 1 else None
        out["runs"].append({"epsilon": eps, "seed": seed, "key": key, "auroc": auc})
np.savez(sys.argv[3] + ".npz", **arrays)
open(sys.argv[3], "w").write(json.dumps(out))
'''


def env_python(env_dir: Path = ENV_DIR) -> Path:
    return env_dir / "bin" / "python"


def ensure_env(env_dir: Path = ENV_DIR, *, timeout: float = 900) -> tuple[Path | None, str]:
    """(python of the environment, "") if diffprivlib imports there; else (None, reason).

    Benchmark processes started side by side share the environment: the first to arrive
    builds it under a lock file beside it while the others wait, then find it ready."""
    try:
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(env_dir.parent / f".{env_dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _ensure_env(env_dir, timeout=timeout)
    except OSError as exc:
        return None, f"could not lock {env_dir}: {exc}"


def _ensure_env(env_dir: Path, *, timeout: float) -> tuple[Path | None, str]:
    python = env_python(env_dir)
    check = [str(python), "-c",
             "import diffprivlib, sklearn; print(diffprivlib.__version__, sklearn.__version__)"]
    if python.exists():
        ok = subprocess.run(check, capture_output=True, text=True, timeout=120, check=False)
        if ok.returncode == 0:
            return python, ""
    try:
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
                             capture_output=True, text=True, timeout=timeout, check=False)
        if pip.returncode != 0:
            return None, ("could not install " + " ".join(REQUIREMENTS) + ": "
                          + (pip.stderr.strip().splitlines() or ["pip failed"])[-1])
        ok = subprocess.run(check, capture_output=True, text=True, timeout=120, check=False)
        if ok.returncode != 0:
            return None, "diffprivlib does not import: " + ok.stderr.strip().splitlines()[-1]
        return python, ""
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create {env_dir}: {exc}"


def dp_logistic_regression(python: Path, arrays: dict[str, np.ndarray], epsilons: list,
                           seeds: list[int], data_norm: float, *, timeout: float = 900) -> dict:
    """Fit diffprivlib's LogisticRegression at each ε (``None`` = scikit-learn, non-private)
    and seed in the other environment. Returns versions and, per run, the test AUROC and
    the predicted probabilities of members and non-members (for a loss-threshold attack)."""
    with tempfile.TemporaryDirectory(prefix="medistill-dpl-") as tmp:
        tmp_path = Path(tmp)
        np.savez(tmp_path / "data.npz", **arrays)
        (tmp_path / "spec.json").write_text(json.dumps(
            {"epsilons": epsilons, "seeds": seeds, "data_norm": data_norm}))
        (tmp_path / "fit.py").write_text(SCRIPT)
        result = subprocess.run([str(python), str(tmp_path / "fit.py"), str(tmp_path / "data.npz"),
                                 str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError("diffprivlib script failed: " + result.stderr[-2000:])
        out = json.loads((tmp_path / "out.json").read_text())
        with np.load(tmp_path / "out.json.npz") as probs:
            for run in out["runs"]:
                run["member_proba"] = probs[f"member_{run['key']}"]
                run["nonmember_proba"] = probs[f"nonmember_{run['key']}"]
    return out


if __name__ == "__main__":
    python, why = ensure_env()
    print(python or f"not available: {why}")
    sys.exit(0 if python else 1)
