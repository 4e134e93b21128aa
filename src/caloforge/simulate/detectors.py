"""Layered detector descriptions and the presets of the reference simulator.

A :class:`Detector` is a stack of :class:`Slab` s along the shower axis. Each slab is a piece of
one :class:`~caloforge.simulate.materials.Medium` with a depth in radiation lengths (X0) and in
nuclear interaction lengths (λ_I), and is either read out into one layer of a
:class:`~caloforge.geometry.Geometry` (``layer_id``) or dead material (``layer_id=None``; dead
material and layers that the geometry does not store absorb energy unseen).

Calibration chain of one slab (all energies in MeV):

* "EM-scale deposited energy" e: what an electromagnetic shower deposits in the slab (absorber
  included). Hadronic energy counts 1/(e/h) of its value, a minimum-ionising track counts its
  true energy loss divided by e/mip.
* Sampling fluctuation: each voxel's e is replaced by a Gamma variable of the same mean and
  variance ``c_s² · e`` (c_s in √GeV), so the total has σ/E = c_s/√E (spec/SIMULATOR.md §2.4).
* Stored voxel value = ``gain · e`` with ``gain = sampling_fraction / readout_divisor``:
  CaloGAN files hold the LAr-visible energy (gain = 0.16), Par04 files divide the Si energy by
  0.033 (gain = 1), ATLAS cells are calibrated to the EM scale (gain ≈ 1, tuned).
* A per-event constant term multiplies the slab: ``1 + c · z`` with one z ~ N(0, 1) per event.
* Values below ``Detector.threshold`` (stored MeV) are set to 0.

Constants marked **(unverified)** come from secondary sources (spec/SIMULATOR.md) or are our own
tuning; each is a named field so it can be changed without touching the physics code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from caloforge.errors import ConfigError
from caloforge.geometry import Geometry
from caloforge.simulate import materials as mat
from caloforge.simulate.materials import Medium, homogeneous


@dataclass(frozen=True)
class Slab:
    """A slab of one medium along the shower axis.

    Attributes:
        name: Label (e.g. ``"EMB2"``).
        medium: Material mix (sets Molière radius, λ_I in mm, e/mip, MIP energy loss).
        depth_x0: Thickness in radiation lengths.
        depth_lambda: Thickness in nuclear interaction lengths.
        layer_id: Geometry layer id read out from this slab; ``None`` for dead material.
        sampling_term: Stochastic term c_s of the EM response, √GeV (σ/E = c_s/√E).
        hadronic_term: Stochastic term of the hadronic (non-EM) response, √GeV.
        constant_term: Constant term of the response (fraction).
        e_over_h: Non-compensation e/h (hadronic energy counts 1/(e/h) at EM scale).
        sampling_fraction: Visible (active) fraction of the EM-scale energy.
        readout_divisor: What the file's producer divided the visible energy by.
        lateral_mm: Lateral scale of EM showers in mm (default: the medium's Molière radius).
        n_sub: Number of depth sub-slices for the radial integration (default: ~2 X0 each).
    """

    name: str
    medium: Medium
    depth_x0: float
    depth_lambda: float
    layer_id: int | None = None
    sampling_term: float = 0.1
    hadronic_term: float = 0.4
    constant_term: float = 0.0
    e_over_h: float = 1.5
    sampling_fraction: float = 1.0
    readout_divisor: float = 1.0
    lateral_mm: float | None = None
    n_sub: int | None = None

    def __post_init__(self) -> None:
        positive = ("depth_x0", "depth_lambda", "e_over_h", "sampling_fraction", "readout_divisor")
        for f in positive:
            v = getattr(self, f)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"Slab {self.name}.{f}: expected a finite value > 0, found {v}")
        for f in ("sampling_term", "hadronic_term", "constant_term"):
            v = getattr(self, f)
            if not (math.isfinite(v) and 0 <= v < 5):
                raise ConfigError(f"Slab {self.name}.{f}: expected 0 <= value < 5, found {v}")
        if self.sampling_fraction > 1:
            raise ConfigError(f"Slab {self.name}.sampling_fraction: expected a value in (0, 1], "
                              f"found {self.sampling_fraction}")
        if self.lateral_mm is not None and not (math.isfinite(self.lateral_mm)
                                                and self.lateral_mm > 0):
            raise ConfigError(f"Slab {self.name}.lateral_mm: expected a length > 0 mm, "
                              f"found {self.lateral_mm}")
        if self.n_sub is not None and self.n_sub < 1:
            raise ConfigError(f"Slab {self.name}.n_sub: expected an integer >= 1, "
                              f"found {self.n_sub}")

    @classmethod
    def of_x0(cls, name: str, medium: Medium, depth_x0: float, **kw) -> Slab:
        """A slab ``depth_x0`` radiation lengths thick (λ depth from the medium)."""
        return cls(name, medium, depth_x0, depth_x0 * medium.x0_mm / medium.lambda_mm, **kw)

    @classmethod
    def of_lambda(cls, name: str, medium: Medium, depth_lambda: float, **kw) -> Slab:
        """A slab ``depth_lambda`` interaction lengths thick (X0 depth from the medium)."""
        return cls(name, medium, depth_lambda * medium.lambda_mm / medium.x0_mm, depth_lambda,
                   **kw)

    @classmethod
    def of_mm(cls, name: str, medium: Medium, thickness_mm: float, **kw) -> Slab:
        """A slab ``thickness_mm`` thick."""
        return cls(name, medium, thickness_mm / medium.x0_mm, thickness_mm / medium.lambda_mm,
                   **kw)

    @property
    def gain(self) -> float:
        """Stored MeV per MeV of EM-scale deposited energy."""
        return self.sampling_fraction / self.readout_divisor

    @property
    def moliere_mm(self) -> float:
        """Lateral scale of EM showers in this slab, mm."""
        return self.lateral_mm if self.lateral_mm is not None else self.medium.moliere_mm

    @property
    def mip_mev_per_lambda(self) -> float:
        """True energy loss of a minimum-ionising track per interaction length, MeV."""
        return self.medium.mip_mev_per_mm * self.depth_mm / self.depth_lambda

    @property
    def depth_mm(self) -> float:
        """Thickness in mm (from the X0 depth)."""
        return self.depth_x0 * self.medium.x0_mm

    @property
    def subdivisions(self) -> int:
        """Depth sub-slices used to integrate the depth-dependent radial profile."""
        if self.n_sub is not None:
            return self.n_sub
        return int(np.clip(math.ceil(self.depth_x0 / 2.0), 1, 8))


@dataclass(frozen=True)
class HadronModel:
    """Parameters of the pion shower model (spec/SIMULATOR.md §2.6).

    Attributes:
        lambda_ratio: Pion interaction length / λ_I (unverified, 1.15-1.2).
        fem_e0_mev, fem_k: Mean EM fraction f_em = 1 - (E/E0)^(k-1) (unverified: 1 GeV, 0.82).
        fem_spread: Event-by-event standard deviation of f_em (beta distributed).
        fem_min, fem_max: Limits of the mean EM fraction.
        bock_a0, bock_a1: Shape a = a0 + a1 ln(E/GeV) of both profile components
            (Tile fit quoted in hep-ex/9903019: 0.786, 0.427).
        bock_b: EM component slope per X0 (0.29).
        bock_d: Hadronic component slope per λ_I (0.978).
        shape_spread: Log-normal event spread of a (our choice, unverified).
        em_lateral: Radius (F(r) = r²/(r²+R²) median) of the EM core in Molière radii (unverified).
        halo0, halo1: Halo median radius = λ_I·(halo0 + halo1·depth since start in λ_I)
            (unverified; about 95 % within 1 λ_I).
        halo_spread: Log-normal event spread of the halo radius (unverified).
        mip_radius_mm: Lateral spread of the minimum-ionising track (delta rays; unverified).
        em_shift: Event spread of the EM-core centre, in units of the core radius (ours).
        halo_shift: Event spread of the halo centre, in units of the halo radius (ours).
    """

    lambda_ratio: float = 1.18
    fem_e0_mev: float = 1000.0
    fem_k: float = 0.82
    fem_spread: float = 0.15
    fem_min: float = 0.05
    fem_max: float = 0.85
    bock_a0: float = 0.786
    bock_a1: float = 0.427
    bock_b: float = 0.29
    bock_d: float = 0.978
    shape_spread: float = 0.15
    em_lateral: float = 0.7
    halo0: float = 0.10
    halo1: float = 0.06
    halo_spread: float = 0.2
    mip_radius_mm: float = 3.0
    em_shift: float = 0.3
    halo_shift: float = 0.15

    def __post_init__(self) -> None:
        for f in ("lambda_ratio", "fem_e0_mev", "bock_b", "bock_d", "em_lateral", "halo0",
                  "mip_radius_mm"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"HadronModel.{f}: expected a finite value > 0, found {v}")
        if not 0 < self.fem_k < 1:
            raise ConfigError(f"HadronModel.fem_k: expected 0 < k < 1, found {self.fem_k}")
        if not 0 <= self.fem_min < self.fem_max < 1:
            raise ConfigError(f"HadronModel.fem_min/fem_max: expected 0 <= min < max < 1, "
                              f"found {self.fem_min}, {self.fem_max}")
        for f in ("fem_spread", "shape_spread", "halo1", "halo_spread", "em_shift", "halo_shift"):
            v = getattr(self, f)
            if not (math.isfinite(v) and 0 <= v < 1):
                raise ConfigError(f"HadronModel.{f}: expected 0 <= value < 1, found {v}")


@dataclass(frozen=True)
class Grid:
    """Depth sub-slices of a detector read out into one geometry (arrays of length S or S+1).

    ``x0_edges``/``lam_edges``: sub-slice boundaries from the detector front (X0, λ_I);
    ``layer_pos``: stored-layer position of each sub-slice in the geometry (-1: not stored).
    The other arrays copy the owning slab's parameters per sub-slice.
    """

    x0_edges: np.ndarray
    lam_edges: np.ndarray
    layer_pos: np.ndarray
    moliere_mm: np.ndarray
    lambda_mm: np.ndarray
    c2_em: np.ndarray
    c2_had: np.ndarray
    constant: np.ndarray
    e_over_h: np.ndarray
    e_over_mip: np.ndarray
    gain: np.ndarray
    mip_per_lambda: np.ndarray

    @property
    def n(self) -> int:
        return len(self.layer_pos)


@dataclass(frozen=True)
class Detector:
    """A stack of slabs, the EM medium for the shower parameterisation, and the readout.

    Attributes:
        name: Preset name.
        geometry_name: The geometry preset whose layers the slabs fill.
        slabs: Slabs from front to back.
        em_medium: Medium whose (Z, E_c, F_s, e/mip) drive the Grindhammer-Peters profiles.
        threshold: Readout threshold on stored voxel values, MeV.
        conversion_x0: Mean photon conversion depth, X0 (9/7, GFlash).
        hadron: Pion model parameters.
        notes: Free text stored in the file metadata.
    """

    name: str
    geometry_name: str
    slabs: tuple[Slab, ...]
    em_medium: Medium
    threshold: float = 0.0
    conversion_x0: float = 9.0 / 7.0
    hadron: HadronModel = field(default_factory=HadronModel)
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.slabs:
            raise ConfigError(f"Detector {self.name}.slabs: expected at least one slab, found none")
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ConfigError(f"Detector {self.name}.threshold: expected a value >= 0 MeV, "
                              f"found {self.threshold}")
        if not (math.isfinite(self.conversion_x0) and self.conversion_x0 > 0):
            raise ConfigError(f"Detector {self.name}.conversion_x0: expected a value > 0 X0, "
                              f"found {self.conversion_x0}")

    def with_changes(self, **changes) -> Detector:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def with_slab_changes(self, **changes) -> Detector:
        """A copy in which every slab has ``changes`` applied (e.g. ``constant_term=0``)."""
        return replace(self, slabs=tuple(replace(s, **changes) for s in self.slabs))

    @property
    def depth_x0(self) -> float:
        return float(sum(s.depth_x0 for s in self.slabs))

    @property
    def depth_lambda(self) -> float:
        return float(sum(s.depth_lambda for s in self.slabs))

    @cached_property
    def geometry(self) -> Geometry:
        return Geometry.preset(self.geometry_name)

    def layer_x0_centres(self) -> np.ndarray:
        """Depth (X0 from the front) of the centre of each stored geometry layer."""
        ids = self.geometry.layer_ids
        out = np.full(len(ids), np.nan)
        start = 0.0
        for s in self.slabs:
            if s.layer_id in ids:
                out[ids.index(s.layer_id)] = start + 0.5 * s.depth_x0
            start += s.depth_x0
        return out

    @cached_property
    def grid(self) -> Grid:
        """Sub-slices of the stack, mapped onto the stored layers of :attr:`geometry`."""
        ids = self.geometry.layer_ids
        missing = [i for i in ids if i not in [s.layer_id for s in self.slabs]]
        if missing:
            raise ConfigError(f"Detector {self.name}.slabs: expected a slab for every layer of "
                              f"geometry {self.geometry_name}, found none for ids {missing}")
        x0, lam = [0.0], [0.0]
        cols: dict[str, list[float]] = {k: [] for k in (
            "layer_pos", "moliere_mm", "lambda_mm", "c2_em", "c2_had", "constant", "e_over_h",
            "e_over_mip", "gain", "mip_per_lambda")}
        for s in self.slabs:
            k = s.subdivisions
            for _ in range(k):
                x0.append(x0[-1] + s.depth_x0 / k)
                lam.append(lam[-1] + s.depth_lambda / k)
                cols["layer_pos"].append(ids.index(s.layer_id) if s.layer_id in ids else -1)
                cols["moliere_mm"].append(s.moliere_mm)
                cols["lambda_mm"].append(s.depth_mm / s.depth_lambda)
                cols["c2_em"].append(s.sampling_term ** 2)
                cols["c2_had"].append(s.hadronic_term ** 2)
                cols["constant"].append(s.constant_term)
                cols["e_over_h"].append(s.e_over_h)
                cols["e_over_mip"].append(s.medium.e_over_mip)
                cols["gain"].append(s.gain)
                cols["mip_per_lambda"].append(s.mip_mev_per_lambda)
        return Grid(np.array(x0), np.array(lam),
                    **{k: np.array(v, dtype=int if k == "layer_pos" else float)
                       for k, v in cols.items()})


# ---------------------------------------------------------------------------------------------
# media

#: ATLAS EM barrel accordion cell (|η| < 0.8): 1.53 mm Pb, 2 x 0.2 mm steel cladding,
#: 2 x 2.1 mm LAr, ~0.3 mm Kapton electrode (spec/SIMULATOR.md §2.1, §4.2).
ATLAS_EMB = Medium("ATLAS EMB Pb/LAr",
                   ((mat.LEAD, 1.53), (mat.IRON, 0.4), (mat.LIQUID_ARGON, 4.2), (mat.KAPTON, 0.3)),
                   ("LAr",))
#: ATLAS Tile calorimeter: steel / scintillator 4.7 : 1 by volume (X0 ~ 21 mm, λ ~ 19.5 cm).
ATLAS_TILE = Medium("ATLAS Tile Fe/scint", ((mat.IRON, 4.7), (mat.SCINTILLATOR, 1.0)),
                    ("polystyrene",))
#: Geant4 Par04 readout layer: 2 x (1.4 mm W + 0.3 mm Si).
PAR04_SIW = Medium("Par04 W/Si", ((mat.TUNGSTEN, 1.4), (mat.SILICON, 0.3)), ("Si",))
#: CaloGAN cell: 2 mm Pb + 4 mm LAr (density 1.39).
CALOGAN_PBLAR = Medium("CaloGAN Pb/LAr", ((mat.LEAD, 2.0), (mat.LIQUID_ARGON_CALOGAN, 4.0)),
                       ("LAr(1.39)",))

# ---------------------------------------------------------------------------------------------
# presets

#: ATLAS-like EM-scale calibration of dataset-1 cells, tuned so that the mean E_tot/E_inc of
#: photons over the official energy mix is ~0.97 (the official files give 0.968).
ATLAS_EM_GAIN = 1.0
#: Depth of the material in front of the presampler at η ≈ 0.22, modelled as aluminium with an
#: explicit λ depth (both unverified).
ATLAS_UPSTREAM_X0 = 2.0
ATLAS_UPSTREAM_LAMBDA = 0.2
#: LAr cryostat outer wall between EMB3 and TileBar0, λ_I (unverified, 0.3-0.5).
ATLAS_CRYOSTAT_LAMBDA = 0.4
#: Non-compensation (hep-ex/9911033 for the LAr EM compartment; Tile unverified).
ATLAS_LAR_E_OVER_H = 1.74
ATLAS_TILE_E_OVER_H = 1.36
#: Stochastic term of the hadronic (non-EM) energy in LAr and Tile, √GeV (unverified; with the
#: f_em fluctuations it gives the ~50 %/√E pion resolution of the Tile test beams).
ATLAS_HADRONIC_TERM = 0.3
#: EM stochastic terms, √GeV: EM barrel (~10 %/√E, ATLAS), presampler (thin LAr gap sampling
#: showers started upstream; unverified), Tile for electrons (~28 %/√E test beam; unverified).
ATLAS_EMB_SAMPLING_TERM = 0.10
ATLAS_PS_SAMPLING_TERM = 0.05
ATLAS_TILE_SAMPLING_TERM = 0.28
#: Constant terms of the LAr (0.7 %) and Tile (2 %, unverified) responses.
ATLAS_LAR_CONSTANT_TERM = 0.007
ATLAS_TILE_CONSTANT_TERM = 0.02
#: Readout threshold of the dataset-1 presets on stored cell energies, MeV (our choice).
ATLAS_THRESHOLD_MEV = 0.2


def atlas_barrel(geometry_name: str = "1-photons") -> Detector:
    """ATLAS-barrel-like stack at η ≈ 0.22 for dataset 1 (photons or pions).

    Upstream material (~2 X0), presampler (11 mm LAr), EMB1-3 (4.3, 16, 2 X0 of the accordion
    medium), cryostat wall (~0.4 λ), TileBar0-2 (1.5, 4.1, 1.8 λ). Depths: spec/SIMULATOR.md §4.2
    (ATLAS detector paper JINST 3 (2008) S08003; some unverified). Not the ATLAS simulation.
    """
    al, lar = homogeneous(mat.ALUMINIUM), homogeneous(mat.LIQUID_ARGON)
    lar_kw = dict(hadronic_term=ATLAS_HADRONIC_TERM, constant_term=ATLAS_LAR_CONSTANT_TERM,
                  e_over_h=ATLAS_LAR_E_OVER_H, sampling_fraction=1.0,
                  readout_divisor=1.0 / ATLAS_EM_GAIN)
    tile_kw = dict(sampling_term=ATLAS_TILE_SAMPLING_TERM, hadronic_term=ATLAS_HADRONIC_TERM,
                   constant_term=ATLAS_TILE_CONSTANT_TERM,
                   e_over_h=ATLAS_TILE_E_OVER_H, sampling_fraction=1.0,
                   readout_divisor=1.0 / ATLAS_EM_GAIN)
    emb_kw = dict(lar_kw, sampling_term=ATLAS_EMB_SAMPLING_TERM)
    slabs = (
        Slab("upstream (ID, solenoid, cryostat)", al, ATLAS_UPSTREAM_X0, ATLAS_UPSTREAM_LAMBDA),
        Slab.of_mm("PreSamplerB", lar, 11.0, layer_id=0, sampling_term=ATLAS_PS_SAMPLING_TERM,
                   lateral_mm=mat.ALUMINIUM.x0_mm * mat.E_S_MEV / mat.ALUMINIUM.critical_energy,
                   **lar_kw),
        Slab.of_x0("EMB1", ATLAS_EMB, 4.3, layer_id=1, **emb_kw),
        Slab.of_x0("EMB2", ATLAS_EMB, 16.0, layer_id=2, **emb_kw),
        Slab.of_x0("EMB3", ATLAS_EMB, 2.0, layer_id=3, **emb_kw),
        Slab.of_lambda("cryostat outer wall", al, ATLAS_CRYOSTAT_LAMBDA),
        Slab.of_lambda("TileBar0", ATLAS_TILE, 1.5, layer_id=12, **tile_kw),
        Slab.of_lambda("TileBar1", ATLAS_TILE, 4.1, layer_id=13, **tile_kw),
        Slab.of_lambda("TileBar2", ATLAS_TILE, 1.8, layer_id=14, **tile_kw),
    )
    return Detector(f"atlas-barrel ({geometry_name})", geometry_name, slabs, ATLAS_EMB,
                    threshold=ATLAS_THRESHOLD_MEV,
                    notes="ATLAS-barrel-like Pb/LAr + Fe/scintillator stack at eta~0.22; "
                          "cells calibrated to the EM scale")


#: Par04 sampling fraction used by the CaloChallenge to rescale datasets 2 and 3.
PAR04_SAMPLING_FRACTION = 0.033
#: Par04 hadronic stochastic term (√GeV), constant term and e/h of W/Si (all unverified).
PAR04_HADRONIC_TERM = 0.5
PAR04_CONSTANT_TERM = 0.01
PAR04_E_OVER_H = 1.5
#: Par04 readout threshold: 0.5 keV in silicon, i.e. 15.15 keV after division by 0.033.
PAR04_THRESHOLD_MEV = 0.5e-3 / PAR04_SAMPLING_FRACTION
#: Stochastic term of the Si-W stack (unverified: CALICE Si-W ECAL ~16.6 %/√E, arXiv:0805.4833).
PAR04_SAMPLING_TERM = 0.17


def par04(geometry_name: str = "2") -> Detector:
    """Geant4-Par04-like Si-W stack for datasets 2 and 3: 45 readout layers of
    2 x (1.4 mm W + 0.3 mm Si), ~0.8 X0 each; voxels = Si energy / 0.033; 15.15 keV threshold."""
    slabs = tuple(
        Slab.of_mm(f"layer {i}", PAR04_SIW, 3.4, layer_id=i, sampling_term=PAR04_SAMPLING_TERM,
                   hadronic_term=PAR04_HADRONIC_TERM, constant_term=PAR04_CONSTANT_TERM,
                   e_over_h=PAR04_E_OVER_H,
                   sampling_fraction=PAR04_SAMPLING_FRACTION,
                   readout_divisor=PAR04_SAMPLING_FRACTION, n_sub=1)
        for i in range(45))
    return Detector(f"par04 ({geometry_name})", geometry_name, slabs, PAR04_SIW,
                    threshold=PAR04_THRESHOLD_MEV,
                    notes="Par04-like Si-W stack, voxel energies divided by 0.033")


#: EM visible fraction of the CaloGAN stack (spec: ~0.16, a Geant4 run gave 0.161).
CALOGAN_SAMPLING_FRACTION = 0.16
#: CaloGAN stochastic term (GFlash default 0.11; PDG rule of thumb 2.7 % √(4 mm / 0.25) = 11 %).
CALOGAN_SAMPLING_TERM = 0.11
#: CaloGAN hadronic stochastic term (√GeV, unverified), constant term (unverified) and e/h of
#: Pb/LAr (hep-ex/9911033).
CALOGAN_HADRONIC_TERM = 0.5
CALOGAN_CONSTANT_TERM = 0.005
CALOGAN_E_OVER_H = 1.74


def calogan() -> Detector:
    """The CaloGAN Pb/LAr stack: layers of 90, 347 and 43 mm (5.8, 22.3, 2.8 X0); only the LAr
    (visible) energy is stored (hep-lbdl/CaloGAN, spec/SIMULATOR.md §4.3)."""
    kw = dict(sampling_term=CALOGAN_SAMPLING_TERM, hadronic_term=CALOGAN_HADRONIC_TERM,
              constant_term=CALOGAN_CONSTANT_TERM, e_over_h=CALOGAN_E_OVER_H,
              sampling_fraction=CALOGAN_SAMPLING_FRACTION, readout_divisor=1.0)
    slabs = (
        Slab.of_mm("L0", CALOGAN_PBLAR, 90.0, layer_id=0, **kw),
        Slab.of_mm("L1", CALOGAN_PBLAR, 347.0, layer_id=1, **kw),
        Slab.of_mm("L2", CALOGAN_PBLAR, 43.0, layer_id=2, **kw),
    )
    return Detector("calogan", "calogan", slabs, CALOGAN_PBLAR, threshold=0.0,
                    notes="CaloGAN 80 x (2 mm Pb + 4 mm LAr), visible LAr energy")


def preset(dataset: str) -> Detector:
    """The detector preset of a dataset name in :data:`caloforge.geometry.DATASETS`."""
    if dataset in ("1-photons", "1-pions"):
        return atlas_barrel(dataset)
    if dataset in ("2", "3"):
        return par04(dataset)
    if dataset == "calogan":
        return calogan()
    raise ConfigError(f"dataset: expected one of 1-photons, 1-pions, 2, 3, calogan, "
                      f"found {dataset!r}")
