"""Calorimeter geometries: CaloChallenge binning files and the CaloGAN grid.

A :class:`Geometry` is an ordered list of readout layers. Each layer is either

* **polar** (CaloChallenge): ``n_alpha`` equal angular slices of [-pi, pi) times radial bins
  given by ``r_edges`` (mm); voxels ordered (alpha, r) with r fastest, or
* **cartesian** (CaloGAN): an ``n_phi x n_eta`` grid of cells of size ``cell_eta x cell_phi``
  (mm) centred on the shower axis; voxels ordered (phi, eta) with eta fastest, exactly the C
  order of CaloGAN's ``layer_i`` arrays of shape (N, n_phi, n_eta).

How Cartesian cells fit the polar abstraction: a layer is always a 2-D image of shape
``(n_slow, n_fast)`` (:attr:`Layer.shape`) and the voxel vector is the concatenation of the
C-ordered layer images. For a polar layer ``(n_slow, n_fast) = (n_alpha, n_r)``; for a cartesian
layer ``(n_slow, n_fast) = (n_phi, n_eta)``, i.e. the phi rows take the place of the alpha
slices and the eta columns the place of the radial bins. Nothing else is mapped: a cartesian
layer has no ``r_edges`` and ``n_alpha == 1``; its radius is derived from the cell centre. The
CaloGAN cells tile the same 480 x 480 mm^2 square in every layer (3 x 160, 12 x 40, 12 x 40 mm
in phi; 96 x 5, 12 x 40, 6 x 80 mm in eta), so cell centres of different layers are directly
comparable. The three CaloGAN ``overflow`` values are not voxels.

Every voxel has centre coordinates (eta, phi, r) in mm, so features and evaluation never ask
which kind a layer is. For polar layers ``eta = r_mid cos(alpha_mid)``,
``phi = r_mid sin(alpha_mid)`` with ``r_mid`` the radial bin midpoint and
``alpha_mid = -pi + (j + 1/2) 2 pi / n_alpha`` (``alpha_mid = 0`` when ``n_alpha == 1``), as in
the CaloChallenge ``XMLHandler``; for cartesian layers eta and phi are the cell centres and
``r = sqrt(eta^2 + phi^2)``.

References:
    CaloChallenge 2022 binning files (CaloChallenge/homepage, ``code/binning_dataset_*.xml``).
    M. Paganini, L. de Oliveira, B. Nachman, "CaloGAN", arXiv:1705.02355.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caloforge.errors import GeometryError

#: The ``--dataset`` names understood by every command.
DATASETS = ("1-photons", "1-pions", "2", "3", "calogan")

_XML_FILES = {
    "1-photons": "binning_dataset_1_photons.xml",
    "1-pions": "binning_dataset_1_pions.xml",
    "2": "binning_dataset_2.xml",
    "3": "binning_dataset_3.xml",
}

#: Official evaluation voxel threshold in MeV (CaloChallenge evaluate.py): 1 MeV for dataset 1,
#: 15.15 keV (= 0.5 keV / 0.033 sampling fraction) for datasets 2 and 3. For CaloGAN no
#: threshold was used by the original analysis, so 0.
EVAL_THRESHOLD_MEV = {"1-photons": 1.0, "1-pions": 1.0, "2": 0.5e-3 / 0.033,
                      "3": 0.5e-3 / 0.033, "calogan": 0.0}


@dataclass(frozen=True)
class Layer:
    """One readout layer.

    Attributes:
        id: Layer id (CaloChallenge: ATLAS sampling id; CaloGAN: 0..2).
        r_edges: Radial bin edges in mm (polar layers; empty for cartesian ones).
        n_alpha: Number of angular slices (polar layers).
        n_eta, n_phi: Grid size (cartesian layers).
        cell_eta, cell_phi: Cell size in mm (cartesian layers).
    """

    id: int
    r_edges: tuple[float, ...] = ()
    n_alpha: int = 1
    n_eta: int = 0
    n_phi: int = 0
    cell_eta: float = 0.0
    cell_phi: float = 0.0

    @property
    def cartesian(self) -> bool:
        return self.n_eta > 0

    @property
    def shape(self) -> tuple[int, int]:
        """(slow, fast) axis sizes: (n_alpha, n_r) or (n_phi, n_eta)."""
        if self.cartesian:
            return (self.n_phi, self.n_eta)
        return (self.n_alpha, max(len(self.r_edges) - 1, 0))

    @property
    def n_voxels(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def binned_in_angle(self) -> bool:
        """Whether eta/phi centres and widths are meaningful (CaloChallenge: n_alpha > 1)."""
        return self.cartesian or self.n_alpha > 1

    def centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel centres (eta, phi, r) in mm, each of shape (n_voxels,), in voxel order."""
        if self.cartesian:
            eta_c = (np.arange(self.n_eta) + 0.5 - self.n_eta / 2) * self.cell_eta
            phi_c = (np.arange(self.n_phi) + 0.5 - self.n_phi / 2) * self.cell_phi
            phi, eta = np.meshgrid(phi_c, eta_c, indexing="ij")
            eta, phi = eta.ravel(), phi.ravel()
            return eta, phi, np.hypot(eta, phi)
        edges = np.asarray(self.r_edges)
        r_mid = 0.5 * (edges[1:] + edges[:-1])
        if self.n_alpha == 1:
            alpha_mid = np.zeros(1)
        else:
            alpha_mid = -math.pi + (np.arange(self.n_alpha) + 0.5) * 2 * math.pi / self.n_alpha
        alpha, r = np.meshgrid(alpha_mid, r_mid, indexing="ij")
        alpha, r = alpha.ravel(), r.ravel()
        return r * np.cos(alpha), r * np.sin(alpha), r


