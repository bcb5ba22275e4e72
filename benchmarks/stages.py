"""Per-stage wall time and peak memory of one ``run_pipeline`` run, measured from outside.

The pipeline does not report its stage timings, so :func:`instrument` wraps the functions
that ``medistill.pipeline`` and ``medistill.audit.assemble`` call for each stage (by
patching their module attributes for the duration of the run). Time is *exclusive*: a
stage nested in another (the audit's speed pass inside the audit) is not counted twice. A
sampling thread reads the process's resident memory every 50 ms and keeps the peak per
stage. Anything the patch cannot find (the library changes) is simply not split out:
its time lands in the enclosing stage, or in "other".
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack, contextmanager

# (module, attribute, stage); attribute "Class.method" patches a method.
TARGETS = (
    ("medistill.pipeline", "load_sensitive", "read data"),
    ("medistill.pipeline", "split_patients", "read data"),
    ("medistill.pipeline", "select_reference_teacher", "reference teacher (CV selection + fit)"),
    ("medistill.pipeline", "make_teacher", "reference teacher (CV selection + fit)"),  # + its fit
    ("medistill.pipeline", "PartitionedEnsemble.fit", "teacher ensemble"),
    ("medistill.pipeline", "Pipeline._plan", "budget plan"),
    ("medistill.pipeline", "release_marginals", "transfer data"),
    ("medistill.pipeline", "SchemaPriorSampler.sample", "transfer data"),
    ("medistill.pipeline", "Pipeline._synthesize", "transfer data"),
    ("medistill.pipeline", "PartitionedEnsemble.vote_histogram", "noisy labels"),
    ("medistill.pipeline", "PartitionedEnsemble.teacher_probabilities", "noisy labels"),
    ("medistill.pipeline", "make_preprocessor", "student (preprocess + DP-SGD)"),
    ("medistill.pipeline", "train_student", "student (preprocess + DP-SGD)"),
    ("medistill.pipeline", "Pipeline._student_data", "student (preprocess + DP-SGD)"),
    ("medistill.pipeline", "export_student", "ONNX export"),
    ("medistill.pipeline", "Pipeline._direct_baseline", "direct DP-SGD baseline"),
    ("medistill.pipeline", "build_report", "audit: utility, fairness, gates"),
    ("medistill.audit.assemble", "bootstrap_metrics", "audit: bootstrap"),
    ("medistill.audit.assemble", "_speed", "audit: speed"),
    ("medistill.audit.assemble", "_mia", "audit: membership inference"),
    ("medistill.audit.assemble", "canary_audit", "audit: membership inference"),
    ("medistill.pipeline", "write_run_files", "write run folder"),
)


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
    stages run in the main thread; worker threads inside a stage count toward it)."""

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


def _wrap(func, stage: str, clock: StageClock):
    def wrapper(*args, **kwargs):
        if not stage.startswith("audit") and any(s.startswith("audit") for s in clock.stack):
            return func(*args, **kwargs)  # e.g. the ensemble's predictions inside the audit
        clock.enter(stage)
        try:
            return func(*args, **kwargs)
        finally:
            clock.leave()
    wrapper.__wrapped__ = func
    return wrapper


def _wrap_factory(func, stage: str, clock: StageClock):
    """``make_teacher`` returns an unfitted model that the pipeline fits at once: time that
    first ``fit`` too (the instance attribute is removed after it, so pickling still works)."""
    def wrapper(*args, **kwargs):
        model = func(*args, **kwargs)
        original_fit = model.fit

        def fit(*a, **k):
            model.__dict__.pop("fit", None)
            clock.enter(stage)
            try:
                return original_fit(*a, **k)
            finally:
                clock.leave()
        try:
            model.fit = fit
        except AttributeError:
            pass
        return model
    return wrapper


@contextmanager
def instrument(targets=TARGETS):
    """Patch the stage functions; yields the running :class:`StageClock`."""
    import importlib
    from unittest import mock

    clock = StageClock()
    with ExitStack() as stack:
        for module_name, attribute, stage in targets:
            module = importlib.import_module(module_name)
            owner, name = module, attribute
            if "." in attribute:
                cls_name, name = attribute.split(".", 1)
                owner = getattr(module, cls_name, None)
            original = getattr(owner, name, None) if owner is not None else None
            if original is None:
                continue
            wrap = _wrap_factory if attribute == "make_teacher" else _wrap
            stack.enter_context(mock.patch.object(owner, name, wrap(original, stage, clock)))
        clock.start()
        try:
            yield clock
        finally:
            clock.stop()
