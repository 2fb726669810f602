"""Atomic file writes: write a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emergence.errors import FileFormatError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it.

    A reader never sees a half-written file, and a failed write leaves any previous
    file untouched. The file gets the usual permissions (0666 minus the umask).

    Raises
    ------
    FileFormatError
        If the target's folder does not exist or the rename fails.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileFormatError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise FileFormatError(f"cannot write {str(target)!r}: it is a folder; name a file")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise FileFormatError(f"cannot write {str(target)!r}: {exc.strerror or exc} in {str(target.parent)!r}") \
            from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            _fsync(tmp_path)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
            os.replace(tmp_path, target)
            _fsync_folder(target.parent)
        except OSError as exc:  # a full disk, a file-size limit, a folder gone read-only ...
            raise FileFormatError(f"cannot write {str(target)!r}: {exc.strerror or exc}; nothing was written "
                                  "there") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
