"""The reference teacher: chosen by patient-grouped CV AUROC, never worse than tuned LR."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medistill.config import DataConfig
from medistill.data.splits import split_patients
from medistill.data.table import load_sensitive
from medistill.errors import TrainingError
from medistill.teachers.models import make_teacher
from medistill.teachers.selection import LR_C_GRID, select_reference_teacher


@pytest.fixture(scope="module")
def split():
    data = load_sensitive(DataConfig(source="builtin", builtin={"n_patients": 3000}), seed=0)
    parts = split_patients(data.patient_ids, data.labels, test=0.25, holdout=0.1, seed=0)
    return data, data.rows(parts.train), data.rows(parts.test)


@pytest.fixture(scope="module")
def selected(split):
    data, (X, y, ids), _ = split
    return select_reference_teacher(X, y, data.schema, groups=ids, random_state=0, n_jobs=1)


@pytest.mark.slow
def test_reference_teacher_is_never_below_tuned_logistic_regression(split, selected) -> None:
    data, (X, y, _), (Xt, yt, _) = split
    model, summary = selected
    scores = {k: summary[k] for k in ("hist_gradient_boosting", "logistic_regression",
                                      "random_forest", "torch_mlp")}
    assert all(0.5 < s <= 1.0 for s in scores.values())
    assert summary["chosen"] == max(scores, key=scores.get)
    assert summary[summary["chosen"]] >= summary["logistic_regression"]
    assert summary["params"]["logistic_regression"]["C"] in LR_C_GRID
    # On the untouched test split too (CV noise allowed for: a small tolerance).
    tuned_lr = make_teacher("logistic_regression", data.schema, random_state=0,
                            **summary["params"]["logistic_regression"]).fit(X, y)
    lr_auroc = roc_auc_score(yt, tuned_lr.predict_proba(Xt)[:, 1])
    assert roc_auc_score(yt, model.predict_proba(Xt)[:, 1]) >= lr_auroc - 0.01


@pytest.mark.slow
def test_selection_is_deterministic_and_the_teacher_is_refitted_on_all_rows(split,
                                                                           selected) -> None:
    data, (X, y, ids), (Xt, _, _) = split
    model, summary = selected
    assert summary["skipped"] == {} and summary["cv"] == 3
    a_model, a = select_reference_teacher(X, y, data.schema, groups=ids,
                                          candidates=("logistic_regression",), random_state=0)
    assert a["logistic_regression"] == pytest.approx(summary["logistic_regression"])
    assert a["params"] == {"logistic_regression": summary["params"]["logistic_regression"]}
    assert set(a) == {"logistic_regression", "chosen", "params", "skipped", "cv"}
    assert hasattr(a_model, "classes_") and len(a_model.predict_proba(Xt)) == len(Xt)


def test_folds_keep_each_patient_on_one_side(split, monkeypatch) -> None:
    """Rows of one patient never straddle a fold (StratifiedGroupKFold on patient ids)."""
    import medistill.teachers.selection as selection

    data, (X, y, ids), _ = split
    seen = []

    def spy(kind, params, schema, random_state, features, labels, train, val):
        seen.append((train, val))
        return 0.5 + 0.1 * (kind == "logistic_regression")

    monkeypatch.setattr(selection, "_score_fold", spy)
    # Two rows per patient: duplicate the table.
    X2, y2, g2 = pd.concat([X, X], ignore_index=True), np.r_[y, y], np.r_[ids, ids]
    _, summary = select_reference_teacher(X2, y2, data.schema, groups=g2,
                                          candidates=("logistic_regression",), random_state=1)
    assert summary["chosen"] == "logistic_regression"
    for train, val in seen:
        assert not set(g2[train]) & set(g2[val])


def test_bad_arguments_are_refused(split) -> None:
    data, (X, y, ids), _ = split
    with pytest.raises(ValueError, match="must include 'logistic_regression'"):
        select_reference_teacher(X, y, data.schema, candidates=("random_forest",), random_state=0)
    with pytest.raises(ValueError, match="non-empty subset"):
        select_reference_teacher(X, y, data.schema, candidates=("svm",), random_state=0)
    with pytest.raises(ValueError, match="The 'cv' parameter"):
        select_reference_teacher(X, y, data.schema, cv=1, random_state=0)
    few = np.flatnonzero(y == 1)[:2].tolist() + np.flatnonzero(y == 0)[:30].tolist()
    with pytest.raises(TrainingError, match="Cannot cross-validate"):
        select_reference_teacher(X.iloc[few], y[few], data.schema, random_state=0)


def test_mlp_candidate_is_skipped_on_large_tables(split, monkeypatch) -> None:
    import medistill.teachers.selection as selection

    data, (X, y, ids), _ = split
    monkeypatch.setattr(selection, "MLP_MAX_ROWS", 100)
    monkeypatch.setattr(selection, "_score_fold", lambda kind, *a: 0.7)
    _, summary = select_reference_teacher(
        X, y, data.schema, groups=ids, random_state=0,
        candidates=("logistic_regression", "torch_mlp"))
    assert summary["torch_mlp"] is None and "torch_mlp" in summary["skipped"]
    assert summary["chosen"] == "logistic_regression"
