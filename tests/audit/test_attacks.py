"""LiRA and RMIA on arrays, and on real models: an overfit teacher leaks, a regularised
logistic regression does not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from medistill.audit.attacks import (
    attack_result,
    lira_scores,
    logit_confidence,
    rmia_scores,
    true_class_probability,
    tune_offline_a,
)
from medistill.audit.mia import tpr_at_fpr
from medistill.audit.reference_models import (
    EstimatorTrainer,
    plan_reference_inclusion,
    reference_predictions,
    train_reference_models,
)
from medistill.data.cohort import simulate_cohort


# ----------------------------------------------------------------------------- signals
def test_logit_confidence_matches_the_definition_and_keeps_resolution() -> None:
    p = np.array([[0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_allclose(logit_confidence(p, np.array([1, 1])),
                               [np.log(0.8 / 0.2), np.log(0.1 / 0.9)])
    # 1 − p is summed from the other classes, not subtracted: no cancellation near 1.
    tiny = 1e-10
    confident = np.array([[tiny, 1.0 - tiny]])
    assert logit_confidence(confident, np.array([1]))[0] == pytest.approx(
        np.log1p(-tiny) - np.log(tiny), rel=1e-12)
    # Multi-class: the rest is the sum of the other classes.
    three = np.array([[0.1, 0.3, 0.6]])
    assert logit_confidence(three, np.array([2]))[0] == pytest.approx(np.log(0.6 / 0.4))
    # Exactly 0 and 1 stay finite, and binary φ is antisymmetric.
    edge = np.array([[0.0, 1.0], [0.3, 0.7]])
    phi1, phi0 = logit_confidence(edge, np.array([1, 1])), logit_confidence(edge, np.array([0, 0]))
    assert np.all(np.isfinite(phi1)) and np.all(np.isfinite(phi0))
    np.testing.assert_allclose(phi1, -phi0)
    np.testing.assert_allclose(true_class_probability(edge, np.array([0, 1])), [0.0, 0.7])
    with pytest.raises(ValueError):
        logit_confidence(edge, np.array([0, 2]))


# ----------------------------------------------------------------------------- LiRA
def _gaussian_world(n: int, n_models: int, shift: float, rng: np.random.Generator):
    """Points whose confidences differ a lot between points (difficulty) and move up by
    ``shift`` when trained on: what LiRA's per-point calibration is for."""
    difficulty = rng.normal(0.0, 3.0, n)
    inclusion = plan_reference_inclusion(n, n_models, rng)
    ref = difficulty + shift * inclusion + rng.normal(0.0, 1.0, (n_models, n))
    member = rng.random(n) < 0.5
    target = difficulty + shift * member + rng.normal(0.0, 1.0, n)
    return target, ref, inclusion, member


def test_lira_calibrates_per_point_and_beats_the_raw_threshold() -> None:
    target, ref, inclusion, member = _gaussian_world(2000, 8, 1.5, np.random.default_rng(0))
    raw = roc_auc_score(member, target)
    for online in (False, True):
        for fixed in (True, False):
            auc = roc_auc_score(member, lira_scores(target, ref, inclusion, online=online,
                                                    fixed_variance=fixed))
            # Per-point variances from 4 models are noisy, hence the pooled default.
            assert auc > raw + (0.15 if fixed else 0.1), (online, fixed, auc, raw)
    # The Neyman–Pearson test with the true means has AUC Φ(1.5/√2) ≈ 0.856; online LiRA
    # with 4 IN and 4 OUT models per point gets close, and cannot beat it.
    online = roc_auc_score(member, lira_scores(target, ref, inclusion, online=True))
    assert norm.cdf(1.5 / np.sqrt(2)) - 0.05 < online < norm.cdf(1.5 / np.sqrt(2)) + 0.01


def test_lira_scores_are_the_gaussian_tests_by_hand() -> None:
    ref = np.array([[1.0, 5.0], [3.0, 7.0], [2.0, 2.0], [4.0, 4.0]])
    inclusion = np.array([[True, True], [True, True], [False, False], [False, False]])
    target = np.array([2.5, 3.0])
    # Per-point variance: IN column 0 = {1, 3}, OUT = {2, 4}; column 1 IN {5, 7}, OUT {2, 4}.
    on = lira_scores(target, ref, inclusion, online=True, fixed_variance=False)
    sd = np.sqrt(2.0)
    expected = norm.logpdf(target, [2.0, 6.0], sd) - norm.logpdf(target, [3.0, 3.0], sd)
    np.testing.assert_allclose(on, expected)
    off = lira_scores(target, ref, inclusion, online=False, fixed_variance=False)
    np.testing.assert_allclose(off, -norm.logsf(target, [3.0, 3.0], sd))
    # Pooled variance: residuals ±1 around every mean, 2 degrees of freedom per side.
    pooled = lira_scores(target, ref, inclusion, online=True, fixed_variance=True)
    np.testing.assert_allclose(pooled, expected)  # same here: every point has variance 2
    # Far-out confidences keep their order instead of saturating.
    far = lira_scores(np.array([40.0, 60.0]), ref, inclusion, online=False)
    assert np.all(np.isfinite(far)) and far[1] > far[0]


