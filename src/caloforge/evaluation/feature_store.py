"""High-level features on disk: one column per feature in a raw scratch file.

``evaluate`` on showers that stay in their files (:class:`caloforge.diskset.DiskShowerSet`)
keeps no per-shower array whose size grows with N: the high-level features (363 float64 per
shower on datasets 2/3, 2.9 kB) go into a scratch file under the output directory, one
contiguous column per feature, and :class:`FeatureColumns` reads a column (for its histogram)
or a block of rows (for the ``cls-high`` / FPD vectors) with ``pread`` when asked. Nothing is
memory-mapped, so the pages read never count as the process's memory.

Before this, the features, the ``cls-high`` vectors and FPD's normalised copies of them held
~17 kB per shower pair in memory: +16.4 MiB of peak RSS per 1,000 pairs on dataset 3
(BENCHMARKS.md, "Evaluation in bounded memory").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from caloforge.errors import DataError

ITEM = np.dtype(np.float64).itemsize


class FeatureColumns(Mapping[str, np.ndarray]):
    """A read-only mapping ``feature name -> (N,) float64`` over the column file ``path``:
    column ``k`` holds ``N`` values at byte offset ``k * N * 8``. Every lookup reads its
    column from the file anew (0.8 MB for 100k showers)."""

    def __init__(self, path: Path, names: list[str], n: int) -> None:
        self.path, self.names, self.n = Path(path), list(names), int(n)
        self._index = {name: k for k, name in enumerate(self.names)}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.column(name, 0, self.n)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def column(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of feature ``name``."""
        k = self._index[name]
        lo, hi = max(0, lo), min(self.n, hi)
        count = max(0, hi - lo)
        out = np.fromfile(self.path, dtype=np.float64, count=count,
                          offset=(k * self.n + lo) * ITEM)
        if len(out) != count:
            raise DataError(f"{self.path}: expected {count} values of feature {name} from "
                            f"row {lo}, found {len(out)} (scratch file truncated?)")
        return out

    def rows(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Rows ``lo:hi`` of every feature, as an in-memory dict."""
        return {name: self.column(name, lo, hi) for name in self.names}


def write_features(path: Path, names: list[str], n: int,
                   blocks: Iterable[tuple[int, int, dict[str, np.ndarray]]]) -> FeatureColumns:
    """Write the feature blocks ``(lo, hi, {name: rows lo:hi})`` (any order, together
    covering rows ``0:n``) into the column file ``path``; return its reader."""
    filled = 0
    with open(path, "wb") as fh:
        fh.truncate(len(names) * n * ITEM)
        for lo, hi, part in blocks:
            for k, name in enumerate(names):
                values = np.ascontiguousarray(part[name], dtype=np.float64)
                if len(values) != hi - lo:
                    raise DataError(f"{path}: expected {hi - lo} values of {name} for rows "
                                    f"{lo}..{hi}, found {len(values)}")
                fh.seek((k * n + lo) * ITEM)
                values.tofile(fh)
            filled += hi - lo
    if filled != n:
        raise DataError(f"{path}: expected features of {n} showers, found {filled}")
    return FeatureColumns(path, names, n)


def feature_rows(feats: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    """Rows ``lo:hi`` of every feature of ``feats`` (an in-memory dict or
    :class:`FeatureColumns`)."""
    if isinstance(feats, FeatureColumns):
        return feats.rows(lo, hi)
    return {name: values[lo:hi] for name, values in feats.items()}
