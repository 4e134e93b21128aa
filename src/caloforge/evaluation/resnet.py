"""``cls-resnet``: the CaloChallenge CNN classifier of datasets 2 and 3 (a 3D ResNet-18).

Architecture (spec/EVALUATION.md §4, HP ``resnet.py``): the voxels of one shower form a
one-channel 3D image on the (layer, alpha, r) grid, (45, 16, 9) on dataset 2 and (45, 50, 18)
on dataset 3. A ResNet-18 in three dimensions reads it:

* conv1: 7 x 7 x 7, stride 2, padding 3, no bias, then BatchNorm, ReLU and a 3 x 3 x 3 max-pool
  of stride 2;
* four stages of two BasicBlocks each (two 3 x 3 x 3 convolutions with BatchNorm, identity or
  1 x 1 x 1 strided projection shortcut), widths ``w, 2w, 2w, 4w`` (official ``w = 32``:
  32/64/64/128), stride 1 for the first stage and 2 for the others;
* adaptive average pooling to one value per channel; the BatchNorm'd incident-energy feature
  (``log10 E_inc``) is concatenated before the final linear layer (4w + 1 -> 1 logit).

Zero padding everywhere, as in the reference network; the spec does not ask for circular
padding in alpha.

Input: the ``cls-low`` vector ``[log10 E_inc, x_v / E_inc for every voxel]``
(:mod:`caloforge.evaluation.inputs`); the voxels are reshaped in the geometry's order (layer
after layer, each layer alpha-major, r fastest). Only geometries whose layers all share one
polar (n_alpha, n_r) grid have such an image: dataset 1 and CaloGAN are refused.

Training and reading are those of the DNN
(:func:`caloforge.evaluation.classifier.train_classifier`): the official per-class split, Adam
with BCE on logits, the epoch of best test accuracy kept, isotonic calibration on test, AUC/JSD
on val, bootstrap interval, ``learned`` flag, reading.
Inputs are read batch by batch from a :class:`~caloforge.evaluation.classifier.PairRows` or the
on-disk scratch file (:mod:`caloforge.evaluation.scratch`), never as a whole.

Settings. The spec fixes the network, not its training; caloforge takes the DNN's official
training for the official protocol: :data:`OFFICIAL_RESNET` = 50 epochs, width 32, batch 1000,
Adam lr 2e-4, raw inputs. Anything else is a *quick* run that stays trainable on a CPU:
standardised inputs (:func:`image_standardizer`: one scale for all voxels) and at least
:data:`QUICK_MIN_STEPS` optimiser steps; :data:`QUICK_WIDTH` (8: 8/16/16/32 channels),
:data:`QUICK_BATCH` (128) and :data:`QUICK_LR` (1e-3) are the quick defaults of ``evaluate``.
At lr 2e-4 and a few hundred steps the network does not even see voxels scaled by 1.5 at 500
showers per side; at 1e-3 it does (AUC 0.97, measured on simulated dataset-2 showers).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.evaluation.classifier import (
    PairRows,
    check_pair,
    column_moments,
    train_classifier,
)
from caloforge.evaluation.verdict import ClassifierResult
from caloforge.geometry import Geometry

__all__ = ["OFFICIAL_RESNET", "QUICK_BATCH", "QUICK_LR", "QUICK_MIN_STEPS", "QUICK_WIDTH",
           "ResNet3d",
           "grid_shape", "is_official", "resnet_store_test", "resnet_test"]

#: Official settings (assumed: the DNN's training): epochs, base width, batch size, learning rate.
OFFICIAL_RESNET = (50, 32, 1000, 2e-4)
#: Quick (CPU) defaults: base width, batch size, fewest optimiser steps.
QUICK_WIDTH = 8
QUICK_BATCH = 128
QUICK_MIN_STEPS = 300
QUICK_LR = 1e-3
#: Showers per prediction block (activations of dataset 3 at width 32: ~2.6 MB per shower).
PREDICT_BATCH = 500


def is_official(epochs: int, width: int, batch_size: int, lr: float) -> bool:
    """Whether these ResNet settings are the official protocol."""
    return (epochs, width, batch_size, lr) == OFFICIAL_RESNET


def grid_shape(geometry: Geometry) -> tuple[int, int, int]:
    """(n_layers, n_alpha, n_r) of a geometry whose layers share one polar grid; ConfigError
    (one line) for any other (dataset 1, CaloGAN)."""
    shapes = {(lyr.cartesian, lyr.shape) for lyr in geometry.layers}
    if len(shapes) != 1 or next(iter(shapes))[0]:
        found = ", ".join(sorted({("cartesian " if c else "") + f"{a}x{r}"
                                  for c, (a, r) in shapes}))
        raise ConfigError(f"cls-resnet: expected a geometry whose layers share one polar "
                          f"(alpha, r) grid (datasets 2 and 3), found {geometry.name!r} with "
                          f"layer grids {found}")
    n_alpha, n_r = next(iter(shapes))[1]
    return geometry.n_layers, n_alpha, n_r


def image_standardizer(store: PairRows, rows: np.ndarray):
    """``x -> standardised x`` (float32) for the quick protocol: ``log10 E_inc`` by its own mean
    and standard deviation, every voxel by *one* mean and standard deviation pooled over all
    voxels of the train rows ``rows``. One scale for the whole image keeps the convolution's
    weight sharing meaningful (a per-voxel scale would give each voxel its own units)."""
    mean, std = column_moments(store, rows)
    m_vox = float(mean[1:].mean())
    s_vox = float(np.sqrt(np.mean(std[1:] ** 2 + (mean[1:] - m_vox) ** 2)))
    shift = np.full(store.dim, m_vox)
    scale = np.full(store.dim, s_vox if s_vox > 0 else 1.0)
    shift[0], scale[0] = mean[0], std[0] if std[0] > 0 else 1.0
    return lambda x: ((x - shift) / scale).astype(np.float32)


class BasicBlock3d(nn.Module):
    """Two 3 x 3 x 3 convolutions with BatchNorm and a (projected) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.short = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv3d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm3d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


