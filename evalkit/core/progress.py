"""Progress bars that suit where they are read: tqdm's bar on a terminal; in a log (CI, a cluster job,
`> log 2>&1`) a plain line at most every `LOG_EVERY_S` seconds and one at the end, not a frame per
update. Every progress bar of the project is made here."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.std import tqdm

LOG_EVERY_S = 30.0

# In Jupyter tqdm.auto draws a widget, which a notebook shows as one bar however it is updated.
_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in _auto_tqdm.__mro__)


def progress_bar(iterable=None, *, log_every: float = LOG_EVERY_S, **tqdm_kwargs) -> tqdm:
    """`tqdm(iterable, **tqdm_kwargs)` where the stream (`file`, default stderr) is a terminal or in a
    notebook; otherwise a `LogLines` bar that writes a line at most every `log_every` seconds."""
    stream = tqdm_kwargs.get("file") or sys.stderr
    if _NOTEBOOK or _is_terminal(stream):
        return _auto_tqdm(iterable, **tqdm_kwargs)
    return LogLines(iterable, log_every=log_every, **tqdm_kwargs)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class LogLines(tqdm):
    """A tqdm bar for a stream that is not a terminal: every display is a whole line (no carriage
    returns, nothing cleared or redrawn), the first one, then at most one per `log_every` seconds, and
    the last one (with the overall rate) when the bar closes, whether or not it is to be `leave`-ed."""

    def __init__(self, *args, log_every: float = LOG_EVERY_S, **kwargs):
        self._log_every = log_every
        self._line_t: float | None = None
        self._line = ""
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing the bar: a log keeps what it has
            return False
        now = self._time()
        if self._line_t is not None and now - self._line_t < self._log_every:
            return False
        self._write(self.__str__() if msg is None else msg, now)
        return True

    def clear(self, nolock=False):
        pass

    def close(self):
        if not self.disable:
            with self._lock:
                self._ema_dt = lambda: None  # the overall rate, as tqdm's own last frame has
                self._write(self.__str__(), self._time())
            self.leave = False  # tqdm's close then only "clears" the bar, which `display` ignores
        super().close()

    def _write(self, line: str, now: float) -> None:
        self._line_t = now
        if line != self._line:
            self._line = line
            self.fp.write(line + "\n")
            self.fp.flush()
