"""Small HDF5 helpers shared by the format modules: opening with clear errors, atomic writes,
the metadata attribute and the `pandas_version` pitfall (SPEC §1.3b)."""
import contextlib
import json
import os
import warnings

import numpy as np
import pandas as pd
import tables

from .errors import DataFormatError

METADATA_ATTR = "generator_metadata"
# pandas >= 3 stops writing this attribute and pandas 2 then refuses `format='table'` files.
PANDAS_VERSION_ATTR = "0.15.2"


def require_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFormatError(path, "file", "no such file")
    return path


@contextlib.contextmanager
def open_store(path, key):
    """Open a pandas HDFStore read-only and check that `key` exists."""
    path = require_file(path)
    try:
        store = pd.HDFStore(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - any open failure is a format error here
        raise DataFormatError(path, "file", f"not a readable HDF5 file ({exc})") from exc
    try:
        keys = [k.lstrip("/") for k in store.keys()]
        if key not in keys:
            raise DataFormatError(path, f"key '{key}'", f"missing; keys in file: {keys}")
        if pd.__version__ < "3" and "pandas_version" not in store.get_node(key)._v_attrs:
            raise DataFormatError(
                path, "pandas_version",
                f"attribute missing on /{key} (written by pandas >= 3?); pandas {pd.__version__} cannot read "
                "it: add it to a copy with shared.data.repair_pandas_version(path, key)")
        yield store
    finally:
        store.close()


# |η| beyond any LHC calorimeter: a value there is a broken file, not physics
MAX_ABS_ETA = 8.0


def check_range(path, start, stop, nrows):
    """Validated [start, stop) row range of a file with ``nrows`` rows (stop None = all)."""
    for name, v in (("start", start), ("stop", stop)):
        if v is not None and (isinstance(v, bool) or int(v) != v or v < 0):
            raise DataFormatError(path, name, f"must be a non-negative integer, got {v!r}")
    start = int(start)
    stop = nrows if stop is None else min(int(stop), nrows)
    if start > stop:
        raise DataFormatError(path, "start", f"{start} is beyond stop {stop} (the file has {nrows} rows)")
    return start, stop


def count_bad(path, field, bad_rows, what, offset):
    """Raise DataFormatError naming ``field`` if any row of the boolean (n,) ``bad_rows`` is set."""
    bad_rows = np.asarray(bad_rows)
    if bad_rows.any():
        first = int(np.argmax(bad_rows))
        raise DataFormatError(path, field, f"{int(bad_rows.sum())} row(s) with {what} "
                                           f"(first: row {offset + first})")


def to_float(path, df, offset):
    """The frame as float64; a non-numeric value is an error naming its column and row."""
    try:
        return df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        for col in df.columns:
            num = pd.to_numeric(df[col], errors="coerce")
            bad = num.isna() & df[col].notna()
            if bad.any():
                row = int(np.argmax(bad.to_numpy()))
                raise DataFormatError(path, str(col), f"non-numeric value {df[col].iloc[row]!r} in "
                                                      f"row {offset + row}") from None
        raise


def store_nrows(store, key):
    """Number of rows of ``key`` in an open pandas HDFStore (table or fixed format)."""
    st = store.get_storer(key)
    return int(st.nrows if st.is_table else st.shape[0])


def finalize_pandas_file(path, key, metadata=None):
    """Make sure pandas 2 and 3 can read `key`, and store `metadata` as a root JSON attribute."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tables.open_file(path, mode="a") as f:
            node = f.get_node("/" + key)
            if "pandas_version" not in node._v_attrs:
                node._v_attrs.pandas_version = PANDAS_VERSION_ATTR
            if metadata is not None:
                f.root._v_attrs[METADATA_ATTR] = json.dumps(metadata, sort_keys=True, default=str)


def repair_pandas_version(path, key):
    """Add the `pandas_version` attribute pandas 2 needs to a file written by pandas >= 3 (in place)."""
    finalize_pandas_file(require_file(path), key)


def read_metadata(path):
    """The generator metadata stored by our writers (dict), or None if absent."""
    path = require_file(path)
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get(METADATA_ATTR)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)
