"""Speed of the reference simulator: showers per second per preset at its official energy mix.

Each configuration runs in a fresh subprocess (``--one``) that writes a real HDF5 file with
:func:`caloforge.simulate.simulate_to_file`, so the wall time includes file writing and the
peak memory (max RSS of the process and its workers) is that run's own. Writes the table into
the ``simulate`` section of BENCHMARKS.md.

    python benchmarks/simulate.py            # all rows (~10 min on 2 cores)
    python benchmarks/simulate.py --quick    # small subsets only (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, table, update_section  # noqa: E402

#: Geant4 time per shower in the CaloGAN geometry (arXiv:1705.02355, Table: 1772 ms on CPU).
GEANT4_MS_PER_SHOWER = 1772.0

#: (dataset, n or None for the official file size, workers, comment)
ROWS = [
    ("1-photons", None, 1, "full file, 1 worker"),
    ("1-photons", None, 2, "full file, 2 workers"),
    ("1-pions", None, 2, "full file"),
    ("2", None, 2, "full file"),
    ("3", 5000, 2, "subset (full file: 50,000)"),
    ("calogan", None, 2, "full file"),
]
QUICK_ROWS = [("1-photons", 5000, 1, "subset"), ("1-pions", 5000, 1, "subset"),
              ("2", 1000, 1, "subset"), ("3", 200, 1, "subset"), ("calogan", 5000, 1, "subset")]


def run_one(dataset: str, n: int | None, workers: int) -> dict:
    """Simulate into a temporary file; return n, seconds and peak RSS in MB."""
    from caloforge.simulate import simulate_to_file
    from caloforge.simulate.energies import FULL_SIZE

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = simulate_to_file(Path(tmp) / "sim.h5", dataset, n, seed=0, full=n is None,
                                workers=workers, progress=False)
        dt = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return {"n": n or FULL_SIZE[dataset], "seconds": dt, "rss_mb": rss, "file_mb": size_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("DATASET", "N", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        ds, n, w = args.one
        print(json.dumps(run_one(ds, None if n == "full" else int(n), int(w))))
        return
    rows = []
    for dataset, n, workers, comment in (QUICK_ROWS if args.quick else ROWS):
        load0 = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--one", dataset,
                              "full" if n is None else str(n), str(workers)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        load = max(load0, os.getloadavg()[0])
        rate = r["n"] / r["seconds"]
        print(f"{dataset}: {r['n']} showers, {workers} workers, {r['seconds']:.1f} s, "
              f"{rate:.0f}/s, peak RSS {r['rss_mb']:.0f} MB", flush=True)
        rows.append([dataset, f"{r['n']:,}", comment, workers, f"{r['seconds']:.1f}",
                     f"{rate:,.0f}", f"{1000 / rate:.3f}", f"{r['rss_mb']:.0f}",
                     f"{r['file_mb']:.0f}", f"{load:.1f}"])
    rows.append(["calogan, Geant4 (CaloGAN paper, arXiv:1705.02355)", "-", "published", 1, "-",
                 f"{1000 / GEANT4_MS_PER_SHOWER:.2f}", f"{GEANT4_MS_PER_SHOWER:.0f}", "-", "-",
                 "-"])
    md = (
        "## Reference simulator (`caloforge simulate`)\n\n"
        "Parametric showers (not Geant4) written to a gzip HDF5 file at each preset's official "
        "energy mix, seed 0, chunks of 1,000 showers (200 for dataset 3); wall time includes "
        "writing. Peak RSS is the largest of the process and its worker processes. The machine "
        "is shared with other jobs (the last column is the 1-minute load average on the "
        "machine during the row; above the core count, times are inflated accordingly). "
        "Targets: full dataset-1 photon file <= 2 min, dataset-2 file <= 10 min on 2 cores.\n\n"
        + table(["dataset", "showers", "run", "workers", "wall [s]", "showers/s", "ms/shower",
                 "peak RSS [MB]", "file [MB]", "load avg"], rows)
        + f"\n\nMachine: {machine()}. Script: `python benchmarks/simulate.py`.\n"
    )
    update_section("simulate", md)
    print(md)


if __name__ == "__main__":
    main()
