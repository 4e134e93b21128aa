"""Materials and sampling media: radiation length, critical energy, Molière radius, e/mip.

Pure materials carry the PDG "Atomic and nuclear properties" values; a :class:`Medium` is a
repeated sampling cell (absorber + active + anything else) whose effective quantities follow
Grindhammer & Peters (hep-ex/0001020, sect. 2/3) as summarised in ``spec/SIMULATOR.md`` §2.1:

* critical energy ``E_c = 2.66 (X0 Z/A)^1.1`` MeV (X0 in g/cm²);
* Molière radius ``R_M = E_s X0 / E_c`` with ``E_s = 21.2`` MeV;
* mass weights ``w_i = rho_i d_i / sum_j rho_j d_j``; ``Z_eff = sum w_i Z_i``;
  ``1/X0_eff = sum w_i / X0_i``; ``E_c,eff = X0_eff sum w_i E_c,i / X0_i``;
  ``1/R_M,eff = sum w_i (E_c,i / X0_i) / E_s``;
* sampling frequency ``F_s = X0_eff / (d_a + d_p)`` (same length unit);
* ``e/mip = 1 / (1 + 0.007 (Z_passive - Z_active))``.

Lengths are in mm unless a name says otherwise; energies in MeV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from caloforge.errors import ConfigError

#: Scale energy of the Molière radius in MeV (PDG; GFlash uses 21).
E_S_MEV = 21.2


@dataclass(frozen=True)
class Material:
    """A pure material (or a fixed compound treated as one).

    Attributes:
        name: Label.
        z: (Mass-weighted mean) atomic number.
        a: (Mass-weighted mean) atomic mass in g/mol.
        density: g/cm³.
        x0: Radiation length in g/cm².
        lambda_i: Nuclear interaction length in g/cm².
        dedx_min: Minimum-ionising stopping power in MeV cm²/g.

    Reference: PDG, Atomic and nuclear properties of materials
    (pdg.lbl.gov/AtomicNuclearProperties).
    """

    name: str
    z: float
    a: float
    density: float
    x0: float
    lambda_i: float
    dedx_min: float

    def __post_init__(self) -> None:
        for field_ in ("z", "a", "density", "x0", "lambda_i", "dedx_min"):
            v = getattr(self, field_)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"Material {self.name}.{field_}: expected a finite value > 0, "
                                  f"found {v}")

    @property
    def x0_mm(self) -> float:
        """Radiation length in mm."""
        return 10.0 * self.x0 / self.density

    @property
    def lambda_mm(self) -> float:
        """Nuclear interaction length in mm."""
        return 10.0 * self.lambda_i / self.density

    @property
    def critical_energy(self) -> float:
        """E_c = 2.66 (X0 Z/A)^1.1 MeV (Grindhammer & Peters)."""
        return 2.66 * (self.x0 * self.z / self.a) ** 1.1


# PDG values (X0, lambda_I in g/cm², dE/dx_min in MeV cm²/g).
LEAD = Material("Pb", 82, 207.2, 11.35, 6.37, 199.6, 1.122)
LIQUID_ARGON = Material("LAr", 18, 39.948, 1.396, 19.55, 119.7, 1.519)
#: CaloGAN's liquid argon density (hep-lbdl/CaloGAN DetectorConstruction.cc).
LIQUID_ARGON_CALOGAN = Material("LAr(1.39)", 18, 39.948, 1.39, 19.55, 119.7, 1.519)
IRON = Material("Fe", 26, 55.845, 7.874, 13.84, 132.1, 1.451)
TUNGSTEN = Material("W", 74, 183.84, 19.3, 6.76, 191.9, 1.145)
SILICON = Material("Si", 14, 28.0855, 2.329, 21.82, 108.4, 1.664)
ALUMINIUM = Material("Al", 13, 26.98, 2.699, 24.01, 107.2, 1.615)
#: Polystyrene scintillator C8H8 (mass-weighted Z and A).
SCINTILLATOR = Material("polystyrene", 5.61, 11.16, 1.032, 43.79, 81.7, 1.956)
#: Kapton polyimide (mass-weighted Z and A).
KAPTON = Material("Kapton", 6.26, 12.6, 1.42, 40.58, 85.5, 1.82)


@dataclass(frozen=True)
class Medium:
    """A sampling structure: a repeated cell of material layers.

    Attributes:
        name: Label.
        layers: (material, thickness in mm) per sub-layer of one sampling cell.
        active: Names of the active (read-out) materials; the rest is passive.

    Example:
        >>> m = Medium("Pb/LAr", ((LEAD, 2.0), (LIQUID_ARGON_CALOGAN, 4.0)), ("LAr(1.39)",))
        >>> round(m.x0_mm, 1), round(m.sampling_frequency, 2)
        (15.6, 2.6)
    """

    name: str
    layers: tuple[tuple[Material, float], ...]
    active: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError(f"Medium {self.name}.layers: expected at least one material, "
                              f"found none")
        for mat, d in self.layers:
            if not (math.isfinite(d) and d > 0):
                raise ConfigError(f"Medium {self.name}.layers[{mat.name}]: expected a thickness "
                                  f"> 0 mm, found {d}")

    # -- weights ------------------------------------------------------------------------------
    @property
    def thickness_mm(self) -> float:
        """Thickness of one sampling cell, mm."""
        return sum(d for _, d in self.layers)

    def _weights(self, which: str = "all") -> list[tuple[Material, float]]:
        sel = [(m, d) for m, d in self.layers
               if which == "all" or (m.name in self.active) == (which == "active")]
        total = sum(m.density * d for m, d in sel)
        return [(m, m.density * d / total) for m, d in sel] if total > 0 else []

    @property
    def z_eff(self) -> float:
        """Mass-weighted atomic number."""
        return sum(w * m.z for m, w in self._weights())

    @property
    def a_eff(self) -> float:
        """Mass-weighted atomic mass, g/mol."""
        return sum(w * m.a for m, w in self._weights())

    @property
    def density(self) -> float:
        """Average density, g/cm³."""
        return sum(m.density * d for m, d in self.layers) / self.thickness_mm

    @property
    def x0(self) -> float:
        """Effective radiation length, g/cm²."""
        return 1.0 / sum(w / m.x0 for m, w in self._weights())

    @property
    def x0_mm(self) -> float:
        """Effective radiation length, mm."""
        return 10.0 * self.x0 / self.density

    @property
    def lambda_mm(self) -> float:
        """Effective nuclear interaction length, mm."""
        return 10.0 / self.density / sum(w / m.lambda_i for m, w in self._weights())

    @property
    def critical_energy(self) -> float:
        """Effective critical energy E_c in MeV."""
        return self.x0 * sum(w * m.critical_energy / m.x0 for m, w in self._weights())

    @property
    def moliere_mm(self) -> float:
        """Effective Molière radius in mm: 1/R_M = sum w_i (E_c,i/X0_i)/E_s (per g/cm²)."""
        inv = sum(w * m.critical_energy / m.x0 for m, w in self._weights()) / E_S_MEV
        return 10.0 / inv / self.density

    @property
    def sampling_frequency(self) -> float:
        """F_s = X0_eff / (d_active + d_passive); large for a homogeneous medium."""
        if not self.active or len(self.layers) == 1:
            return 1e6
        return self.x0_mm / self.thickness_mm

    @property
    def e_over_mip(self) -> float:
        """ê = e/mip = 1 / (1 + 0.007 (Z_passive - Z_active)); 1 for a homogeneous medium."""
        act, pas = self._weights("active"), self._weights("passive")
        if not act or not pas:
            return 1.0
        z_a = sum(w * m.z for m, w in act)
        z_p = sum(w * m.z for m, w in pas)
        return 1.0 / (1.0 + 0.007 * (z_p - z_a))

    @property
    def mip_fraction(self) -> float:
        """Fraction of a minimum-ionising particle's energy loss deposited in the active part."""
        loss = [(m, m.density * d * m.dedx_min) for m, d in self.layers]
        tot = sum(v for _, v in loss)
        if not self.active:
            return 1.0
        return sum(v for m, v in loss if m.name in self.active) / tot

    @property
    def mip_mev_per_mm(self) -> float:
        """Average minimum-ionising energy loss in MeV per mm of this medium."""
        return sum(0.1 * m.density * d * m.dedx_min for m, d in self.layers) / self.thickness_mm


def homogeneous(material: Material) -> Medium:
    """A medium made of one material (active)."""
    return Medium(material.name, ((material, 1.0),), (material.name,))
