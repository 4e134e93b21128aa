"""High-level shower features of the CaloChallenge evaluation.

For a shower ``x`` (voxel energies in MeV, below-threshold voxels set to 0) and a layer ``l``
with voxels ``v`` at centres ``(eta_v, phi_v, r_v)`` (mm, see :meth:`Geometry.centres`):

* ``E_tot = sum_v x_v`` (MeV) and ``E_ratio = E_tot / E_inc``;
* ``E_layer_<id> = E_l = sum_{v in l} x_v`` (MeV);
* ``EC_c_<id> = sum_v c_v x_v / (E_l + 1e-16)`` (mm) for ``c`` in eta, phi (only layers binned
  in angle) and r (every layer); an empty layer gives 0;
* ``Width_c_<id> = sqrt(max(0, sum_v c_v^2 x_v / (E_l + 1e-16) - EC_c^2))`` (mm);
* ``sparsity_<id> = 1 - (fraction of voxels of l with x_v > 0)``.

Sums. The official ``evaluate.py`` sums voxels into ``E_tot`` and ``E_l`` in the dtype the file
stores (float32 for the official dataset-2/3 files) and divides the moments by those sums.
caloforge does the same by default (``sums="file"``), so its separation powers reproduce the
official ones on float32 files as well; ``sums="float64"`` sums in double precision instead
(on float32 dataset-2 files about a tenth of the histograms then differ from the official
ones, by up to a few per cent, mostly in sparsely filled bins). For float64 data the two agree.
Two sets stored in different dtypes are compared with both summed in the reference's dtype
(:func:`pair_sums`): otherwise the storage dtype alone is visible to a classifier.

The keys use layer *ids* (``E_layer_12`` is ATLAS sampling 12 of dataset 1). Everything is
vectorised and computed in float64, chunk by chunk, so dataset 3 (40,500 voxels) never needs
more than a few hundred MB.

Reference: CaloChallenge ``HighLevelFeatures.py`` (CaloChallenge/homepage) as described in
``spec/EVALUATION.md`` section 3; the voxel threshold is the official one per dataset
(:attr:`Geometry.eval_threshold`: 1 MeV for dataset 1, 15.15 keV for datasets 2 and 3).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from caloforge.data import ShowerSet
from caloforge.errors import DataError
from caloforge.geometry import Geometry

#: Regulator added to layer energies before dividing (as in the official code).
EPS = 1e-16
#: Voxel values per float64 work chunk (about 256 MB).
CHUNK_VALUES = 2**25


def apply_threshold(showers: np.ndarray, threshold: float) -> np.ndarray:
    """A float64 copy of ``showers`` with every voxel ``< threshold`` (MeV) set to 0."""
    x = np.array(showers, dtype=np.float64, copy=True)
    if threshold > 0:
        x[x < threshold] = 0.0
    return x


def feature_names(geometry: Geometry) -> list[str]:
    """The keys of :func:`high_level_features` for ``geometry``, in a fixed order."""
    names = ["E_tot", "E_ratio"]
    ids = geometry.layer_ids
    names += [f"E_layer_{i}" for i in ids]
    angled = [lyr.id for lyr in geometry.layers if lyr.binned_in_angle]
    for kind in ("EC_eta", "EC_phi", "Width_eta", "Width_phi"):
        names += [f"{kind}_{i}" for i in angled]
    for kind in ("EC_r", "Width_r", "sparsity"):
        names += [f"{kind}_{i}" for i in ids]
    return names


def _moments(x: np.ndarray, e: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted mean and width of coordinate ``c`` (mm) over one layer chunk."""
    mean = (x @ c) / (e + EPS)
    second = (x @ (c * c)) / (e + EPS)
    return mean, np.sqrt(np.clip(second - mean * mean, 0.0, None))


#: Choices of ``sums``: the storage dtype, or a fixed one.
SUMS = ("file", "float64", "float32")


def pair_sums(generated: ShowerSet, reference: ShowerSet, sums: str = "file") -> str:
    """The ``sums`` under which two sets are compared: ``sums`` itself, except that ``file``
    becomes the reference's storage dtype for both sides when the two sets are stored in
    different dtypes.

    Summing each side in its own dtype is a signal of its own: boosted trees on the
    high-level features told the same dataset-2 showers stored as float64 from their float32
    originals with AUC 0.91 (2,000 per side). Summing both in the reference's dtype is what
    the official script computes for a generated file written in the reference's dtype."""
    if sums != "file":
        return sums
    dg, dr = (np.asarray(x.showers[:0]).dtype for x in (generated, reference))
    if dg == dr or dr.kind != "f":
        return "file"
    return "float64" if dr == np.float64 else "float32"


