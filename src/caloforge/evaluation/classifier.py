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
metric's run-to-run spread is far larger than that difference. Once the DNN is confident, a
shower's logit can fall below -87, where its sigmoid (and so its loss gradient) is a
subnormal float32 number; propagated back, it fills the hidden layers' gradients with
subnormals, which x86 CPUs multiply about 100x slower (measured: a 1000 x 2048 by 2048 x 2048
product, 0.1 s normal, 17-25 s subnormal, one or two threads). Logit gradients below
:data:`TINY_LOGIT_GRAD` are therefore set to zero (:func:`drop_tiny_grads`): they are more than
ten orders of magnitude below the float32 resolution of a batch gradient, the parameter updates
stay the same (bitwise, in the tests), and an official DNN on showers paired with the wrong
incident energies trains 1.7x faster (its first 12 epochs at 6,000 per side, one thread).
In float64, as in the official script, the sigmoid turns subnormal only below -708.

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

from caloforge.errors import ConfigError, DataError
from caloforge.evaluation.verdict import ClassifierResult, finish
from caloforge.progress import tqdm

__all__ = ["ClassifierResult", "classifier_test", "is_official", "split_sizes"]

#: Official per-class (train, test, val) sizes.
OFFICIAL_SPLITS = {"1-photons": (80_000, 20_000, 21_000), "1-pions": (80_000, 20_000, 20_800),
                   "2": (60_000, 20_000, 20_000), "3": (60_000, 20_000, 20_000)}
#: Official DNN settings: (epochs, width, batch size, learning rate).
OFFICIAL_DNN = (50, 2048, 1000, 2e-4)
#: Fewest optimiser steps of a quick (non-official) DNN run.
QUICK_MIN_STEPS = 1000
#: Logit gradients (of the batch-mean loss, so about 1 / batch size for a shower the DNN gets
#: wrong) below this are set to zero before backpropagation (module doc).
TINY_LOGIT_GRAD = 1e-20


def drop_tiny_grads(logits: torch.Tensor) -> torch.Tensor:
    """``logits``, whose gradient will have its entries below :data:`TINY_LOGIT_GRAD` in
    magnitude set to zero, so that no subnormal float32 number enters the backward pass."""
    if logits.requires_grad:
        logits.register_hook(lambda g: torch.where(g.abs() < TINY_LOGIT_GRAD,
                                                   torch.zeros_like(g), g))
    return logits


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


def split_rows(n_gen: int, n_ref: int, dataset: str, rng: np.random.Generator
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, labels) of train, test, val: each class shuffled and split, both merged and
    shuffled. Rows index the stacked inputs ``[generated; reference]`` (reference row ``i`` is
    ``n_gen + i``); labels are 0 (generated) and 1 (reference), float32."""
    parts: list[list[np.ndarray]] = [[], [], []]
    labels: list[list[np.ndarray]] = [[], [], []]
    for n, label, offset in ((n_gen, 0.0, 0), (n_ref, 1.0, n_gen)):
        sizes = split_sizes(n, dataset)
        idx = np.split(rng.permutation(n), np.cumsum(sizes)[:-1])
        for p in range(3):
            parts[p].append(idx[p] + offset)
            labels[p].append(np.full(len(idx[p]), label, dtype=np.float32))
    out = []
    for p in range(3):
        rows, y = np.concatenate(parts[p]), np.concatenate(labels[p])
        perm = rng.permutation(len(rows))
        out.append((rows[perm], y[perm]))
    return out


class PairRows:
    """The stacked classifier inputs ``[generated; reference]`` of two (N, d) arrays (or
    anything indexable by integer arrays, e.g. a ``numpy.memmap``), read by row numbers."""

    def __init__(self, gen: np.ndarray, ref: np.ndarray) -> None:
        if gen.ndim != 2 or gen.shape[1:] != ref.shape[1:]:
            raise DataError(f"classifier inputs: expected equal (N, d) shapes, found "
                            f"{gen.shape} and {ref.shape}")
        self.gen, self.ref = gen, ref
        self.n_gen, self.n_ref, self.dim = len(gen), len(ref), gen.shape[1]
        self.dtype = np.result_type(gen.dtype, ref.dtype)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The input rows ``rows`` (N,) of the stack, in that order, as an (N, d) array."""
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        is_gen = rows < self.n_gen
        out[is_gen] = self.gen[rows[is_gen]]
        out[~is_gen] = self.ref[rows[~is_gen] - self.n_gen]
        return out


