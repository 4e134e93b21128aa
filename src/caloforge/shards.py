"""Sharded generation: K processes (``torchrun``) each write a slice of one output file.

Rank ``r`` of ``K`` takes the contiguous slice :func:`shard_slice` of the incident energies and
samples it with its own seed (:func:`shard_seed`, independent streams from one user seed), into
a complete, atomically written *shard file* (:func:`shard_path`, next to the output, with the
attributes ``shard_index``, ``shard_count``, ``shard_start``, ``total_rows``). Rank 0 then joins
the shards in rank order into the CaloChallenge file (:func:`merge_shards`, atomic: the output
appears only when every shard was read) and deletes them; ``caloforge merge`` does the same by
hand (e.g. when the nodes of a multi-node run do not share a filesystem). The same seed, the
same K and the same device type give the same file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from caloforge.data import ShowerWriter, inspect, iter_showers
from caloforge.errors import DataError, GeometryError

#: Attributes a shard file carries (and the merged file does not).
SHARD_ATTRS = ("shard_index", "shard_count", "shard_start", "total_rows")

__all__ = ["SHARD_ATTRS", "merge_shards", "shard_path", "shard_seed", "shard_slice"]


def shard_slice(n: int, rank: int, world: int) -> slice:
    """Rows of shard ``rank`` of ``world`` in ``n`` (contiguous; sizes differ by <= 1)."""
    return slice(rank * n // world, (rank + 1) * n // world)


def shard_seed(seed: int, rank: int, world: int) -> int:
    """The sampling seed of shard ``rank``: ``seed`` itself for one process, otherwise an
    independent stream spawned from ``(seed, world)`` (``numpy.random.SeedSequence``)."""
    if world == 1:
        return int(seed)
    child = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(world)]).spawn(world)[rank]
    return int(child.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)


def shard_path(output: str | os.PathLike, rank: int, world: int) -> Path:
    """``gen.h5`` -> ``gen.h5.shard-0-of-4`` (same directory)."""
    out = Path(output)
    return out.with_name(f"{out.name}.shard-{rank}-of-{world}")


def _shard_attrs(path: Path) -> dict:
    try:
        with h5py.File(path, "r") as fh:
            attrs = {k: fh.attrs[k] for k in fh.attrs}
    except OSError as exc:
        raise DataError(f"{path}: expected a readable shard file, found "
                        f"{' '.join(str(exc).split())[:120]}") from None
    missing = [k for k in SHARD_ATTRS if k not in attrs]
    if missing:
        raise DataError(f"{path}[attrs.{missing[0]}]: expected a shard written by a sharded "
                        f"`caloforge generate`, found no {missing[0]} attribute")
    return attrs


def merge_shards(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                 overwrite: bool = False, delete: bool = False,
                 chunk: int = 10_000) -> Path:
    """Join the shard files ``paths`` (any order) into ``output``, atomically.

    Checks that the shards are one complete set: the same ``shard_count`` K and
    ``total_rows``, every index 0..K-1 exactly once, each holding the rows it claims, one
    geometry. Showers are copied ``chunk`` at a time (bounded memory). With ``delete`` the
    shards are removed once the output exists.

    Raises:
        DataError / GeometryError: a missing, duplicated, damaged or foreign shard (one line
            naming the shard or the missing index, expected and found).
    """
    paths = [Path(p) for p in paths]
    out = Path(output)
    if not paths:
        raise DataError(f"{out}: expected shard files to merge, found none")
    shards = {}
    first = None
    for p in paths:
        attrs = _shard_attrs(p)
        k, i = int(attrs["shard_count"]), int(attrs["shard_index"])
        info = inspect(p)
        if first is None:
            first = (k, int(attrs["total_rows"]), info, p)
        fk, total, finfo, fpath = first
        if k != fk or int(attrs["total_rows"]) != total:
            raise DataError(f"{p}[attrs.shard_count]: expected {fk} shards of {total} showers "
                            f"(like {fpath}), found {k} shards of {int(attrs['total_rows'])}")
        if info.geometry.name != finfo.geometry.name:
            raise GeometryError(f"{p}[showers]: expected geometry {finfo.geometry.name} (like "
                                f"{fpath}), found {info.geometry.name}")
        if i in shards:
            raise DataError(f"{p}[attrs.shard_index]: expected each shard once, found shard "
                            f"{i} also in {shards[i][0]}")
        want = shard_slice(total, i, k)
        if info.n_showers != want.stop - want.start or int(attrs["shard_start"]) != want.start:
            raise DataError(f"{p}[showers]: expected rows {want.start}..{want.stop} "
                            f"({want.stop - want.start} showers) of shard {i}/{k}, found "
                            f"{info.n_showers} showers from row {int(attrs['shard_start'])}")
        shards[i] = (p, attrs, info)
    k, total, finfo, _ = first
    missing = [i for i in range(k) if i not in shards]
    if missing:
        i = missing[0]
        want = shard_slice(total, i, k)
        raise DataError(f"{shard_path(out, i, k)}: expected shard {i} of {k} (rows "
                        f"{want.start}..{want.stop}), found no such shard among "
                        f"{len(shards)} given ({len(missing)} missing)")
    attrs = {key: v for key, v in shards[0][1].items() if key not in SHARD_ATTRS}
    attrs["shards"] = k
    with ShowerWriter(out, finfo.geometry, overwrite=overwrite, attrs=attrs, n_rows=total,
                      dtype=finfo.dtype, compression=finfo.compression) as w:
        for i in range(k):
            for part in iter_showers(shards[i][0], chunk):
                w.append(part.e_inc, part.showers)
    if delete:
        for p, _, _ in shards.values():
            p.unlink(missing_ok=True)
    return out
