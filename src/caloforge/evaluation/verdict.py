"""What a classifier test may say: calibrated AUC/JSD, its uncertainty, and whether it learned.

A classifier AUC near 0.5 means two different things: the samples are alike, or the classifier
never learned anything (too few steps, unscaled inputs, too small a sample). Every classifier of
:mod:`caloforge.evaluation` therefore ends in :func:`finish`, which

* calibrates the raw outputs by isotonic regression fitted on the *test* split (clipped to
  [1e-6, 1 - 1e-6]) and reports AUC and ``JSD = (ln 2 - BCE) / ln 2`` on the *val* split
  (CaloChallenge protocol, spec/EVALUATION.md §4);
* attaches a bootstrap interval to the AUC (resampling the val split, 68 % and 95 %);
* decides ``learned``: the training loss fell below ln 2 by :data:`LOSS_MARGIN` nats *and* the
  held-out accuracy beats chance by more than :data:`ACC_SIGMAS` binomial standard deviations
  (``0.5 / sqrt(n)``). The accuracy is that of the raw outputs on the *val* split: the test
  split already chose the kept epoch (the best of many test accuracies beats chance by two
  standard deviations by luck alone), so it cannot also testify;
* turns that into one reading (:func:`reading`): ``distinguishable``, ``not distinguishable at
  this sample size`` or ``classifier did not learn: no evidence either way``. A classifier that
  did not learn is never reported as "indistinguishable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

#: Calibrated outputs are clipped to [CLIP, 1 - CLIP] (official value).
CLIP = 1e-6
#: The final training loss must be this many nats below ln 2 (chance) to count as learning.
LOSS_MARGIN = 0.01
#: The test accuracy must beat 0.5 by this many binomial standard deviations.
ACC_SIGMAS = 2.0
#: Bootstrap resamples of the val split for the AUC interval.
BOOTSTRAP = 200

DISTINGUISHABLE = "distinguishable"
NOT_AT_THIS_SIZE = "not distinguishable at this sample size"
DID_NOT_LEARN = "classifier did not learn: no evidence either way"


@dataclass
class ClassifierResult:
    """One classifier test.

    Attributes:
        auc: ROC AUC of the calibrated val outputs (0.5 = no separation found).
        jsd: (ln 2 - BCE) / ln 2 of the calibrated val outputs (0 = no separation found).
        accuracy: Val accuracy after calibration.
        best_epoch: 1-based epoch (DNN) or boosting iteration count (trees) that was kept.
        scores: Calibrated val outputs; ``labels``: their labels (1 = reference).
        epoch_seconds: Wall time of each epoch / of the whole fit for trees.
        train_loss: Training-loss curve (mean BCE in nats per epoch or iteration).
        test_curve: Test-split curve (accuracy per DNN epoch, or -BCE per boosting iteration).
        test_accuracy: Test accuracy of the kept model (before calibration).
        n_test: Showers in the test split (both classes).
        val_accuracy: Accuracy of the kept model's raw outputs on the val split (decides
            ``learned``).
        learned: See the module doc.
        auc_err: Half width of the 68 % bootstrap interval of ``auc``.
        auc_interval: The 95 % bootstrap interval of ``auc``.
        kind: ``dnn`` or ``gbdt``.
    """

    auc: float
    jsd: float
    accuracy: float
    best_epoch: int
    scores: np.ndarray
    labels: np.ndarray
    epoch_seconds: list[float]
    train_loss: list[float] = field(default_factory=list)
    test_curve: list[float] = field(default_factory=list)
    test_accuracy: float = 0.5
    n_test: int = 0
    val_accuracy: float = 0.5
    learned: bool = False
    auc_err: float = 0.0
    auc_interval: tuple[float, float] = (0.0, 1.0)
    kind: str = "dnn"

    @property
    def reading(self) -> str:
        """One phrase: what this test says about the two samples."""
        return reading(self.learned, self.auc_interval[0])


def reading(learned: bool, auc_low: float) -> str:
    """The reading of a test that ``learned`` (or not) with 95 % AUC lower bound ``auc_low``."""
    if not learned:
        return DID_NOT_LEARN
    return DISTINGUISHABLE if auc_low > 0.5 else NOT_AT_THIS_SIZE


def has_learned(final_train_loss: float, heldout_accuracy: float, n_heldout: int) -> bool:
    """Training loss below ln 2 by :data:`LOSS_MARGIN` and held-out accuracy above chance by
    :data:`ACC_SIGMAS` binomial standard deviations."""
    noise = 0.5 / math.sqrt(max(n_heldout, 1))
    return bool(final_train_loss < math.log(2.0) - LOSS_MARGIN
                and heldout_accuracy > 0.5 + ACC_SIGMAS * noise)


def bootstrap_auc(labels: np.ndarray, scores: np.ndarray, seed: int = 0,
                  n: int = BOOTSTRAP) -> tuple[float, tuple[float, float]]:
    """Half width of the 68 % interval and the 95 % interval of the AUC over ``n``
    bootstrap resamples of (``labels``, ``scores``)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        y = labels[idx]
        if y.min() == y.max():
            continue
        values.append(roc_auc_score(y, scores[idx]))
    if not values:
        return 0.0, (0.0, 1.0)
    q16, q84, q025, q975 = np.quantile(values, [0.16, 0.84, 0.025, 0.975])
    return float(0.5 * (q84 - q16)), (float(q025), float(q975))


def finish(p_test: np.ndarray, y_test: np.ndarray, p_val: np.ndarray, y_val: np.ndarray, *,
           train_loss: list[float], test_curve: list[float], best_epoch: int,
           epoch_seconds: list[float], kind: str, seed: int = 0) -> ClassifierResult:
    """Calibrate on test, score on val, bootstrap the AUC and decide ``learned``.

    Args:
        p_test, p_val: Raw classifier probabilities on the test and val splits.
        y_test, y_val: Their labels (0 = generated, 1 = reference).
        train_loss: Training-loss curve; its value at ``best_epoch`` decides ``learned``.
        test_curve, best_epoch, epoch_seconds, kind: Stored as they are.
        seed: Seed of the bootstrap.
    """
    test_acc = float(np.mean((p_test > 0.5) == y_test))
    val_acc = float(np.mean((p_val > 0.5) == y_val))
    iso = IsotonicRegression(out_of_bounds="clip", y_min=CLIP, y_max=1.0 - CLIP)
    iso.fit(p_test, y_test)
    p = iso.predict(p_val)
    bce = -float(np.mean(y_val * np.log(p) + (1.0 - y_val) * np.log(1.0 - p)))
    auc = float(roc_auc_score(y_val, p))
    err, interval = bootstrap_auc(y_val, p, seed)
    kept_loss = train_loss[min(best_epoch, len(train_loss)) - 1] if train_loss else math.log(2)
    return ClassifierResult(
        auc=auc, jsd=float((np.log(2.0) - bce) / np.log(2.0)),
        accuracy=float(np.mean(np.round(p) == y_val)), best_epoch=best_epoch, scores=p,
        labels=y_val, epoch_seconds=epoch_seconds, train_loss=[float(v) for v in train_loss],
        test_curve=[float(v) for v in test_curve], test_accuracy=test_acc, n_test=len(y_test),
        val_accuracy=val_acc, learned=has_learned(kept_loss, val_acc, len(y_val)), auc_err=err,
        auc_interval=interval, kind=kind)
