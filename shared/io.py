"""Atomic file output and JSON input: the one place where the project writes files.

Every output goes to a temporary sibling first and is moved into place with ``os.replace``, so a
reader (or a resumed run) sees either the old file or the complete new one, never a half-written
one. Files get the permissions the umask allows (0644 under umask 022), folders 0755, so that
colleagues on a shared cluster can read the results (``tempfile`` alone would give 0600).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from shared.errors import DataFormatError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (0o644 under umask 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode of a new folder under the current umask (0o755 under umask 022)."""
    return 0o777 & ~_umask()


def ensure_dir(path) -> Path:
    """Create ``path`` (and parents) if needed; a clear error if it exists as a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path, *, directory=False):
    """Yield a temporary sibling of ``path`` (a file path, or an empty folder with
    ``directory=True``) to write into; on success give it umask permissions and move it onto
    ``path``, on any failure remove it. An existing folder at ``path`` is replaced."""
    path = Path(path)
    ensure_dir(path.parent)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            os.chmod(tmp, dir_mode())
            if path.is_dir():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            if tmp.exists():
                os.chmod(tmp, file_mode())
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def atomic_write_text(path, text: str) -> Path:
    """Write text to ``path`` atomically (fsync'ed)."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj, indent=1) -> str:
    """JSON text of ``obj`` (NumPy arrays/scalars and paths converted)."""
    return json.dumps(obj, indent=indent, default=_json_default)


def atomic_write_json(path, obj, indent=1) -> Path:
    """``json.dump`` to ``path`` atomically (NumPy values converted)."""
    return atomic_write_text(path, to_json(obj, indent))


def atomic_savez(path, **arrays) -> Path:
    """``np.savez`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def read_json(path, what="file"):
    """Parsed JSON of ``path``; a missing or corrupt file is a :class:`DataFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, what, "not found")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(path, what, f"unreadable JSON ({exc})") from None


def read_npz(path, what="file") -> dict:
    """All arrays of an ``.npz`` file; a missing or corrupt file is a :class:`DataFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, what, "not found")
    try:
        with np.load(path, allow_pickle=False) as d:
            return {k: d[k] for k in d.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFormatError(path, what, f"unreadable npz ({exc})") from None


__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "atomic_savez", "read_json",
           "read_npz", "ensure_dir", "file_mode", "dir_mode", "to_json"]
