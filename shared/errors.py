"""The error types of bad input. Every entry point reports them as one line and exit code 2
(``shared.cli.run_cli``); anything else is a bug and keeps its traceback.

* :class:`ConfigError` — a bad configuration value: the config file and the dotted key.
* :class:`DataFormatError` — a bad data file or array: the file and the field.
* :class:`CheckpointError` — a checkpoint that cannot be read or does not fit the model.
* :class:`UsageError` — a bad command-line value or an impossible request (e.g. a stale output
  that would have to be overwritten without ``--resume never``).
"""
from __future__ import annotations

import re

_HDF5_TRACE = re.compile(r"HDF5 error back trace(?P<body>.*?)End of HDF5 error back trace\s*"
                         r"(?P<tail>[^)\n]*)", re.S)


def one_line(text) -> str:
    """``text`` as one line: an HDF5 error back trace (h5py/PyTables put it in their messages)
    becomes its innermost reason, other line breaks become "; "."""
    text = str(text)
    if "\n" not in text:
        return text

    def innermost(m):
        reasons = [ln.strip() for ln in m["body"].splitlines() if ln.startswith("    ") and ln.strip()]
        return reasons[-1] if reasons else (m["tail"].strip() or "HDF5 error")

    text = _HDF5_TRACE.sub(innermost, text)
    return "; ".join(ln.strip() for ln in text.splitlines() if ln.strip())


class InputError(ValueError):
    """Base class of the bad-input errors above; the message is one line (:func:`one_line`)."""

    def __init__(self, *args):
        super().__init__(*(one_line(a) if isinstance(a, str) else a for a in args))


class ConfigError(InputError):
    """A bad configuration: names the file and the dotted key."""

    def __init__(self, source, key, message):
        self.source, self.key = str(source) if source else "<config>", key
        where = f"{self.source}" + (f": key '{key}'" if key else "")
        super().__init__(f"{where}: {message}")


class DataFormatError(InputError):
    """Bad input data: names the file (or array owner) and the offending field."""

    def __init__(self, path, field, message):
        self.path = str(path)
        self.field = str(field)
        self.message = one_line(message)
        super().__init__(f"{self.path}: field '{self.field}': {self.message}")


class CheckpointError(InputError):
    """A checkpoint that cannot be read or does not match the model."""

    def __init__(self, path, field, message):
        super().__init__(f"{path}: {field}: {message}")
        self.path, self.field = str(path), field


class UsageError(InputError):
    """A bad command-line value or request; the message says which and why."""


__all__ = ["one_line", "InputError", "ConfigError", "DataFormatError", "CheckpointError", "UsageError"]
