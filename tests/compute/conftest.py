"""An in-process Dask cluster on loopback: 2 workers, TCP (so every task is serialised)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medistill.config import ComputeConfig


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[object]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp", host="127.0.0.1", dashboard_address=None,
                                  silence_logs=40) as cluster:
        yield cluster


@pytest.fixture()
def dask_config(dask_cluster) -> ComputeConfig:
    return ComputeConfig(backend="dask", scheduler=dask_cluster.scheduler_address,
                         connect_timeout=5, worker_timeout=5)
