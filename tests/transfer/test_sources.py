"""The public transfer individuals' DP-SGD event, and public tables read from FHIR."""

from pathlib import Path

import numpy as np
import pytest

from medistill.config import PublicTableConfig
from medistill.privacy.ledger import epsilon_of
from medistill.transfer.sources import load_public_table, public_individual_event


def test_one_copy_is_exactly_the_dp_sgd_event_and_agrees_with_opacus() -> None:
    from opacus.accountants import RDPAccountant

    sigma, q, steps, delta = 1.1, 0.02, 500, 1e-5
    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    ours = epsilon_of([public_individual_event(q, steps, sigma, repeats=1)], delta, "rdp")
    assert ours == pytest.approx(accountant.get_epsilon(delta), rel=0.01)


@pytest.mark.parametrize("repeats", [2, 4])
def test_repeated_rows_cost_more_but_less_than_naive_group_privacy(repeats: int) -> None:
    sigma, q, steps, delta = 1.5, 0.01, 300, 1e-5
    one = epsilon_of([public_individual_event(q, steps, sigma, 1)], delta, "pld")
    many = epsilon_of([public_individual_event(q, steps, sigma, repeats)], delta, "pld")
    assert one < many
    # The event is the r-copy worst case in every step: a Gaussian of r-fold sensitivity
    # sampled with probability 1 − (1 − q)^r, never better than that mechanism run alone.
    alone = epsilon_of([public_individual_event(min(1.0, repeats * q), steps, sigma / repeats, 1)],
                       delta, "pld")
    assert many <= alone * 1.001


def test_public_fhir_export_is_ingested_and_aligned(tmp_path: Path) -> None:
    from importlib.resources import files

    from medistill.data.fhir.synthetic import write_synthetic_fhir_export
    from medistill.data.schema import FeatureSpec, TableSchema

    write_synthetic_fhir_export(tmp_path / "export", 60, rng=np.random.default_rng(0))
    mapping = Path(str(files("medistill.data.fhir").joinpath("demo_mapping.yaml")))
    schema = TableSchema(features=(FeatureSpec("age", "numeric"), FeatureSpec("bmi", "numeric")),
                         label="outcome", classes=("0", "1"))
    config = PublicTableConfig(path=tmp_path / "export", mapping=mapping, missing="refuse")
    table, notes = load_public_table(config, schema, seed=0)
    assert list(table.columns) == ["age", "bmi"] and len(table) == 60
    assert table["age"].between(0, 120).all()
    assert any("dropped" in n for n in notes)  # patient keys and labels never become features
