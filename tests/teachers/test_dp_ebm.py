"""The DP-EBM teacher: its event against interpret's own accounting, calibration, inputs
from public information only, fresh noise, and a utility band."""

from __future__ import annotations

import math
from dataclasses import replace

import dp_accounting as dpa
import numpy as np
import pytest
from interpret.utils._privacy import delta_eps_mu
from sklearn.metrics import roc_auc_score

from medistill.errors import ConfigError, TrainingError
from medistill.privacy.ledger import PrivacyLedger, epsilon_of
from medistill.teachers.dp_ebm import (
    DPEBMSettings,
    _phantom_rows,
    calibrate_dp_ebm,
    fit_dp_ebm,
    interpret_noise_multipliers,
    predicted_event,
)
from medistill.teachers.dp_inputs import MISSING, OTHER, PublicEncoding

SETTINGS = DPEBMSettings(max_rounds=100)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_event_parts_match_interprets_own_gdp_accounting(epsilon):
    """Each half of the event costs what interpret's GDP analysis says it costs."""
    delta, n_features = 1e-6, 7
    binning, boosting = interpret_noise_multipliers(epsilon=epsilon, delta=delta,
                                                    n_features=n_features, settings=SETTINGS)
    mu_bin = math.sqrt(n_features) / binning
    mu_boost = math.sqrt(SETTINGS.n_boosting_queries(n_features)) / boosting
    eps_bin, eps_boost = epsilon * SETTINGS.bin_budget_frac, epsilon * (1 - SETTINGS.bin_budget_frac)
    # interpret's own claim: binning is (eps_bin, δ/2), boosting (eps_boost, δ/2), in GDP.
    assert delta_eps_mu(eps_bin, mu_bin) == pytest.approx(delta / 2, rel=1e-3)
    assert delta_eps_mu(eps_boost, mu_boost) == pytest.approx(delta / 2, rel=1e-3)
    # dp-accounting recomputes the same ε for each part from our event ...
    event = predicted_event(epsilon=epsilon, delta=delta, n_features=n_features,
                            settings=SETTINGS)
    bin_part, boost_part = event.events
    assert epsilon_of([bin_part], delta / 2, "pld") == pytest.approx(eps_bin, rel=0.02)
    assert epsilon_of([boost_part], delta / 2, "pld") == pytest.approx(eps_boost, rel=0.02)
    # ... and for the whole, composed tightly, never more than interpret's total.
    total = epsilon_of([event], delta, "pld")
    assert 0.8 * epsilon < total <= epsilon


def test_event_equals_the_query_by_query_composition():
    """Recording each part as one Gaussian of multiplier σ/√k is exact: the accountant gives
    the same ε for k self-composed Gaussians of multiplier σ."""
    settings = DPEBMSettings(max_rounds=20)
    n_features = 5
    binning, boosting = interpret_noise_multipliers(epsilon=2.0, delta=1e-6,
                                                    n_features=n_features, settings=settings)
    queries = dpa.ComposedDpEvent([
        dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(binning), n_features),
        dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(boosting),
                                settings.n_boosting_queries(n_features))])
    event = predicted_event(epsilon=2.0, delta=1e-6, n_features=n_features, settings=settings)
    for accountant in ("pld", "rdp"):
        assert epsilon_of([event], 1e-6, accountant) == pytest.approx(
            epsilon_of([queries], 1e-6, accountant), rel=0.01)


def test_event_round_trips_through_the_ledger():
    event = predicted_event(epsilon=1.0, delta=1e-6, n_features=4, settings=SETTINGS)
    ledger = PrivacyLedger(delta=1e-6)
    ledger.record("dp_teacher", event, "DP-EBM")
    rows = ledger.to_dict()["entries"]
    assert [(r["mechanism"], r["count"]) for r in rows] == [("gaussian", 1)] * 2
    assert ledger.epsilon() == pytest.approx(epsilon_of([event], 1e-6, "pld"))
    assert PrivacyLedger.from_dict(ledger.to_dict()).epsilon() == pytest.approx(ledger.epsilon())


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize("epsilon", [0.3, 1.0, 3.0, 8.0])
def test_calibration_meets_the_target_and_spends_it(epsilon, accountant):
    nominal = calibrate_dp_ebm(epsilon=epsilon, delta=1e-6, n_features=10, settings=SETTINGS,
                               accountant=accountant)
    spent = epsilon_of([predicted_event(epsilon=nominal, delta=1e-6, n_features=10,
                                        settings=SETTINGS)], 1e-6, accountant)
    if accountant == "pld":      # tighter than interpret's own basic composition
        assert nominal >= epsilon
    assert 0.99 * epsilon <= spent <= epsilon


