"""The official histogram binnings of the CaloChallenge evaluation, and the histograms.

Binnings (spec/EVALUATION.md §4; CaloChallenge ``evaluate_plotting_helper.py``), all MeV / mm:

* ``E_ratio`` = E_tot/E_inc: 100 bins on [0.5, 1.5];
* dataset 1, per incident energy 2^k MeV (k = 8..22, showers with 2^k <= E_inc < 2^(k+1)):
  20 bins on [0.4, 1.4], for photons from 4096 MeV upward on [0.9, 1.1];
* ``E_layer_<id>``: 39 log bins from the voxel threshold to the reference maximum;
* ``EC_eta``/``EC_phi``: 100 bins on ±30 (datasets 2/3), ±500 (dataset 1 layers 12, 13),
  ±100 (other dataset-1 layers); ``Width_eta``/``Width_phi``: [0, 30] / [0, 400] / [0, 100];
* ``EC_r``: [0, 42] / [0, 1500] (dataset 1 layers 12-14) / [0, 500]; ``Width_r``: [0, 20] /
  [0, 1500] / [0, 500] (100 bins each);
* ``sparsity_<id>``: 20 bins on [0, 1];
* ``voxel``: the spectrum of all voxel energies, 49 log bins from the threshold to the reference
  maximum.

Other geometries (CaloGAN, custom binning files) have no official binning: their linear
features get 100 bins over the reference range.
Entries outside a binning are dropped, as with ``numpy.histogram``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from caloforge.evaluation.separation import separation_power
from caloforge.geometry import Geometry

DS1 = ("1-photons", "1-pions")
DS23 = ("2", "3")
#: Feature-name prefixes of the high-level features, longest first.
KINDS = ("Width_eta", "Width_phi", "Width_r", "EC_eta", "EC_phi", "EC_r", "E_layer", "sparsity")
#: Axis labels of each kind.
LABELS = {"E_ratio": r"$E_\mathrm{tot}/E_\mathrm{inc}$", "E_layer": "E layer {} [MeV]",
          "EC_eta": r"centre of energy in $\eta$, layer {} [mm]",
          "EC_phi": r"centre of energy in $\phi$, layer {} [mm]",
          "EC_r": "centre of energy in r, layer {} [mm]",
          "Width_eta": r"width in $\eta$, layer {} [mm]",
          "Width_phi": r"width in $\phi$, layer {} [mm]", "Width_r": "width in r, layer {} [mm]",
          "sparsity": "sparsity, layer {}", "voxel": "voxel energy [MeV]"}


@dataclass
class Histogram:
    """Counts of the reference and generated samples on common bin edges.

    Attributes:
        name: Feature name (``E_ratio``, ``E_layer_12``, ``voxel``, ``E_ratio_E256`` ...).
        edges: Bin edges (feature units).
        ref, gen: Counts per bin.
        log: Whether the bins are logarithmic (plotted on a log x axis).
        label: Axis label.
    """

    name: str
    edges: np.ndarray
    ref: np.ndarray
    gen: np.ndarray
    log: bool = False
    label: str = ""

    @property
    def separation(self) -> float:
        """Separation power of the two histograms."""
        return separation_power(self.gen, self.ref)


def split_name(name: str) -> tuple[str, int | None]:
    """(kind, layer id) of a feature name, e.g. ``EC_eta_12`` -> (``EC_eta``, 12)."""
    for kind in KINDS:
        if name.startswith(kind + "_"):
            return kind, int(name[len(kind) + 1:])
    return name, None


def _official_range(kind: str, layer: int, dataset: str) -> tuple[float, float] | None:
    ds23 = dataset in DS23
    if kind in ("EC_eta", "EC_phi"):
        return (-30.0, 30.0) if ds23 else (-500.0, 500.0) if layer in (12, 13) else (-100.0, 100.0)
    if kind in ("Width_eta", "Width_phi"):
        return (0.0, 30.0) if ds23 else (0.0, 400.0) if layer in (12, 13) else (0.0, 100.0)
    if kind == "EC_r":
        return (0.0, 42.0) if ds23 else (0.0, 1500.0) if layer in (12, 13, 14) else (0.0, 500.0)
    if kind == "Width_r":
        return (0.0, 20.0) if ds23 else (0.0, 1500.0) if layer in (12, 13, 14) else (0.0, 500.0)
    return None


def log_edges(low: float, ref_values: np.ndarray, n_edges: int) -> np.ndarray:
    """``n_edges`` log-spaced edges from ``low`` (MeV; the smallest positive reference value
    when ``low`` is 0) to the reference maximum."""
    ref = np.asarray(ref_values)
    pos = ref[ref > 0]
    if low <= 0:
        low = float(pos.min()) if pos.size else 1e-3
    high = float(ref.max()) if ref.size else low
    if not high > low:
        high = low * 10.0
    return np.logspace(np.log10(low), np.log10(high), n_edges)


def _auto_range(ref: np.ndarray) -> tuple[float, float]:
    if ref.size == 0:
        return 0.0, 1.0
    lo, hi = float(ref.min()), float(ref.max())
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def feature_edges(name: str, geometry: Geometry, ref_values: np.ndarray,
                  threshold: float) -> tuple[np.ndarray, bool]:
    """Bin edges of a high-level feature and whether they are logarithmic."""
    kind, layer = split_name(name)
    official = geometry.name in DS1 + DS23
    if kind == "E_ratio":
        lim = (0.5, 1.5) if official else _auto_range(ref_values)
        return np.linspace(*lim, 101), False
    if kind in ("E_layer", "E_tot"):
        return log_edges(threshold, ref_values, 40), True
    if kind == "sparsity":
        return np.linspace(0.0, 1.0, 21), False
    lim = _official_range(kind, layer or 0, geometry.name) if official else None
    return np.linspace(*(lim or _auto_range(ref_values)), 101), False


def _label(name: str) -> str:
    kind, layer = split_name(name)
    return LABELS.get(kind, name).replace("{}", str(layer))


def histogram_feature(name: str, gen: np.ndarray, ref: np.ndarray, geometry: Geometry,
                      threshold: float) -> Histogram:
    """The histogram pair of one high-level feature on its official binning."""
    edges, log = feature_edges(name, geometry, ref, threshold)
    return Histogram(name, edges, np.histogram(ref, edges)[0], np.histogram(gen, edges)[0],
                     log, _label(name))


def hlf_histograms(gen: dict[str, np.ndarray], ref: dict[str, np.ndarray], geometry: Geometry,
                   threshold: float) -> dict[str, Histogram]:
    """Histograms of every high-level feature except ``E_tot`` (shown as ``E_ratio``)."""
    return {k: histogram_feature(k, gen[k], ref[k], geometry, threshold)
            for k in ref if k != "E_tot"}


def per_energy_histograms(gen_ratio: np.ndarray, gen_einc: np.ndarray, ref_ratio: np.ndarray,
                          ref_einc: np.ndarray, geometry: Geometry) -> dict[str, Histogram]:
    """Dataset 1: E_tot/E_inc per incident energy 2^k MeV, k = 8..22 (keys ``E_ratio_E<2^k>``).

    Energies where either sample has no shower are left out. Empty for other datasets.
    """
    if geometry.name not in DS1:
        return {}
    out = {}
    for i, k in enumerate(range(8, 23)):
        lo, hi = 2.0**k, 2.0 ** (k + 1)
        narrow = i > 3 and geometry.name == "1-photons"
        edges = np.linspace(0.9, 1.1, 21) if narrow else np.linspace(0.4, 1.4, 21)
        sel_r = (ref_einc >= lo) & (ref_einc < hi)
        sel_g = (gen_einc >= lo) & (gen_einc < hi)
        if not sel_r.any() or not sel_g.any():
            continue
        name = f"E_ratio_E{2**k}"
        out[name] = Histogram(name, edges, np.histogram(ref_ratio[sel_r], edges)[0],
                              np.histogram(gen_ratio[sel_g], edges)[0], False,
                              rf"$E_\mathrm{{tot}}/E_\mathrm{{inc}}$ at $E_\mathrm{{inc}}$ = "
                              f"{2**k} MeV")
    return out


def _row_blocks(showers: object, chunk: int) -> Iterator[np.ndarray]:
    """Blocks of about ``chunk`` values of a (N, n_voxels) array or file-backed array-like
    (other shapes: treated as one value per row)."""
    if not (hasattr(showers, "shape") and len(showers.shape) == 2):
        showers = np.asarray(showers)
        showers = showers.reshape(len(showers), -1) if showers.ndim >= 2 else \
            showers.reshape(-1, 1)
    rows = max(1, chunk // max(int(showers.shape[1]), 1))
    for lo in range(0, len(showers), rows):
        yield np.asarray(showers[lo:lo + rows])


def voxel_histogram(gen_showers: np.ndarray, ref_showers: np.ndarray, threshold: float,
                    chunk: int = 2**24) -> Histogram:
    """Spectrum of all voxel energies: 49 log bins from ``threshold`` to the reference max.

    Voxels below the threshold fall below the first edge and are dropped, so the raw values
    can be histogrammed directly. Both samples are read in row blocks of about ``chunk``
    values (arrays or file-backed :class:`~caloforge.diskset.DiskShowers`): one pass over the
    reference for its range, one pass over each sample for the counts.
    """
    high, pos_low, seen = None, None, False
    for block in _row_blocks(ref_showers, chunk):
        if not block.size:
            continue
        seen = True
        m = block.max()
        high = m if high is None else max(high, m)
        if threshold <= 0:
            pos = block[block > 0]
            if pos.size:
                p = pos.min()
                pos_low = p if pos_low is None else min(pos_low, p)
    if threshold > 0:
        edges = log_edges(threshold, np.array([high if seen else 0.0]), 50)
    else:  # the smallest positive and the largest reference value fix the edges
        values = ([] if pos_low is None else [pos_low]) + ([high] if seen else [])
        edges = log_edges(0.0, np.array(values), 50)

    def counts(showers: object) -> np.ndarray:
        total = np.zeros(len(edges) - 1, dtype=np.int64)
        for block in _row_blocks(showers, chunk):
            total += np.histogram(block.ravel(), edges)[0]
        return total

    return Histogram("voxel", edges, counts(ref_showers), counts(gen_showers), True,
                     LABELS["voxel"])
