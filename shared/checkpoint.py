"""Atomic checkpoints of model, optimizer and EMA weights plus training state.

A checkpoint is a folder::

    weights.npz     model.weights (all, in model order)
    optimizer.npz   optimizer.variables (iterations, moments, ...)
    ema.npz         EMA copies of the trainable weights (absent if EMA is off)
    state.json      epoch, best_val_loss, bad_epochs, history, ..., extra_state, variable shapes

Rotation (:func:`save_checkpoint`) survives a crash at any single point: the new checkpoint is
written completely into a temporary sibling ``.<name>.tmp-*``; then, only if a complete
``<name>`` exists, the old ``<name>.prev`` is removed and ``<name>`` becomes ``<name>.prev``; the
new one is moved to ``<name>``; finally ``<name>.prev`` is removed. At every moment ``<name>`` or
``<name>.prev`` is complete, and :func:`load_checkpoint` falls back from a missing or unreadable
``<name>`` to ``<name>.prev`` with a warning (the Trainer then tries ``best``). Leftover
temporary folders of an interrupted save are removed by the next save.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from shared.errors import CheckpointError
from shared.io import dir_mode, file_mode

STATE_FILE = "state.json"
# the last resume point written by this process (named on Ctrl-C by shared.cli)
LAST_SAVED: list[str] = []


def _fault_point(step: str) -> None:
    """No-op; tests replace it to simulate a kill at each step of the rotation."""


def _values(variables):
    return [np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in variables]


def _save_npz(path: Path, arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **{f"a{i:05d}": a for i, a in enumerate(arrays)})
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, file_mode())


def _load_npz(path: Path) -> list[np.ndarray]:
    try:
        with np.load(path) as data:
            return [data[k] for k in sorted(data.files)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(path.parent, path.name, f"cannot read: {exc}") from None


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prev_path(directory) -> Path:
    """The ``<name>.prev`` sibling that holds the previous checkpoint during a rotation."""
    directory = Path(directory)
    return directory.with_name(directory.name + ".prev")


def _is_complete(directory: Path) -> bool:
    return (directory / STATE_FILE).is_file() and (directory / "weights.npz").is_file()


def save_checkpoint(directory, model, optimizer=None, ema_variables=None, state=None,
                    extra_state=None, resume_point=True) -> Path:
    """Write a checkpoint folder with the crash-safe rotation of the module doc; returns its
    path. Call on rank 0 only. ``resume_point=False`` (e.g. ``best``) keeps it out of
    :data:`LAST_SAVED`, the folder named on Ctrl-C."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        weights = _values(model.weights)
        _save_npz(tmp / "weights.npz", weights)
        meta = {"weights": [list(w.shape) for w in weights]}
        if optimizer is not None:
            opt = _values(optimizer.variables)
            _save_npz(tmp / "optimizer.npz", opt)
            meta["optimizer"] = [list(w.shape) for w in opt]
        if ema_variables is not None:
            ema = _values(ema_variables)
            _save_npz(tmp / "ema.npz", ema)
            meta["ema"] = [list(w.shape) for w in ema]
        payload = dict(state or {})
        payload["extra_state"] = extra_state
        payload["shapes"] = meta
        with open(tmp / STATE_FILE, "w") as fh:
            json.dump(payload, fh, indent=1, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp / STATE_FILE, file_mode())
        os.chmod(tmp, dir_mode())
        _fsync_dir(tmp)
        _fault_point("written")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prev = prev_path(directory)
    if _is_complete(directory):
        # only now may the previous checkpoint go: <name> itself is complete
        if prev.exists():
            shutil.rmtree(prev)
        _fault_point("prev_removed")
        os.replace(directory, prev)
        _fault_point("moved_to_prev")
    elif directory.exists():
        shutil.rmtree(directory)   # incomplete: not written by this function
    os.replace(tmp, directory)
    _fsync_dir(directory.parent)
    _fault_point("moved_in")
    if prev.exists():
        shutil.rmtree(prev)
    if resume_point:
        LAST_SAVED[:] = [str(directory)]
    return directory


