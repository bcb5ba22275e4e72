"""The compute backends: order, counting, neutral task keys, safe failures, clear errors."""

from __future__ import annotations

import operator
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medistill.compute import (
    LocalBackend,
    compute_backend,
    current_backend,
    with_scheduler,
)
from medistill.compute.tasks import describe_failure, run_unit, unwrap
from medistill.config import ComputeConfig, parse_config
from medistill.errors import ComputeError, ConfigError, DataError

SECRET = "patient-4711-systolic-183"


def _square(x: int) -> int:
    return x * x


def _current_key(_: int) -> str:
    from distributed import get_worker

    return str(get_worker().get_current_task())


def _leaky(_: int) -> None:
    raise ValueError(f"could not convert {SECRET!r} to float")


def _data_error(_: int) -> None:
    raise DataError("records.ndjson line 12: expected a Patient resource.")


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_local_backend_keeps_order_and_counts_units() -> None:
    backend = LocalBackend()
    assert list(backend.map(_square, range(5), label="square")) == [0, 1, 4, 9, 16]
    assert list(backend.map(_square, range(4), label="square", n_jobs=2,
                            prefer="threads")) == [0, 1, 4, 9]
    assert backend.summary() == {"backend": "local", "scheduler": None, "n_workers": None,
                                 "tasks": 9}


@pytest.mark.parametrize("label", ["", "Teacher", "teacher 3", "x" * 41, "patient=4711"])
def test_labels_must_be_fixed_words(label: str) -> None:
    with pytest.raises(ValueError, match="task label"):
        LocalBackend().map(_square, [1], label=label)


def test_current_backend_is_local_outside_a_run(tmp_path: Path) -> None:
    assert current_backend().name == "local"
    with compute_backend(None, tmp_path) as backend:
        assert current_backend() is backend
    assert current_backend() is not backend


def test_dask_map_keeps_order_counts_and_names_tasks_neutrally(dask_config, tmp_path) -> None:
    with compute_backend(dask_config, tmp_path) as backend:
        assert current_backend() is backend and backend.distributed
        assert list(backend.map(_square, range(6), label="square")) == [i * i for i in range(6)]
        keys = list(backend.map(_current_key, range(3), label="teacher"))
        summary = backend.summary()
    assert all(re.fullmatch(rf"medistill-teacher-{i}-[0-9a-f]+", k) for i, k in enumerate(keys))
    assert summary == {"backend": "dask", "scheduler": dask_config.scheduler, "n_workers": 2,
                       "tasks": 9}


def test_a_closure_over_data_is_sent_once_and_results_match(dask_config, tmp_path) -> None:
    table = np.arange(10_000, dtype=float)
    with compute_backend(dask_config, tmp_path) as backend:
        got = list(backend.map(lambda i: float(table[i::7].sum()), range(7), label="closure"))
    assert got == [float(table[i::7].sum()) for i in range(7)]


def test_a_failing_task_never_reveals_its_message(dask_config, tmp_path) -> None:
    with compute_backend(dask_config, tmp_path) as backend:
        with pytest.raises(ComputeError) as info:
            list(backend.map(_leaky, range(2), label="teacher"))
        # the cluster is still usable, and nothing of the failed map is left on it
        assert list(backend.map(_square, [3], label="square")) == [9]
        assert _eventually_gone(backend.client, "medistill-teacher-")
    text = info.value.render()
    assert "ValueError" in text and "_leaky" in text and SECRET not in text
    assert re.search(r"medistill-teacher-\d-[0-9a-f]+", text)


def _eventually_gone(client, prefix: str, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = [k for keys in client.has_what().values() for k in keys]
        if not any(str(k).startswith(prefix) for k in held):
            return True
        time.sleep(0.05)
    return False


def test_a_medistill_error_on_a_worker_comes_back_as_itself(dask_config, tmp_path) -> None:
    with compute_backend(dask_config, tmp_path) as backend:
        with pytest.raises(DataError, match="line 12: expected a Patient"):
            list(backend.map(_data_error, range(2), label="fhir-chunk"))


def _warns(_: int) -> int:
    import warnings

    warnings.warn(f"odd value {SECRET}", UserWarning, stacklevel=1)
    return 1


def test_run_unit_prints_no_warning(recwarn) -> None:
    assert run_unit(_warns, 0) == 1
    assert not [w for w in recwarn if SECRET in str(w.message)]


def test_run_unit_turns_failures_into_values() -> None:
    failure = run_unit(_leaky, 0)
    assert SECRET not in repr(failure) and SECRET not in describe_failure(ValueError(SECRET))
    with pytest.raises(ComputeError):
        unwrap(failure, "medistill-x-0")
    assert unwrap(run_unit(_square, 4), "medistill-x-0") == 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_a_clear_error_within_the_timeout(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    config = ComputeConfig(backend="dask", scheduler=address, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(ComputeError, match="Cannot reach the Dask scheduler") as info:
        with compute_backend(config, tmp_path):
            pass
    assert time.monotonic() - started < 15
    assert info.value.exit_code == 2 and address in info.value.render()
    assert not any(tmp_path.iterdir())  # its temporary folder is gone


def test_a_scheduler_without_workers_is_refused(tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as empty:
        config = ComputeConfig(backend="dask", scheduler=empty.scheduler_address,
                               connect_timeout=1)
        with pytest.raises(ComputeError, match="has no workers"):
            with compute_backend(config, tmp_path):
                pass


def test_losing_every_worker_mid_run_is_a_clear_error(tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None, silence_logs=50) as cluster:
        config = ComputeConfig(backend="dask", scheduler=cluster.scheduler_address,
                               connect_timeout=5, worker_timeout=1)
        with compute_backend(config, tmp_path) as backend:
            threading.Timer(0.5, lambda: cluster.scale(0)).start()
            started = time.monotonic()
            with pytest.raises(ComputeError, match="no workers for 1 s"):
                list(backend.map(_sleep, [3.0, 3.0], label="teacher"))
            assert time.monotonic() - started < 20


def test_a_local_cluster_lives_in_the_run_folder_and_is_removed(tmp_path: Path) -> None:
    config = ComputeConfig(backend="dask", scheduler="local", n_workers=1)
    with compute_backend(config, tmp_path) as backend:
        (area,) = tmp_path.iterdir()
        assert area.name.startswith(".medistill-dask-")
        # worker processes import only installed modules: a function of the library
        assert list(backend.map(operator.neg, [2, 3], label="negate")) == [-2, -3]
        assert backend.summary()["scheduler"] == "local"
    assert not any(tmp_path.iterdir())


def test_with_scheduler_switches_the_run_to_dask() -> None:
    config = parse_config({"data": {"source": "builtin"}, "privacy": {"target_epsilon": 3}})
    assert config.compute.backend == "local" and with_scheduler(config, None) is config
    switched = with_scheduler(config, "tcp://10.0.0.5:8786")
    assert (switched.compute.backend, switched.compute.scheduler) == ("dask",
                                                                     "tcp://10.0.0.5:8786")
    with pytest.raises(ConfigError, match="--scheduler"):
        with_scheduler(config, "10.0.0.5")


@pytest.mark.parametrize("compute, message", [
    ({"backend": "dask"}, "'scheduler' is required"),
    ({"scheduler": "tcp://a:1"}, "only used when backend is 'dask'"),
    ({"backend": "dask", "scheduler": "http://a:1"}, "must be tcp://HOST:PORT"),
    ({"backend": "ray"}, "compute.backend"),
])
def test_bad_compute_sections_name_the_field(compute: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"data": {"source": "builtin"}, "privacy": {"target_epsilon": 3},
                      "compute": compute})
