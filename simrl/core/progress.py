"""Progress display: a live tqdm bar on a terminal, one plain line every few seconds otherwise.

A redirected log (``simrl quickstart > run.log``, CI, a cluster job) then holds readable lines
such as ``ppo hopper: 240k/800k step (30%), 9.6k step/s, eta 58 s, ret=812.3`` instead of
thousands of carriage-return updates.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping, TextIO

LINE_INTERVAL_S = 10.0


def progress(total: int | None = None, desc: str = "", *, unit: str = "it", initial: int = 0,
             disable: bool = False, unit_scale: bool = True, file: TextIO | None = None,
             interval_s: float = LINE_INTERVAL_S) -> Any:
    """A progress display with tqdm's ``update``, ``set_postfix``, ``n`` and ``close``: tqdm's
    bar when ``file`` (default stderr) is a terminal, else :class:`LineProgress`."""
    stream = file if file is not None else sys.stderr
    if not disable and _is_terminal(stream):
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale,
                    dynamic_ncols=True, file=stream)
    return LineProgress(total, desc, unit=unit, initial=initial, disable=disable, file=stream,
                        interval_s=interval_s)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _si(x: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}" if isinstance(x, float) and not x.is_integer() else f"{int(x)}"


class LineProgress:
    """tqdm's interface, written as one line per ``interval_s`` seconds (and one at the end)."""

    def __init__(self, total: int | None, desc: str = "", *, unit: str = "it", initial: int = 0,
                 disable: bool = False, file: TextIO | None = None,
                 interval_s: float = LINE_INTERVAL_S):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = initial
        self.disable = disable
        self.file = file if file is not None else sys.stderr
        self.interval_s = interval_s
        self.postfix: dict[str, Any] = {}
        self._start_n = initial
        self._t0 = self._last = time.monotonic()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._write()

    def set_postfix(self, values: Mapping[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        self.postfix = {**(values or {}), **kwargs}

    def line(self) -> str:
        """The status line as it would be printed now."""
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = (self.n - self._start_n) / elapsed
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            text = f"{head}{_si(self.n)}/{_si(self.total)} {self.unit} ({self.n / self.total:.0%})"
        else:
            text = f"{head}{_si(self.n)} {self.unit}"
        text += f", {_si(rate)} {self.unit}/s, {elapsed:.0f} s"
        if self.total and rate > 0 and self.n < self.total:
            text += f", eta {(self.total - self.n) / rate:.0f} s"
        if self.postfix:
            text += ", " + ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        return text

    def _write(self) -> None:
        if not self.disable:
            print(self.line(), file=self.file, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._start_n:
                self._write()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