def find_checkpoint(directory) -> Path | None:
    """``directory`` if it holds a complete checkpoint, else its ``.prev`` copy, else None."""
    directory = Path(directory)
    for cand in (directory, prev_path(directory)):
        if _is_complete(cand):
            return cand
    return None


def read_state(directory) -> dict:
    """The state.json of a checkpoint (epoch, history, extra_state, ...)."""
    path = Path(directory) / STATE_FILE
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(directory, STATE_FILE, f"cannot read: {exc}") from None


def load_extra_state(workdir, which: str = "last"):
    """``extra_state`` (e.g. normalisation constants) of ``workdir/checkpoints/<which>``, or
    None when there is no checkpoint; lets callers reuse saved constants before resuming."""
    ckpt = find_checkpoint(Path(workdir) / "checkpoints" / which)
    return None if ckpt is None else read_state(ckpt).get("extra_state")


class ArchitectureMismatch(CheckpointError):
    """The checkpoint holds variables of another architecture (falling back would not help)."""


def _assign(variables, arrays, path, field):
    variables = list(variables)
    if len(variables) != len(arrays):
        raise ArchitectureMismatch(path, field, f"holds {len(arrays)} arrays, the model has "
                              f"{len(variables)} variables (different architecture?)")
    for i, (var, arr) in enumerate(zip(variables, arrays)):
        if tuple(var.shape) != tuple(arr.shape):
            raise ArchitectureMismatch(path, field, f"variable {i} ({getattr(var, 'path', var.name)}) "
                                  f"has shape {tuple(var.shape)}, checkpoint {arr.shape}")
        var.assign(arr)


def _read(directory: Path, weights: bool, ema: bool, optimizer: bool) -> dict:
    """Everything needed from one checkpoint folder, read and parsed (CheckpointError if not)."""
    out = {"state": read_state(directory)}
    if weights:
        out["weights"] = _load_npz(directory / "weights.npz")
    for name, wanted, missing in (("ema", ema, "missing (EMA was off in training)"),
                                  ("optimizer", optimizer, "missing")):
        if wanted:
            if not (directory / f"{name}.npz").is_file():
                raise CheckpointError(directory, f"{name}.npz", missing)
            out[name] = _load_npz(directory / f"{name}.npz")
    return out


def load_checkpoint(directory, model=None, optimizer=None, ema_variables=None,
                    use_ema: bool = False) -> dict:
    """Restore what is given from a checkpoint folder and return its state dict.

    ``use_ema=True`` loads the EMA weights into the model's trainable variables (evaluation).
    The optimizer must already be built (``optimizer.build(model.trainable_variables)``).
    A missing or unreadable ``directory`` falls back to its ``.prev`` copy with a warning; a
    checkpoint of another architecture is an error.
    """
    directory = Path(directory)
    candidates = [c for c in (directory, prev_path(directory)) if _is_complete(c)]
    if not candidates:
        raise CheckpointError(directory, STATE_FILE, "no complete checkpoint here")
    error = data = None
    for cand in candidates:
        try:
            data = _read(cand, model is not None,
                         ema_variables is not None or (model is not None and use_ema),
                         optimizer is not None)
            break
        except CheckpointError as exc:
            error = exc
    if data is None:
        raise error
    if error is not None:
        warnings.warn(f"checkpoint {error}; using {cand} instead", stacklevel=2)
    if model is not None:
        _assign(model.weights, data["weights"], cand, "weights.npz")
        if use_ema:
            _assign(model.trainable_variables, data["ema"], cand, "ema.npz")
    if optimizer is not None:
        _assign(optimizer.variables, data["optimizer"], cand, "optimizer.npz")
    if ema_variables is not None:
        _assign(ema_variables, data["ema"], cand, "ema.npz")
    state = data["state"]
    state["path"] = str(cand)
    return state


__all__ = ["save_checkpoint", "load_checkpoint", "find_checkpoint", "read_state",
           "load_extra_state", "prev_path", "CheckpointError", "ArchitectureMismatch", "LAST_SAVED"]
