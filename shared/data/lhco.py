"""Reader/writer for the LHC Olympics 2020 R&D layout (SPEC §1.2).

pandas HDF5 fixed format, key `df`, one float64 block (N, 2101) with integer column labels
0..2100: 700 x (pT, eta, phi) of massless, zero-padded particles (not pT ordered), then label.
"""
import numpy as np
import pandas as pd

from shared.io import atomic_path

from . import _hdfio
from .errors import DataFormatError

KEY = "df"
N_PARTICLES = 700
N_COLUMNS = 3 * N_PARTICLES + 1


def _check_head(path, head):
    cols = list(head.columns)
    if len(cols) != N_COLUMNS:
        raise DataFormatError(path, "columns", f"expected {N_COLUMNS} columns, found {len(cols)}")
    try:
        ok = [int(c) for c in cols] == list(range(N_COLUMNS))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataFormatError(path, "columns", "column labels must be the integers 0..2100")
    bad = [c for c, t in head.dtypes.items() if not np.issubdtype(t, np.floating)]
    if bad:
        raise DataFormatError(path, str(bad[0]), f"expected float columns, found {head.dtypes[bad[0]]}")


def _check_physics(path, parts, offset):
    """Impossible particles: negative pT, |η| beyond any calorimeter, |φ| beyond 2π."""
    for k, name, bad, what in (
            (0, "pT", parts[..., 0] < 0, "negative pT"),
            (1, "eta", np.abs(parts[..., 1]) > _hdfio.MAX_ABS_ETA, f"|eta| > {_hdfio.MAX_ABS_ETA}"),
            (2, "phi", np.abs(parts[..., 2]) > 2 * np.pi + 1e-6, "|phi| > 2 pi")):
        if bad.any():
            col = 3 * int(np.argmax(bad.any(axis=0))) + k
            _hdfio.count_bad(path, f"{col} ({name})", bad.any(axis=1), what, offset)


def count_lhco(path):
    """Number of events in an LHCO R&D file."""
    with _hdfio.open_store(path, KEY) as store:
        return _hdfio.store_nrows(store, KEY)


def iter_lhco(path, start=0, stop=None, chunksize=50_000, dtype=np.float32):
    """Yield dicts particles (n, 700, 3) [pT, eta, phi] (`dtype`), label (n,) int64."""
    path = _hdfio.require_file(path)
    if chunksize <= 0:
        raise DataFormatError(path, "chunksize", f"must be positive, got {chunksize}")
    with _hdfio.open_store(path, KEY) as store:
        nrows = _hdfio.store_nrows(store, KEY)
        _check_head(path, store.select(KEY, start=0, stop=0))
        start, stop = _hdfio.check_range(path, start, stop, nrows)
        for a in range(start, stop, chunksize):
            b = min(a + chunksize, stop)
            x = _hdfio.to_float(path, store.select(KEY, start=a, stop=b), a)
            bad = ~np.isfinite(x)
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise DataFormatError(path, str(col), f"non-finite value {x[row, col]} in row {a + row}")
            label = x[:, -1]
            if not np.isin(label, (0.0, 1.0)).all():
                raise DataFormatError(path, str(N_COLUMNS - 1), f"labels must be 0 or 1, found {np.unique(label)[:5]}")
            parts = x[:, :-1].reshape(b - a, N_PARTICLES, 3)
            _check_physics(path, parts, a)
            yield {
                "particles": parts.astype(dtype),
                "label": label.astype(np.int64),
            }


def read_lhco(path, start=0, stop=None, chunksize=50_000, dtype=np.float32):
    """Whole (or [start, stop) slice of) an LHCO file as one dict (see `iter_lhco`)."""
    chunks = list(iter_lhco(path, start, stop, chunksize, dtype))
    if not chunks:
        return {"particles": np.zeros((0, N_PARTICLES, 3), dtype), "label": np.zeros(0, np.int64)}
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def write_lhco(path, particles, label, metadata=None):
    """Write events in the official layout (atomically). particles (N, P <= 700, 3) zero padded."""
    x = np.asarray(particles)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[1] > N_PARTICLES:
        raise DataFormatError(path, "particles", f"expected shape (N, <= {N_PARTICLES}, 3), got {x.shape}")
    n = x.shape[0]
    label = np.asarray(label)
    if label.shape != (n,):
        raise DataFormatError(path, "label", f"expected shape ({n},), got {label.shape}")
    if not np.isin(label, (0, 1)).all():
        raise DataFormatError(path, "label", "labels must be 0 or 1")
    if not np.isfinite(x).all():
        raise DataFormatError(path, "particles", "contains NaN or inf")
    if (x[..., 0] < 0).any():
        raise DataFormatError(path, "particles", "negative pT")
    block = np.zeros((n, N_COLUMNS), np.float64)
    block[:, : 3 * x.shape[1]] = x.reshape(n, -1)
    block[:, -1] = label
    df = pd.DataFrame(block, columns=pd.Index(np.arange(N_COLUMNS, dtype=np.int64)))
    with atomic_path(path) as tmp:
        df.to_hdf(tmp, key=KEY, format="fixed", mode="w")
        _hdfio.finalize_pandas_file(tmp, KEY, metadata)
    return path