def test_lira_borrows_the_shift_for_points_without_in_models() -> None:
    ref = np.array([[1.0, 5.0, 0.0], [3.0, 7.0, 1.0], [2.0, 2.0, 0.5], [4.0, 4.0, 0.2]])
    inclusion = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    scores = lira_scores(np.array([2.0, 6.0, 0.4]), ref, inclusion, online=True)
    assert np.all(np.isfinite(scores))
    with pytest.raises(ValueError):
        lira_scores(np.zeros(2), np.zeros((2, 2)), np.zeros((2, 2), bool), online=True)
    with pytest.raises(ValueError):
        lira_scores(np.zeros(2), np.zeros((2, 2)), np.ones((2, 2), bool), online=False)
    with pytest.raises(ValueError):
        lira_scores(np.zeros(3), np.zeros((2, 2)), np.zeros((2, 2), bool), online=False)


# ----------------------------------------------------------------------------- RMIA
def _rmia_by_hand(px, rx, pz, rz, gamma, a=None):
    if a is None:
        prx, prz = rx.mean(axis=0), rz.mean(axis=0)
    else:
        prx = 0.5 * ((1 + a) * rx.mean(axis=0) + (1 - a))
        prz = 0.5 * ((1 + a) * rz.mean(axis=0) + (1 - a))
    out = []
    for i in range(len(px)):
        lr_x = px[i] / prx[i]
        out.append(np.mean([lr_x / (pz[j] / prz[j]) >= gamma for j in range(len(pz))]))
    return np.array(out)


@pytest.mark.parametrize("gamma", [1.0, 2.0])
@pytest.mark.parametrize("a", [None, 0.0, 0.3, 1.0])
def test_rmia_is_the_pairwise_likelihood_ratio_test(gamma: float, a: float | None) -> None:
    rng = np.random.default_rng(3)
    px, pz = rng.uniform(0.05, 1, 40), rng.uniform(0.05, 1, 25)
    rx, rz = rng.uniform(0.05, 1, (6, 40)), rng.uniform(0.05, 1, (6, 25))
    got = rmia_scores(px, rx, pz, rz, gamma=gamma, offline_a=a, tie_break=False)
    np.testing.assert_allclose(got, _rmia_by_hand(px, rx, pz, rz, gamma, a))
    # The tie-break orders tied points by LR(x) and never reorders distinct fractions.
    broken = rmia_scores(px, rx, pz, rz, gamma=gamma, offline_a=a)
    assert np.all((broken - got >= 0) & (broken - got < 0.5 / 25))
    lr_x = px / (rx.mean(0) if a is None else 0.5 * ((1 + a) * rx.mean(0) + 1 - a))
    assert np.all(np.diff(broken[np.argsort(lr_x)]) > 0)


def test_rmia_online_balances_in_and_out_models_and_offline_uses_out_only() -> None:
    rx = np.array([[0.9, 0.5], [0.9, 0.5], [0.9, 0.5], [0.3, 0.5]])
    inclusion = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=bool)
    px, pz, rz = np.array([0.6, 0.5]), np.array([0.5]), np.full((4, 1), 0.5)
    # Online: Pr(x0) = ½(0.9 + 0.3) = 0.6 (not the plain mean 0.75), so LR(x0) = 1 ≥ LR(z) = 1.
    online = rmia_scores(px, rx, pz, rz, inclusion=inclusion, tie_break=False)
    np.testing.assert_allclose(online, [1.0, 1.0])
    # Offline with a = 1: Pr(x0) = mean over OUT = 0.3, LR(x0) = 2.
    offline = rmia_scores(px, rx, pz, rz, offline_a=1.0, inclusion=inclusion, tie_break=False,
                          gamma=1.9)
    np.testing.assert_allclose(offline, [1.0, 0.0])
    with pytest.raises(ValueError):
        rmia_scores(px, rx, pz, rz, offline_a=0.5, inclusion=np.ones((4, 2), bool))
    with pytest.raises(ValueError):
        rmia_scores(px, rx, pz, rz, offline_a=1.5)
    with pytest.raises(ValueError):
        rmia_scores(px, rx, pz, rz, gamma=0.0)


# ----------------------------------------------------------------------------- real models
N_AUDIT, N_Z, N_MODELS = 1000, 300, 8


def _table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    frame = simulate_cohort(n, rng=np.random.default_rng(seed))
    y = frame.pop("cv_event_1y").to_numpy()
    X = frame.drop(columns=["patient_id", "name", "mrn", "phone"])
    X["sex"] = (X["sex"] == "male").astype(float)
    X["smoking"] = X["smoking"].map({"never": 0.0, "former": 1.0, "current": 2.0})
    X = X.astype(float)
    return X.fillna(X.median()).to_numpy(), y


