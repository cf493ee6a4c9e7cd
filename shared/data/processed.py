"""Our processed HDF5 layout (SPEC §1.4), written and read with h5py.

Datasets: `constituents` (N, P, F) float32, `mask` (N, P) bool, `jets` (N, J) float32,
`label` (N,) int64. Root attributes: one JSON string `attrs_json` holding the caller's
attribute dict (feature names, provenance, ...), plus `layout = "processed-v1"`.
"""
import json

import h5py
import numpy as np

from shared.io import atomic_path

from . import _hdfio
from .errors import DataFormatError

LAYOUT = "processed-v1"
DATASETS = ("constituents", "mask", "jets", "label")


def write_processed(path, constituents, mask, jets, label, attrs=None, compression="gzip"):
    """Validate and write atomically. `attrs` must be JSON-serialisable."""
    c = np.asarray(constituents)
    m = np.asarray(mask)
    j = np.asarray(jets)
    y = np.asarray(label)
    if c.ndim != 3:
        raise DataFormatError(path, "constituents", f"expected (N, P, F), got shape {c.shape}")
    n, p, _ = c.shape
    if m.shape != (n, p):
        raise DataFormatError(path, "mask", f"expected shape {(n, p)}, got {m.shape}")
    if j.ndim != 2 or j.shape[0] != n:
        raise DataFormatError(path, "jets", f"expected (N={n}, J), got shape {j.shape}")
    if y.shape != (n,):
        raise DataFormatError(path, "label", f"expected shape ({n},), got {y.shape}")
    for name, arr in (("constituents", c), ("jets", j)):
        if not np.isfinite(arr).all():
            raise DataFormatError(path, name, "contains NaN or inf")
    try:
        blob = json.dumps(attrs or {}, sort_keys=True)
    except TypeError as exc:
        raise DataFormatError(path, "attrs", f"not JSON-serialisable ({exc})") from exc
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            kw = {"compression": compression} if compression and n > 0 else {}
            f.create_dataset("constituents", data=c.astype(np.float32), **kw)
            f.create_dataset("mask", data=m.astype(bool), **kw)
            f.create_dataset("jets", data=j.astype(np.float32), **kw)
            f.create_dataset("label", data=y.astype(np.int64), **kw)
            f.attrs["layout"] = LAYOUT
            f.attrs["attrs_json"] = blob
    return path


def count_processed(path):
    """Number of jets in a processed file."""
    path = _hdfio.require_file(path)
    try:
        with h5py.File(path, "r") as f:
            if "constituents" not in f:
                raise DataFormatError(path, "constituents", "missing dataset")
            return int(f["constituents"].shape[0])
    except OSError as exc:
        raise DataFormatError(path, "file", f"not a readable HDF5 file ({exc})") from exc


def read_processed(path, start=0, stop=None):
    """Dict with the four datasets (rows [start, stop)) and `attrs` (dict)."""
    path = _hdfio.require_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(path, "file", f"not a readable HDF5 file ({exc})") from exc
    with f:
        for name in DATASETS:
            if name not in f:
                raise DataFormatError(path, name, "missing dataset")
        n = f["constituents"].shape[0]
        for name in DATASETS[1:]:
            if f[name].shape[0] != n:
                raise DataFormatError(path, name, f"has {f[name].shape[0]} rows, constituents has {n}")
        if f["mask"].shape != f["constituents"].shape[:2]:
            raise DataFormatError(path, "mask", f"shape {f['mask'].shape} != constituents {f['constituents'].shape[:2]}")
        sl = slice(*_hdfio.check_range(path, start, stop, n))
        out = {name: f[name][sl] for name in DATASETS}
        raw = f.attrs.get("attrs_json", "{}")
    out["mask"] = out["mask"].astype(bool)
    try:
        out["attrs"] = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, "attrs_json", f"invalid JSON ({exc})") from exc
    return out
