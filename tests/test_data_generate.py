"""Tiny Pythia 8 + FastJet generations: layouts, selections recomputed from what is stored,
truth matching, metadata, reproducibility and the embedded cache."""
import json

import numpy as np
import pandas as pd
import pytest

from shared.data import read_lhco, read_metadata, read_toptag, toptag
from shared.data import jets as J
from shared.data.embedded import embedded_path, ensure_embedded
from shared.data.generate import generate, main, plan_counts

pytest.importorskip("pythia8mc")


@pytest.fixture(scope="module")
def toptag_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "toptag.h5"
    meta = generate("toptag", 15, seed=11, out=path, signal_fraction=5 / 15, chunk_size=8, progress=False)
    return path, meta


def test_toptag_generation_selection(toptag_file):
    path, meta = toptag_file
    df = pd.read_hdf(path, "table")
    assert list(df.columns) == toptag.COLUMNS
    d = read_toptag(path)
    assert np.bincount(d["label"]).tolist() == [10, 5]
    mask = d["p4"][..., 0] > 0
    k = J.jet_kinematics(d["p4"], mask)
    assert np.all((k["pt"] > 550) & (k["pt"] < 650) & (np.abs(k["eta"]) < 2)), k
    assert mask.sum(1).min() > 5 and np.all(mask == (np.cumsum(~mask, 1) == 0))  # no holes in padding
    pt = np.hypot(d["p4"][..., 1], d["p4"][..., 2])
    assert np.all(np.diff(pt, axis=1) <= 1e-3)  # pT ordered
    top, qcd = d["label"] == 1, d["label"] == 0
    assert np.all(d["truth"][qcd] == 0)
    # Truth top: on-shell-ish and within the jet cone.
    tk = J.ptetaphim_from_p4(d["truth"][top])
    assert np.all(np.abs(tk[:, 3] - 172.5) < 30)
    dr = np.hypot(tk[:, 1] - k["eta"][top], J.wrap_phi(tk[:, 2] - k["phi"][top]))
    assert np.all(dr < 0.8)
    assert meta["counts"] == {"qcd": 10, "top": 5}


def test_generation_metadata(toptag_file):
    path, meta = toptag_file
    stored = read_metadata(path)
    with open(str(path) + ".json") as f:
        side = json.load(f)
    assert stored == side
    assert stored["seed"] == 11 and stored["versions"]["pythia8mc"] and stored["detector"]["enabled"]
    assert "Top:gg2ttbar = on" in stored["pythia_settings"]["top"]
    assert all(r["per_core_per_s"] > 0 for r in stored["rates"].values())


def test_lhco_generation_trigger(tmp_path):
    path = tmp_path / "lhco.h5"
    generate("lhco", 3, seed=5, out=path, signal_fraction=1 / 3, progress=False)
    d = read_lhco(path, chunksize=2, dtype=np.float64)
    assert np.bincount(d["label"]).tolist() == [2, 1]
    x = d["particles"]
    mask = x[..., 0] > 0
    assert x.shape == (3, 700, 3) and mask.sum(1).min() > 50
    jets, _ = J.cluster_ptetaphi(x, mask, R=1.0)
    lead = J.ptetaphim_from_p4(J.jets_to_numpy(jets, 1))[:, 0, 0]
    assert np.all(lead > 1200), lead


def test_seed_reproducible_and_worker_independent(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    generate("toptag", 4, seed=3, out=a, signal_fraction=0.0, chunk_size=2, progress=False)
    generate("toptag", 4, seed=3, out=b, signal_fraction=0.0, chunk_size=2, workers=2, progress=False)
    generate("toptag", 4, seed=4, out=c, signal_fraction=0.0, chunk_size=2, progress=False)
    pa, pb, pc = (read_toptag(p)["p4"] for p in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_plan_and_cli_errors(tmp_path):
    assert plan_counts("toptag", 2000, None) == {"qcd": 1000, "top": 1000}
    assert plan_counts("toptag", 10, 0.0) == {"qcd": 10, "top": 0}
    assert plan_counts("zprime", 7, None) == {"zprime": 7}
    with pytest.raises(ValueError):
        plan_counts("zprime", 7, 0.5)
    with pytest.raises(SystemExit):
        main(["toptag", "--n", "5", "--seed", "1", "--out", str(tmp_path / "x.h5"), "--signal-fraction", "1.5"])
    assert not (tmp_path / "x.h5").exists()


def test_embedded_cache(tmp_path):
    p = ensure_embedded("zprime", tmp_path / "cache", n=2, seed=9)
    assert p == embedded_path("zprime", tmp_path / "cache", n=2, seed=9)
    d = read_toptag(p)
    assert d["label"].tolist() == [1, 1]
    mtime = (tmp_path / "cache" / p.split("/")[-1]).stat().st_mtime_ns
    assert ensure_embedded("zprime", tmp_path / "cache", n=2, seed=9) == p
    assert (tmp_path / "cache" / p.split("/")[-1]).stat().st_mtime_ns == mtime  # cached, not regenerated
    assert embedded_path("zprime", tmp_path / "cache", n=2, seed=10) != p
    assert embedded_path("zprime", tmp_path / "cache", n=2, seed=9, detector={"enabled": False}) != p
