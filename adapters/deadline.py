"""Time limits for foreign computation: a model's forward pass and its conversion.

A model file is someone else's code. TorchScript can loop forever, an ONNX ``Loop`` can declare
2**62 iterations, and an exported program can chain enormous operations. Every forward pass of
a model the toolkit runs on a probe batch runs under a :class:`Deadline`: checked between the
nodes of an FX interpreter, handed to onnxruntime as its ``terminate`` flag, and enforced by a
process kill for the TorchScript-to-ONNX conversion (which runs the model in torch's C++
interpreter, where nothing else can stop it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emergence.errors import ConfigError, TimeLimitError

__all__ = ["DEFAULT_TIMEOUT", "Deadline"]

#: Seconds a model's forward passes may take in all, unless the caller says otherwise.
DEFAULT_TIMEOUT = 600.0


class Deadline:
    """A point in time after which foreign computation stops with a :class:`TimeLimitError`.

    Parameters
    ----------
    seconds : float or None
        The limit from now; None for none.
    what : str
        What runs, for the message (e.g. ``"the forward pass of 'model.onnx'"``).

    Examples
    --------
    >>> d = Deadline(60, "the forward pass")
    >>> d.check()
    >>> d.remaining() > 59
    True
    >>> Deadline(0, "x")
    Traceback (most recent call last):
    ...
    emergence.errors.ConfigError: the time limit must be a positive number of seconds, got 0
    """

    def __init__(self, seconds: float | None, what: str = "the forward pass") -> None:
        if seconds is not None and not (seconds > 0 and seconds < float("inf")):
            raise ConfigError(f"the time limit must be a positive number of seconds, got {seconds!r}")
        self.seconds, self.what = seconds, what
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else max(self.end - time.monotonic(), 0.0)

    def expired(self) -> TimeLimitError:
        return TimeLimitError(f"{self.what} did not finish within {self.seconds:g} s and was stopped (a loop that "
                              "never ends?); raise the limit with --timeout SECONDS (library: timeout=) if it is "
                              "just slow")

    def check(self) -> None:
        """Raise :class:`TimeLimitError` when the deadline has passed."""
        if self.end is not None and time.monotonic() > self.end:
            raise self.expired()

    @contextmanager
    def onnxruntime(self) -> Iterator[Any]:
        """``onnxruntime.RunOptions`` whose ``terminate`` flag is set when the deadline passes."""
        import onnxruntime as ort

        opts = ort.RunOptions()
        opts.log_severity_level = 4
        left = self.remaining()
        timer = None if left is None else threading.Timer(left, lambda: setattr(opts, "terminate", True))
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            yield opts
        except Exception as exc:
            if "terminate flag" in str(exc):
                raise self.expired() from exc
            raise
        finally:
            if timer is not None:
                timer.cancel()
