"""``caloforge intrinsic-dim FILE``: the intrinsic dimension of a shower file (CaloMan's
latent-size estimate; Levina–Bickel MLE with MacKay–Ghahramani averaging, scanned over k)."""

from __future__ import annotations

import argparse

ORDER = 50


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from caloforge.geometry import DATASETS

    p = sub.add_parser("intrinsic-dim",
                       help="estimate the intrinsic dimension of showers (latent size for CaloMan)")
    p.add_argument("file", help="HDF5 shower file (CaloChallenge or CaloGAN)")
    p.add_argument("--k", default="5:20", metavar="KMIN:KMAX",
                   help="neighbourhood sizes to scan, inclusive (default 5:20)")
    p.add_argument("--space", default="all", choices=("raw", "pre", "pre-log", "all"),
                   help="raw MeV voxels, pre = E/(3.1 E_inc), pre-log = logit(pre); "
                        "default: all three")
    p.add_argument("-n", type=int, default=10_000, metavar="N",
                   help="showers to use, drawn at random (default 10000; kNN is O(N^2))")
    p.add_argument("-d", "--dataset", choices=DATASETS, default=None,
                   help="geometry (default: inferred from the voxel count)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    p.add_argument("--clip-negative", action="store_true",
                   help="set negative voxel energies to 0 instead of failing")
    return p


def run(args: argparse.Namespace) -> int:
    from caloforge.data import read_subsample
    from caloforge.errors import CaloforgeError, ConfigError, DataError
    from caloforge.intrinsic_dim import SPACES, estimate_showers, parse_k_range

    k_min, k_max = parse_k_range(args.k)
    if args.n < k_max + 1:
        raise ConfigError(f"-n: expected at least KMAX+1 = {k_max + 1} showers, found {args.n}")
    # streamed: only the -n chosen showers are kept (a dataset-3 file is 8 GB)
    data = read_subsample(args.file, args.n, args.seed, args.dataset,
                          clip_negative=args.clip_negative)
    if len(data) < k_max + 1:
        raise DataError(f"{args.file}[showers]: expected at least KMAX+1 = {k_max + 1} "
                        f"showers, found {len(data)}")
    spaces = SPACES if args.space == "all" else (args.space,)
    print(f"file: {args.file}  ({len(data)} showers, {data.geometry.n_voxels} voxels, "
          f"k = {k_min}..{k_max})")
    for space in spaces:
        try:
            est = estimate_showers(data.showers, data.e_inc, space, k_min, k_max)
        except CaloforgeError as exc:  # e.g. too few distinct showers: name the file
            raise type(exc)(f"{args.file}[showers]: {exc}") from None
        ks = sorted(est.per_k)
        show = [ks[0], ks[len(ks) // 2], ks[-1]] if len(ks) > 2 else ks
        detail = ", ".join(f"k={k}: {est.per_k[k]:.1f}" for k in dict.fromkeys(show))
        print(f"{space:>8}: {est.dimension:6.1f}   ({detail}; used {est.n_used}, "
              f"dropped {est.n_zero} empty, {est.n_duplicate} duplicate)")
    return 0