def split_classes(gen: np.ndarray, ref: np.ndarray, dataset: str, rng: np.random.Generator
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, y) of train, test, val in memory (:func:`split_rows` applied to the inputs)."""
    store = PairRows(gen, ref)
    return [(store.take(rows), y) for rows, y in split_rows(len(gen), len(ref), dataset, rng)]


def _gather_rows(dim: int) -> int:
    """Rows per read when a whole split is streamed through (about 2^22 values)."""
    return max(1, 2**22 // max(dim, 1))


def column_moments(store: PairRows, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of every column over the rows ``rows`` of
    ``store``, read block by block, in float64.

    The sums run row after row in the order of ``rows`` exactly as numpy's
    ``x.mean(axis=0, dtype=float64)`` and ``x.std(axis=0, dtype=float64)`` do on the gathered
    array, so the results are bit for bit those of the in-memory computation.
    """
    step = _gather_rows(store.dim)
    acc = np.zeros(store.dim)
    for lo in range(0, len(rows), step):
        x = store.take(rows[lo:lo + step]).astype(np.float64)
        acc = np.add.reduce(np.concatenate([acc[None], x]), axis=0)
    mean = acc / len(rows)
    acc = np.zeros(store.dim)
    for lo in range(0, len(rows), step):
        d = store.take(rows[lo:lo + step]) - mean
        acc = np.add.reduce(np.concatenate([acc[None], d * d]), axis=0)
    return mean, np.sqrt(acc / len(rows))


