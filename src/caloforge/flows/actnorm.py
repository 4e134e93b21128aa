"""Activation normalisation (Glow): a per-feature affine map initialised from data.

``z = (x - loc) * exp(-log_scale)``; on the first training-mode call ``loc`` and ``log_scale``
are set to the batch mean and log standard deviation, so the first batch leaves the layer with
zero mean and unit variance. The statistics are buffers/parameters of the module, so a
restored checkpoint never re-initialises.

Reference:
    D. P. Kingma, P. Dhariwal, "Glow", arXiv:1807.03039, Sec. 3.1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ActNorm(nn.Module):
    """Data-initialised per-feature affine transform (see the module docstring).

    Example:
        >>> a = ActNorm(3)
        >>> z, ladj = a(torch.randn(64, 3) * 4 + 1)  # initialises on this batch
        >>> bool(abs(z.std(0) - 1).max() < 1e-3)
        True
    """

    initialized: Tensor

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set the parameters from a batch x (N, D)."""
        self.loc.copy_(x.mean(0))
        std = x.std(0) if len(x) > 1 else torch.ones_like(x[0])
        self.log_scale.copy_(torch.log(std.nan_to_num(1.0).clamp_min(self.eps)))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log|det dz/dx|)`` with the log-det of shape (N,)."""
        if self.training and not bool(self.initialized):
            self.initialize(x)
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(len(x))

    def inverse(self, z: Tensor) -> Tensor:
        return z * torch.exp(self.log_scale) + self.loc
