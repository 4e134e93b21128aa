"""``caloforge info PATH``: what a shower file, a model checkpoint or a training run holds.

* a run directory (``caloforge train -o RUN``): the model, and which training stages — for the
  layer-by-layer models, which layers — are done, in progress or not started, with the epochs
  and last losses (:mod:`caloforge.runinfo`; reads only the recipe and the metrics CSVs);
* a checkpoint (``RUN/model.pt``): the model, its geometry and parameter counts, and the run's
  stages when it sits in its run directory;
* a shower file: see below.

For a shower file it reads the file block by block (about 64 MB at a time), so it works on
files of any size, and prints the number of showers, the geometry, the incident-energy range
and its distinct values, a summary of E_tot/E_inc and the fraction of zero voxels per layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from caloforge.data import chunk_rows, inspect, iter_showers
from caloforge.geometry import DATASETS

ORDER = 10


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="summarise a shower file, a checkpoint or a training run",
                       description="Summarise a CaloChallenge or CaloGAN shower file, a model "
                                   "checkpoint (model.pt), or a training run directory (which "
                                   "stages or layers are done).")
    p.add_argument("file", help="HDF5 shower file, checkpoint .pt or run directory")
    p.add_argument("-d", "--dataset", default=None, metavar="NAME",
                   help=f"geometry: {', '.join(DATASETS)} or a binning XML file "
                        f"(default: inferred from the voxel count)")
    p.add_argument("--clip-negative", action="store_true",
                   help="set negative voxel energies to 0 instead of failing")
    return p


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir() or path.suffix == ".pt":
        from caloforge import runinfo

        for line in (runinfo.describe(path) if path.is_dir()
                     else runinfo.describe_checkpoint(path)):
            print(line)
        return 0
    info = inspect(args.file, args.dataset)
    geo = info.geometry
    e_all, ratio, nonzero = [], [], np.zeros(geo.n_layers)
    rows = chunk_rows(geo.n_voxels, info.dtype.itemsize)
    for chunk in iter_showers(args.file, rows, geo, clip_negative=args.clip_negative):
        e_all.append(chunk.e_inc)
        ratio.append(chunk.showers.sum(1, dtype=np.float64) / chunk.e_inc)
        for i in range(geo.n_layers):
            nonzero[i] += np.count_nonzero(chunk.showers[:, geo.layer_slice(i)])
    e = np.concatenate(e_all) if e_all else np.zeros(0)
    r = np.concatenate(ratio) if ratio else np.zeros(0)
    distinct = np.unique(e)
    print(f"file:        {info.path}")
    print(f"format:      {info.format} ({info.dtype}, compression {info.compression or 'none'})")
    print(f"showers:     {info.n_showers}")
    print(f"geometry:    {geo.name} ({geo.particle}), {geo.n_voxels} voxels, "
          f"{geo.n_layers} layers {geo.layer_ids}")
    if len(e):
        print(f"E_inc:       {e.min():.6g} .. {e.max():.6g} MeV, {len(distinct)} distinct values")
        if len(distinct) <= 20:
            counts = {f"{v:.6g}": int(c) for v, c in zip(*np.unique(e, return_counts=True),
                                                        strict=True)}
            print(f"             counts {counts}")
        q = np.quantile(r, [0.5])
        print(f"E_tot/E_inc: mean {r.mean():.4f}, std {r.std():.4f}, median {q[0]:.4f}, "
              f"min {r.min():.4f}, max {r.max():.4f}")
        print("sparsity:    fraction of zero voxels per layer")
        for i, layer in enumerate(geo.layers):
            frac0 = 1 - nonzero[i] / (len(e) * layer.n_voxels)
            print(f"  layer {layer.id:>2}: {frac0:.3f}  ({layer.n_voxels} voxels, "
                  f"{layer.shape[0]} x {layer.shape[1]})")
    return 0
