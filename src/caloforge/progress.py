"""Progress reporting that suits a terminal and a batch log alike.

:func:`tqdm` is a drop-in replacement for ``tqdm.auto.tqdm`` as caloforge uses it (an iterable
or ``total=``, ``desc``, ``unit``, ``disable``, ``leave``; ``update``, ``set_postfix``,
``close``, context manager, iteration; ``tqdm.write``):

* when the output stream (stderr) is a terminal, it *is* a tqdm progress bar;
* otherwise (a log file, a pipe, a batch scheduler) it writes one plain line, ending in a
  newline and without carriage returns, at most every ``CALOFORGE_PROGRESS_INTERVAL`` seconds
  (default 30), plus a last line on close when it wrote any. A 40-second demo then writes a
  handful of lines instead of ~1,000 redraw frames, and a day-long training a few thousand
  lines instead of megabytes.

Example:
    >>> from caloforge.progress import tqdm
    >>> total = 0
    >>> for i in tqdm(range(3), desc="demo", disable=True):
    ...     total += i
    >>> total
    3
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm as _tqdm

#: Default seconds between two plain progress lines.
DEFAULT_INTERVAL = 30.0


def interval() -> float:
    """Seconds between plain progress lines (``CALOFORGE_PROGRESS_INTERVAL``, default 30)."""
    try:
        return max(0.0, float(os.environ.get("CALOFORGE_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class PlainProgress:
    """Plain-line progress for non-terminal output (see the module docstring).

    Args:
        iterable: Items to iterate over (optional).
        total: Expected count (default ``len(iterable)`` when it has one).
        desc: Label at the start of each line.
        unit: Name of one item (``it``, ``shower``, ...).
        file: Output stream (default ``sys.stderr``).
        every: Seconds between lines (default :func:`interval`).
    """

    def __init__(self, iterable: Iterable | None = None, total: float | None = None,
                 desc: str | None = None, unit: str = "it", file: TextIO | None = None,
                 every: float | None = None) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file
        self.every = interval() if every is None else every
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.lines = 0
        self.closed = False

    # -- tqdm's interface ----------------------------------------------------------------------
    def update(self, n: float = 1) -> None:
        """Advance by ``n`` items; write a line if ``every`` seconds have passed."""
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        """Values appended to the next line (``loss=...``)."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        """Write a last line if any line was written (short tasks stay silent)."""
        if not self.closed and self.lines:
            self._line(time.monotonic())
        self.closed = True

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress: nothing to iterate over (pass an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def write(s: str, file: TextIO | None = None, end: str = "\n") -> None:
        _tqdm.write(s, file=file, end=end)

    # -- output --------------------------------------------------------------------------------
    def _line(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        left = ""
        if self.total and rate > 0:
            left = f", ~{max(self.total - self.n, 0) / rate:.0f} s left"
        text = (f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{pct}, "
                f"{elapsed:.0f} s, {rate:.3g} {self.unit}/s{left}"
                + (f", {self.postfix}" if self.postfix else ""))
        stream = self.file or sys.stderr
        try:
            stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed log must not stop the work
            return
        self.lines += 1


def tqdm(iterable: Iterable | None = None, *args: Any, **kwargs: Any) -> Any:
    """A tqdm bar on a terminal, :class:`PlainProgress` elsewhere (see the module docstring).

    Accepts tqdm's arguments; those a plain line has no use for are ignored there."""
    file = kwargs.get("file")
    if kwargs.get("disable") or _is_terminal(file or sys.stderr):
        return _tqdm(iterable, *args, **kwargs)
    return PlainProgress(iterable, total=kwargs.get("total"), desc=kwargs.get("desc"),
                         unit=kwargs.get("unit", "it"), file=file)


tqdm.write = _tqdm.write  # type: ignore[attr-defined]