class ResNet3d(nn.Module):
    """3D ResNet-18 on (B, 1 + L*A*R) ``cls-low`` rows -> logits (B, 1); see module doc.

    Args:
        grid: (n_layers, n_alpha, n_r) of the voxel image.
        width: Base width ``w`` (channels ``w, 2w, 2w, 4w``; official 32).
        blocks: BasicBlocks per stage (ResNet-18: 2, 2, 2, 2).
    """

    def __init__(self, grid: tuple[int, int, int], width: int = 32,
                 blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"cls-resnet width: expected a positive integer, found {width}")
        self.grid = tuple(grid)
        widths = [width, 2 * width, 2 * width, 4 * width]
        self.stem = nn.Sequential(nn.Conv3d(1, width, 7, 2, 3, bias=False), nn.BatchNorm3d(width),
                                  nn.ReLU(), nn.MaxPool3d(3, 2, 1))
        stages, c_in = [], width
        for k, (c_out, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stages.append(BasicBlock3d(c_in, c_out, 2 if (j == 0 and k > 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.energy_norm = nn.BatchNorm1d(1)
        self.head = nn.Linear(c_in + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_vox = self.grid[0] * self.grid[1] * self.grid[2]
        if x.shape[-1] != 1 + n_vox:
            raise ConfigError(f"cls-resnet input: expected 1 + {n_vox} columns for grid "
                              f"{self.grid}, found {x.shape[-1]}")
        image = x[:, 1:].reshape(len(x), 1, *self.grid)
        h = self.pool(self.stages(self.stem(image))).flatten(1)
        return self.head(torch.cat([h, self.energy_norm(x[:, :1])], dim=1))


def resnet_store_test(store: PairRows, geometry: Geometry, *, epochs: int = 50, width: int = 32,
                      batch_size: int = 1000, lr: float = 2e-4, seed: int = 0,
                      device: str = "auto", progress: bool = True, desc: str = "cls-resnet",
                      min_steps: int | None = None, standardize: bool | None = None
                      ) -> ClassifierResult:
    """The ResNet test on stacked ``cls-low`` inputs ``store`` (:class:`PairRows` or the
    scratch reader), read batch by batch.

    Args:
        geometry: Geometry of the showers (its grid shapes the image).
        epochs, width, batch_size, lr: Training settings (:data:`OFFICIAL_RESNET`; others are
            a quick run).
        min_steps: Fewest optimiser steps (default: 0 official, :data:`QUICK_MIN_STEPS` quick).
        standardize: Standardise inputs (:func:`image_standardizer`; default: only for quick
            settings).
    """
    grid = grid_shape(geometry)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"--epochs/--batch-size: expected positive integers, found "
                          f"{epochs}/{batch_size}")
    if store.dim != 1 + geometry.n_voxels:
        raise ConfigError(f"cls-resnet input: expected 1 + {geometry.n_voxels} columns, found "
                          f"{store.dim}")
    official = is_official(epochs, width, batch_size, lr)
    with native_convolutions(grid):
        return train_classifier(
            lambda dim: ResNet3d(grid, width), store, geometry.name, epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress,
            desc=desc,
            min_steps=(0 if official else QUICK_MIN_STEPS) if min_steps is None else min_steps,
            standardize=(not official) if standardize is None else standardize, kind="resnet",
            predict_batch=PREDICT_BATCH, prep_for=image_standardizer)


def native_convolutions(grid: tuple[int, int, int]) -> contextlib.AbstractContextManager:
    """oneDNN off (PyTorch's native CPU convolutions) for grids with a side below 5, else no
    change. With torch 2.13.0+cpu on a 2-core Intel Xeon, the backward pass of the 7^3 stem on
    a (5, 4, 3) grid hung or crashed in 5 of 6 runs with two threads and never with oneDNN off
    (grids (6, 5, 4), (7, 7, 7) and those of datasets 2 and 3 ran clean). The switch is
    global while it is on, and covers the backward passes inside it."""
    if min(grid) >= 5:
        return contextlib.nullcontext()
    return torch.backends.mkldnn.flags(enabled=False)


def resnet_test(gen: np.ndarray, ref: np.ndarray, geometry: Geometry, **kwargs
                ) -> ClassifierResult:
    """The ResNet test on in-memory (or memory-mapped) ``cls-low`` inputs ``gen`` (label 0)
    and ``ref`` (label 1), (N, 1 + n_voxels) each; keyword arguments of
    :func:`resnet_store_test`."""
    check_pair(gen, ref)
    return resnet_store_test(PairRows(gen, ref), geometry, **kwargs)
