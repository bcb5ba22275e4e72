"""The default backend: this machine's processes or threads, through joblib."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from medistill.compute.tasks import check_label

Prefer = Literal["processes", "threads"]


class LocalBackend:
    """Runs units in this process (``n_jobs=1``) or fans them out over ``n_jobs`` local
    workers (joblib: loky processes, or threads with ``prefer="threads"``)."""

    name = "local"
    distributed = False

    def __init__(self) -> None:
        self.tasks = 0

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, label: str,
            n_jobs: int = 1, prefer: Prefer = "processes") -> Iterator[Any]:
        """``fn(item)`` for every item, results in item order (lazily)."""
        check_label(label)
        items = list(items)
        self.tasks += len(items)
        if n_jobs == 1 or len(items) <= 1:
            return (fn(item) for item in items)
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, prefer=prefer, return_as="generator",
                            pre_dispatch="2*n_jobs", batch_size=1)
        return iter(parallel(delayed(fn)(item) for item in items))

    def summary(self) -> dict[str, Any]:
        """The report's ``run.compute`` block."""
        return {"backend": self.name, "scheduler": None, "n_workers": None,
                "tasks": self.tasks}


__all__ = ["LocalBackend", "Prefer"]