def _chunk_features(x: np.ndarray, e_inc: np.ndarray, geometry: Geometry,
                    centres: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    sum_dtype: np.dtype) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    xs = x if sum_dtype == np.float64 else x.astype(sum_dtype)
    e_tot = xs.sum(axis=1).astype(np.float64)
    out["E_tot"] = e_tot
    out["E_ratio"] = e_tot / e_inc
    for i, layer in enumerate(geometry.layers):
        xl = x[:, geometry.layer_slice(i)]
        el = xs[:, geometry.layer_slice(i)].sum(axis=1).astype(np.float64)
        lid = layer.id
        out[f"E_layer_{lid}"] = el
        eta, phi, r = centres[i]
        if layer.binned_in_angle:
            out[f"EC_eta_{lid}"], out[f"Width_eta_{lid}"] = _moments(xl, el, eta)
            out[f"EC_phi_{lid}"], out[f"Width_phi_{lid}"] = _moments(xl, el, phi)
        out[f"EC_r_{lid}"], out[f"Width_r_{lid}"] = _moments(xl, el, r)
        out[f"sparsity_{lid}"] = 1.0 - (xl > 0).mean(axis=1)
    return out


def high_level_features(ss: ShowerSet, threshold: float | None = None, sums: str = "file"
                        ) -> dict[str, np.ndarray]:
    """The CaloChallenge high-level features of every shower, each an array of shape (N,).

    Args:
        ss: Showers (MeV) with their incident energies (MeV) and geometry.
        threshold: Voxel threshold in MeV; voxels below it count as 0. ``None`` uses the
            official value of the dataset, ``ss.geometry.eval_threshold``.
        sums: ``file`` (default, as the official script: ``E_tot`` and ``E_l`` summed in the
            voxels' storage dtype), ``float64`` or ``float32``; see the module doc and
            :func:`pair_sums` for comparing two sets.

    Returns:
        A dict keyed as in :func:`feature_names`: ``E_tot`` (MeV), ``E_ratio``,
        ``E_layer_<id>`` (MeV), ``EC_eta_<id>``, ``EC_phi_<id>``, ``Width_eta_<id>``,
        ``Width_phi_<id>`` (angle-binned layers), ``EC_r_<id>``, ``Width_r_<id>`` (mm) and
        ``sparsity_<id>`` (every layer), all float64.

    Example:
        >>> from caloforge.geometry import Geometry
        >>> g = Geometry.preset("1-photons")
        >>> ss = ShowerSet(np.array([1000.0]), np.full((1, 368), 2.0), g)
        >>> float(high_level_features(ss)["E_ratio"][0])
        0.736
    """
    n = len(ss)
    names = feature_names(ss.geometry)
    out = {k: np.empty(n, dtype=np.float64) for k in names}
    for lo, hi, part in feature_blocks(ss, threshold, sums):
        for k in names:
            out[k][lo:hi] = part[k]
    return out


def feature_blocks(ss: ShowerSet, threshold: float | None = None, sums: str = "file"
                   ) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """The features of :func:`high_level_features` as ``(lo, hi, features of rows lo:hi)``,
    block by block (about :data:`CHUNK_VALUES` voxel values each), for callers that keep them
    elsewhere than in memory (:mod:`caloforge.evaluation.feature_store`)."""
    geo = ss.geometry
    thr = geo.eval_threshold if threshold is None else float(threshold)
    if not np.isfinite(thr) or thr < 0:
        raise DataError(f"threshold: expected a finite value >= 0 MeV, found {threshold}")
    if sums not in SUMS:
        raise DataError(f"sums: expected one of {', '.join(SUMS)}, found {sums!r}")
    dtype = np.asarray(ss.showers[:0]).dtype
    if sums == "file":
        sum_dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    else:
        sum_dtype = np.dtype(sums)
    n = len(ss)
    centres = [layer.centres() for layer in geo.layers]
    e_inc = np.asarray(ss.e_inc, dtype=np.float64)
    rows = max(1, CHUNK_VALUES // max(geo.n_voxels, 1))
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        x = apply_threshold(ss.showers[lo:hi], thr)
        yield lo, hi, _chunk_features(x, e_inc[lo:hi], geo, centres, sum_dtype)
