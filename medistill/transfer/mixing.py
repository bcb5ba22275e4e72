"""Transfer data from several sources (public table, schema prior, DP synthesizer), mixed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medistill.errors import DataError


def mix_sources(parts: list[tuple[str, pd.DataFrame]], sizes: dict[str, int],
                rng: np.random.Generator) -> tuple[pd.DataFrame, pd.Series]:
    """Take ``sizes[name]`` rows of each named part, shuffled together.

    Rows are drawn without replacement: a public individual repeated in the transfer set
    would weaken that population's DP-SGD guarantee, so asking for more rows than a part
    has is an error. Returns the rows (index 0..n-1) and a ``source`` Series naming each
    row's part.
    """
    names = [name for name, _ in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique. Got {names}.")
    unknown = sorted(set(sizes) - set(names))
    if unknown:
        raise ValueError(f"sizes names sources {unknown} that are not among the parts {names}.")
    if not parts:
        raise ValueError("mix_sources needs at least one part.")
    columns = list(parts[0][1].columns)
    chosen, labels = [], []
    for name, frame in parts:
        if sorted(frame.columns) != sorted(columns):
            raise DataError(f"transfer source '{name}' has columns {list(frame.columns)}, but "
                            f"'{parts[0][0]}' has {columns}.",
                            hint="Align every source to the sensitive schema first.")
        size = int(sizes.get(name, 0))
        if size < 0:
            raise ValueError(f"size of transfer source '{name}' must be >= 0. Got {size}.")
        if size > len(frame):
            raise DataError(f"transfer source '{name}' has {len(frame)} rows, fewer than the "
                            f"{size} requested.", hint=f"Lower its size to at most {len(frame)}.")
        if size == 0:
            continue
        rows = rng.choice(len(frame), size=size, replace=False)
        chosen.append(frame.iloc[rows][columns])
        labels.extend([name] * size)
    if not chosen:
        raise ValueError("all transfer sizes are zero: there are no transfer rows.")
    mixed = pd.concat(chosen, ignore_index=True)
    order = rng.permutation(len(mixed))
    mixed = mixed.iloc[order].reset_index(drop=True)
    source = pd.Series(np.asarray(labels, dtype=object)[order], name="source")
    return mixed, source


__all__ = ["mix_sources"]