def test_calibration_refuses_bad_budgets():
    with pytest.raises(ValueError, match="epsilon"):
        calibrate_dp_ebm(epsilon=0.0, delta=1e-6, n_features=3)
    with pytest.raises(ValueError, match="delta"):
        calibrate_dp_ebm(epsilon=1.0, delta=1.5, n_features=3)


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="'learning_rate' parameter of DPEBMSettings"):
        DPEBMSettings(learning_rate=0.0)
    with pytest.raises(ValueError, match="'max_bins'"):
        DPEBMSettings(max_bins=2)


def test_fit_records_an_event_within_budget(dp_table, dp_test_table, dp_schema, dp_bounds):
    frame, labels = dp_table
    teacher = fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6, public_rows=len(frame),
                         bounds=dp_bounds, settings=SETTINGS)
    assert 0.95 <= teacher.epsilon(1e-6) <= 1.0
    test_frame, test_labels = dp_test_table
    proba = teacher.predict_proba(test_frame)
    assert proba.shape == (len(test_frame), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    interpret_proba = teacher.model.predict_proba(teacher.encoding.ebm_frame(test_frame))
    np.testing.assert_allclose(proba, interpret_proba, rtol=1e-9, atol=1e-12)
    # Band: clearly learns (the true AUROC is ~0.8), but not beyond what the data allow.
    assert 0.62 <= roc_auc_score(test_labels, proba[:, 1]) <= 0.86


def test_tiny_budget_drowns_the_signal(dp_table, dp_test_table, dp_schema, dp_bounds):
    """The upper band: with the noise on, ε = 0.02 leaves (almost) nothing to learn."""
    frame, labels = dp_table
    teacher = fit_dp_ebm(frame, labels, dp_schema, epsilon=0.02, delta=1e-6,
                         public_rows=len(frame),
                         bounds=dp_bounds, settings=SETTINGS)
    test_frame, test_labels = dp_test_table
    # 15 fresh draws gave 0.35-0.61 (noise-free: ~0.8); one CI draw passed 0.68.
    assert roc_auc_score(test_labels, teacher.predict_proba(test_frame)[:, 1]) < 0.72


def test_noise_is_fresh_each_fit(dp_table, dp_schema, dp_bounds):
    """No seed is recorded or passed: two fits on the same rows give different models."""
    frame, labels = dp_table
    a = fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,
                   public_rows=len(frame), bounds=dp_bounds,
                   settings=SETTINGS)
    b = fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,
                   public_rows=len(frame), bounds=dp_bounds,
                   settings=SETTINGS)
    assert a.model.random_state is None and b.model.random_state is None
    assert not np.allclose(a.decision_function(frame), b.decision_function(frame))


def test_bounds_come_from_the_declaration_not_the_data(dp_table, dp_schema, dp_bounds):
    frame, labels = dp_table
    frame = frame.copy()
    frame.loc[0, "age"] = 1e6          # an extreme patient must not move the range
    teacher = fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,
                         public_rows=len(frame), bounds=dp_bounds,
                         settings=SETTINGS)
    lows = [teacher.encoding.missing_slot(n)[0] for n in ("age", "sbp")]
    np.testing.assert_allclose(teacher.model.feature_bounds_[:2],
                               [[lows[0], 100.0], [lows[1], 220.0]])


def test_missing_bounds_are_refused_before_fitting(dp_table, dp_schema):
    frame, labels = dp_table
    with pytest.raises(ConfigError, match="'sbp'"):
        fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6, public_rows=len(frame),
                   bounds={"age": (18.0, 100.0)})
    with pytest.raises(ConfigError, match="min < max"):
        fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6, public_rows=len(frame),
                   bounds={"age": (100.0, 18.0), "sbp": (60.0, 220.0)})


