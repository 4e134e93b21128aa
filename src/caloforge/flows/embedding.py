"""Small networks of the flows: plain and residual MLPs (the coupling hyper-networks) and a
learned context embedding.

A hyper-network maps ``[x_a, h]`` (the conditioning half and the embedded context) to the
spline parameters of the transformed half. Its last layer is zero-initialised, so each coupling
layer starts as the identity (CaloINN, Glow).

References:
    K. He et al., "Deep Residual Learning", arXiv:1512.03385 (residual blocks).
    C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032 (ResidualNet hyper-networks).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from caloforge.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU, "elu": nn.ELU,
               "tanh": nn.Tanh, "gelu": nn.GELU}


def activation(name: str) -> type[nn.Module]:
    """The activation class called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"config[activation]: expected one of {', '.join(ACTIVATIONS)}, "
                          f"found {name!r}")
    return ACTIVATIONS[name]


class MLP(nn.Sequential):
    """``Linear -> act -> ... -> Linear`` with hidden widths ``hidden``.

    Args:
        zero_last: Zero-initialise the output layer (identity-initialised couplings).
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (256, 256),
                 act: str = "relu", zero_last: bool = False, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), activation(act)()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        last = nn.Linear(width, out_features)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


class ResidualBlock(nn.Module):
    """``x + Linear(act(Linear(act(x))))`` at a fixed width."""

    def __init__(self, width: int, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(activation(act)(), nn.Linear(width, width), activation(act)(),
                                 nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                 nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ResidualMLP(nn.Module):
    """Residual MLP: ``Linear(in, w)``, ``len(hidden)`` residual blocks of width ``w``,
    ``act``, ``Linear(w, out)``; all entries of ``hidden`` must equal ``w``."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64, 64, 64),
                 act: str = "relu", zero_last: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or len(set(hidden)) != 1:
            raise ConfigError(f"config[hidden]: expected equal widths for residual networks, "
                              f"found {list(hidden)}")
        w = hidden[0]
        self.first = nn.Linear(in_features, w)
        self.blocks = nn.Sequential(*(ResidualBlock(w, act, dropout) for _ in hidden))
        self.act = activation(act)()
        self.last = nn.Linear(w, out_features)
        if zero_last:
            nn.init.zeros_(self.last.weight)
            nn.init.zeros_(self.last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.last(self.act(self.blocks(self.first(x))))


def hyper_network(in_features: int, out_features: int, hidden: Sequence[int],
                  residual: bool = False, act: str = "relu", dropout: float = 0.0) -> nn.Module:
    """A zero-initialised-output MLP or :class:`ResidualMLP`."""
    cls = ResidualMLP if residual else MLP
    return cls(in_features, out_features, hidden, act=act, zero_last=True, dropout=dropout)


class ContextEmbedding(nn.Module):
    """A learned embedding of the raw context (e.g. ``log E_inc``) shared by all layers.

    Example:
        >>> import torch
        >>> emb = ContextEmbedding(1, 8)
        >>> emb(torch.zeros(5, 1)).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64,),
                 act: str = "relu") -> None:
        super().__init__()
        self.out_features = out_features
        self.net = MLP(in_features, out_features, hidden, act=act)

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c)


