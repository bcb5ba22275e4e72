"""The Dask backend: units of work as tasks on one named Dask distributed scheduler.

Privacy on a shared cluster:

- the client is created for the configured address only (``set_as_default=False``): no
  other library call can pick it up, and no address comes from Dask's own configuration;
- task keys are ``medistill-<label>-<i>-<random run tag>`` (no hash of the data, no value);
  each map's function goes to the cluster once, as task ``medistill-<label>-fn-<tag>``;
- units never raise on a worker (:mod:`medistill.compute.tasks`), so no worker log quotes
  an exception message;
- every result is released as soon as it has been read, and every remaining task is
  cancelled when a map stops early, so nothing stays in worker memory or spill files.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medistill.compute.tasks import check_label, run_unit, unwrap
from medistill.errors import ComputeError

_STOP_HINT = "Check the cluster (its workers' logs and memory), or run without --scheduler."


def _same(value: Any) -> Any:
    return value


class DaskBackend:
    """Maps units of work over the workers of ``client``'s scheduler, results in order."""

    name = "dask"
    distributed = True

    def __init__(self, client: Any, *, scheduler: str, worker_timeout: float,
                 console: Console | None = None, poll_seconds: float = 0.5) -> None:
        self.client = client
        self.scheduler = scheduler
        self.worker_timeout = worker_timeout
        self.console = console
        self.poll_seconds = poll_seconds
        self.tasks = 0
        self.n_workers = self._count_workers()
        self._tag = secrets.token_hex(4)
        self._maps = itertools.count()

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, label: str,
            n_jobs: int = 1, prefer: str = "processes") -> Iterator[Any]:
        """``fn(item)`` for every item on the cluster, results in item order (lazily).

        ``n_jobs`` and ``prefer`` are the local backend's and are ignored: the cluster's
        workers decide how many units run at once.
        """
        check_label(label)
        items = list(items)
        if not items:
            return iter(())
        return self._run(fn, items, label)

    def _run(self, fn: Callable[[Any], Any], items: list[Any], label: str) -> Iterator[Any]:
        client = self.client
        tag = f"{self._tag}{next(self._maps)}"
        fn_key = f"medistill-{label}-fn-{tag}"
        keys = [f"medistill-{label}-{i}-{tag}" for i in range(len(items))]
        futures: list[Any] = []
        try:
            # A task, not scattered data: the scheduler keeps its spec, so the function is
            # recomputed instead of lost when the worker holding it dies.
            shared = client.submit(_same, fn, key=fn_key, pure=False)
            futures = [client.submit(run_unit, shared, item, key=key, pure=False)
                       for item, key in zip(items, keys, strict=True)]
            shared.release()  # the tasks hold it now
        except (OSError, TimeoutError) as exc:
            self._cancel(futures)
            raise self._lost_scheduler(exc) from None
        self.tasks += len(futures)
        self.n_workers = max(self.n_workers, self._count_workers())
        progress = self._progress(label, len(futures))
        try:
            with progress:
                bar = progress.add_task(f"{label} tasks on the cluster", total=len(futures))
                for future in futures:
                    future.add_done_callback(lambda _f: progress.advance(bar))
                for i, future in enumerate(futures):
                    value = self._result(future)
                    futures[i] = None
                    future.release()
                    yield unwrap(value, keys[i])
        finally:
            self._cancel([f for f in futures if f is not None])

    def _progress(self, label: str, total: int) -> Progress:
        return Progress(TextColumn("[bold cyan]•[/] {task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                        transient=True, disable=self.console is None)

    def _result(self, future: Any) -> Any:
        """The future's value; a :class:`ComputeError` when the cluster loses every worker
        for ``worker_timeout`` seconds, a worker keeps dying on the task, the task is
        cancelled, or the scheduler goes away."""
        from distributed import CancelledError, KilledWorker
        from distributed import TimeoutError as DaskTimeout

        lost_since: float | None = None
        while True:
            try:
                return future.result(timeout=self.poll_seconds)
            except (DaskTimeout, TimeoutError):
                pass
            except KilledWorker:
                raise ComputeError(
                    f"Dask workers of {self.scheduler} died while running task {future.key} "
                    "(the scheduler gave up after several workers died on it; a worker "
                    "probably ran out of memory).", hint=_STOP_HINT) from None
            except CancelledError:
                if not self._count_workers():
                    raise self._lost_workers(future.key) from None
                raise ComputeError(
                    f"Task {future.key} was cancelled on the Dask cluster {self.scheduler} "
                    "(its input was lost with a worker, or someone cancelled it).",
                    hint=_STOP_HINT) from None
            except Exception as exc:  # CommClosedError, OSError
                raise self._lost_scheduler(exc) from None
            if self._count_workers():
                lost_since = None
                continue
            lost_since = lost_since if lost_since is not None else time.monotonic()
            if time.monotonic() - lost_since > self.worker_timeout:
                raise self._lost_workers(future.key)

    def _lost_workers(self, key: str) -> ComputeError:
        return ComputeError(
            f"The Dask scheduler {self.scheduler} has had no workers for "
            f"{self.worker_timeout:g} s (compute.worker_timeout) while task {key} was "
            "waiting: the cluster lost its workers.", hint=_STOP_HINT)

    def _count_workers(self) -> int:
        if getattr(self.client, "status", "running") != "running":
            return 0
        try:
            return len(self.client.nthreads())
        except (OSError, TimeoutError):
            return 0

    def _lost_scheduler(self, exc: BaseException) -> ComputeError:
        return ComputeError(
            f"Lost the Dask scheduler {self.scheduler} while running medistill tasks "
            f"({type(exc).__name__}).", hint=_STOP_HINT)

    def _cancel(self, futures: list[Any]) -> None:
        if futures and getattr(self.client, "status", None) == "running":
            try:
                self.client.cancel(futures)
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass

    def summary(self) -> dict[str, Any]:
        """The report's ``run.compute`` block."""
        return {"backend": self.name, "scheduler": self.scheduler, "n_workers": self.n_workers,
                "tasks": self.tasks}


__all__ = ["DaskBackend"]
