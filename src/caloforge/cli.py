"""The ``caloforge`` command line: one subcommand per module in :mod:`caloforge.commands`.

Each command module defines ``register(subparsers)`` (cheap: no heavy imports) and
``run(args) -> int``. User errors (:class:`~caloforge.errors.CaloforgeError`) are printed as
one line on stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from caloforge import __version__
from caloforge.errors import CaloforgeError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ["info"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caloforge",
        description="Fast ML simulation of calorimeter showers (CaloChallenge format).",
    )
    parser.add_argument("--version", action="version", version=f"caloforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"caloforge.commands.{name}")
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except CaloforgeError as exc:
        print(f"caloforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    except KeyboardInterrupt:
        print(f"caloforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
