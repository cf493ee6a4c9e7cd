"""Readers/writers of the official layouts, the processed layout, jet helpers and detector."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from shared.data import (DataFormatError, count_lhco, count_toptag, iter_lhco, iter_toptag, read_lhco,
                         read_metadata, read_processed, read_toptag, write_lhco, write_processed,
                         write_toptag)
from shared.data import jets as J
from shared.data import toptag
from shared.data.detector import DetectorConfig, smear


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _toptag_arrays(rng, n=11, p=200):
    p4 = rng.normal(size=(n, p, 4)).astype(np.float32)
    # physical four-vectors (E >= |p|): the reader refuses negative energies
    p4[..., 0] = np.linalg.norm(p4[..., 1:], axis=-1) + np.abs(p4[..., 0])
    return p4, rng.integers(0, 2, n), rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_toptag_round_trip_and_chunks(tmp_path, rng):
    p4, label, truth, ttv = _toptag_arrays(rng)
    path = tmp_path / "sub" / "top.h5"
    write_toptag(path, p4, label, truth=truth, ttv=ttv, metadata={"seed": 3})
    d = read_toptag(path)
    np.testing.assert_array_equal(d["p4"], p4)
    np.testing.assert_array_equal(d["truth"], truth)
    np.testing.assert_array_equal(d["label"], label)
    np.testing.assert_array_equal(d["ttv"], ttv)
    assert count_toptag(path) == 11
    chunks = list(iter_toptag(path, start=2, stop=10, chunksize=3))
    assert [len(c["label"]) for c in chunks] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([c["p4"] for c in chunks]), p4[2:10])
    part = read_toptag(path, start=4, stop=7, chunksize=2)
    np.testing.assert_array_equal(part["p4"], p4[4:7])
    assert read_metadata(path) == {"seed": 3}


def test_toptag_exact_layout(tmp_path, rng):
    p4, label, truth, _ = _toptag_arrays(rng, n=5, p=30)  # padded to 200 by the writer
    path = tmp_path / "top.h5"
    write_toptag(path, p4, label, truth=truth, metadata={"a": 1})
    df = pd.read_hdf(path, "table")
    assert list(df.columns[:8]) == ["E_0", "PX_0", "PY_0", "PZ_0", "E_1", "PX_1", "PY_1", "PZ_1"]
    assert list(df.columns[796:]) == ["E_199", "PX_199", "PY_199", "PZ_199", "truthE", "truthPX", "truthPY",
                                      "truthPZ", "ttv", "is_signal_new"]
    assert list(df.columns) == toptag.COLUMNS and len(df.columns) == 806
    assert (df.dtypes.iloc[:804] == np.float32).all() and (df.dtypes.iloc[804:] == np.int64).all()
    np.testing.assert_array_equal(df["PX_3"].to_numpy(), p4[:, 3, 1])
    assert (df["E_30"] == 0).all()
    with h5py.File(path, "r") as f:
        t = f["/table/table"]
        assert t.dtype["values_block_0"] == np.dtype(("<f4", (804,)))
        assert t.dtype["values_block_1"] == np.dtype(("<i8", (2,)))
        assert f["/table"].attrs["pandas_version"] in (b"0.15.2", "0.15.2")
        assert f["/table"].attrs["pandas_type"] in (b"frame_table", "frame_table")
        assert json.loads(f.attrs["generator_metadata"]) == {"a": 1}


def test_lhco_round_trip_and_layout(tmp_path, rng):
    parts = np.abs(rng.normal(size=(9, 700, 3)))
    parts[:, 500:] = 0
    label = rng.integers(0, 2, 9)
    path = tmp_path / "lhco.h5"
    write_lhco(path, parts, label, metadata={"b": 2})
    d = read_lhco(path, chunksize=4, dtype=np.float64)
    np.testing.assert_array_equal(d["particles"], parts)
    np.testing.assert_array_equal(d["label"], label)
    assert count_lhco(path) == 9
    assert [len(c["label"]) for c in iter_lhco(path, start=1, stop=8, chunksize=3)] == [3, 3, 1]
    df = pd.read_hdf(path, "df")
    assert df.shape == (9, 2101) and list(df.columns) == list(range(2101))
    assert (df.dtypes == np.float64).all()
    with pd.HDFStore(path, "r") as s:
        assert not s.get_storer("df").is_table
    with h5py.File(path, "r") as f:
        assert f["/df/block0_values"].shape == (9, 2101)
    assert read_metadata(path) == {"b": 2}


def _assert_names(exc, path, field):
    msg = str(exc.value)
    assert str(path) in msg and field in msg, msg


def test_toptag_bad_inputs(tmp_path, rng):
    missing = tmp_path / "nope.h5"
    with pytest.raises(DataFormatError) as e:
        read_toptag(missing)
    _assert_names(e, missing, "file")

    p4, label, truth, _ = _toptag_arrays(rng, n=3)
    good = tmp_path / "good.h5"
    write_toptag(good, p4, label, truth=truth)
    df = pd.read_hdf(good, "table")

    wrong_key = tmp_path / "wrongkey.h5"
    df.to_hdf(wrong_key, key="jets", format="table")
    with pytest.raises(DataFormatError) as e:
        read_toptag(wrong_key)
    _assert_names(e, wrong_key, "table")

    no_col = tmp_path / "nocol.h5"
    df.drop(columns=["truthPY"]).to_hdf(no_col, key="table", format="table")
    with pytest.raises(DataFormatError) as e:
        read_toptag(no_col)
    _assert_names(e, no_col, "truthPY")

    for bad_value in (np.nan, np.inf):
        bad = tmp_path / "nan.h5"
        d2 = df.copy()
        d2.loc[1, "PZ_7"] = bad_value
        d2.to_hdf(bad, key="table", format="table", mode="w")
        with pytest.raises(DataFormatError) as e:
            read_toptag(bad)
        _assert_names(e, bad, "PZ_7")

    out = tmp_path / "w.h5"
    with pytest.raises(DataFormatError) as e:
        write_toptag(out, p4[..., :3], label)
    _assert_names(e, out, "p4")
    with pytest.raises(DataFormatError) as e:
        write_toptag(out, p4, label[:2])
    _assert_names(e, out, "is_signal_new")
    p4_nan = p4.copy()
    p4_nan[0, 0, 0] = np.nan
    with pytest.raises(DataFormatError) as e:
        write_toptag(out, p4_nan, label)
    _assert_names(e, out, "p4")
    assert not out.exists() and list(tmp_path.glob(".w.h5*")) == []


def test_lhco_bad_inputs(tmp_path, rng):
    missing = tmp_path / "nope.h5"
    with pytest.raises(DataFormatError) as e:
        read_lhco(missing)
    _assert_names(e, missing, "file")

    parts = np.abs(rng.normal(size=(4, 700, 3)))
    good = tmp_path / "good.h5"
    write_lhco(good, parts, np.array([0, 1, 0, 1]))
    df = pd.read_hdf(good, "df")

    wrong_key = tmp_path / "k.h5"
    df.to_hdf(wrong_key, key="events", format="fixed")
    with pytest.raises(DataFormatError) as e:
        read_lhco(wrong_key)
    _assert_names(e, wrong_key, "df")

    short = tmp_path / "short.h5"
    df.iloc[:, :2100].to_hdf(short, key="df", format="fixed")
    with pytest.raises(DataFormatError) as e:
        read_lhco(short)
    _assert_names(e, short, "columns")

    bad = tmp_path / "nan.h5"
    d2 = df.copy()
    d2.iloc[2, 31] = np.nan
    d2.to_hdf(bad, key="df", format="fixed")
    with pytest.raises(DataFormatError) as e:
        read_lhco(bad)
    _assert_names(e, bad, "31")

    out = tmp_path / "w.h5"
    with pytest.raises(DataFormatError) as e:
        write_lhco(out, parts[..., :2], np.zeros(4))
    _assert_names(e, out, "particles")
    with pytest.raises(DataFormatError) as e:
        write_lhco(out, parts, np.array([0, 2, 0, 1]))
    _assert_names(e, out, "label")
    assert not out.exists()


def test_failed_write_keeps_old_file(tmp_path, rng):
    p4, label, _, _ = _toptag_arrays(rng, n=3)
    path = tmp_path / "keep.h5"
    write_toptag(path, p4, label)
    bad = p4.copy()
    bad[1, 1, 1] = np.inf
    with pytest.raises(DataFormatError):
        write_toptag(path, bad, label)
    np.testing.assert_array_equal(read_toptag(path)["p4"], p4)


def test_processed_round_trip_and_errors(tmp_path, rng):
    c = rng.normal(size=(6, 10, 3)).astype(np.float32)
    m = rng.random((6, 10)) > 0.3
    j = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.integers(0, 2, 6)
    attrs = {"features": ["deta", "dphi", "logpt"], "source": "unit-test"}
    path = tmp_path / "p" / "proc.h5"
    write_processed(path, c, m, j, y, attrs)
    d = read_processed(path)
    np.testing.assert_array_equal(d["constituents"], c)
    np.testing.assert_array_equal(d["mask"], m)
    np.testing.assert_array_equal(d["jets"], j)
    np.testing.assert_array_equal(d["label"], y)
    assert d["mask"].dtype == bool and d["attrs"] == attrs
    np.testing.assert_array_equal(read_processed(path, 2, 4)["jets"], j[2:4])
    with pytest.raises(DataFormatError) as e:
        write_processed(tmp_path / "x.h5", c, m[:, :5], j, y)
    _assert_names(e, tmp_path / "x.h5", "mask")
    with h5py.File(tmp_path / "broken.h5", "w") as f:
        f["constituents"] = c
        f["mask"] = m
        f["label"] = y
    with pytest.raises(DataFormatError) as e:
        read_processed(tmp_path / "broken.h5")
    _assert_names(e, tmp_path / "broken.h5", "jets")


def test_kinematics_round_trip(rng):
    pt, eta, phi, m = rng.uniform(1, 100, 20), rng.normal(0, 1.5, 20), rng.uniform(-np.pi, np.pi, 20), rng.uniform(0, 5, 20)
    back = J.ptetaphim_from_p4(J.p4_from_ptetaphim(pt, eta, phi, m))
    np.testing.assert_allclose(back, np.stack([pt, eta, phi, m], -1), rtol=1e-9, atol=1e-7)
    # Two back-to-back massless particles of 100 GeV: mass 200, pT 0; padding ignored.
    p4 = J.p4_from_ptetaphim([[100.0, 100.0, 55.0]], [[0.0, 0.0, 1.0]], [[0.0, np.pi, 0.3]])
    k = J.jet_kinematics(p4, [[1, 1, 0]])
    np.testing.assert_allclose([k["mass"][0], k["pt"][0], k["n"][0]], [200.0, 0.0, 2], atol=1e-9)


def test_cluster_and_nsubjettiness(rng):
    # Event: two narrow groups far apart plus padding; anti-kT R=0.8 must find two jets.
    parts = np.zeros((2, 12, 3))
    parts[0, :5] = np.c_[rng.uniform(20, 60, 5), rng.normal(0.0, 0.05, 5), rng.normal(0.0, 0.05, 5)]
    parts[0, 5:9] = np.c_[rng.uniform(10, 30, 4), rng.normal(1.5, 0.05, 4), rng.normal(2.5, 0.05, 4)]
    jets, consts = J.cluster_ptetaphi(parts, R=0.8)
    assert [len(j) for j in jets] == [2, 0]
    lead = J.ptetaphim_from_p4(J.jets_to_numpy(jets, 2)[0])
    np.testing.assert_allclose(lead[0, 0], parts[0, :5, 0].sum(), rtol=0.02)
    assert lead[0, 0] > lead[1, 0] and len(consts[0][0]) == 5
    # tau_N: one-prong jet has tau1 ~ 0; a two-prong jet has tau2 << tau1.
    one = J.p4_from_ptetaphim(np.full((1, 4), 50.0), np.full((1, 4), 0.1), np.full((1, 4), 0.2))
    two = J.p4_from_ptetaphim([[50.0, 50, 50, 50]], [[0.0, 0.001, 0.4, 0.401]], [[0.0, 0.0, 0.3, 0.3]])
    t1 = J.nsubjettiness(one, n_max=2)
    t2 = J.nsubjettiness(two, n_max=2)
    assert t1[0, 0] < 1e-9
    assert t2[0, 1] < 0.05 * t2[0, 0]
    np.testing.assert_allclose(t2[0, 0], 0.25 * 2 * 0.5 / 0.8, rtol=0.05)  # axis midway: dR=0.25 each
    assert J.tau21(two)[0] < 0.05


def test_detector_smearing(rng):
    pid = np.array([211, -211, 22, 130, 12, 4900111, 13, 211])
    eta = np.array([0.0, 0.5, 1.0, 3.5, 0.0, 0.0, 3.0, 0.0])
    pt = np.array([10.0, 0.3, 5.0, 20.0, 30.0, 30.0, 10.0, 50.0])
    charge = np.array([1, -1, 0, 0, 0, 0, -1, 1])
    p4 = J.p4_from_ptetaphim(pt, eta, np.zeros(8), np.full(8, 0.1))
    args = (p4[:, 1], p4[:, 2], p4[:, 3], p4[:, 0], pid, charge)
    keep, _ = smear(*args, np.random.default_rng(1), DetectorConfig(enabled=False))
    np.testing.assert_array_equal(keep, [1, 1, 1, 1, 0, 0, 1, 1])
    keep, (px, py, pz, e) = smear(*args, np.random.default_rng(1))
    # 0.3 GeV track lost; neutrino, dark meson, and muon outside the tracker removed.
    np.testing.assert_array_equal(keep, [1, 0, 1, 1, 0, 0, 0, 1])
    assert not np.allclose(px, p4[keep.astype(bool), 1])  # smeared
    np.testing.assert_allclose(np.hypot(px, py), pt[keep.astype(bool)], rtol=0.5)
    keep2, out2 = smear(*args, np.random.default_rng(1))
    np.testing.assert_array_equal(out2[0], px)


def test_missing_pandas_version_attribute(tmp_path, rng):
    """pandas >= 3 omits `pandas_version`; pandas 2 then cannot read the table (SPEC §1.3b)."""
    import tables

    from shared.data import repair_pandas_version

    p4, label, _, _ = _toptag_arrays(rng, n=3)
    path = tmp_path / "p3.h5"
    write_toptag(path, p4, label)
    with tables.open_file(path, "a") as f:
        del f.root.table._v_attrs.pandas_version
    with pytest.raises(DataFormatError) as e:
        read_toptag(path)
    _assert_names(e, path, "pandas_version")
    repair_pandas_version(path, "table")
    np.testing.assert_array_equal(read_toptag(path)["p4"], p4)
    assert pd.read_hdf(path, "table").shape == (3, 806)