@torch.no_grad()
def _predict(model: torch.nn.Module, store: PairRows, rows: np.ndarray, prep, device: torch.device,
             batch: int = 10_000) -> np.ndarray:
    """Sigmoid outputs for the rows ``rows`` of ``store``, ``batch`` rows at a time."""
    model.eval()
    # at most ~2^24 input values a block (64 MB in float32): 10,000 dataset-3 rows would be
    # 1.6 GB, several times over once standardised and converted, and grow the peak with N
    batch = min(batch, max(256, 2**24 // max(store.dim, 1)))
    out = [torch.sigmoid(model(torch.as_tensor(prep(store.take(rows[lo:lo + batch])),
                                               dtype=torch.float32, device=device))
                         ).reshape(-1).double().cpu()
           for lo in range(0, len(rows), batch)]
    return torch.cat(out).numpy()


def check_settings(epochs: int, width: int, batch_size: int) -> None:
    """Refuse non-positive DNN settings (one line naming the options)."""
    if epochs < 1 or width < 1 or batch_size < 1:
        raise ConfigError(f"--epochs/--width/--batch-size: expected positive integers, found "
                          f"{epochs}/{width}/{batch_size}")


def check_pair(gen: np.ndarray, ref: np.ndarray) -> None:
    """Refuse classifier inputs that are not two (N, d) arrays of equal shape."""
    if gen.ndim != 2 or gen.shape[1:] != ref.shape[1:]:
        raise DataError(f"classifier inputs: expected equal (N, d) shapes, found {gen.shape} "
                        f"and {ref.shape}")
    if len(gen) != len(ref):
        raise DataError(f"classifier inputs: expected equal event counts, found {len(gen)} "
                        f"generated and {len(ref)} reference")


def classifier_test(gen: np.ndarray, ref: np.ndarray, dataset: str, *, epochs: int = 50,
                    width: int = 2048, batch_size: int = 1000, lr: float = 2e-4, seed: int = 0,
                    device: str = "auto", progress: bool = True, desc: str = "classifier",
                    min_steps: int | None = None, standardize: bool | None = None
                    ) -> ClassifierResult:
    """Train the DNN on ``gen`` (label 0) vs ``ref`` (label 1) inputs (N, d); see module doc.

    ``gen`` and ``ref`` may be numpy arrays or memory maps: every batch is gathered from them
    by row number, nothing is copied as a whole (see :func:`dnn_test`).

    Args:
        min_steps: Fewest optimiser steps (default: 0 for the official settings,
            :data:`QUICK_MIN_STEPS` otherwise); epochs are added until it is reached.
        standardize: Standardise inputs with train-split statistics (default: only for quick
            settings).
    """
    check_pair(gen, ref)
    return dnn_test(PairRows(gen, ref), dataset, epochs=epochs, width=width,
                    batch_size=batch_size, lr=lr, seed=seed, device=device,
                    progress=progress, desc=desc, min_steps=min_steps, standardize=standardize)


def dnn_test(store: PairRows, dataset: str, *, epochs: int = 50, width: int = 2048,
             batch_size: int = 1000, lr: float = 2e-4, seed: int = 0, device: str = "auto",
             progress: bool = True, desc: str = "classifier", min_steps: int | None = None,
             standardize: bool | None = None) -> ClassifierResult:
    """The DNN test on stacked inputs ``store`` (anything with ``n_gen``, ``n_ref``, ``dim``
    and ``take(rows)``: :class:`PairRows`, or the on-disk scratch of
    :mod:`caloforge.evaluation.scratch`), read batch by batch.

    Memory: one batch (and one prediction block of 10,000 rows) of inputs at a time, plus the
    row numbers of the split; the results equal those of the whole split in memory.
    """
    check_settings(epochs, width, batch_size)
    official = is_official(epochs, width, batch_size, lr)
    return train_classifier(
        lambda dim: make_dnn(dim, width), store, dataset, epochs=epochs, batch_size=batch_size,
        lr=lr, seed=seed, device=device, progress=progress, desc=desc,
        min_steps=(0 if official else QUICK_MIN_STEPS) if min_steps is None else min_steps,
        standardize=(not official) if standardize is None else standardize, kind="dnn")


def standardizer(store: PairRows, rows: np.ndarray, on: bool):
    """``x -> (x - mean) / std`` (float32) with the column moments of the rows ``rows`` of
    ``store`` (constant columns keep std 1), or the identity when ``on`` is false."""
    if not on:
        return lambda x: x
    mean, std = column_moments(store, rows)
    std[~(std > 0)] = 1.0
    return lambda x: ((x - mean) / std).astype(np.float32)


def train_classifier(build, store: PairRows, dataset: str, *, epochs: int, batch_size: int,
                     lr: float, seed: int, device: str, progress: bool, desc: str,
                     min_steps: int, standardize: bool, kind: str,
                     predict_batch: int = 10_000, prep_for=None) -> ClassifierResult:
    """The training protocol shared by the DNN and the ResNet (module doc): official split,
    Adam with BCE on logits, at least ``min_steps`` steps, the epoch of best test accuracy
    kept, then :func:`~caloforge.evaluation.verdict.finish`.

    Args:
        build: ``build(dim)`` returns the network (input (B, dim) -> logits (B, 1) or (B,)).
        store: Stacked inputs read by row number (:class:`PairRows` or a scratch reader).
        predict_batch: Rows per prediction block (memory of the test/val passes).
        prep_for: ``prep_for(store, train_rows)`` returns the input map used when
            ``standardize`` is set (default: per-column standardisation, :func:`standardizer`).
    """
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    (r_tr, y_tr), (r_te, y_te), (r_va, y_va) = split_rows(store.n_gen, store.n_ref, dataset,
                                                          rng)
    if standardize and prep_for is not None:
        prep = prep_for(store, r_tr)
    else:
        prep = standardizer(store, r_tr, standardize)
    steps_per_epoch = math.ceil(len(r_tr) / batch_size)
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    model = build(store.dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
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
        perm = torch.randperm(len(r_tr), generator=gen_t)
        total = 0.0
        for lo in range(0, len(r_tr), batch_size):
            idx = perm[lo:lo + batch_size]
            xb = torch.as_tensor(prep(store.take(r_tr[idx.numpy()])), dtype=torch.float32)
            logits = drop_tiny_grads(model(xb.to(dev)).reshape(-1))
            loss = loss_fn(logits, yt[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_loss.append(total / len(r_tr))
        acc = float(np.mean((_predict(model, store, r_te, prep, dev, predict_batch) > 0.5)
                            == y_te))
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
    return finish(_predict(model, store, r_te, prep, dev, predict_batch), y_te,
                  _predict(model, store, r_va, prep, dev, predict_batch), y_va,
                  train_loss=train_loss, test_curve=test_acc, best_epoch=best_epoch,
                  epoch_seconds=epoch_seconds, kind=kind, seed=seed)
