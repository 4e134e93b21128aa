"""caloforge: fast machine-learning simulation of calorimeter showers.

CaloChallenge-format data, a physics-based reference simulator, normalizing flows (CaloFlow,
CaloINN), CaloMan (density estimation on learned manifolds) and the CaloChallenge evaluation.
"""

from caloforge.data import ShowerSet, iter_showers, read_showers, write_showers
from caloforge.errors import CaloforgeError
from caloforge.geometry import DATASETS, Geometry

__version__ = "0.1.0"

__all__ = ["DATASETS", "CaloforgeError", "Geometry", "ShowerSet", "__version__", "iter_showers",
           "read_showers", "write_showers"]
