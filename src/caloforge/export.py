"""ONNX export of samplers: ``(noise, e_inc) -> showers``, postprocessing inside the graph.

A model is exportable when it has a deterministic ``from_noise(z, e_inc)`` and a
``noise_dim``, and its ``export_blocker()`` (if any) returns None: CaloINN, and CaloMan /
VAE+INN with coupling flows, whose noise vector also carries the decoder's per-voxel draws
(two standard normals a voxel for the zero-inflated decoder: occupancy through the normal CDF
and the log-normal's draw). Random numbers stay outside the graph (ONNX random ops and
``torch.distributions`` sampling export poorly, pytorch#111034): the caller feeds standard
normal noise of shape (N, noise_dim) and incident energies (N,) in MeV and gets voxel energies
(N, n_voxels) in MeV, all float32. The batch axis is dynamic, so one file serves batch 1
(Geant4 Par04-style inference) and batch 10,000 alike.

Example:
    >>> export_onnx(load_model("runs/caloinn/model.pt"), "caloinn.onnx")  # doctest: +SKIP
    >>> import onnxruntime as ort, numpy as np  # doctest: +SKIP
    >>> sess = ort.InferenceSession("caloinn.onnx")  # doctest: +SKIP
    >>> sess.run(None, {"noise": z, "e_inc": e})[0].shape  # doctest: +SKIP
    (N, 368)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from caloforge.atomic import atomic_path
from caloforge.errors import ConfigError
from caloforge.models.base import GeneratorModel


class _Sampler(nn.Module):
    """Wraps ``model.from_noise`` as a plain two-input module for the exporter."""

    def __init__(self, model: GeneratorModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, noise: Tensor, e_inc: Tensor) -> Tensor:
        return self.model.from_noise(noise, e_inc)


#: Opsets the export accepts: the samplers use ``unflatten`` (ONNX opset 13) and the
#: TorchScript exporter writes opsets up to 20.
MIN_OPSET = 13
MAX_OPSET = 20


def check_opset(opset: object) -> int:
    """``opset`` if the export can write it, else :class:`ConfigError` (one line)."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not (
            MIN_OPSET <= opset <= MAX_OPSET):
        raise ConfigError(f"--opset: expected an ONNX opset {MIN_OPSET}..{MAX_OPSET} (the "
                          f"samplers need {MIN_OPSET} or newer), found {opset!r}")
    return opset


def exportable(model: GeneratorModel) -> bool:
    """Whether ``model`` has the deterministic sampler the export needs."""
    if not (hasattr(model, "from_noise") and hasattr(model, "noise_dim")):
        return False
    blocker = getattr(model, "export_blocker", None)
    return blocker is None or blocker() is None


def refusal(model: GeneratorModel, where: str) -> str:
    """The one-line reason ``model`` cannot be exported (for :class:`ConfigError`)."""
    blocker = getattr(model, "export_blocker", None)
    reason = blocker() if blocker is not None else None
    if reason:
        return reason
    return (f"{where}: expected a model with a one-pass sampler (caloinn, caloman, vae-inn), "
            f"found {model.name!r}, which cannot be exported")


def export_onnx(model: GeneratorModel, path: str | os.PathLike, *, opset: int = 17,
                overwrite: bool = True, batch: int = 16) -> Path:
    """Write ``model``'s sampler as an ONNX graph with inputs ``noise`` (N, noise_dim) and
    ``e_inc`` (N,) [MeV] and output ``showers`` (N, n_voxels) [MeV]; float32, dynamic N.

    Raises:
        ConfigError: the model has no deterministic sampler (e.g. the MAF teacher, whose
            inverse would unroll hundreds of sequential passes).
    """
    check_opset(opset)
    if not exportable(model):
        raise ConfigError(refusal(model, "--checkpoint"))
    sampler = _Sampler(model).eval().to(device="cpu", dtype=torch.float32)
    noise = torch.randn(batch, model.noise_dim)
    e_inc = torch.full((batch,), 65536.0)
    with atomic_path(path, overwrite=overwrite) as tmp, torch.no_grad(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(sampler, (noise, e_inc), str(tmp), input_names=["noise", "e_inc"],
                          output_names=["showers"], opset_version=opset, dynamo=False,
                          dynamic_axes={"noise": {0: "n"}, "e_inc": {0: "n"},
                                        "showers": {0: "n"}})
    return Path(path)


def check_onnx(model: GeneratorModel, path: str | os.PathLike, n: int = 256,
               seed: int = 0) -> float:
    """Largest |ONNX Runtime - torch| of the exported sampler on ``n`` showers, relative to
    the largest voxel energy (needs the ``onnx`` extra)."""
    import numpy as np
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, model.noise_dim, generator=gen)
    e_inc = 2.0 ** torch.randint(8, 23, (n,), generator=gen).float()
    sampler = _Sampler(model).eval().to(device="cpu", dtype=torch.float32)
    with torch.no_grad():
        ref = sampler(noise, e_inc).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"noise": noise.numpy(), "e_inc": e_inc.numpy()})[0]
    return float(np.abs(out - ref).max() / max(float(np.abs(ref).max()), 1e-30))
