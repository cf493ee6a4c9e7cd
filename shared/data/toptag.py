"""Reader/writer for the Top Quark Tagging Reference Dataset layout (SPEC §1.1).

pandas HDF5 `format='table'`, key `table`, 806 columns: E_0, PX_0, PY_0, PZ_0, ..., PZ_199,
truthE, truthPX, truthPY, truthPZ, ttv, is_signal_new. On disk `/table/table` holds
values_block_0 (804 x float32) and values_block_1 (2 x int64).
"""
import numpy as np
import pandas as pd

from shared.io import atomic_path

from . import _hdfio
from .errors import DataFormatError

KEY = "table"
N_CONSTITUENTS = 200
P4_COLUMNS = [f"{c}_{j}" for j in range(N_CONSTITUENTS) for c in ("E", "PX", "PY", "PZ")]
TRUTH_COLUMNS = ["truthE", "truthPX", "truthPY", "truthPZ"]
INT_COLUMNS = ["ttv", "is_signal_new"]
COLUMNS = P4_COLUMNS + TRUTH_COLUMNS + INT_COLUMNS


def _check_columns(path, columns):
    present = set(columns)
    missing = [c for c in COLUMNS if c not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataFormatError(path, missing[0], f"missing column(s) ({len(missing)}): {shown}")


def _chunk_to_arrays(path, df, offset):
    if list(df.columns) != COLUMNS:
        df = df[COLUMNS]
    flo = _hdfio.to_float(path, df.iloc[:, : len(P4_COLUMNS) + 4], offset).astype(np.float32)
    bad = ~np.isfinite(flo)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataFormatError(path, COLUMNS[col], f"non-finite value {flo[row, col]} in row {offset + row}")
    ints = _hdfio.to_float(path, df[INT_COLUMNS], offset)
    if not np.all(np.mod(ints, 1) == 0):
        raise DataFormatError(path, "is_signal_new", "ttv / is_signal_new must be integers")
    label = ints[:, 1].astype(np.int64)
    if not np.isin(label, (0, 1)).all():
        raise DataFormatError(path, "is_signal_new", f"labels must be 0 or 1, found {np.unique(label)}")
    n = len(df)
    p4 = flo[:, : len(P4_COLUMNS)].reshape(n, N_CONSTITUENTS, 4)
    _check_physics(path, p4, offset)
    return {
        "p4": p4,
        "truth": flo[:, len(P4_COLUMNS) :],
        "ttv": ints[:, 0].astype(np.int64),
        "label": label,
    }


def _check_physics(path, p4, offset):
    """Impossible constituents: negative energy, or |η| beyond any calorimeter."""
    e = p4[..., 0].astype(np.float64)
    neg = e < 0
    if neg.any():
        col = int(np.argmax(neg.any(axis=0)))
        _hdfio.count_bad(path, f"E_{col}", neg.any(axis=1), "negative constituent energy", offset)
    pt = np.hypot(p4[..., 1], p4[..., 2]).astype(np.float64)
    real = pt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.abs(np.arcsinh(np.where(real, p4[..., 3] / np.where(real, pt, 1.0), 0.0)))
    far = real & (eta > _hdfio.MAX_ABS_ETA)
    if far.any():
        col = int(np.argmax(far.any(axis=0)))
        _hdfio.count_bad(path, f"PZ_{col}", far.any(axis=1),
                         f"constituent |eta| > {_hdfio.MAX_ABS_ETA}", offset)


def count_toptag(path):
    """Number of jets in a top-tagging file."""
    with _hdfio.open_store(path, KEY) as store:
        return _hdfio.store_nrows(store, KEY)


def iter_toptag(path, start=0, stop=None, chunksize=100_000):
    """Yield dicts p4 (n, 200, 4) [E, px, py, pz] float32, truth (n, 4), ttv (n,), label (n,)."""
    path = _hdfio.require_file(path)
    if chunksize <= 0:
        raise DataFormatError(path, "chunksize", f"must be positive, got {chunksize}")
    with _hdfio.open_store(path, KEY) as store:
        nrows = _hdfio.store_nrows(store, KEY)
        head = store.select(KEY, start=0, stop=0)
        _check_columns(path, head.columns)
        start, stop = _hdfio.check_range(path, start, stop, nrows)
        for a in range(start, stop, chunksize):
            b = min(a + chunksize, stop)
            yield _chunk_to_arrays(path, store.select(KEY, start=a, stop=b), a)


def read_toptag(path, start=0, stop=None, chunksize=100_000):
    """Whole (or [start, stop) slice of) a top-tagging file as one dict (see `iter_toptag`)."""
    chunks = list(iter_toptag(path, start, stop, chunksize))
    if not chunks:
        return {
            "p4": np.zeros((0, N_CONSTITUENTS, 4), np.float32),
            "truth": np.zeros((0, 4), np.float32),
            "ttv": np.zeros(0, np.int64),
            "label": np.zeros(0, np.int64),
        }
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _validate_inputs(path, p4, label, truth, ttv):
    p4 = np.asarray(p4)
    if p4.ndim != 3 or p4.shape[2] != 4 or p4.shape[1] > N_CONSTITUENTS:
        raise DataFormatError(path, "p4", f"expected shape (N, <= {N_CONSTITUENTS}, 4), got {p4.shape}")
    n = p4.shape[0]
    if p4.shape[1] < N_CONSTITUENTS:
        p4 = np.concatenate([p4, np.zeros((n, N_CONSTITUENTS - p4.shape[1], 4), p4.dtype)], axis=1)
    label = np.asarray(label)
    if label.shape != (n,):
        raise DataFormatError(path, "is_signal_new", f"expected shape ({n},), got {label.shape}")
    if not np.isin(label, (0, 1)).all():
        raise DataFormatError(path, "is_signal_new", "labels must be 0 or 1")
    truth = np.zeros((n, 4), np.float32) if truth is None else np.asarray(truth)
    if truth.shape != (n, 4):
        raise DataFormatError(path, "truth", f"expected shape ({n}, 4), got {truth.shape}")
    ttv = np.zeros(n, np.int64) if ttv is None else np.asarray(ttv)
    if ttv.shape != (n,):
        raise DataFormatError(path, "ttv", f"expected shape ({n},), got {ttv.shape}")
    for name, arr in (("p4", p4), ("truth", truth)):
        if not np.isfinite(arr).all():
            raise DataFormatError(path, name, "contains NaN or inf")
    return p4.astype(np.float32), label.astype(np.int64), truth.astype(np.float32), ttv.astype(np.int64)


def write_toptag(path, p4, label, truth=None, ttv=None, metadata=None, chunksize=100_000, complevel=None):
    """Write jets in the official layout (atomically). p4 (N, P <= 200, 4) is zero padded to 200."""
    p4, label, truth, ttv = _validate_inputs(path, p4, label, truth, ttv)
    n = len(label)
    with atomic_path(path) as tmp:
        with pd.HDFStore(tmp, mode="w", complevel=complevel, complib="zlib" if complevel else None) as store:
            for a in range(0, max(n, 1), chunksize):
                b = min(a + chunksize, n)
                flo = np.concatenate([p4[a:b].reshape(b - a, -1), truth[a:b]], axis=1)
                df = pd.DataFrame(flo, columns=P4_COLUMNS + TRUTH_COLUMNS, index=pd.RangeIndex(a, b))
                ints = pd.DataFrame({"ttv": ttv[a:b], "is_signal_new": label[a:b]}, index=df.index)
                df = pd.concat([df, ints], axis=1)
                if a == 0:
                    store.put(KEY, df, format="table")
                else:
                    store.append(KEY, df, format="table")
        _hdfio.finalize_pandas_file(tmp, KEY, metadata)
    return path
