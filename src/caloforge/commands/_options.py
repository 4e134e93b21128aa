"""Command-line options shared by several commands (a module whose name starts with ``_`` is
not a command).

``--threads N`` (``train``, ``generate``, ``simulate``; ``evaluate`` has its own): on a machine
shared with other jobs one thread per process is often much faster than torch's default of
one per core (on a loaded 2-core machine, a batch-1 CaloINN call took 10x longer with two
threads than with one, and a small training 50x).
"""

from __future__ import annotations

import argparse
import os

from caloforge.errors import ConfigError

#: Environment variables that cap the threads of OpenMP and BLAS libraries; they also reach
#: worker processes (``simulate --workers``).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def add_threads(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` to ``parser``."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads of torch and of numpy's BLAS/OpenMP (default: "
                             "torch's, one per core; 1 is often faster on a busy machine)")


def set_threads(n: int | None) -> None:
    """Use ``n`` CPU threads in torch, in the BLAS/OpenMP libraries loaded so far and (through
    :data:`THREAD_VARIABLES`) in worker processes started later; ``None`` changes nothing."""
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--threads: expected a positive integer, found {n!r}")
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it torch's setting still holds
        return
    threadpool_limits(limits=n)
