"""The per-stage clock reads the pipeline's step observer (no patching): stage attribution,
the baselines split inside the audit, and runs that fail half-way."""

from __future__ import annotations

from benchmarks.common import Observers, observing, _OBSERVERS
from benchmarks.stages import STEP_STAGES, StageTimer, stage_of

STEPS = ("prepare", "plan", "canaries", "teachers", "transfer", "labels", "student", "export")


class RecordingClock:
    """Stands in for StageClock: records what is entered and left."""

    def __init__(self) -> None:
        self.stack = ["other"]
        self.entered: list[str] = []

    def enter(self, stage: str) -> None:
        self.stack.append(stage)
        self.entered.append(stage)

    def leave(self) -> None:
        self.stack.pop()


def run_steps(timer: StageTimer, *, fail_at: str | None = None) -> None:
    for step in STEPS:
        timer.started(step)
        if step == fail_at:
            timer.aborted()
            return
        timer.finished(step, object())
    timer.started("audit")
    timer.finished("baselines", {"direct": None, "distillation": None})
    timer.finished("audit", {})


def test_every_step_is_its_stage_and_the_audit_splits_at_the_baselines() -> None:
    clock = RecordingClock()
    run_steps(StageTimer(clock))
    assert clock.stack == ["other"]
    assert clock.entered == [stage_of(s) for s in STEPS] + [
        STEP_STAGES["baselines"], STEP_STAGES["audit"]]
    assert stage_of("somethingnew") == "somethingnew"


def test_a_failed_run_leaves_nothing_open_and_the_next_run_is_timed() -> None:
    clock = RecordingClock()
    timer = StageTimer(clock)
    run_steps(timer, fail_at="plan")
    assert clock.stack == ["other"]
    clock.entered.clear()
    run_steps(timer)
    assert clock.stack == ["other"] and clock.entered[0] == stage_of("prepare")
    assert clock.entered[-2:] == [STEP_STAGES["baselines"], STEP_STAGES["audit"]]


def test_a_failure_before_prepare_finishes_is_closed_by_the_next_run() -> None:
    clock = RecordingClock()
    timer = StageTimer(clock)
    timer.started("prepare")           # no aborted(): the next run's start closes it
    run_steps(timer)
    assert clock.stack == ["other"]


def test_baselines_as_a_step_of_their_own_are_timed_like_any_step() -> None:
    clock = RecordingClock()
    timer = StageTimer(clock)
    timer.started("prepare")
    timer.finished("prepare", None)
    timer.started("baselines")
    timer.finished("baselines", {})
    timer.started("audit")
    timer.finished("audit", {})
    assert clock.entered == [stage_of("prepare"), STEP_STAGES["baselines"], STEP_STAGES["audit"]]
    assert clock.stack == ["other"]


def test_observers_fan_out_and_observing_registers_for_the_block() -> None:
    seen: list[tuple] = []

    class Spy:
        def started(self, step):
            seen.append(("started", step))

        def finished(self, step, artifact):
            seen.append(("finished", step, artifact))

    class NoAbort(Spy):
        pass

    fan = Observers(Spy(), None, NoAbort())
    fan.started("plan")
    fan.finished("plan", 1)
    fan.aborted()                       # observers without aborted() are skipped
    assert seen == [("started", "plan"), ("started", "plan"), ("finished", "plan", 1),
                    ("finished", "plan", 1)]
    spy = Spy()
    with observing(spy):
        assert spy in _OBSERVERS
    assert spy not in _OBSERVERS
