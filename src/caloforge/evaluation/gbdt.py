"""Boosted-tree classifier tests (``cls-gbdt-high``, ``cls-gbdt-low``): a judge that fits a CPU.

The CaloChallenge DNN needs 50 epochs at width 2048 to see small differences; at the sample
sizes of CPU experiments (a few thousand showers per side) it often learns nothing at all.
Gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``) find the same kind of
differences in seconds and need no input scaling. The protocol around them is the official one
(spec/EVALUATION.md §4): the same per-class train/test/val split, the test split for model
selection (early stopping on its log loss, as the DNN keeps its best test epoch) and for the
isotonic calibration, AUC and JSD on the val split; see :func:`caloforge.evaluation.verdict.finish`.

Inputs:

* ``cls-gbdt-high``: the ``cls-high`` vector
  (:func:`~caloforge.evaluation.inputs.high_level_vector`);
* ``cls-gbdt-low``: the ``cls-low`` voxels (``x_v / E_inc``) plus per-layer log energies
  ``log10(E_l + 1e-8)``, ``log10(E_tot + 1e-8)`` and ``E_tot / E_inc`` as extra columns
  (:func:`~caloforge.evaluation.inputs.gbdt_low_vector`). Trees are invariant to monotone maps of
  one column, so a log of each voxel adds nothing; sums over many voxels do.

Reference: G. Ke et al., "LightGBM" (NeurIPS 2017), the histogram algorithm behind
scikit-learn's implementation.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from caloforge.errors import ConfigError
from caloforge.evaluation.classifier import check_pair, split_classes
from caloforge.evaluation.verdict import ClassifierResult, finish

#: Boosting settings: learning rate, most iterations, leaves per tree, early stopping after
#: ``n_iter_no_change`` iterations that improve the test log loss by less than ``tol`` nats.
GBDT_SETTINGS = {"learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 31,
                 "n_iter_no_change": 10, "tol": 1e-4}


def gbdt_test(gen: np.ndarray, ref: np.ndarray, dataset: str, *, seed: int = 0,
              max_iter: int | None = None, learning_rate: float | None = None
              ) -> ClassifierResult:
    """Boosted trees on ``gen`` (label 0) vs ``ref`` (label 1) inputs (N, d).

    Args:
        gen, ref: Classifier inputs, equally many rows.
        dataset: Geometry name (chooses the official split proportions).
        seed: Seed of the split, the trees' subsampling and the bootstrap.
        max_iter, learning_rate: Override :data:`GBDT_SETTINGS`.
    """
    check_pair(gen, ref)
    settings = dict(GBDT_SETTINGS)
    if max_iter is not None:
        if max_iter < 1:
            raise ConfigError(f"max_iter: expected a positive integer, found {max_iter}")
        settings["max_iter"] = max_iter
    if learning_rate is not None:
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate: expected a positive number, found {learning_rate}")
        settings["learning_rate"] = learning_rate
    rng = np.random.default_rng(seed)
    (x_tr, y_tr), (x_te, y_te), (x_va, y_va) = split_classes(gen, ref, dataset, rng)
    clf = HistGradientBoostingClassifier(early_stopping=True, scoring="loss",
                                         random_state=seed, **settings)
    t0 = time.perf_counter()
    clf.fit(x_tr, y_tr, X_val=x_te, y_val=y_te)
    seconds = time.perf_counter() - t0
    # train_score_/validation_score_ hold -log loss before the first and after each iteration;
    # early stopping keeps the whole ensemble, whose last entry is the best-so-far plus patience
    train_loss = [-float(v) for v in clf.train_score_[1:]]
    test_curve = [float(v) for v in clf.validation_score_[1:]]
    return finish(clf.predict_proba(x_te)[:, 1], y_te, clf.predict_proba(x_va)[:, 1], y_va,
                  train_loss=train_loss, test_curve=test_curve, best_epoch=clf.n_iter_,
                  epoch_seconds=[seconds], kind="gbdt", seed=seed)
