"""Bounded reading: what a file declares is checked before anything is decompressed or allocated.

A zip archive (``.pt2``, ``.npz``, a ``torch.save`` file) states each member's size in its
central directory; a zip bomb states a huge one, or a tiny compressed size that inflates a
thousandfold. :func:`check_zip` refuses both before a byte is inflated. A tensor can also be
a bomb without any compression: a view with a stride of 0 over a one-element storage may
declare 10¹² elements, which the first real operation materializes. :func:`check_tensors`
refuses views that declare more elements than their storage holds.

The limits are parameters with defaults (a :class:`ReadLimits`), not globals.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from emergence.errors import FileFormatError

__all__ = ["ReadLimits", "DEFAULT_LIMITS", "check_zip", "check_tensors", "check_elements", "load_weights", "check_npz"]


@dataclass(frozen=True)
class ReadLimits:
    """What a file we read may declare.

    Attributes
    ----------
    max_bytes : int
        Uncompressed bytes of all members of an archive together (default 8 GiB).
    max_ratio : float
        Uncompressed / compressed size of one member larger than ``ratio_floor`` bytes
        (default 200; real weights are stored, not deflated, so their ratio is 1).
    ratio_floor : int
        Members up to this size are not ratio-checked (default 1 MiB).
    max_members : int
        Members of one archive (default 100,000).
    max_elements : int
        Elements of one tensor or array (default 2**31).
    """

    max_bytes: int = 8 << 30
    max_ratio: float = 200.0
    ratio_floor: int = 1 << 20
    max_members: int = 100_000
    max_elements: int = 1 << 31


DEFAULT_LIMITS = ReadLimits()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def check_zip(source: str | IO[bytes] | Any, label: str, limits: ReadLimits = DEFAULT_LIMITS) -> zipfile.ZipFile:
    """Open a zip archive and refuse it if its declared sizes exceed ``limits``; nothing is inflated.

    Parameters
    ----------
    source : path or binary file
        The archive.
    label : str
        How the archive is named in messages (a file name, or ``'model.pt2' member x``).
    limits : ReadLimits, optional

    Returns
    -------
    zipfile.ZipFile
        The open archive (the caller closes it).

    Raises
    ------
    FileFormatError
        If it is no zip archive, has too many members, declares more than ``limits.max_bytes``,
        or a member inflates by more than ``limits.max_ratio``.

    Examples
    --------
    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    ...     z.writestr("big", b"\\0" * (4 << 20))
    >>> check_zip(buf, "bomb.zip")
    Traceback (most recent call last):
    ...
    emergence.errors.FileFormatError: 'bomb.zip' member 'big' inflates 4 MiB from ... refused as a zip bomb
    """
    try:
        z = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FileFormatError(f"could not read {label!r}: not a readable zip archive ({exc}); truncated or "
                              "damaged?") from exc
    try:
        _check_members(z.infolist(), label, limits)
    except FileFormatError:
        z.close()
        raise
    return z


def _check_members(infos: list[zipfile.ZipInfo], label: str, limits: ReadLimits) -> None:
    """Member count, per-member inflation ratio and total declared size, from the central directory."""
    if len(infos) > limits.max_members:
        raise FileFormatError(f"{label!r} has {len(infos):,} members, more than the {limits.max_members:,} allowed")
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise FileFormatError(
                f"{label!r} member {info.filename!r} inflates {_mib(info.file_size)} from {_mib(info.compress_size)} "
                f"({info.file_size / max(info.compress_size, 1):,.0f} x, more than the {limits.max_ratio:g} x a real "
                "file has); refused as a zip bomb")
    if total > limits.max_bytes:
        raise FileFormatError(f"{label!r} declares {_mib(total)} uncompressed, more than the {_mib(limits.max_bytes)} "
                              "allowed; refused")


def check_elements(shape: Iterable[int], label: str, limits: ReadLimits = DEFAULT_LIMITS) -> int:
    """The element count of ``shape``, refused when negative or above ``limits.max_elements``.

    Examples
    --------
    >>> check_elements((3, 4), "x")
    12
    >>> check_elements((1 << 40,), "x")
    Traceback (most recent call last):
    ...
    emergence.errors.FileFormatError: x declares 1099511627776 elements, more than the 2147483648 allowed; refused
    """
    n = 1
    for s in shape:
        s = int(s)
        if s < 0:
            raise FileFormatError(f"{label} declares a negative size {s}; the file is damaged")
        n *= s
    if n > limits.max_elements:
        raise FileFormatError(f"{label} declares {n} elements, more than the {limits.max_elements} allowed; refused")
    return n


def check_tensors(obj: Any, label: str, limits: ReadLimits = DEFAULT_LIMITS) -> None:
    """Refuse tensors (anywhere in nested dicts, lists and tuples) that view more elements than they store.

    Raises
    ------
    FileFormatError
        Naming the first such tensor (a stride-0 expansion bomb) or one above ``limits.max_elements``.

    Examples
    --------
    >>> import torch
    >>> check_tensors({"w": torch.ones(3)}, "ok.pt")
    >>> check_tensors({"w": torch.ones(1).expand(1 << 40)}, "bomb.pt")
    Traceback (most recent call last):
    ...
    emergence.errors.FileFormatError: 'bomb.pt' tensor 'w' declares 1099511627776 elements over a storage of 1 ...
    """
    import torch

    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.layout != torch.strided:
                continue
            numel = item.numel()
            stored = item.untyped_storage().nbytes() // max(item.element_size(), 1)
            if numel > max(stored, 0) and numel > 0:
                raise FileFormatError(f"{label!r} tensor {key!r} declares {numel} elements over a storage of {stored} "
                                      "(a stride-0 view); refused")
            check_elements(item.shape, f"{label!r} tensor {key!r}", limits)
        elif isinstance(item, dict):
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(item))


def load_weights(source: str | bytes | Any, label: str, limits: ReadLimits = DEFAULT_LIMITS) -> Any:
    """``torch.load(..., weights_only=True)`` with the archive's declared sizes checked before and views after.

    Parameters
    ----------
    source : path or bytes
        A ``torch.save`` file.
    label : str
        Its name in messages.

    Returns
    -------
    object
        What the weights-only unpickler returns (tensors in dicts, lists and tuples).

    Raises
    ------
    FileFormatError
        On a bomb (declared sizes, stride-0 views) or an unreadable file.
    pickle.UnpicklingError
        When the file holds objects beyond weights (the caller decides what that means).
    """
    import io
    import pickle

    import torch

    buf = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    head = buf[:4] if isinstance(buf, (bytes, bytearray)) else None
    if head is None:
        if isinstance(buf, io.BytesIO):
            head = buf.getvalue()[:4]
        else:
            with open(buf, "rb") as fh:
                head = fh.read(4)
    if head == b"PK\x03\x04":
        check_zip(buf, label, limits).close()
        if isinstance(buf, io.BytesIO):
            buf.seek(0)
    try:
        obj = torch.load(buf, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # truncated archives, storage errors ...
        from emergence.errors import first_line

        raise FileFormatError(f"could not read {label!r} as a PyTorch file: {first_line(exc)}") from exc
    check_tensors(obj, label, limits)
    return obj


def check_npz(z: Any, label: str, limits: ReadLimits = DEFAULT_LIMITS) -> None:
    """Refuse an open ``np.load`` archive whose arrays declare more than they may, before any is read.

    Each ``.npy`` member's header (shape and dtype) is read without its data; its size must match the
    member's declared size and stay within ``limits``; complex and object arrays are refused.

    Raises
    ------
    FileFormatError
    """
    import numpy as np

    zf = z.zip
    infos = zf.infolist()
    _check_members(infos, label, limits)
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        with zf.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(fh))
            except (ValueError, OSError, EOFError) as exc:
                raise FileFormatError(f"{label!r} array {info.filename!r} has a damaged header: {exc}") from exc
        name = info.filename[:-4]
        if dtype.hasobject:
            raise FileFormatError(f"{label!r} array {name!r} holds pickled objects, which are refused (unpickling "
                                  "runs code)")
        if dtype.kind == "c":
            raise FileFormatError(f"{label!r} array {name!r} is complex ({dtype}); emergence needs real numbers")
        n = check_elements(shape, f"{label!r} array {name!r}", limits)
        if n * dtype.itemsize > info.file_size:
            raise FileFormatError(f"{label!r} array {name!r} declares shape {tuple(shape)} but holds only "
                                  f"{info.file_size:,} bytes; the file is truncated or damaged")
