"""The DP-EBM settings benchmark (benchmarks/dp_ebm_settings.py): the paired summary and
one tiny captured run (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import datasets
from benchmarks.common import minimal_document
from benchmarks import dp_ebm_settings as b
from medistill.teachers.dp_ebm import DPEBMSettings


def _runs() -> list[dict]:
    return [{"table": "pbc", "epsilon": 3.0, "seed": s,
             "variants": {"32 bins": {"auroc": 0.70 + 0.01 * s},
                          "8 bins": {"auroc": 0.72 + 0.01 * s + 0.01 * (s % 2)}}}
            for s in range(4)]


def test_the_summary_pairs_each_variant_with_interprets_default_by_run() -> None:
    text = b.markdown(_runs(), "python -m benchmarks.dp_ebm_settings --tables pbc")
    assert "| pbc | 3 | 4 | 0.715 | 0.740 | +0.025 ± 0.003 |" in text
    assert "| 8 bins | +0.0250 | 0.0029 | 4 |" in text


def test_the_reference_is_interprets_default_and_the_pipelines_choices_are_variants() -> None:
    from medistill.teachers.dp_ebm import MAX_BINS_CHOICES

    assert b.VARIANTS[b.REFERENCE] == DPEBMSettings() and DPEBMSettings().max_bins == 32
    assert {f"{n} bins" for n in MAX_BINS_CHOICES} <= set(b.VARIANTS)
    assert len(set(b.VARIANTS.values())) == len(b.VARIANTS)


def test_repeats_below_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        b.main(["--tables", "pima", "--repeats", "0", "--out", str(tmp_path)])


@pytest.mark.slow
def test_one_run_scores_every_variant_on_one_release(tmp_path: Path) -> None:
    document = minimal_document(datasets.data_section("breast_cancer", tmp_path), 3.0, 0)
    captured = b.capture(document, tmp_path / "run")
    variants = {"32 bins": DPEBMSettings(), "8 bins": DPEBMSettings(max_bins=8)}
    scored = b.score_settings(captured, variants, repeats=2)
    for got in scored.values():
        assert len(got["draws"]) == 2
        assert 0.8 <= got["auroc"] <= 1.0
    assert scored["32 bins"]["draws"][0] != scored["32 bins"]["draws"][1]   # fresh noise


def test_the_learning_variants_keep_the_plans_bins_and_pair_with_the_published_settings() -> None:
    variants = b.learning_variants(16)
    assert variants[b.LEARNING_REFERENCE] == DPEBMSettings(max_bins=16)
    assert {v.max_bins for v in variants.values()} == {16}
    assert len(set(variants.values())) == len(variants)
    runs = [{"table": "cohort", "epsilon": 1.0, "seed": s,
             "variants": {"published": {"auroc": 0.85 + 0.01 * s},
                          "learning rate 0.03": {"auroc": 0.855 + 0.01 * s}}}
            for s in range(3)]
    text = b.markdown(runs, "python -m benchmarks.dp_ebm_settings --variants learning")
    assert "learning rate 0.03 − published" in text
    assert "| cohort | 1 | 3 | 0.860 | 0.865 | +0.005 ± 0.000 |" in text
