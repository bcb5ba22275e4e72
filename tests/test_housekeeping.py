"""SIGTERM cleans up like SIGINT; stale temporaries of dead processes are cleared (#16.10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medistill.housekeeping import Interrupted, clear_stale_temp_dirs, temp_prefix


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_16_10_stale_temp_dirs_of_dead_processes_are_cleared(tmp_path) -> None:
    stale = tmp_path / f"medistill-fhir-{_dead_pid()}-abc"
    mine = tmp_path / f"{temp_prefix('fhir')}xyz"
    other_tool = tmp_path / "medistill-notes"
    not_ours = tmp_path / "pytest-of-root"
    for folder in (stale, mine, other_tool, not_ours):
        folder.mkdir()
    assert clear_stale_temp_dirs(tmp_path) == [stale]
    assert mine.exists() and other_tool.exists() and not_ours.exists()


def test_16_10_interrupted_exit_codes() -> None:
    assert Interrupted(signal.SIGTERM).exit_code == 143
    assert Interrupted(signal.SIGINT).exit_code == 130
    assert not isinstance(Interrupted(signal.SIGTERM), Exception)  # click/typer let it through


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_16_10_signal_cleans_up_and_says_so(tmp_path, signum) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "runs" / "demo"
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen([sys.executable, "-m", "medistill.cli", "demo", "--patients", "1500",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(temp.glob("medistill-fhir-*")):
            time.sleep(0.2)
        assert list(out.parent.glob(".demo.tmp-*")), "the run never started"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    assert "Traceback" not in stderr
    assert list(out.parent.iterdir()) == [] and not out.exists()
    assert [p.name for p in temp.iterdir() if p.name.startswith("medistill")] == []


def test_16_10_stop_workers_ends_joblib_pool() -> None:
    from joblib.externals.loky import get_reusable_executor

    from medistill.housekeeping import stop_workers

    executor = get_reusable_executor(max_workers=1, timeout=300)
    assert executor.submit(os.getpid).result() != os.getpid()
    workers = list(executor._processes.values())
    assert workers and all(w.is_alive() for w in workers)
    stop_workers()
    for worker in workers:
        worker.join(timeout=10)
    assert not any(w.is_alive() for w in workers)
