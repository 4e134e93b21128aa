"""The ``caloforge`` command line: one subcommand per module in :mod:`caloforge.commands`.

Every module of that package is a command: it defines ``ORDER`` (an int, the position in
``--help``), ``register(subparsers) -> parser`` (cheap: no heavy imports) and
``run(args) -> int``; adding a command touches no other file. User errors
(:class:`~caloforge.errors.CaloforgeError`) are printed as one line on stderr with exit
status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import NoReturn

from caloforge import __version__
from caloforge.atomic import Terminated, protect_inputs, signal_cleanup
from caloforge.errors import CaloforgeError


def command_modules() -> list:
    """The command modules, sorted by their ``ORDER``."""
    import caloforge.commands as pkg

    mods = [importlib.import_module(f"caloforge.commands.{m.name}")
            for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line on stderr (exit 2),
    like every other caloforge error; ``--help`` still prints the full usage. Subparsers
    inherit the class."""

    def error(self, message: str) -> NoReturn:
        msg = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {msg} (see '{self.prog} --help')\n")


#: Argument names (argparse ``dest``) that name files a command reads: they are never
#: accepted as outputs (see :func:`caloforge.atomic.protect_inputs`).
INPUT_ARGS = ("checkpoint", "energies_from", "data", "val", "teacher", "config", "generated",
              "reference", "file")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="caloforge",
        description="Fast ML simulation of calorimeter showers (CaloChallenge format).",
    )
    parser.add_argument("--version", action="version", version=f"caloforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    inputs = [getattr(args, name, None) for name in INPUT_ARGS]
    try:
        flat = [p for v in inputs for p in (v if isinstance(v, list) else [v])]  # nargs='+'
        with signal_cleanup(), protect_inputs(v for v in flat if isinstance(v, str)):
            return int(args._run(args) or 0)
    except CaloforgeError as exc:
        print(f"caloforge {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not caloforge: disk full, permission denied
        if isinstance(exc, BrokenPipeError):  # output piped into e.g. `head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
            return 0
        print(f"caloforge {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError:  # sizes are bounded where they enter; this is the last guard
        print(f"caloforge {args.command}: error: out of memory (expected the inputs to fit in "
              f"this machine's memory, found they do not: use smaller sizes or batches)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"caloforge {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"caloforge {args.command}: terminated", file=sys.stderr)
        return 143


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (h5py and OS messages may contain newlines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
