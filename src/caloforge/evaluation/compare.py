"""Checks that two shower sets can be compared, and the fast mean separation power."""

from __future__ import annotations

import numpy as np

from caloforge.data import ShowerSet, subsample
from caloforge.errors import DataError, GeometryError
from caloforge.evaluation.histograms import hlf_histograms
from caloforge.features import high_level_features, pair_sums


def check_compatible(generated: ShowerSet, reference: ShowerSet, *, equal_n: bool = False,
                     equalise: bool = False, seed: int = 0) -> tuple[ShowerSet, ShowerSet]:
    """Refuse mismatched geometries (and unequal event counts when ``equal_n``).

    With ``equalise`` the larger set is randomly subsampled (``seed``) to the smaller size.
    """
    g, r = generated.geometry, reference.geometry
    if g.n_voxels != r.n_voxels or g.layer_ids != r.layer_ids:
        raise GeometryError(
            f"generated[showers]: expected the reference geometry {r.name} ({r.n_voxels} voxels, "
            f"layers {r.layer_ids}), found {g.name} ({g.n_voxels} voxels, layers {g.layer_ids})")
    if len(generated) == 0 or len(reference) == 0:
        raise DataError(f"showers: expected non-empty samples, found {len(generated)} generated "
                        f"and {len(reference)} reference showers")
    if len(generated) != len(reference):
        n = min(len(generated), len(reference))
        if equalise:
            if len(generated) > n:
                generated = subsample(generated, n, seed)
            else:
                reference = subsample(reference, n, seed)
        elif equal_n:
            raise DataError(
                f"generated[showers]: expected as many showers as the reference "
                f"({len(reference)}), found {len(generated)} (use --subsample to equalise)")
    return generated, reference


def mean_separation_power(generated: ShowerSet, reference: ShowerSet) -> float:
    """Mean separation power over every high-level-feature histogram (no plots; fast).

    Features use the reference's official voxel threshold; the histograms are those of
    :func:`~caloforge.evaluation.histograms.hlf_histograms` (E_tot/E_inc, E_layer, centres,
    widths, sparsity). 0 means identical histograms, 1 disjoint ones.
    """
    generated, reference = check_compatible(generated, reference)
    thr = reference.geometry.eval_threshold
    sums = pair_sums(generated, reference)
    hists = hlf_histograms(high_level_features(generated, thr, sums),
                           high_level_features(reference, thr, sums), reference.geometry, thr)
    return float(np.mean([h.separation for h in hists.values()]))
