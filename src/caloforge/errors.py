"""The one exception family of caloforge.

Every error a user can cause (a bad file, a bad config value, a geometry mismatch) is a
:class:`CaloforgeError`. Its message is one line that names the file, the field, what was
expected and what was found; the CLI prints it without a traceback and exits non-zero.
"""

from __future__ import annotations


class CaloforgeError(Exception):
    """Base class of every user-facing caloforge error."""


class DataError(CaloforgeError):
    """A shower file is missing, unreadable, or holds invalid values."""


class GeometryError(CaloforgeError):
    """A binning description is malformed, or data does not fit a geometry."""


class ConfigError(CaloforgeError):
    """A configuration value (YAML recipe or CLI option) is invalid."""


def where(path: object | None, field: str | None = None) -> str:
    """Format the ``file[field]`` prefix used in error messages."""
    loc = str(path) if path is not None else "<memory>"
    return f"{loc}[{field}]" if field else loc
