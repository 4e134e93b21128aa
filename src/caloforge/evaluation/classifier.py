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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from caloforge.errors import ConfigError, DataError

#: Official per-class (train, test, val) sizes.
OFFICIAL_SPLITS = {"1-photons": (80_000, 20_000, 21_000), "1-pions": (80_000, 20_000, 20_800),
                   "2": (60_000, 20_000, 20_000), "3": (60_000, 20_000, 20_000)}
CLIP = 1e-6


@dataclass
class ClassifierResult:
    """One classifier test.

    Attributes:
        auc: ROC AUC of the calibrated val outputs (0.5 = indistinguishable).
        jsd: (ln 2 - BCE) / ln 2 of the calibrated val outputs (0 = indistinguishable).
        accuracy: Val accuracy after calibration.
        best_epoch: 1-based epoch with the best test accuracy.
        scores: Calibrated val outputs; ``labels``: their labels (1 = reference).
        epoch_seconds: Wall time of each epoch (training and test-accuracy pass).
    """

    auc: float
    jsd: float
    accuracy: float
    best_epoch: int
    scores: np.ndarray
    labels: np.ndarray
    epoch_seconds: list[float]


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


def _split(gen: np.ndarray, ref: np.ndarray, dataset: str, rng: np.random.Generator
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
                    device: str = "auto", progress: bool = True, desc: str = "classifier"
                    ) -> ClassifierResult:
    """Train the DNN on ``gen`` (label 0) vs ``ref`` (label 1) inputs (N, d); see module doc."""
    if gen.shape[1:] != ref.shape[1:] or gen.ndim != 2:
        raise DataError(f"classifier inputs: expected equal (N, d) shapes, found {gen.shape} "
                        f"and {ref.shape}")
    if len(gen) != len(ref):
        raise DataError(f"classifier inputs: expected equal event counts, found {len(gen)} "
                        f"generated and {len(ref)} reference")
    if epochs < 1 or width < 1:
        raise ConfigError(f"--epochs/--width: expected positive integers, found {epochs}/{width}")
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    (x_tr, y_tr), (x_te, y_te), (x_va, y_va) = _split(gen, ref, dataset, rng)
    model = make_dnn(gen.shape[1], width).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt = torch.as_tensor(x_tr, dtype=torch.float32)
    yt = torch.as_tensor(y_tr, dtype=torch.float32)
    best_acc, best_epoch, best_state = -1.0, 0, None
    gen_t = torch.Generator().manual_seed(seed)
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    epoch_seconds = []
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xt), generator=gen_t)
        for lo in range(0, len(xt), batch_size):
            idx = perm[lo:lo + batch_size]
            logits = model(xt[idx].to(dev)).reshape(-1)
            loss = loss_fn(logits, yt[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = float(np.mean((_predict(model, x_te, dev) > 0.5) == y_te))
        epoch_seconds.append(time.perf_counter() - t0)
        bar.set_postfix(test_acc=f"{acc:.4f}")
        if acc > best_acc:
            best_acc, best_epoch = acc, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if acc == 1.0:
            break
    bar.close()
    model.load_state_dict(best_state)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=CLIP, y_max=1.0 - CLIP)
    iso.fit(_predict(model, x_te, dev), y_te)
    p = iso.predict(_predict(model, x_va, dev))
    bce = -float(np.mean(y_va * np.log(p) + (1.0 - y_va) * np.log(1.0 - p)))
    return ClassifierResult(auc=float(roc_auc_score(y_va, p)),
                            jsd=float((np.log(2.0) - bce) / np.log(2.0)),
                            accuracy=float(np.mean(np.round(p) == y_va)), best_epoch=best_epoch,
                            scores=p, labels=y_va, epoch_seconds=epoch_seconds)
