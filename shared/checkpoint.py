"""Atomic checkpoints of model, optimizer and EMA weights plus training state.

A checkpoint is a folder::

    weights.npz     model.weights (all, in model order)
    optimizer.npz   optimizer.variables (iterations, moments, ...)
    ema.npz         EMA copies of the trainable weights (absent if EMA is off)
    state.json      epoch, best_val_loss, bad_epochs, history, ..., extra_state, variable shapes

It is written into a temporary sibling folder and moved into place with ``os.replace``; an
existing checkpoint of the same name is first renamed to ``<name>.prev`` and removed only after
the new one is in place, so a crash at any moment leaves a complete ``<name>`` or
``<name>.prev`` (which :func:`find_checkpoint` falls back to).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

STATE_FILE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not match the model."""

    def __init__(self, path, field, message):
        super().__init__(f"{path}: {field}: {message}")
        self.path, self.field = str(path), field


def _values(variables):
    return [np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in variables]


def _save_npz(path: Path, arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **{f"a{i:05d}": a for i, a in enumerate(arrays)})
        fh.flush()
        os.fsync(fh.fileno())


def _load_npz(path: Path) -> list[np.ndarray]:
    try:
        with np.load(path) as data:
            return [data[k] for k in sorted(data.files)]
    except (OSError, ValueError) as exc:
        raise CheckpointError(path.parent, path.name, f"cannot read: {exc}") from None


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_checkpoint(directory, model, optimizer=None, ema_variables=None, state=None,
                    extra_state=None) -> Path:
    """Write a checkpoint folder atomically; returns its path. Call on rank 0 only."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
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
        prev = directory.with_name(directory.name + ".prev")
        if prev.exists():
            shutil.rmtree(prev)
        if directory.exists():
            os.replace(directory, prev)
        os.replace(tmp, directory)
        if prev.exists():
            shutil.rmtree(prev)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def find_checkpoint(directory) -> Path | None:
    """``directory`` if it holds a complete checkpoint, else its ``.prev`` copy, else None."""
    directory = Path(directory)
    for cand in (directory, directory.with_name(directory.name + ".prev")):
        if (cand / STATE_FILE).is_file() and (cand / "weights.npz").is_file():
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


def _assign(variables, arrays, path, field):
    variables = list(variables)
    if len(variables) != len(arrays):
        raise CheckpointError(path, field, f"holds {len(arrays)} arrays, the model has "
                              f"{len(variables)} variables (different architecture?)")
    for i, (var, arr) in enumerate(zip(variables, arrays)):
        if tuple(var.shape) != tuple(arr.shape):
            raise CheckpointError(path, field, f"variable {i} ({getattr(var, 'path', var.name)}) "
                                  f"has shape {tuple(var.shape)}, checkpoint {arr.shape}")
        var.assign(arr)


def load_checkpoint(directory, model=None, optimizer=None, ema_variables=None,
                    use_ema: bool = False) -> dict:
    """Restore what is given from a checkpoint folder and return its state dict.

    ``use_ema=True`` loads the EMA weights into the model's trainable variables (evaluation).
    The optimizer must already be built (``optimizer.build(model.trainable_variables)``).
    """
    directory = Path(directory)
    found = find_checkpoint(directory)
    if found is None:
        raise CheckpointError(directory, STATE_FILE, "no complete checkpoint here")
    directory = found
    state = read_state(directory)
    if model is not None:
        _assign(model.weights, _load_npz(directory / "weights.npz"), directory, "weights.npz")
        if use_ema:
            if not (directory / "ema.npz").is_file():
                raise CheckpointError(directory, "ema.npz", "missing (EMA was off in training)")
            _assign(model.trainable_variables, _load_npz(directory / "ema.npz"), directory,
                    "ema.npz")
    if optimizer is not None:
        if not (directory / "optimizer.npz").is_file():
            raise CheckpointError(directory, "optimizer.npz", "missing")
        _assign(optimizer.variables, _load_npz(directory / "optimizer.npz"), directory,
                "optimizer.npz")
    if ema_variables is not None:
        if not (directory / "ema.npz").is_file():
            raise CheckpointError(directory, "ema.npz", "missing (EMA was off in training)")
        _assign(ema_variables, _load_npz(directory / "ema.npz"), directory, "ema.npz")
    state["path"] = str(directory)
    return state


__all__ = ["save_checkpoint", "load_checkpoint", "find_checkpoint", "read_state",
           "load_extra_state", "CheckpointError"]
