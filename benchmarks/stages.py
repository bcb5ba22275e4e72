"""Per-stage wall time and peak memory of ``run_pipeline`` runs, from the pipeline's own
step observer (``run_pipeline(..., observer=...)``; nothing is patched).

A :class:`StageTimer` turns the observer's ``started(step)`` / ``finished(step, artifact)``
calls into stages of a :class:`StageClock`. Time is *exclusive*: a stage nested in another is
not counted twice, and time between steps (the canary draw, the budget check, progress
messages) lands in "other". The audit step runs the audit-only baselines first and says so
with ``finished("baselines", ...)``; the timer splits the audit there. Finer splits inside a
step (reference teacher vs. ensemble, speed vs. membership inference) would need patching
the library, so they are not made. A sampling thread reads the process's resident memory
every 50 ms and keeps the peak per stage.

``with instrument() as clock:`` times every ``benchmarks.common.run_config`` run inside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.common import observing

# The pipeline's steps (``medistill.pipeline.run_into``) and the stage each is reported as.
STEP_STAGES = {
    "prepare": "read data (load, split, noisy counts)",
    "plan": "budget plan",
    "canaries": "other",
    "teachers": "teachers (reference + ensemble)",
    "transfer": "transfer data",
    "labels": "noisy labels",
    "student": "student (preprocess + DP-SGD)",
    "export": "ONNX export",
    "baselines": "audit-only baselines (direct DP-SGD, replicates, LR)",
    "audit": "audit: utility, speed, MIA, fairness, report files",
}


def stage_of(step: str) -> str:
    """The stage a step is reported as (an unknown step under its own name)."""
    return STEP_STAGES.get(step, step)


def _rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class StageClock:
    """Exclusive time and peak RSS per stage; thread-safe enough for the pipeline (its
    steps run in the main thread; worker threads inside a step count toward it)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.stack: list[str] = ["other"]
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._last = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _charge(self) -> None:
        now = time.perf_counter()
        top = self.stack[-1]
        self.seconds[top] = self.seconds.get(top, 0.0) + now - self._last
        self._last = now

    def _note_rss(self) -> None:
        rss, top = _rss(), self.stack[-1]
        if rss > self.peak.get(top, 0):
            self.peak[top] = rss

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                self._note_rss()

    def enter(self, stage: str) -> None:
        with self._lock:
            self._note_rss()
            self._charge()
            self.stack.append(stage)
            self.calls[stage] = self.calls.get(stage, 0) + 1

    def leave(self) -> None:
        with self._lock:
            self._note_rss()
            self._charge()
            if len(self.stack) > 1:
                self.stack.pop()

    def start(self) -> None:
        self._last = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._charge()
        self._stop.set()
        self._thread.join(timeout=1)

    def result(self) -> dict:
        return {stage: {"seconds": self.seconds.get(stage, 0.0),
                        "peak_rss_mib": self.peak.get(stage, 0) / 2**20,
                        "calls": self.calls.get(stage, 0)}
                for stage in self.seconds}


class StageTimer:
    """A pipeline step observer that drives a :class:`StageClock`.

    Today the audit step begins with the audit-only baselines and reports
    ``finished("baselines", ...)`` without a ``started("baselines")``: the audit's time up
    to then is the baselines', the rest the audit's. Should the baselines become a step of
    their own (``started("baselines")``), they are timed like any other step.
    """

    def __init__(self, clock: StageClock) -> None:
        self.clock = clock
        self._open: list[str] = []          # steps started and not yet finished
        self._baselines_step = False        # this run has a "baselines" step of its own
        self._provisional = False           # the audit's start is being timed as baselines

    def started(self, step: str) -> None:
        if step == "prepare":               # a new run
            self.aborted()
        if step == "baselines":
            self._baselines_step = True
            if self._provisional:           # the audit's start was the audit's after all
                self._provisional = False
                self.clock.leave()
                self.clock.enter(stage_of("audit"))
        self._open.append(step)
        if step == "audit" and not self._baselines_step:
            self._provisional = True
            self.clock.enter(stage_of("baselines"))
            return
        self.clock.enter(stage_of(step))

    def finished(self, step: str, artifact: object) -> None:
        if step == "baselines" and self._provisional:
            self._provisional = False
            self.clock.leave()
            self.clock.enter(stage_of("audit"))
            return
        if step not in self._open:
            return
        # Close this step, and any step an exception left open inside it.
        while self._open:
            self.clock.leave()
            if self._open.pop() == step:
                break
        if step == "audit":
            self._provisional = False

    def aborted(self) -> None:
        """The run raised: close the steps it left open."""
        while self._open:
            self._open.pop()
            self.clock.leave()
        self._baselines_step = self._provisional = False


@contextmanager
def instrument() -> Iterator[StageClock]:
    """Time every :func:`benchmarks.common.run_config` run inside; yields the clock."""
    import medistill.pipeline  # noqa: F401 - imported before the clock starts, not in "other"

    clock = StageClock()
    clock.start()
    try:
        with observing(StageTimer(clock)):
            yield clock
    finally:
        clock.stop()
