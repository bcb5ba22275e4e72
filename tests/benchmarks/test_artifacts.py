"""Benchmarks read what they measure from the run's step artifacts (fakes here: the
artifact types' attributes, not a pipeline run)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmarks.common import Artifacts, plan_of, prepared_of
from benchmarks.privacy_utility import direct_baseline_box
from benchmarks.speed import ensemble_figures


class Ensemble:
    """A picklable stand-in for the PATE ensemble that records its batch sizes."""

    asked: list[int] = []

    def predict_proba(self, rows):
        Ensemble.asked.append(len(rows))
        return np.tile([0.5, 0.5], (len(rows), 1))


def _prepared(dp_rows) -> SimpleNamespace:
    frame = pd.DataFrame({"x": np.arange(10.0)})
    data = SimpleNamespace(rows=lambda idx: (frame.iloc[idx], np.zeros(len(idx), int), None))
    split = SimpleNamespace(train=np.array([10, 11, 12, 13]), test=np.array([0, 1, 2]),
                            holdout=np.array([5, 6]))
    return SimpleNamespace(data=data, split=split, dp_rows=np.asarray(dp_rows),
                           ledger=SimpleNamespace(delta=1e-5))


def _feed(artifacts: Artifacts, **steps) -> Artifacts:
    for step, artifact in steps.items():
        artifacts.started(step)
        artifacts.finished(step, artifact)
    return artifacts


def test_artifacts_keep_only_the_named_steps_and_the_plan_is_unpacked() -> None:
    plan = SimpleNamespace(n_teachers=7)
    a = _feed(Artifacts("plan", "prepare"), plan=(plan, None), student="s", prepare="p")
    assert plan_of(a) is plan and a.get("student") is None and prepared_of(a) == "p"
    assert prepared_of(_feed(Artifacts("prepare", "canaries"), prepare="p", canaries="c")) == "c"


def test_direct_baseline_box_members_are_the_dp_rows_after_the_canary_draw() -> None:
    nets = ("first", "second")
    direct = SimpleNamespace(networks=nets, metrics={})
    a = _feed(Artifacts("prepare", "canaries", "student", "baselines"),
              prepare=_prepared([0, 1, 2, 3]), canaries=_prepared([0, 2]),
              student=SimpleNamespace(preprocessor="pre"),
              baselines={"direct": direct, "distillation": None})
    box = direct_baseline_box(a)
    assert box["network"] == "first" and box["preprocessor"] == "pre"
    assert box["members"].tolist() == [10, 12] and box["delta"] == 1e-5


def test_no_direct_baseline_gives_an_empty_box() -> None:
    a = _feed(Artifacts("prepare", "student", "baselines"), prepare=_prepared([0]),
              student=SimpleNamespace(preprocessor="pre"),
              baselines={"direct": None, "distillation": None})
    assert direct_baseline_box(a) == {}
    assert direct_baseline_box(Artifacts()) == {}


def test_ensemble_figures_time_the_runs_ensemble_on_its_test_rows() -> None:
    a = _feed(Artifacts("prepare", "plan", "teachers"), prepare=_prepared([0]),
              plan=(SimpleNamespace(n_teachers=3), None),
              teachers=SimpleNamespace(ensemble=Ensemble()))
    Ensemble.asked.clear()
    out = ensemble_figures(a, repeats=2, batch_size=4)
    assert out["n_teachers"] == 3 and out["ensemble_trained"]
    stats = out["ensemble"][1]
    assert stats["throughput_rows_per_s"] > 0 and stats["size_bytes"] > 0
    assert 4 in Ensemble.asked and 1 in Ensemble.asked


def test_no_ensemble_when_the_plan_bought_no_labels() -> None:
    a = _feed(Artifacts("prepare", "plan", "teachers"), prepare=_prepared([0]),
              plan=(SimpleNamespace(n_teachers=5), None),
              teachers=SimpleNamespace(ensemble=None))
    assert ensemble_figures(a, repeats=2, batch_size=4) == {
        "ensemble": {}, "n_teachers": 5, "ensemble_trained": False}


def test_replay_runs_saves_each_run_skips_none_and_resumes(tmp_path: Path) -> None:
    """The runner shared by the replay benchmarks: each measured run is saved under its
    (table, ε, seed), a None is skipped, and --resume reads saved runs back unmeasured."""
    from benchmarks.common import replay_runs

    seen = []

    def measure(document, work, name, epsilon, seed):
        seen.append((name, epsilon, seed, document["seed"],
                     document["privacy"]["target_epsilon"]))
        return None if seed == 1 else {"value": 10 * seed}

    runs = replay_runs(["breast_cancer"], [1.0], [0, 1, 2], out=tmp_path, resume=False,
                       cohort_patients=600, prefix="test-", measure=measure,
                       describe=lambda run: str(run["value"]))
    assert seen == [("breast_cancer", 1.0, s, s, 1.0) for s in range(3)]
    assert [(r["seed"], r["value"]) for r in runs] == [(0, 0), (2, 20)]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "breast_cancer_eps1_seed0.json", "breast_cancer_eps1_seed2.json"]

    def refuse(*_):
        raise AssertionError("a saved run was measured again")

    again = replay_runs(["breast_cancer"], [1.0], [0, 2], out=tmp_path, resume=True,
                        cohort_patients=600, prefix="test-", measure=refuse,
                        describe=str)
    assert [r["value"] for r in again] == [0, 20]
