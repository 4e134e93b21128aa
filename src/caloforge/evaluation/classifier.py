"""The CaloChallenge classifier test: can a DNN tell generated from reference showers?

Procedure (CaloChallenge ``evaluate.py``, spec/EVALUATION.md §4):

* labels 0 = generated, 1 = reference; each class is shuffled and split into train/test/val of
  80k/20k/21k (DS1 photons), 80k/20k/20.8k (DS1 pions), 60k/20k/20k (DS2/3) showers. When a class
  has another size N, the three parts are scaled proportionally (``floor(N * part / total)``
  for train and test, the rest for val); other geometries use 60/20/20 %;
* DNN: Linear(d, W) + LeakyReLU, 2 x [Linear(W, W) + LeakyReLU], Linear(W, 1), W = 2048
  (dropout 0 is the identity and is left out); BCE with logits, Adam (lr 2e-4), batch 1000,
  50 epochs; after each epoch the test accuracy is measured and the best epoch's weights kept
  (training stops early at accuracy 1);
* the best model's sigmoid outputs are calibrated by isotonic regression (clipped to
  [1e-6, 1 - 1e-6]) fitted on the test split; on the val split it reports the ROC AUC and
  ``JSD = (ln 2 - BCE) / ln 2`` of the calibrated outputs.

Deviation: the network runs in float32 (the official script uses float64) for speed; the
metric's run-to-run spread is far larger than that difference.

Quick settings. Any other (epochs, width, batch size, learning rate) is a *quick* run, and two
things change so that "fewer epochs" never means "untrained": the inputs are standardised
(mean and standard deviation of the train split; the official inputs span many orders of
magnitude) and training runs at least ``min_steps`` optimiser steps (:data:`QUICK_MIN_STEPS`),
adding epochs as needed. The official protocol is left exactly as it is.

Every result carries its training curve, a bootstrap interval of the AUC and the ``learned``
flag (:mod:`caloforge.evaluation.verdict`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from caloforge.errors import ConfigError, DataError
from caloforge.evaluation.verdict import ClassifierResult, finish

__all__ = ["ClassifierResult", "classifier_test", "is_official", "split_sizes"]

#: Official per-class (train, test, val) sizes.
OFFICIAL_SPLITS = {"1-photons": (80_000, 20_000, 21_000), "1-pions": (80_000, 20_000, 20_800),
                   "2": (60_000, 20_000, 20_000), "3": (60_000, 20_000, 20_000)}
#: Official DNN settings: (epochs, width, batch size, learning rate).
OFFICIAL_DNN = (50, 2048, 1000, 2e-4)
#: Fewest optimiser steps of a quick (non-official) DNN run.
QUICK_MIN_STEPS = 1000


def is_official(epochs: int, width: int, batch_size: int, lr: float) -> bool:
    """Whether these DNN settings are the CaloChallenge protocol."""
    return (epochs, width, batch_size, lr) == OFFICIAL_DNN


def split_sizes(n: int, dataset: str) -> tuple[int, int, int]:
    """Per-class (train, test, val) sizes for ``n`` showers per class."""
    parts = OFFICIAL_SPLITS.get(dataset, (3, 1, 1))
    total = sum(parts)
    if n == total:
        return parts
    train, test = n * parts[0] // total, n * parts[1] // total
    sizes = (train, test, n - train - test)
    if min(sizes) < 1:
        raise DataError(f"showers: expected enough showers per class for a train/test/val split "
                        f"in proportion {parts}, found {n}")
    return sizes


def make_dnn(d: int, width: int = 2048) -> torch.nn.Sequential:
    """The official classifier: three hidden layers of ``width`` with LeakyReLU, one logit."""
    return torch.nn.Sequential(
        torch.nn.Linear(d, width), torch.nn.LeakyReLU(),
        torch.nn.Linear(width, width), torch.nn.LeakyReLU(),
        torch.nn.Linear(width, width), torch.nn.LeakyReLU(),
        torch.nn.Linear(width, 1))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device: expected auto, cpu or cuda, found {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: expected an available CUDA device, found none")
    return torch.device(device)


def split_classes(gen: np.ndarray, ref: np.ndarray, dataset: str, rng: np.random.Generator
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, y) of train, test, val: each class shuffled, split, then both merged and shuffled."""
    parts: list[list[np.ndarray]] = [[], [], []]
    labels: list[list[np.ndarray]] = [[], [], []]
    for x, label in ((gen, 0.0), (ref, 1.0)):
        sizes = split_sizes(len(x), dataset)
        idx = np.split(rng.permutation(len(x)), np.cumsum(sizes)[:-1])
        for p in range(3):
            parts[p].append(x[idx[p]])
            labels[p].append(np.full(len(idx[p]), label, dtype=np.float32))
    out = []
    for p in range(3):
        x, y = np.concatenate(parts[p]), np.concatenate(labels[p])
        perm = rng.permutation(len(x))
        out.append((x[perm], y[perm]))
    return out


