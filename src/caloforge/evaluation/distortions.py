"""Known distortions of showers: the test cards of a judge.

A metric can only be trusted at a sample size where it detects differences of the size one
cares about. These functions make such differences on purpose, from real (simulated or Geant4)
showers, so that ``benchmarks/judge_power.py`` and the tests can measure each classifier's power:

* :func:`scale_voxels`: every voxel energy times ``factor`` (1.02 / 1.05 / 1.10);
* :func:`widen_lateral`: the radial profile of every (layer, angle) row stretched by ``factor``
  (1.10 = a 10 % wider shower; energy beyond the last r edge stays in the last bin);
* :func:`move_layer_energy`: ``fraction`` of the most energetic layer's energy moved into the
  next layer (spread in proportion to that layer's own voxels);
* :func:`drop_voxels`: a random ``fraction`` of all voxels set to zero;
* :func:`shuffle_energies`: showers paired with the incident energies of other showers;

A *null pair* (two independent simulations) is the control every judge must pass.
Energies in MeV; every function returns a new :class:`~caloforge.data.ShowerSet` and leaves
its input unchanged. The showers keep their dtype: the arithmetic runs in float64 and the
result is stored back in the input's precision, because a judge compares against a
reference of that precision, and float32 against float64 is itself visible (layer sums and
widths summed in the file's dtype, as the official script does, differ in their last bits:
boosted trees on the cls-high vector tell float32 from float64 copies of the same dataset-2
showers at AUC 0.91). CaloGAN (cartesian) layers have no radial bins: :func:`widen_lateral`
leaves them as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from caloforge.data import ShowerSet
from caloforge.errors import ConfigError

__all__ = ["DISTORTIONS", "distort", "drop_voxels", "move_layer_energy", "scale_voxels",
           "shuffle_energies", "widen_lateral"]


def _like(x: np.ndarray, ss: ShowerSet) -> ShowerSet:
    """``x`` as the showers of ``ss`` (same incident energies, geometry and dtype)."""
    dtype = np.asarray(ss.showers[:0]).dtype
    return ShowerSet(ss.e_inc, x.astype(dtype, copy=False), ss.geometry)


def scale_voxels(ss: ShowerSet, factor: float) -> ShowerSet:
    """Every voxel energy multiplied by ``factor``."""
    return _like(np.asarray(ss.showers, dtype=np.float64) * factor, ss)


def _stretch_rows(rows: np.ndarray, edges: np.ndarray, factor: float) -> np.ndarray:
    """Radial energy profiles (M, n_r) on ``edges`` (n_r + 1,) stretched by ``factor``: the
    cumulative energy F(r) becomes F(r / factor), read at the bin edges (linear inside bins)."""
    cdf = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(rows, axis=1)], axis=1)
    src = np.clip(edges / factor, edges[0], edges[-1])
    pos = np.clip(np.searchsorted(edges, src, side="right") - 1, 0, len(edges) - 2)
    frac = (src - edges[pos]) / (edges[pos + 1] - edges[pos])
    new = cdf[:, pos] + frac * (cdf[:, pos + 1] - cdf[:, pos])
    new[:, -1] = cdf[:, -1]  # keep the total: what leaves the last edge stays in the last bin
    return np.diff(new, axis=1)


def widen_lateral(ss: ShowerSet, factor: float = 1.1) -> ShowerSet:
    """Every polar layer's radial profile stretched by ``factor`` (energy conserved)."""
    x = np.array(ss.showers, dtype=np.float64, copy=True)
    geo = ss.geometry
    for i, layer in enumerate(geo.layers):
        if layer.cartesian or len(layer.r_edges) < 3:
            continue
        sl = geo.layer_slice(i)
        n_alpha, n_r = layer.shape
        rows = x[:, sl].reshape(-1, n_r)
        x[:, sl] = _stretch_rows(rows, np.asarray(layer.r_edges, dtype=np.float64),
                                 factor).reshape(len(x), n_alpha * n_r)
    return _like(x, ss)


def move_layer_energy(ss: ShowerSet, fraction: float = 0.05, layer: int | None = None
                      ) -> ShowerSet:
    """``fraction`` of layer ``layer``'s energy (default: the layer with the largest mean
    energy that has a successor) moved to the next layer, shaped like that layer's voxels;
    showers whose next layer is empty keep their energy where it is."""
    x = np.array(ss.showers, dtype=np.float64, copy=True)
    geo = ss.geometry
    el = geo.layer_energies(x)
    if layer is None:
        layer = int(np.argmax(el[:, :-1].mean(axis=0)))
    if not 0 <= layer < geo.n_layers - 1:
        raise ConfigError(f"layer: expected an index in [0, {geo.n_layers - 2}], found {layer}")
    a, b = geo.layer_slice(layer), geo.layer_slice(layer + 1)
    moved = fraction * el[:, layer]
    ok = el[:, layer + 1] > 0
    x[ok, a] *= 1.0 - fraction
    x[ok, b] *= (1.0 + moved[ok] / el[ok, layer + 1])[:, None]
    return _like(x, ss)


def drop_voxels(ss: ShowerSet, fraction: float = 0.05, seed: int = 0) -> ShowerSet:
    """A random ``fraction`` of all voxels (of all showers) set to zero."""
    rng = np.random.default_rng(seed)
    x = np.array(ss.showers, dtype=np.float64, copy=True)
    x[rng.random(x.shape) < fraction] = 0.0
    return _like(x, ss)


def shuffle_energies(ss: ShowerSet, seed: int = 0) -> ShowerSet:
    """The showers with their incident energies permuted (E_inc no longer matches)."""
    rng = np.random.default_rng(seed)
    return ShowerSet(np.asarray(ss.e_inc)[rng.permutation(len(ss))], ss.showers, ss.geometry)


#: The judge benchmark's distortions by name (``null`` returns the showers unchanged).
DISTORTIONS: dict[str, Callable[[ShowerSet], ShowerSet]] = {
    "null": lambda ss: ss,
    "scale 1.02": lambda ss: scale_voxels(ss, 1.02),
    "scale 1.05": lambda ss: scale_voxels(ss, 1.05),
    "scale 1.10": lambda ss: scale_voxels(ss, 1.10),
    "lateral +10%": lambda ss: widen_lateral(ss, 1.10),
    "layer 5% to next": lambda ss: move_layer_energy(ss, 0.05),
    "5% voxels zeroed": lambda ss: drop_voxels(ss, 0.05),
    "energies shuffled": shuffle_energies,
}


def distort(ss: ShowerSet, name: str) -> ShowerSet:
    """Apply the distortion called ``name`` (a key of :data:`DISTORTIONS`)."""
    if name not in DISTORTIONS:
        raise ConfigError(f"distortion: expected one of {', '.join(DISTORTIONS)}, found {name!r}")
    return DISTORTIONS[name](ss)
