"""``caloforge simulate``: write showers of the reference (parametric, not Geant4) simulator."""

from __future__ import annotations

import argparse
import time

from caloforge.commands._options import add_threads, set_threads
from caloforge.geometry import DATASETS

ORDER = 20

_PARTICLES = ("photon", "electron", "positron", "pion")


def _energy_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO,HI in MeV (e.g. 1000,100000), found {text!r}") from None
    return lo, hi


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "simulate", help="simulate showers with the built-in parametric simulator (not Geant4)",
        description="Simulate calorimeter showers with caloforge's parametric reference "
                    "simulator (Grindhammer-Peters EM showers, Bock-type pions; not Geant4) "
                    "into a CaloChallenge (or CaloGAN) HDF5 file.")
    p.add_argument("--dataset", "-d", required=True, choices=DATASETS,
                   help="geometry and official energy mix")
    p.add_argument("--particle", choices=_PARTICLES, default=None,
                   help="default: the dataset's own (photon, pion, electron, electron, photon)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("-n", type=int, default=None, help="number of showers")
    size.add_argument("--full", action="store_true",
                      help="the official file size (121000, 120800, 100000, 50000, 100000)")
    p.add_argument("--energy-range", type=_energy_range, default=None, metavar="LO,HI",
                   help="incident energies in MeV drawn from [LO, HI] instead of the official mix")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed, same file)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads(p)
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    return p


def run(args: argparse.Namespace) -> int:
    from caloforge.atomic import check_writable
    from caloforge.errors import ConfigError
    from caloforge.simulate import simulate_to_file

    set_threads(args.threads)
    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n: expected a positive number of showers, found {args.n}")
    if args.seed < 0:
        raise ConfigError(f"--seed: expected an integer >= 0, found {args.seed}")
    if args.workers < 1:
        raise ConfigError(f"--workers: expected a positive integer, found {args.workers}")
    check_writable(args.output, args.overwrite)
    t0 = time.perf_counter()
    path = simulate_to_file(args.output, args.dataset, args.n, seed=args.seed,
                            particle=args.particle, energies=args.energy_range, full=args.full,
                            workers=args.workers, progress=not args.no_progress,
                            overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    print(f"wrote {path} ({args.dataset}, seed {args.seed}) in {dt:.1f} s "
          f"[parametric caloforge simulator, not Geant4]")
    return 0
