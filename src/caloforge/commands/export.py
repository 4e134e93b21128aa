"""``caloforge export``: a trained sampler as an ONNX graph (noise, e_inc) -> showers."""

from __future__ import annotations

import argparse

ORDER = 60


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a trained one-pass sampler to ONNX")
    p.add_argument("--checkpoint", required=True, help="RUN_DIR/model.pt")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


def run(args: argparse.Namespace) -> int:
    from caloforge.atomic import check_writable
    from caloforge.errors import ConfigError
    from caloforge.export import check_onnx, check_opset, export_onnx, exportable, refusal
    from caloforge.models.base import load_model

    check_opset(args.opset)
    check_writable(args.output, args.overwrite)
    model = load_model(args.checkpoint)
    if not exportable(model):
        raise ConfigError(refusal(model, f"{args.checkpoint}[model]"))
    path = export_onnx(model, args.output, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {path}: inputs noise (N, {model.noise_dim}) float32 and e_inc (N,) MeV, "
          f"output showers (N, {model.geometry.n_voxels}) MeV")
    try:
        err = check_onnx(model, path)
    except ImportError:
        print("onnxruntime is not installed (pip install 'caloforge[onnx]'): output not checked")
        return 0
    print(f"ONNX Runtime vs torch on 256 showers: max relative deviation {err:.2e}")
    return 0
