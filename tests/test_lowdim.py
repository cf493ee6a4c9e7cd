"""lhco_fullphase.lowdim: features (τ21 against an independent reference), the conditional MAF
(normalised density, autoregressive structure, training + sampling), the classifier protocol."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.integrate import trapezoid

from lhco_fullphase import events as ldata
from lhco_fullphase import lowdim as L
from lhco_synthetic import synthetic_events


def _exclusive_kt_tau(ptyphi, n, rapidity):
    """Independent reference: τ_n/Σ pT of massless constituents [pT, η, φ] with exclusive-kT
    axes (pairwise E-scheme merging by min(pT²)ΔR² in rapidity–azimuth, R = 1000 so no beam
    merging, as FastJet's exclusive_jets with max_allowable_R) and β = 1. ``rapidity``: ΔR to
    the (massive) axes in rapidity (fastjet-contrib Nsubjettiness) or pseudorapidity."""
    import energyflow as ef
    jets = list(ef.p4s_from_ptyphims(np.c_[ptyphi, np.zeros(len(ptyphi))]))

    def kin(v, rap=True):
        pt, phi = np.hypot(v[1], v[2]), np.arctan2(v[2], v[1])
        return pt, (0.5 * np.log((v[0] + v[3]) / (v[0] - v[3])) if rap else np.arcsinh(v[3] / pt)), phi

    while len(jets) > n:
        k = [kin(v) for v in jets]
        d = {(i, j): min(k[i][0], k[j][0]) ** 2 * ((k[i][1] - k[j][1]) ** 2 + ldata.wrap_phi(k[i][2] - k[j][2]) ** 2)
             for i in range(len(jets)) for j in range(i + 1, len(jets))}
        i, j = min(d, key=d.get)
        jets[i] = jets[i] + jets.pop(j)
    ax = np.array([kin(v, rapidity) for v in jets])
    dr = np.hypot(ptyphi[:, 1, None] - ax[None, :, 1], ldata.wrap_phi(ptyphi[:, 2, None] - ax[None, :, 2]))
    return np.sum(ptyphi[:, 0] * dr.min(1)) / ptyphi[:, 0].sum()


@pytest.fixture(scope="module")
def clustered():
    parts, _ = synthetic_events(5, seed=11, max_particles=80)
    arrays, _ = ldata.cluster_dijets(parts, 40)
    return arrays


def _reference_tau21(arrays, rapidity):
    out = np.zeros(arrays["mask"].shape[:2])
    for e in range(len(out)):
        for j in range(2):
            m, jet = arrays["mask"][e, j], arrays["jets"][e, j]
            p = arrays["particles"][e, j][m]
            c = np.c_[p[:, 0] * jet[0], p[:, 1] + jet[1], p[:, 2] + jet[2]]
            out[e, j] = _exclusive_kt_tau(c, 2, rapidity) / _exclusive_kt_tau(c, 1, rapidity)
    return out


def test_features_masses_order_and_tau21_match_reference(clustered):
    f = L.lowdim_features(clustered, jet_order="pt")
    m = clustered["jets"][..., 3]
    np.testing.assert_allclose(f[:, 0], m[:, 0])
    np.testing.assert_allclose(f[:, 1], m[:, 1] - m[:, 0])
    # exclusive-kT axes and the four-momenta built from (pT_rel, Δη, Δφ) reproduce the reference
    np.testing.assert_allclose(f[:, 2:], _reference_tau21(clustered, rapidity=False), rtol=1e-9)
    assert np.all((f[:, 2:] > 0.1) & (f[:, 2:] < 1))
    fm = L.lowdim_features(clustered)            # CATHODE order: the lighter jet first
    assert np.all(fm[:, 1] >= 0)
    np.testing.assert_allclose(fm[:, 0], m.min(1))
    swap = m[:, 0] > m[:, 1]
    np.testing.assert_allclose(fm[swap, 2], f[swap, 3])


def test_tau21_close_to_fastjet_contrib_definition(clustered):
    """fastjet-contrib measures ΔR to the (massive) axes in rapidity; shared.data.jets uses their
    pseudorapidity. On these synthetic jets that moves τ21 by ≤ 2 % (on 80 Pythia jets of the demo
    data: median 1 %, max 19 %; see the strict xfail)."""
    f = L.lowdim_features(clustered, jet_order="pt")
    np.testing.assert_allclose(f[:, 2:], _reference_tau21(clustered, rapidity=True), rtol=0.02)


@pytest.mark.xfail(strict=True, reason="shared.data.jets.nsubjettiness uses the axes' pseudorapidity, "
                   "fastjet-contrib their rapidity (reported; fix in shared/data/jets.py)")
def test_tau21_equals_fastjet_contrib_definition(clustered):
    f = L.lowdim_features(clustered, jet_order="pt")
    np.testing.assert_allclose(f[:, 2:], _reference_tau21(clustered, rapidity=True), rtol=1e-6)


def test_two_prong_jet_has_small_tau21():
    jets = np.array([[[1000.0, 0.0, 0.0, 100.0, 4], [900.0, 0.5, 3.0, 20.0, 4]]])
    parts = np.zeros((1, 2, 4, 3))
    parts[0, 0] = [[0.3, 0.2, 0.0], [0.2, 0.21, 0.01], [0.3, -0.2, 0.0], [0.2, -0.21, -0.01]]   # 2 prongs
    parts[0, 1] = [[0.3, 0.0, 0.0], [0.3, 0.02, 0.01], [0.2, 0.3, 0.3], [0.2, -0.3, 0.3]]      # 1 core + wide
    f = L.lowdim_features({"jets": jets, "particles": parts, "mask": np.ones((1, 2, 4), bool)}, jet_order="pt")
    assert f[0, 2] < 0.1 < 0.4 < f[0, 3]


def _random_maf(num_features, seed, blocks=2):
    keras.utils.set_random_seed(seed)
    m = L.ConditionalMAF(num_features, 1, blocks, (16,), max_log_scale=1.5)
    m.log_prob(np.zeros((1, num_features), np.float32), np.zeros((1, 1), np.float32))
    rng = np.random.default_rng(seed)
    for v in m.trainable_variables:   # a far-from-identity flow
        v.assign(rng.normal(0, 0.4, v.shape).astype(np.float32))
    return m


def test_maf_density_integrates_to_one_1d_with_logit_scaler():
    rng = np.random.default_rng(0)
    m = _random_maf(1, 3, blocks=3)
    m.scaler = L.LogitScaler(0.05).fit(rng.gamma(2.0, 50.0, (500, 1)))
    x = np.linspace(m.scaler.lo[0], m.scaler.hi[0], 50001)[1:-1, None]
    for c in (-0.8, 0.0, 0.7):
        p = np.exp(L.log_density(m, x, np.full(len(x), c)))
        assert trapezoid(p, x[:, 0]) == pytest.approx(1.0, abs=2e-3)
        assert p.max() / p.mean() > 1.5          # not a flat density


def test_maf_density_integrates_to_one_2d_and_is_autoregressive():
    m = _random_maf(2, 5, blocks=2)
    g = np.linspace(-25, 25, 1601)   # the flow's tails reach |y| ~ 15
    xx = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    logp = m.log_prob(xx, np.full((len(xx), 1), 0.3, np.float32)).numpy()
    total = np.exp(logp).sum() * (g[1] - g[0]) ** 2
    assert total == pytest.approx(1.0, abs=5e-3)
    made = m.made[0]
    x = tf.constant(np.random.default_rng(1).normal(size=(1, 2)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        shift, log_scale = made(x, tf.constant([[0.1]]))
        outs = [shift[0, 0], shift[0, 1], log_scale[0, 0]]
    grads = [tape.gradient(o, x).numpy()[0] if tape.gradient(o, x) is not None else np.zeros(2) for o in outs]
    assert np.all(grads[0] == 0) and np.all(grads[2] == 0)    # output 0 depends on no input
    assert grads[1][0] != 0 and grads[1][1] == 0               # output 1 on x_0 only


def test_flow_trains_resumes_and_samples_conditionally(tmp_path):
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, 1500)
    x = np.stack([rng.normal(100 + 60 * c, 10), rng.gamma(2, 20, 1500), rng.beta(2, 5, 1500), rng.beta(5, 2, 1500)], -1)
    cfg = {"flow": {"num_blocks": 2, "hidden_units": [32], "training": {
        "epochs": 8, "batch_size": 100, "learning_rate": 5e-3, "progress": False}}}
    flow = L.train_flow(cfg, x[:1000], c[:1000], x[1000:], c[1000:], tmp_path / "flow", progress=False)
    s = L.sample_flow(flow, c[1000:], seed=1)
    assert s.shape == (500, 4) and np.all(np.isfinite(s))
    assert np.all((s >= flow.scaler.lo) & (s <= flow.scaler.hi))
    assert np.corrcoef(s[:, 0], c[1000:])[0, 1] > 0.8             # learnt the mjj dependence
    np.testing.assert_allclose(s.mean(0), x[1000:].mean(0), rtol=0.15)
    again = L.load_flow(cfg, tmp_path / "flow")
    np.testing.assert_allclose(L.sample_flow(again, c[1000:], seed=1), s, rtol=1e-5)


@pytest.mark.parametrize("kind", ["hgb", "mlp"])
def test_weak_supervision_classifier_finds_an_excess(kind, tmp_path):
    rng = np.random.default_rng(4)
    bkg = lambda n: np.stack([rng.normal(100, 30, n), rng.gamma(2, 40, n), rng.beta(5, 3, n), rng.beta(5, 3, n)], -1)  # noqa: E731
    sig = lambda n: np.stack([rng.normal(100, 5, n), rng.normal(400, 10, n), rng.beta(2, 8, n), rng.beta(2, 8, n)], -1)  # noqa: E731
    x0, x1 = bkg(3000), np.concatenate([bkg(1500), sig(300)])
    eval_x = np.concatenate([bkg(2000), sig(500)])
    cfg = {"classifier": {"kind": kind, "hidden_units": [16, 16], "training": {
        "epochs": 15, "batch_size": 128, "patience": 5, "progress": False}}}
    res = L.train_and_score_lowdim(cfg, x0, x1, eval_x, seed=1, workdir=tmp_path / "c")
    from shared.metrics import auc
    assert res["eval"].shape == (2500,) and res["epochs"] >= 1
    assert auc(np.r_[np.zeros(2000), np.ones(500)], res["eval"]) > 0.9


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="lowdim.flow: unknown key 'blocks'"):
        L.lowdim_config({"lowdim": {"flow": {"blocks": 3}}})
    with pytest.raises(ValueError, match="classifier.kind"):
        L.lowdim_config({"classifier": {"kind": "bdt"}})
    assert L.lowdim_config({"seed": 3, "data": {}})["flow"]["num_blocks"] == 15   # full cfg without a section


def _tiny_prepared(n=400, seed=5):
    """A Prepared of clustered synthetic events with hand-made disjoint roles (SR = the middle
    30 % of the mjj distribution)."""
    from lhco_fullphase.prepare import Prepared
    from lhco_fullphase.preprocess import Preprocessor
    parts, _ = synthetic_events(n, seed=seed, max_particles=80)
    arrays, _ = ldata.cluster_dijets(parts, 8)
    m = len(arrays["mjj"])
    rng = np.random.default_rng(seed)
    arrays.update(event_id=np.arange(m, dtype=np.int64), label=(rng.random(m) < 0.3).astype(np.int8))
    lo, hi = np.quantile(arrays["mjj"], [0.35, 0.65])
    sr = (arrays["mjj"] >= lo) & (arrays["mjj"] < hi)
    ids = arrays["event_id"]
    sb_bkg = ids[~sr & (arrays["label"] == 0)]
    sr_bkg, sr_sig = ids[sr & (arrays["label"] == 0)], ids[sr & (arrays["label"] == 1)]
    roles = {"sb_train": sb_bkg[::2], "sb_val": sb_bkg[1::2], "data_bkg": sr_bkg[:20],
             "idealized_bkg": sr_bkg[20:40], "eval_bkg": sr_bkg[40:], "inj_pool": sr_sig[:15],
             "eval_sig": sr_sig[15:]}
    a = {k: v[roles["sb_train"]] for k, v in arrays.items()}
    pre = Preprocessor().fit(a["jets"], a["particles"], a["mask"], a["mjj"])
    cfg = {"seed": 3, "windows": {"sr": [float(lo), float(hi)]}, "kde": {"fit_on": "sr_data", "bandwidth": 0.01},
           "generation": {"num_events": 50},
           "weak_supervision": {"injections": [15], "num_inits": 2, "idealized": True},
           "lowdim": {"flow": {"num_blocks": 2, "hidden_units": [8],
                               "training": {"epochs": 2, "batch_size": 64, "progress": False}},
                      "classifier": {"kind": "hgb"}}}
    return Prepared("unused", {"preprocessor": pre.to_dict()}, roles, arrays), cfg, (lo, hi)


def test_scan_lowdim_writes_scores_like_the_diffusion_scan(tmp_path):
    """Prepared synthetic data -> flow in the SB -> SR samples -> both methods' scans; evaluation
    events never trained on; a second call skips everything."""
    import os
    prep, cfg, (lo, hi) = _tiny_prepared()
    out = str(tmp_path / "out")
    paths, times = L.scan_lowdim(cfg, out, prep, progress=False)
    assert len(paths) == 4 and {p.split(os.sep)[-4] for p in paths} == set(L.METHODS)
    with np.load(os.path.join(out, "lowdim", "sr_samples.npz")) as s:
        assert s["features"].shape == (50, 4) and np.all((s["mjj"] >= lo) & (s["mjj"] < hi))
    eval_ids = np.concatenate([prep.roles["eval_bkg"], prep.roles["eval_sig"]])
    for p in paths:
        with np.load(p) as d:
            assert np.all(np.isfinite(d["scores"])) and d["scores"].shape == d["labels"].shape
            np.testing.assert_array_equal(np.sort(d["event_id"]), np.sort(eval_ids))
            assert np.intersect1d(d["train_event_id"], d["event_id"]).size == 0
            assert int(d["n_signal_injected"]) == 15
    mtimes = [os.path.getmtime(p) for p in paths]
    again, _ = L.scan_lowdim(cfg, out, prep, progress=False)
    assert again == paths and [os.path.getmtime(p) for p in paths] == mtimes
