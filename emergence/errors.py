"""Exception types raised by the emergence toolkit.

Every error the library raises on bad input is an :class:`EmergenceError`, so a
caller (or the CLI) can catch one type and show its message. Messages name the
bad value and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "EmergenceError",
    "GraphError",
    "NotADAGError",
    "UnsupportedOpError",
    "FileFormatError",
    "UntrustedPickleError",
    "InputShapeError",
    "ConfigError",
    "NonFiniteError",
    "TimeLimitError",
    "ClusterError",
    "check_choice",
    "first_line",
]


class EmergenceError(Exception):
    """Base class of every error raised by the toolkit on bad input."""


class GraphError(EmergenceError, ValueError):
    """A graph is malformed: wrong shapes, indices out of range, NaN weights, a bad mask."""


class NotADAGError(GraphError):
    """A graph has a directed cycle, so its path counts are infinite.

    Attributes
    ----------
    cycle : list of int
        Node indices on one cycle, in order (possibly truncated for long cycles).
    """

    def __init__(self, message: str, cycle: list[int] | None = None) -> None:
        super().__init__(message)
        self.cycle = list(cycle or [])


class UnsupportedOpError(EmergenceError):
    """A model contains an operation that cannot be mapped to a graph faithfully."""


class FileFormatError(EmergenceError):
    """A file is missing, truncated, unreadable or not in the expected format."""


class UntrustedPickleError(EmergenceError):
    """Loading a file would execute pickled code and the caller did not opt in."""


class InputShapeError(EmergenceError, ValueError):
    """An input batch does not fit the model or the function it was given to."""


class ConfigError(EmergenceError, ValueError):
    """An option or argument has a value outside its allowed range."""


class NonFiniteError(EmergenceError, ValueError):
    """Inputs or activations contain NaN or infinite values."""


class TimeLimitError(EmergenceError):
    """Foreign code (a model's forward pass, its conversion) ran past its time limit and was stopped."""


class ClusterError(EmergenceError):
    """The infrastructure failed (a Dask scheduler or worker lost): the affected cells stay pending."""


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError` naming them.

    Examples
    --------
    >>> check_choice("aggregation", "mean", ("mean", "frac"))
    'mean'
    >>> check_choice("aggregation", "max", ("mean", "frac"))
    Traceback (most recent call last):
    ...
    emergence.errors.ConfigError: aggregation must be one of mean, frac; got 'max'
    """
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return value


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when there is none).

    Third-party errors (protobuf, HDF5, TorchScript) often carry pages of context; the
    toolkit's messages quote only this line.

    Examples
    --------
    >>> first_line(ValueError("bad value\\nmore context"))
    'bad value'
    >>> first_line(KeyError())
    'KeyError'
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
