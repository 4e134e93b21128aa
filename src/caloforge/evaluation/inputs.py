"""Classifier / FPD input vectors of the CaloChallenge evaluation (spec/EVALUATION.md §4).

* ``cls-low``: ``[log10 E_inc, x_v / E_inc for every voxel]`` (dim 1 + n_voxels; the 2022
  version of evaluate.py used ``100 x_v / E_inc``, the current one ``x_v / E_inc``);
* ``cls-low-normed``: ``[log10 E_inc, x_v / (E_l + 1e-16) for every voxel,
  log10(E_l + 1e-8) for every layer]`` (dim 1 + n_voxels + n_layers);
* ``cls-high``, also the FPD/KPD vector (the official code passes this array without its
  label column): ``[log10 E_inc, log10(E_l + 1e-8) for every layer,
  EC_eta/100, EC_phi/100, Width_eta/100, Width_phi/100 (angle-binned layers),
  log10(E_tot + 1e-8), sparsity, EC_r/100, Width_r/100 (every layer)]`` -> dim 30 (DS1 photons),
  46 (DS1 pions), 362 (DS2/3).

* ``cls-gbdt-high``: the ``cls-high`` vector; ``cls-gbdt-low``: the ``cls-low`` vector plus
  ``log10(E_l + 1e-8)`` for every layer, ``log10(E_tot + 1e-8)`` and ``E_tot / E_inc``
  (dim 1 + n_voxels + n_layers + 2; see :mod:`caloforge.evaluation.gbdt`).
* ``cls-resnet``: the ``cls-low`` vector, reshaped to the (layer, alpha, r) image by the network
  (:mod:`caloforge.evaluation.resnet`).

Voxels are thresholded at the official value first; energies in MeV, positions in mm.
Low-level inputs are float32 (dataset 3 would need 32 GB in float64).

``cls-low-normed`` beside the official script. Facts from the two versions of
``code/evaluate.py`` stored for the CaloChallenge/homepage repository (commits ff49275 and
04b79ce, both before 2024) and its ``code/HighLevelFeatures.py`` (commit 0d10232); the 2024
head of the script, which the project spec (spec/EVALUATION.md section 4) says zeroes the
voxels of both files below ``min_energy`` after reading them, could not be read here:

* the official input is ``[log10 E_inc, x_v / (E_l + 1e-16), log10(E_l + 1e-8)]`` with
  ``E_l`` taken from the ``HighLevelFeatures`` object of that side (``GetElayers()``), i.e.
  the layer sums its ``CalculateFeatures`` made of the same shower array: voxels are divided
  by their own layer's sum, not by ``E_inc``, and there is no factor 100 (only ``cls-low`` had
  one, in 04b79ce);
* in both stored versions ``min_energy`` (10 MeV for dataset 1, 0.5 keV / 0.033 for datasets
  2/3) only sets the lower edge of the log-binned histograms: no voxel is zeroed before the
  classifier inputs, so sub-threshold voxels count in ``x_v`` and in ``E_l``;
* ``CalculateFeatures`` sums the array as read from the file, in its dtype (float32 for the
  official dataset-2/3 files): ``E_l`` of the official normed input is a float32 sum;
* the reference's features come from the cached ``<reference>.pkl`` when that file exists
  (recomputed only if it holds no ``E_tot``), while its voxels are read from the HDF5 file
  again: a cache written by another script version or threshold gives the reference
  ``E_l`` that do not belong to its voxels.

caloforge thresholds first (1 MeV dataset 1, 15.15 keV datasets 2/3), then divides by the
sums of the thresholded voxels, summed in float64 (not in the file's dtype as
:func:`~caloforge.features.high_level_features` does by default), and always recomputes both
sides. Where the official script thresholds the same way (the 2024 head, per the spec) the
two inputs agree up to float32 rounding of ``E_l`` (~1e-7 relative). Against the stored
versions they differ: on simulated dataset-1 photons 9 % of the non-zero voxels lie below
1 MeV, thresholding changes the normed input of 99.5 % of the showers (median largest change
0.011 in ``log10 E_l``; up to 8.3 where a layer holds only sub-threshold energy and becomes
``log10(1e-8)``), so AUCs from the two are not comparable on such files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from caloforge.data import ShowerSet
from caloforge.evaluation.feature_store import feature_rows
from caloforge.features import CHUNK_VALUES, apply_threshold, high_level_features
from caloforge.geometry import Geometry

MODES = ("cls-low", "cls-low-normed", "cls-high", "cls-gbdt-low", "cls-gbdt-high",
         "cls-resnet")


def high_level_vector(feats: Mapping[str, np.ndarray], ss: ShowerSet) -> np.ndarray:
    """The ``cls-high`` input (N, d) in float64 from features of :func:`high_level_features`."""
    return _high_level(feats, np.asarray(ss.e_inc, dtype=np.float64), ss.geometry)


def _high_level(feats: Mapping[str, np.ndarray], e_inc: np.ndarray, geo: Geometry
                ) -> np.ndarray:
    ids = geo.layer_ids
    angled = [lyr.id for lyr in geo.layers if lyr.binned_in_angle]
    cols = [np.log10(e_inc)]
    cols += [np.log10(feats[f"E_layer_{i}"] + 1e-8) for i in ids]
    for kind in ("EC_eta", "EC_phi", "Width_eta", "Width_phi"):
        cols += [feats[f"{kind}_{i}"] / 100.0 for i in angled]
    cols.append(np.log10(feats["E_tot"] + 1e-8))
    cols += [feats[f"sparsity_{i}"] for i in ids]
    cols += [feats[f"EC_r_{i}"] / 100.0 for i in ids]
    cols += [feats[f"Width_r_{i}"] / 100.0 for i in ids]
    return np.stack(cols, axis=1)


#: Values per block of :func:`high_level_blocks` (8 MB of float64).
HIGH_LEVEL_BLOCK_VALUES = 2**20


def high_level_blocks(feats: Mapping[str, np.ndarray], ss: ShowerSet
                      ) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, rows lo:hi of the cls-high input)`` in float64, block by block: the values
    of :func:`high_level_vector` without the (N, d) array; ``feats`` may be a
    :class:`~caloforge.evaluation.feature_store.FeatureColumns` on disk."""
    geo = ss.geometry
    e_inc = np.asarray(ss.e_inc, dtype=np.float64)
    step = max(1, HIGH_LEVEL_BLOCK_VALUES // max(len(feats), 1))  # ~ the vector's width
    for lo in range(0, len(ss), step):
        hi = min(lo + step, len(ss))
        yield lo, hi, _high_level(feature_rows(feats, lo, hi), e_inc[lo:hi], geo)


def _rows_per_block(n_voxels: int) -> int:
    return max(1, CHUNK_VALUES // max(n_voxels, 1))


def low_level_blocks(ss: ShowerSet, threshold: float, normed: bool = False
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, rows lo:hi of the cls-low / cls-low-normed input)`` in float32, block by
    block (``ss.showers`` is only read one block at a time)."""
    geo = ss.geometry
    dim = 1 + geo.n_voxels + (geo.n_layers if normed else 0)
    e_inc = np.asarray(ss.e_inc, dtype=np.float64)
    rows = _rows_per_block(geo.n_voxels)
    sizes = [lyr.n_voxels for lyr in geo.layers]
    for lo in range(0, len(ss), rows):
        hi = min(lo + rows, len(ss))
        out = np.empty((hi - lo, dim), dtype=np.float32)
        out[:, 0] = np.log10(e_inc[lo:hi])
        x = apply_threshold(ss.showers[lo:hi], threshold)
        if normed:
            el = geo.layer_energies(x)
            out[:, 1:1 + geo.n_voxels] = x / (np.repeat(el, sizes, axis=1) + 1e-16)
            out[:, 1 + geo.n_voxels:] = np.log10(el + 1e-8)
        else:
            out[:, 1:] = x / e_inc[lo:hi, None]
        yield lo, hi, out


def gbdt_low_blocks(ss: ShowerSet, threshold: float) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, rows lo:hi of the cls-gbdt-low input)`` in float32, block by block."""
    geo = ss.geometry
    nv, nl = geo.n_voxels, geo.n_layers
    e_inc = np.asarray(ss.e_inc, dtype=np.float64)
    rows = _rows_per_block(nv)
    for lo in range(0, len(ss), rows):
        hi = min(lo + rows, len(ss))
        out = np.empty((hi - lo, 1 + nv + nl + 2), dtype=np.float32)
        out[:, 0] = np.log10(e_inc[lo:hi])
        x = apply_threshold(ss.showers[lo:hi], threshold)
        el = geo.layer_energies(x)
        e_tot = el.sum(axis=1)
        out[:, 1:1 + nv] = x / e_inc[lo:hi, None]
        out[:, 1 + nv:1 + nv + nl] = np.log10(el + 1e-8)
        out[:, -2] = np.log10(e_tot + 1e-8)
        out[:, -1] = e_tot / e_inc[lo:hi]
        yield lo, hi, out


def _fill(n: int, blocks: Iterator[tuple[int, int, np.ndarray]]) -> np.ndarray:
    out = None
    for lo, hi, block in blocks:
        if out is None:
            out = np.empty((n, block.shape[1]), dtype=block.dtype)
        out[lo:hi] = block
    return out


def low_level_vector(ss: ShowerSet, threshold: float, normed: bool = False) -> np.ndarray:
    """The ``cls-low`` (or ``cls-low-normed``) input (N, d) in float32, built chunk by chunk."""
    geo = ss.geometry
    dim = 1 + geo.n_voxels + (geo.n_layers if normed else 0)
    out = _fill(len(ss), low_level_blocks(ss, threshold, normed))
    return out if out is not None else np.empty((0, dim), dtype=np.float32)


def gbdt_low_vector(ss: ShowerSet, threshold: float) -> np.ndarray:
    """The ``cls-gbdt-low`` input (N, d) in float32: ``cls-low`` plus layer and total sums."""
    geo = ss.geometry
    out = _fill(len(ss), gbdt_low_blocks(ss, threshold))
    return out if out is not None else np.empty((0, 1 + geo.n_voxels + geo.n_layers + 2),
                                                dtype=np.float32)


def input_blocks(mode: str, ss: ShowerSet, threshold: float,
                 feats: Mapping[str, np.ndarray] | None = None
                 ) -> Iterator[tuple[int, int, np.ndarray]]:
    """The input of classifier ``mode`` for ``ss`` as ``(lo, hi, rows lo:hi)`` blocks (the
    values of :func:`classifier_input`, never the whole array of voxel inputs at once)."""
    if mode == "cls-gbdt-low":
        yield from gbdt_low_blocks(ss, threshold)
    elif mode in ("cls-high", "cls-gbdt-high"):
        yield from high_level_blocks(feats if feats is not None
                                     else high_level_features(ss, threshold), ss)
    else:
        yield from low_level_blocks(ss, threshold, normed=mode == "cls-low-normed")


def classifier_input(mode: str, ss: ShowerSet, threshold: float,
                     feats: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The input array of classifier ``mode`` (one of :data:`MODES`) for ``ss``."""
    if mode == "cls-gbdt-low":
        return gbdt_low_vector(ss, threshold)
    if mode in ("cls-high", "cls-gbdt-high"):
        return high_level_vector(feats if feats is not None
                                 else high_level_features(ss, threshold), ss)
    return low_level_vector(ss, threshold, normed=mode == "cls-low-normed")
