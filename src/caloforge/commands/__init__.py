"""Subcommands of the ``caloforge`` CLI (see :mod:`caloforge.cli`)."""
