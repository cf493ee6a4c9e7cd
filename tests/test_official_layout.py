"""The independent official-layout fixtures (tests/official_layout.py): exact on-disk layout, the
project's readers return exactly what was written, and the jets have the kinematics the
pipelines select on (top-tagging window; LHCO dijets that cluster into two wide jets)."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

import official_layout as ol
from shared.data import count_lhco, count_toptag, iter_lhco, iter_toptag, read_lhco, read_toptag

HERE = os.path.dirname(os.path.abspath(__file__))


def _jet_kinematics(p4):
    j = p4.astype(np.float64).sum(1)
    pt = np.hypot(j[:, 1], j[:, 2])
    return pt, np.arcsinh(j[:, 3] / pt), np.sqrt(np.clip(j[:, 0] ** 2 - (j[:, 1:] ** 2).sum(1), 0, None))


@pytest.fixture(scope="module")
def toptag_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toptag")
    return out, ol.write_toptag_set(out, n_train=60, n_val=10, n_test=20, n_zprime=30, seed=3)


@pytest.fixture(scope="module")
def lhco_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lhco")
    return out, ol.write_lhco_set(out, n_background=300, n_signal=60, n_extra=40, seed=5)


def test_toptag_on_disk_layout(toptag_dir):
    out, paths = toptag_dir
    assert sorted(os.listdir(out)) == ["test.h5", "train.h5", "val.h5", "zprime_test.h5"]
    with h5py.File(paths["train"], "r") as f:
        t = f["/table/table"]
        assert t.dtype["values_block_0"] == np.dtype(("<f4", (804,)))
        assert t.dtype["values_block_1"] == np.dtype(("<i8", (2,)))
        assert "pandas_version" in f["/table"].attrs
        assert f["/table"].attrs["pandas_type"] in (b"frame_table", "frame_table")
    df = pd.read_hdf(paths["train"], "table")
    assert df.shape == (120, 806)
    assert list(df.columns[:5]) == ["E_0", "PX_0", "PY_0", "PZ_0", "E_1"]
    assert list(df.columns[-6:]) == ["truthE", "truthPX", "truthPY", "truthPZ", "ttv", "is_signal_new"]
    assert df["PZ_199"].dtype == np.float32 and df["ttv"].dtype == np.int64


def test_toptag_readers_return_what_was_written(toptag_dir):
    _, paths = toptag_dir
    df = pd.read_hdf(paths["val"], "table")        # written values, read back by pandas alone
    d = read_toptag(paths["val"])
    assert count_toptag(paths["val"]) == 20
    for row, slot, comp in ((0, 0, "E"), (3, 5, "PX"), (7, 2, "PZ"), (19, 0, "PY")):
        k = ("E", "PX", "PY", "PZ").index(comp)
        assert d["p4"][row, slot, k] == df[f"{comp}_{slot}"].iloc[row]
    np.testing.assert_array_equal(d["label"], df["is_signal_new"].to_numpy())
    np.testing.assert_array_equal(d["truth"][:, 0], df["truthE"].to_numpy())
    assert (d["ttv"] == ol.TTV["val"]).all()
    chunks = list(iter_toptag(paths["val"], start=2, stop=17, chunksize=4))
    assert [len(c["label"]) for c in chunks] == [4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate([c["p4"] for c in chunks]), d["p4"][2:17])


def test_toptag_kinematics(toptag_dir):
    _, paths = toptag_dir
    d = read_toptag(paths["train"])
    z = read_toptag(paths["zprime"])
    assert np.bincount(d["label"]).tolist() == [60, 60] and (z["label"] == 1).all()
    for p4 in (d["p4"], z["p4"]):
        pt, eta, _ = _jet_kinematics(p4)
        assert (pt > 550).all() and (pt < 650).all() and (np.abs(eta) < 2).all()
        cpt = np.hypot(p4[..., 1], p4[..., 2])
        assert (np.diff(cpt, axis=1) <= 1e-3).all()                  # pT ordered, padding last
        real = cpt > 0
        assert (p4[~real] == 0).all() and real.sum(1).min() >= 5
        e2 = p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(-1)
        assert np.abs(e2[real]).max() < 1e-3 * np.max(p4[..., 0] ** 2)   # massless constituents
    m = _jet_kinematics(d["p4"])[2]
    top, qcd = m[d["label"] == 1], m[d["label"] == 0]
    assert 150 < np.median(top) < 195 and np.median(qcd) < 100
    assert (d["truth"][d["label"] == 0] == 0).all()
    tm = np.sqrt(d["truth"][:, 0] ** 2 - (d["truth"][:, 1:].astype(np.float64) ** 2).sum(1))
    np.testing.assert_allclose(tm[d["label"] == 1], 172.5, rtol=1e-3)


def test_lhco_layout_and_readers(lhco_dir):
    out, paths = lhco_dir
    assert sorted(os.listdir(out)) == sorted(ol.LHCO_FILES.values())
    with h5py.File(paths["main"], "r") as f:
        assert f["/df/block0_values"].dtype == np.float64 and f["/df/block0_values"].shape == (360, 2101)
        assert "pandas_version" in f["/df"].attrs
    df = pd.read_hdf(paths["main"], "df")
    assert list(df.columns) == list(range(2101))
    d = read_lhco(paths["main"], dtype=np.float64)
    assert count_lhco(paths["main"]) == 360 and count_lhco(paths["extra"]) == 40
    for row, col in ((0, 0), (5, 1), (11, 2), (200, 2100 - 1), (359, 30)):
        assert d["particles"][row, col // 3, col % 3] == df[col].iloc[row]
    np.testing.assert_array_equal(d["label"], df[2100].to_numpy())
    assert np.bincount(d["label"]).tolist() == [300, 60]
    chunks = list(iter_lhco(paths["main"], start=10, stop=100, chunksize=40, dtype=np.float64))
    np.testing.assert_array_equal(np.concatenate([c["particles"] for c in chunks]), d["particles"][10:100])
    pt = d["particles"][..., 0]
    real = pt > 0
    last = real.sum(1)
    assert all(real[i, :last[i]].all() for i in range(len(pt)))      # zero padding at the end
    unordered = [np.any(np.diff(pt[i, :last[i]]) > 0) for i in range(len(pt))]
    assert np.mean(unordered) > 0.99                                  # not pT ordered
    assert (read_lhco(paths["extra"])["label"] == 0).all()


def test_lhco_events_cluster_into_two_wide_jets(lhco_dir):
    from lhco_fullphase.events import cluster_dijets

    _, paths = lhco_dir
    d = read_lhco(paths["main"], dtype=np.float64)
    arrays, keep = cluster_dijets(d["particles"], num_particles=279, radius=1.0)
    assert keep.all()
    jets, mjj, label = arrays["jets"], arrays["mjj"], d["label"]
    assert ((jets[:, :, 0] > 1200).all(1)).mean() > 0.5
    bkg = mjj[label == 0]
    for lo, hi in ((2300, 3300), (3300, 3700), (3700, 5000)):
        assert ((bkg >= lo) & (bkg < hi)).mean() > 0.05, (lo, hi)
    sig = label == 1
    assert 3300 < np.median(mjj[sig]) < 3700
    masses = np.sort(jets[sig][:, :, 3], axis=1)
    assert 450 < np.median(masses[:, 1]) < 550 and 80 < np.median(masses[:, 0]) < 160
    ex, _ = cluster_dijets(read_lhco(paths["extra"], dtype=np.float64)["particles"], 279, 1.0)
    assert ((ex["mjj"] >= 3300) & (ex["mjj"] < 3700)).mean() > 0.9


def test_cli_writes_both_kinds(tmp_path):
    script = os.path.join(HERE, "official_layout.py")
    run = subprocess.run([sys.executable, script, "--kind", "toptag", "--out", str(tmp_path / "t"),
                          "--n-train", "3", "--n-val", "2", "--n-test", "2", "--n-zprime", "2"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert count_toptag(tmp_path / "t" / "train.h5") == 6 and count_toptag(tmp_path / "t" / "zprime_test.h5") == 2
    run = subprocess.run([sys.executable, script, "--kind", "lhco", "--out", str(tmp_path / "l"),
                          "--n-background", "4", "--n-signal", "2", "--n-extra", "3"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert count_lhco(tmp_path / "l" / ol.LHCO_FILES["main"]) == 6
    bad = subprocess.run([sys.executable, script, "--kind", "lhco", "--out", str(tmp_path / "x"),
                          "--n-signal", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--n-signal" in bad.stderr
