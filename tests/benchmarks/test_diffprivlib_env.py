"""The diffprivlib environment is built by one benchmark process at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import benchmarks.diffprivlib_env as diffprivlib_env


def test_processes_started_side_by_side_build_the_environment_one_at_a_time(
        tmp_path: Path, monkeypatch) -> None:
    """Two matrices started together once raced to build it (one got 'Text file busy' and
    ran without the diffprivlib arm); under the lock the builds never overlap."""
    inside, overlaps = [0], []

    def build(env_dir: Path, *, timeout: float):
        inside[0] += 1
        overlaps.append(inside[0])
        time.sleep(0.05)
        inside[0] -= 1
        return env_dir / "bin" / "python", ""

    monkeypatch.setattr(diffprivlib_env, "_ensure_env", build)
    threads = [threading.Thread(target=diffprivlib_env.ensure_env, args=(tmp_path / "env",))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]
    assert (tmp_path / ".env.lock").exists()