@torch.no_grad()
def _predict(model: torch.nn.Module, x: np.ndarray, device: torch.device,
             batch: int = 10_000) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(torch.as_tensor(x[lo:lo + batch], dtype=torch.float32,
                                               device=device))).reshape(-1).double().cpu()
           for lo in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def classifier_test(gen: np.ndarray, ref: np.ndarray, dataset: str, *, epochs: int = 50,
                    width: int = 2048, batch_size: int = 1000, lr: float = 2e-4, seed: int = 0,
                    device: str = "auto", progress: bool = True, desc: str = "classifier",
                    min_steps: int | None = None, standardize: bool | None = None
                    ) -> ClassifierResult:
    """Train the DNN on ``gen`` (label 0) vs ``ref`` (label 1) inputs (N, d); see module doc.

    Args:
        min_steps: Fewest optimiser steps (default: 0 for the official settings,
            :data:`QUICK_MIN_STEPS` otherwise); epochs are added until it is reached.
        standardize: Standardise inputs with train-split statistics (default: only for quick
            settings).
    """
    if gen.shape[1:] != ref.shape[1:] or gen.ndim != 2:
        raise DataError(f"classifier inputs: expected equal (N, d) shapes, found {gen.shape} "
                        f"and {ref.shape}")
    if len(gen) != len(ref):
        raise DataError(f"classifier inputs: expected equal event counts, found {len(gen)} "
                        f"generated and {len(ref)} reference")
    if epochs < 1 or width < 1 or batch_size < 1:
        raise ConfigError(f"--epochs/--width/--batch-size: expected positive integers, found "
                          f"{epochs}/{width}/{batch_size}")
    official = is_official(epochs, width, batch_size, lr)
    min_steps = (0 if official else QUICK_MIN_STEPS) if min_steps is None else min_steps
    standardize = (not official) if standardize is None else standardize
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    (x_tr, y_tr), (x_te, y_te), (x_va, y_va) = split_classes(gen, ref, dataset, rng)
    if standardize:
        mean = x_tr.mean(axis=0, dtype=np.float64)
        std = x_tr.std(axis=0, dtype=np.float64)
        std[~(std > 0)] = 1.0
        x_tr, x_te, x_va = (((x - mean) / std).astype(np.float32)
                            for x in (x_tr, x_te, x_va))
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    model = make_dnn(gen.shape[1], width).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt = torch.as_tensor(x_tr, dtype=torch.float32)
    yt = torch.as_tensor(y_tr, dtype=torch.float32)
    best_acc, best_epoch, best_state = -1.0, 0, None
    gen_t = torch.Generator().manual_seed(seed)
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    epoch_seconds: list[float] = []
    train_loss: list[float] = []
    test_acc: list[float] = []
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xt), generator=gen_t)
        total = 0.0
        for lo in range(0, len(xt), batch_size):
            idx = perm[lo:lo + batch_size]
            logits = model(xt[idx].to(dev)).reshape(-1)
            loss = loss_fn(logits, yt[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_loss.append(total / len(xt))
        acc = float(np.mean((_predict(model, x_te, dev) > 0.5) == y_te))
        test_acc.append(acc)
        epoch_seconds.append(time.perf_counter() - t0)
        bar.set_postfix(test_acc=f"{acc:.4f}")
        if acc > best_acc:
            best_acc, best_epoch = acc, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if acc == 1.0:
            break
    bar.close()
    model.load_state_dict(best_state)
    return finish(_predict(model, x_te, dev), y_te, _predict(model, x_va, dev), y_va,
                  train_loss=train_loss, test_curve=test_acc, best_epoch=best_epoch,
                  epoch_seconds=epoch_seconds, kind="dnn", seed=seed)