def test_labels_must_be_binary_with_both_classes(dp_table, dp_schema, dp_bounds):
    frame, labels = dp_table
    with pytest.raises(TrainingError, match="both classes"):
        fit_dp_ebm(frame, np.zeros_like(labels), dp_schema, epsilon=1.0, delta=1e-6,
                   public_rows=len(frame), bounds=dp_bounds)


def test_phantom_rows_cover_the_declared_domains(dp_schema, dp_bounds):
    """Categorical histograms are over the declared domain, whatever the data hold."""
    encoding = PublicEncoding.build(dp_schema, dp_bounds)
    phantom = _phantom_rows(encoding)
    assert set(phantom["site"]) == {"east", "north", "south", "west", OTHER, MISSING}
    assert set(phantom["smoker"]) == {"0", "1", MISSING}
    assert phantom["age"].between(18, 100).all()


def test_unseen_declared_category_is_accepted(dp_table, dp_schema, dp_bounds):
    frame, labels = dp_table
    assert "west" not in set(frame["site"].dropna())
    teacher = fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,
                         public_rows=len(frame), bounds=dp_bounds,
                         settings=SETTINGS)
    probe = frame.iloc[:3].copy()
    probe["site"] = ["west", "mars", None]
    assert np.isfinite(teacher.decision_function(probe)).all()


def test_categorical_histograms_span_the_declared_domain(dp_table, dp_schema, dp_bounds,
                                                         monkeypatch):
    """interpret noises only the categories it sees; the phantom rows make it see all of
    the declared domain, so whether a rare category exists is never released."""
    import interpret.utils._preprocessor as preprocessor

    from medistill.teachers.dp_ebm_binning import BALLAST_CODE

    seen = []
    original = preprocessor.private_categorical_binning

    def spy(X_col, *args, **kwargs):  # the categories interpret noises, ballast aside
        seen.append(len(np.unique(X_col[X_col != BALLAST_CODE])))
        return original(X_col, *args, **kwargs)

    monkeypatch.setattr(preprocessor, "private_categorical_binning", spy)
    frame, labels = dp_table
    fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,
               public_rows=len(frame), bounds=dp_bounds,
               settings=SETTINGS)
    # smoker: 0, 1, missing; site: 4 declared + other + missing ("west" never occurs)
    assert seen == [3, 6]


def test_bins_fall_to_16_exactly_where_32_would_hold_less_than_the_binning_noise() -> None:
    from medistill.teachers.dp_ebm import (
        MAX_BINS_CHOICES,
        calibrate_dp_ebm,
        interpret_noise_multipliers,
        public_max_bins,
    )

    assert MAX_BINS_CHOICES == (32, 16)
    nominal = calibrate_dp_ebm(epsilon=1.5, delta=1e-6, n_features=12)
    s_bin, _ = interpret_noise_multipliers(epsilon=nominal, delta=1e-6, n_features=12,
                                           settings=DPEBMSettings())
    edge = 31 * s_bin
    kwargs = {"epsilon": 1.5, "delta": 1e-6, "n_features": 12}
    assert public_max_bins(n_patients=math.ceil(edge) + 1, **kwargs) == 32
    assert public_max_bins(n_patients=math.floor(edge) - 1, **kwargs) == 16
    assert public_max_bins(n_patients=10, **kwargs) == 16            # never below 16
    # more ε, less binning noise: the same patients keep 32 bins
    assert public_max_bins(n_patients=math.floor(edge) - 1, epsilon=6.0, delta=1e-6,
                           n_features=12) == 32


def test_a_teacher_with_16_bins_releases_at_most_16_bins_per_numeric_feature(
        dp_table, dp_schema, dp_bounds) -> None:
    frame, labels = dp_table
    teacher = fit_dp_ebm(frame, labels, dp_schema, epsilon=3.0, delta=1e-6,
                         public_rows=len(frame), bounds=dp_bounds,
                         settings=replace(SETTINGS, max_bins=16))
    assert teacher.encoding.missing_width_bins == 30
    for name in ("age", "sbp"):
        cuts = teacher.model.bins_[list(teacher.model.feature_names_in_).index(name)][0]
        assert 1 <= len(cuts) <= 15          # 16 bins: at most 15 cuts
