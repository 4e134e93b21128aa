"""The official incident-energy mixes, kept importable here for the simulator's users: they
live in :mod:`caloforge.energies` (next to the geometries)."""

from caloforge.energies import (  # noqa: F401 - re-exported
    DS1_COUNTS,
    DS1_ENERGIES,
    FULL_SIZE,
    RANGES,
    check_energies,
    official_energies,
    range_energies,
    stratified_counts,
)
