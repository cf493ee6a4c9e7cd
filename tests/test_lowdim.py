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
    assert np.all((f[:, 2:] > 0.1) & (f[:, 2:] < 1))
    fm = L.lowdim_features(clustered)            # CATHODE order: the lighter jet first
    assert np.all(fm[:, 1] >= 0)
    np.testing.assert_allclose(fm[:, 0], m.min(1))
    swap = m[:, 0] > m[:, 1]
    np.testing.assert_allclose(fm[swap, 2], f[swap, 3])


def test_tau21_equals_fastjet_contrib_definition(clustered):
    """Exclusive-kT axes, the four-momenta built from (pT_rel, Δη, Δφ) and ΔR in rapidity
    (fastjet-contrib's Nsubjettiness) reproduce the independent reference."""
    f = L.lowdim_features(clustered, jet_order="pt")
    np.testing.assert_allclose(f[:, 2:], _reference_tau21(clustered, rapidity=True), rtol=1e-9)


def test_tau21_uses_rapidity_not_pseudorapidity(clustered):
    """The axes are massive: ΔR to their pseudorapidity (the old definition) gives another τ21
    (by up to 1.4 % on these jets; median 1 %, max 19 % on 80 Pythia jets of the demo data)."""
    f = L.lowdim_features(clustered, jet_order="pt")
    eta_based = _reference_tau21(clustered, rapidity=False)
    assert np.max(np.abs(f[:, 2:] / eta_based - 1)) > 1e-4


def test_rapidity_of_massive_and_massless_four_momenta():
    from shared.data.jets import p4_from_ptetaphim, rapidity
    pt, eta, m = np.array([10.0, 5.0, 300.0, 0.0]), np.array([0.3, -2.5, 4.0, 0.0]), np.array([0.0, 3.0, 0.0, 0.0])
    p4 = p4_from_ptetaphim(pt, eta, np.zeros(4), m)
    y = rapidity(p4)
    np.testing.assert_allclose(y[[0, 2]], eta[[0, 2]], rtol=1e-12)          # massless: y = η
    e, pz = p4[1, 0], p4[1, 3]
    np.testing.assert_allclose(y[1], 0.5 * np.log((e + pz) / (e - pz)), rtol=1e-12)
    assert abs(y[1]) < abs(eta[1]) and y[3] == 0.0                         # padding: 0


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
    from shared.errors import ConfigError
    with pytest.raises(ConfigError, match="'lowdim.flow.blocks': unknown key"):
        L.lowdim_config({"lowdim": {"flow": {"blocks": 3}}})
    with pytest.raises(ConfigError, match="lowdim.classifier.kind"):
        L.lowdim_config({"classifier": {"kind": "bdt"}})
    with pytest.raises(ConfigError, match="lowdim.flow.training.epoch"):
        L.lowdim_config({"flow": {"training": {"epoch": 3}}})
    full = L.lowdim_config({"seed": 3, "data": {}})        # full cfg without a section: defaults
    assert full["flow"]["num_blocks"] == 15 and full["flow"]["training"]["learning_rate"] == 1e-4
    assert full == L.LOWDIM_DEFAULTS and not full["enabled"]