@dataclass(frozen=True)
class Geometry:
    """An ordered stack of readout layers (only layers that have voxels).

    Example:
        >>> g = Geometry.preset("1-photons")
        >>> g.n_voxels, [l.id for l in g.layers]
        (368, [0, 1, 2, 3, 12])
    """

    name: str
    particle: str
    layers: tuple[Layer, ...]
    eval_threshold: float = 0.0
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offs = [0]
        for layer in self.layers:
            offs.append(offs[-1] + layer.n_voxels)
        object.__setattr__(self, "_offsets", tuple(offs))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> Geometry:
        """The geometry of a named dataset: one of :data:`DATASETS` (cached; immutable)."""
        if name not in DATASETS:
            raise GeometryError(
                f"--dataset: expected one of {', '.join(DATASETS)}, found {name!r}"
            )
        return _preset(name)

    @classmethod
    def resolve(cls, spec: Geometry | str | Path | None) -> Geometry | None:
        """A geometry from a preset name, a binning XML path or a :class:`Geometry`."""
        if spec is None or isinstance(spec, Geometry):
            return spec
        if str(spec) in DATASETS:
            return cls.preset(str(spec))
        if str(spec).endswith(".xml") or Path(spec).is_file():
            return cls.from_xml(spec)
        raise GeometryError(
            f"--dataset: expected one of {', '.join(DATASETS)} or a binning XML file, "
            f"found {str(spec)!r}"
        )

    @classmethod
    def from_xml(cls, path: str | Path, name: str | None = None) -> Geometry:
        """Parse a CaloChallenge binning XML file (any user path works)."""
        path = Path(path)
        if not path.is_file():
            raise GeometryError(f"{path}: expected a binning XML file, found no such file")
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise GeometryError(f"{path}: expected well-formed XML, found {exc}") from None
        except (OSError, ValueError) as exc:  # unreadable, or undecodable bytes
            raise GeometryError(f"{path}: expected a readable XML file, found "
                                f"{type(exc).__name__}: {exc}") from None
        bins = root.findall("Bin") if root.tag != "Bin" else [root]
        if not bins:
            raise GeometryError(f"{path}[Bin]: expected a <Bin> element, found none")
        bin_el = bins[0]
        particle = bin_el.get("name", "unknown")
        layers = []
        for el in bin_el.findall("Layer"):
            layers.append(_parse_layer(path, el))
        ids = [lyr.id for lyr in layers]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise GeometryError(f"{path}[Layer@id]: expected unique layer ids, found id {dup} "
                                f"twice")
        layers = [lyr for lyr in layers if lyr.n_voxels > 0]
        if not layers:
            raise GeometryError(f"{path}[Layer]: expected a layer with r bins, found none")
        if name is None:
            name = path.stem
            # a copy of an official file is that preset (same name, evaluation threshold)
            preset = _STEM_TO_PRESET.get(path.stem)
            if preset is not None and _preset(preset).layers == tuple(layers):
                name = preset
        return cls(name=name, particle=particle, layers=tuple(layers),
                   eval_threshold=EVAL_THRESHOLD_MEV.get(name, 0.0))

    @classmethod
    def for_voxels(cls, n_voxels: int, source: object = None) -> Geometry:
        """The preset with ``n_voxels`` voxels (368, 533, 6480, 40500 or 504)."""
        for name in DATASETS:
            if name == "3" and n_voxels != 40500:
                continue  # avoid parsing the largest file needlessly
            g = cls.preset(name)
            if g.n_voxels == n_voxels:
                return g
        raise GeometryError(
            f"{source or '<memory>'}[showers]: expected 368, 533, 6480, 40500 or 504 voxels "
            f"per shower to infer the geometry, found {n_voxels} (pass --dataset or a binning file)"
        )

    # -- properties ---------------------------------------------------------------------------
    @property
    def n_voxels(self) -> int:
        return self._offsets[-1]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_ids(self) -> list[int]:
        return [layer.id for layer in self.layers]

    def layer_slice(self, i: int) -> slice:
        """Voxel index range of the i-th stored layer (position, not id)."""
        return slice(self._offsets[i], self._offsets[i + 1])

    def centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel centres (eta, phi, r) in mm over the whole voxel vector."""
        parts = [layer.centres() for layer in self.layers]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]

    def layer_energies(self, showers: np.ndarray) -> np.ndarray:
        """Per-layer sums (N, n_layers) of voxel energies (N, n_voxels)."""
        return np.add.reduceat(np.asarray(showers), np.asarray(self._offsets[:-1]), axis=1)

    def split_layers(self, showers: np.ndarray) -> list[np.ndarray]:
        """Per-layer images, each of shape (N, n_slow, n_fast)."""
        return [
            showers[:, self.layer_slice(i)].reshape(len(showers), *layer.shape)
            for i, layer in enumerate(self.layers)
        ]

    def to_dict(self) -> dict:
        """A plain, serialisable description (stored in checkpoints)."""
        return {"name": self.name, "particle": self.particle, "eval_threshold": self.eval_threshold,
                "layers": [layer.__dict__.copy() for layer in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        layers = tuple(Layer(**{**lyr, "r_edges": tuple(lyr["r_edges"])}) for lyr in d["layers"])
        return cls(name=d["name"], particle=d["particle"], layers=layers,
                   eval_threshold=d.get("eval_threshold", 0.0))


def _parse_layer(path: Path, el: ET.Element) -> Layer:
    lid = _int_or_none(el.get("id"))
    if lid is None:
        raise GeometryError(f"{path}[Layer@id]: expected an integer id, found {el.get('id')!r}")
    field_ = f"Layer {lid}"
    edges_s = el.get("r_edges")
    if edges_s is None:
        raise GeometryError(f"{path}[{field_}@r_edges]: expected a comma list, found none")
    try:
        edges = tuple(float(v) for v in edges_s.split(",") if v.strip())
    except ValueError:
        raise GeometryError(
            f"{path}[{field_}@r_edges]: expected numbers, found {edges_s!r}"
        ) from None
    if not all(math.isfinite(v) for v in edges):
        raise GeometryError(
            f"{path}[{field_}@r_edges]: expected finite numbers, found {edges_s!r}"
        )
    if len(edges) > 1 and any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise GeometryError(
            f"{path}[{field_}@r_edges]: expected strictly increasing edges, found {edges_s!r}"
        )
    if edges and edges[0] < 0:
        raise GeometryError(f"{path}[{field_}@r_edges]: expected edges >= 0, found {edges[0]}")
    n_alpha_s = el.get("n_bin_alpha")
    n_alpha = _int_or_none(n_alpha_s)
    if n_alpha is None or n_alpha < 1:
        raise GeometryError(
            f"{path}[{field_}@n_bin_alpha]: expected a positive integer, found {n_alpha_s!r}"
        )
    return Layer(id=lid, r_edges=edges if len(edges) > 1 else (), n_alpha=n_alpha)


def _int_or_none(text: str | None) -> int | None:
    """``int(text)`` for a plain ASCII integer, else None."""
    if text is None or not text.strip().lstrip("+-").isascii():
        return None
    try:
        return int(text)
    except ValueError:
        return None


_STEM_TO_PRESET = {Path(f).stem: name for name, f in _XML_FILES.items()}


@functools.cache
def _preset(name: str) -> Geometry:
    if name == "calogan":
        return calogan()
    res = importlib.resources.files("caloforge") / "data_files" / _XML_FILES[name]
    with importlib.resources.as_file(res) as path:
        return Geometry.from_xml(path, name=name)


def calogan() -> Geometry:
    """The CaloGAN geometry: 3 layers of 3x96, 12x12 and 12x6 cells (504 voxels).

    Cell sizes (eta x phi, mm): L0 5 x 160, L1 40 x 40, L2 80 x 40 (arXiv:1705.02355).
    Arrays follow CaloGAN's ``layer_i`` shape (n_phi, n_eta).
    """
    layers = (
        Layer(id=0, n_phi=3, n_eta=96, cell_eta=5.0, cell_phi=160.0),
        Layer(id=1, n_phi=12, n_eta=12, cell_eta=40.0, cell_phi=40.0),
        Layer(id=2, n_phi=12, n_eta=6, cell_eta=80.0, cell_phi=40.0),
    )
    return Geometry(name="calogan", particle="photon", layers=layers,
                    eval_threshold=EVAL_THRESHOLD_MEV["calogan"])
