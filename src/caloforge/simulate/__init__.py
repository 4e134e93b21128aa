"""The caloforge reference shower simulator: parametric, fast, and **not Geant4**.

Electromagnetic showers follow Grindhammer & Peters (hep-ex/0001020, as in GFlash); pions a
Bock-type two-component model with an exponential start, a minimum-ionising track and
per-compartment non-compensation. Showers are written on the foundation's geometries (datasets
1-photons, 1-pions, 2, 3 and CaloGAN) with the official incident-energy mixes. Physics
formulas and constants: ``spec/SIMULATOR.md``; usage: ``docs/simulator.md``.

Example:
    >>> from caloforge.simulate import simulate
    >>> showers = simulate("1-photons", 200, seed=0)
    >>> showers.showers.shape
    (200, 368)
"""

from caloforge.energies import FULL_SIZE
from caloforge.simulate.core import (
    DEFAULT_PARTICLE,
    GENERATOR,
    PARTICLES,
    simulate,
    simulate_showers,
    simulate_to_file,
)
from caloforge.simulate.detectors import Detector, HadronModel, Slab, preset

__all__ = ["DEFAULT_PARTICLE", "FULL_SIZE", "GENERATOR", "PARTICLES", "Detector", "HadronModel",
           "Slab", "preset", "simulate", "simulate_showers", "simulate_to_file"]