def _attack_everything(estimator) -> dict[str, np.ndarray]:
    """Target trained on half of the audit points; 8 reference models on random halves of
    audit ∪ population points; z = population points the target never saw."""
    X, y = _table(N_AUDIT + N_Z, 3)
    audit, z = np.arange(N_AUDIT), np.arange(N_AUDIT, N_AUDIT + N_Z)
    member = np.zeros(N_AUDIT, dtype=bool)
    member[np.random.default_rng(0).permutation(N_AUDIT)[: N_AUDIT // 2]] = True
    trainer = EstimatorTrainer(estimator, X, y)
    inclusion = plan_reference_inclusion(N_AUDIT + N_Z, N_MODELS, np.random.default_rng(1))
    with threadpool_limits(limits=1):
        target = trainer(np.flatnonzero(member), 1)
        refs = train_reference_models(trainer, inclusion, n_jobs=1, seeds=range(100, 108))
        every = np.arange(N_AUDIT + N_Z)
        probs, ref_probs = target(every), reference_predictions(refs, every)
    phi = logit_confidence(probs, y)
    ref_phi = np.stack([logit_confidence(p, y) for p in ref_probs])
    p_true = true_class_probability(probs, y)
    ref_true = np.stack([true_class_probability(p, y) for p in ref_probs])
    inc_x, inc_z = inclusion[:, audit], inclusion[:, z]
    a = tune_offline_a(ref_true[:, audit], inc_x, ref_true[:, z], inclusion_z=inc_z)
    return {
        "member": member,
        "loss": phi[audit],
        "lira_offline": lira_scores(phi[audit], ref_phi[:, audit], inc_x, online=False),
        "lira_online": lira_scores(phi[audit], ref_phi[:, audit], inc_x, online=True),
        "rmia_online": rmia_scores(p_true[audit], ref_true[:, audit], p_true[z], ref_true[:, z],
                                   inclusion=inc_x, inclusion_z=inc_z),
        "rmia_offline": rmia_scores(p_true[audit], ref_true[:, audit], p_true[z],
                                    ref_true[:, z], offline_a=a, inclusion=inc_x,
                                    inclusion_z=inc_z),
    }


@pytest.fixture(scope="module")
def leaky() -> dict[str, np.ndarray]:
    """An overfit gradient-boosted teacher: deep trees, no regularisation, no early stop."""
    return _attack_everything(HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.3, max_leaf_nodes=31, min_samples_leaf=2,
        l2_regularization=0.0, early_stopping=False))


@pytest.fixture(scope="module")
def regularised() -> dict[str, np.ndarray]:
    return _attack_everything(make_pipeline(StandardScaler(),
                                            LogisticRegression(C=0.01, max_iter=1000)))


ATTACKS = ("lira_offline", "lira_online", "rmia_online", "rmia_offline")


@pytest.mark.parametrize("attack", ATTACKS)
def test_reference_attacks_find_the_leak_of_an_overfit_teacher(leaky, regularised, attack) -> None:
    member = leaky["member"]
    scores = leaky[attack]
    auc = roc_auc_score(member, scores)
    assert 0.65 <= auc <= 1.0, auc
    tpr, fpr, ci = tpr_at_fpr(scores[member], scores[~member], 0.01)
    assert fpr <= 0.01
    assert ci[0] > 0.01, (tpr, ci)  # TPR at 1 % FPR is above chance, with 95 % confidence
    # ... and the same attack on a well-regularised model finds (almost) nothing.
    weak = roc_auc_score(regularised["member"], regularised[attack])
    assert 0.45 <= weak <= 0.58, weak
    assert auc > weak + 0.1


def test_reference_attacks_beat_the_plain_loss_threshold(leaky) -> None:
    member = leaky["member"]
    loss_auc = roc_auc_score(member, leaky["loss"])
    assert max(roc_auc_score(member, leaky[a]) for a in ATTACKS) > loss_auc + 0.05
    loss_tpr = tpr_at_fpr(leaky["loss"][member], leaky["loss"][~member], 0.01)[0]
    assert tpr_at_fpr(leaky["lira_online"][member], leaky["lira_online"][~member],
                      0.01)[0] > 3 * max(loss_tpr, 0.01)


def test_attack_result_has_the_report_shape(leaky) -> None:
    result = attack_result("lira_online", leaky["lira_online"], leaky["member"], delta=1e-5,
                           rng=np.random.default_rng(0))
    assert result["name"] == "lira_online"
    assert result["n_members"] == N_AUDIT // 2 and result["n_nonmembers"] == N_AUDIT // 2
    assert set(result["tpr_at_fpr"]) == {"0.01", "0.001"}
    assert result["auc_ci"][0] <= result["auc"] <= result["auc_ci"][1]
    assert result["epsilon_lower_bound"] > 0.5  # a real leak gives a real empirical ε
    with pytest.raises(ValueError):
        attack_result("x", np.array([np.inf, 0.0]), np.array([True, False]), delta=0.0,
                      rng=np.random.default_rng(0))
