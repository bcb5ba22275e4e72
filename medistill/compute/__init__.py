"""Where the fan-out stages run: local processes (default) or a Dask distributed cluster.

The stages that fan out — the partitioned teachers' fits, the membership-inference
reference models and the FHIR chunks — call ``current_backend().map(fn, items, label=...)``.
A run chooses the backend once, around the whole run::

    with compute_backend(config.compute, work_dir, console=console) as backend:
        ...  # every map inside runs on it
    backend.summary()  # the report's run.compute block

DP-SGD never goes through a backend: one training is one process (docs/deploy.md).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError
from rich.console import Console

from medistill.compute.local import LocalBackend
from medistill.compute.tasks import TaskFailure, run_unit, unwrap
from medistill.config import ComputeConfig, PipelineConfig
from medistill.errors import ComputeError, ConfigError


class ComputeBackend(Protocol):
    """What a stage needs from a backend."""

    name: str
    distributed: bool
    tasks: int

    def map(self, fn: Any, items: Any, *, label: str, n_jobs: int = 1,
            prefer: str = "processes") -> Iterator[Any]: ...

    def summary(self) -> dict[str, Any]: ...


_CURRENT: ContextVar[ComputeBackend | None] = ContextVar("medistill_compute", default=None)


def current_backend() -> ComputeBackend:
    """The backend of the enclosing :func:`compute_backend`, else a fresh local one."""
    backend = _CURRENT.get()
    return backend if backend is not None else LocalBackend()


@contextmanager
def compute_backend(config: ComputeConfig | None, work_dir: Path, *,
                    console: Console | None = None) -> Iterator[ComputeBackend]:
    """Start the configured backend and make it current for the ``with`` block.

    For Dask, the scheduler is reached within ``connect_timeout`` seconds or a
    :class:`ComputeError` is raised before any work; ``scheduler: local`` starts a
    loopback cluster whose worker and spill folders live in a folder inside ``work_dir``,
    removed on exit with everything in it.
    """
    config = config or ComputeConfig()
    if config.backend == "local":
        backend: ComputeBackend = LocalBackend()
        token = _CURRENT.set(backend)
        try:
            yield backend
        finally:
            _CURRENT.reset(token)
        return
    with _dask_backend(config, Path(work_dir), console) as backend:
        token = _CURRENT.set(backend)
        try:
            yield backend
        finally:
            _CURRENT.reset(token)


@contextmanager
def _dask_backend(config: ComputeConfig, work_dir: Path, console: Console | None
                  ) -> Iterator[ComputeBackend]:
    import dask
    import distributed  # noqa: F401 - sets up Dask's loggers before they are quietened

    from medistill.compute.cluster import DaskBackend

    work_dir.mkdir(parents=True, exist_ok=True)
    area = Path(tempfile.mkdtemp(prefix=".medistill-dask-", dir=work_dir))
    cluster = client = None
    # Dask's INFO lines (connections, workers) would reach a root handler that another
    # library configured; warnings and errors still show.
    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    dask_logger.setLevel(max(level, logging.WARNING))
    try:
        with dask.config.set({"temporary-directory": str(area)}):
            address = config.scheduler
            if config.scheduler == "local":
                cluster = _local_cluster(config.n_workers, area)
                address = cluster.scheduler_address
            client = _connect(str(address), config)
            yield DaskBackend(client, scheduler=str(config.scheduler),
                              worker_timeout=config.worker_timeout, console=console)
    finally:
        if client is not None:
            client.close(timeout=config.connect_timeout)
        if cluster is not None:
            cluster.close(timeout=config.connect_timeout)
        shutil.rmtree(area, ignore_errors=True)
        dask_logger.setLevel(level)


def _local_cluster(n_workers: int, area: Path) -> Any:
    """Loopback only, no dashboard and no HTTP routes (Dask still opens an empty HTTP
    server, on 127.0.0.1); worker folders and spill files in ``area``."""
    import dask
    from distributed import LocalCluster

    no_routes = {"distributed.scheduler.http.routes": [],
                 "distributed.worker.http.routes": []}
    with dask.config.set(no_routes), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address=None,
                            local_directory=str(area), silence_logs=logging.ERROR)


def _connect(address: str, config: ComputeConfig) -> Any:
    """A client of ``address`` only, with a short connect timeout and at least one worker."""
    import dask
    from distributed import Client

    timeout = config.connect_timeout
    try:
        with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"}):
            client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ComputeError(
            f"Cannot reach the Dask scheduler at {address} (compute.scheduler or "
            f"--scheduler) within {timeout:g} s ({type(exc).__name__}).",
            hint="Check that the scheduler is running and the host and port are right "
                 "(tcp://HOST:PORT), or run without --scheduler to use local processes.") \
            from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ComputeError(
            f"The Dask scheduler at {address} has no workers (waited {timeout:g} s).",
            hint="Start workers for it (dask worker ADDRESS, or dask-jobqueue's "
                 "cluster.scale), or run without --scheduler.") from None
    return client


def with_scheduler(config: PipelineConfig, address: str | None) -> PipelineConfig:
    """``config`` run on the Dask scheduler ``address`` (``--scheduler``); unchanged if None."""
    if address is None:
        return config
    try:
        compute = ComputeConfig.model_validate(
            {**config.compute.model_dump(), "backend": "dask", "scheduler": address})
    except ValidationError:
        raise ConfigError(f"--scheduler: expected tcp://HOST:PORT, tls://HOST:PORT or 'local'. "
                          f"Got {address!r}.") from None
    return config.model_copy(update={"compute": compute})


__all__ = ["ComputeBackend", "LocalBackend", "TaskFailure", "compute_backend",
           "current_backend", "run_unit", "unwrap", "with_scheduler"]
