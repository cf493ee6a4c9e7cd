"""Baselines (permutation_ad.baselines): input form, images, EFPs, k-means scores and effective
dimension, flow Jacobian, set pooling, every method's scores (shape, determinism, an obvious
anomaly) and the resumable stage."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from permutation_ad.features import jet_features
from permutation_ad.prepare import synthetic_p4
from permutation_ad.baselines import config as bcfg
from permutation_ad.baselines.jetset import JetSetError, check_jetset, from_p4, from_processed, jet_column
from shared import metrics

P = 20


def toy_p4(n, prongs, seed, per_prong=10, radius=0.25, spread=0.02, pt_jet=600.0):
    """Jets of ``prongs`` tight prongs (``per_prong`` particles each, Gaussian ``spread``) on a
    circle of ``radius`` around the axis (1 prong: at the axis), random orientation and position."""
    rng = np.random.default_rng(seed)
    p4 = np.zeros((n, 40, 4))
    for i in range(n):
        ang = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(prongs) / prongs
        axes = np.zeros((1, 2)) if prongs == 1 else radius * np.stack([np.cos(ang), np.sin(ang)], -1)
        m = prongs * per_prong + int(rng.integers(0, 4))
        which = np.arange(m) % prongs
        eta = axes[which, 0] + rng.normal(0, spread, m) + rng.uniform(-1.5, 1.5)
        phi = axes[which, 1] + rng.normal(0, spread, m) + rng.uniform(-np.pi, np.pi)
        pt = np.sort(rng.dirichlet(np.full(m, 2.0)) * pt_jet)[::-1]
        p4[i, :m] = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    return p4


@pytest.fixture(scope="module")
def toy():
    """1-prong 'QCD' jets vs 3-prong jets (and 2-prong ones for τ21): anomalies every score sees."""
    def make(n, prongs, seed):
        return from_p4(toy_p4(n, prongs, seed), P)
    return {"train": make(240, 1, 1), "background": make(60, 1, 2), "signal": make(60, 3, 3),
            "twoprong": make(60, 2, 4)}


def _tiny_config():
    train = {"epochs": 4, "batch_size": 64}
    return bcfg.baselines_config({
        "kmeans": {"k": 8, "n_init": 2, "image": {"size": 16}},
        "gmm": {"n_components": 4, "max_iter": 50, "image": {"size": 16}},
        # the image DVAE needs ~80 steps before its reconstruction loss ranks the toy right
        # (untrained, a broad reconstruction scores the spread-out signal *lower*)
        "dvae_image": {"image": {"size": 16}, "training": dict(epochs=12, batch_size=32, learning_rate=3e-2)},
        "dvae_efp": {"training": dict(train, learning_rate=1e-2)},
        "inn": {"blocks": 2, "hidden": 16, "noise_decay": 0.5,
                "training": dict(train, learning_rate=2e-3)},
        "deepset_kl": {"width": 16, "depth": 2, "fspool_pieces": 4, "training": train},
        "deepset_chamfer": {"width": 16, "depth": 2, "fspool_pieces": 4, "decoder_width": 16,
                            "decoder_depth": 1, "num_outputs": 8, "training": train},
        "dark_jets": {"enabled": False}})


# ------------------------------------------------------------------ input form


def test_from_processed_matches_from_p4():
    p4 = synthetic_p4(5, 40, 2, seed=4)
    f = jet_features(p4, P, "log_pt", ("eta", "mass", "n"))
    a, b = from_processed(f, "log_pt", ("eta", "mass", "n")), from_p4(p4, P)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    np.testing.assert_allclose(a["particles"], b["particles"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jet_column(a, "n"), (p4[..., 0] > 0).sum(1))
    np.testing.assert_allclose(jet_column(a, "mass"), b["jet"]["mass"], rtol=1e-5)
    # pT relative to the jet: same particles up to the jet pT
    g = from_processed(jet_features(p4, P, "log_one_minus_pt_rel"), "log_one_minus_pt_rel")
    np.testing.assert_allclose(g["particles"][..., 2] * b["jet"]["pt"][:, None], b["particles"][..., 2], rtol=1e-4)
    # mass computed from the constituents when not given (massless, all kept here)
    full = from_p4(p4, 40)
    np.testing.assert_allclose(jet_column({"particles": full["particles"], "mask": full["mask"]}, "mass"),
                               full["jet"]["mass"], rtol=1e-6)


def test_bad_jetset_names_the_field():
    with pytest.raises(JetSetError, match="mask"):
        check_jetset({"particles": np.ones((2, 3, 3)), "mask": np.ones((2, 4), bool)}, "x")
    with pytest.raises(JetSetError, match="particles"):
        check_jetset({"particles": np.ones((2, 3, 2)), "mask": np.ones((2, 3), bool)}, "x")


# ------------------------------------------------------------------ features


def test_images_centre_rotate_flip_normalise():
    from permutation_ad.baselines.images import jet_images

    # two particles on a line along φ, the harder one at negative φ: after alignment the axis
    # lies along η (axis 1) and the harder particle at positive η
    parts = np.array([[[0.0, -0.2, 30.0], [0.0, 0.3, 10.0], [0, 0, 0]]])
    js = {"particles": parts, "mask": np.array([[True, True, False]])}
    img = jet_images(js, size=10, extent=0.8)[0]
    assert img.shape == (10, 10) and abs(img.sum() - 1) < 1e-6
    rows, cols = np.nonzero(img)
    assert len(set(cols)) == 1 and len(set(rows)) == 2          # along η after rotation
    assert img[rows.max(), cols[0]] > img[rows.min(), cols[0]]   # harder one at positive η
    soft = jet_images(js, size=10, extent=0.8, pt_power=0.5, sigma=1.0)[0]
    assert abs(soft.sum() - 1) < 1e-6 and (soft > 0).sum() > (img > 0).sum()
    np.testing.assert_allclose(np.sort(img[img > 0]), [0.25, 0.75], rtol=1e-6)


def test_prime_efps_count_and_mass_relation():
    from permutation_ad.baselines.efp import Whitener, prime_efps

    js = from_p4(synthetic_p4(20, 40, 1, seed=5), 40)
    x = prime_efps(js)
    assert x.shape == (20, 8) and np.all(x > 0)
    # EFP2 (double edge) = Σ z_i z_j R_ij² ≈ 2 m² / pT² for narrow massless jets (paper Eq. 6)
    ratio = x[:, 1] / (2 * js["jet"]["mass"] ** 2 / js["jet"]["pt"] ** 2)
    np.testing.assert_allclose(ratio, 1.0, atol=0.05)
    w = Whitener.fit(x)
    u = w.transform(x)
    np.testing.assert_allclose(np.cov(u, rowvar=False), np.eye(8), atol=1e-6)
    assert np.isclose(w.log_det, -0.5 * np.log(np.linalg.det(np.cov(x, rowvar=False))), rtol=1e-6)


def test_tau32_and_tau21_from_jets_module():
    from shared.data import jets as J

    js = from_p4(synthetic_p4(30, 40, 3, seed=6), 40)
    from permutation_ad.baselines.jetset import massless_p4
    from permutation_ad.baselines.observables import observables

    obs = observables(js)
    p4 = massless_p4(js)
    np.testing.assert_allclose(obs["tau32"], J.tau32(p4, js["mask"]))
    np.testing.assert_allclose(obs["tau21"], J.tau21(p4, js["mask"]))
    assert np.all((obs["tau32"] > 0) & (obs["tau32"] <= 1.0 + 1e-9))


# ------------------------------------------------------------------ k-means, flows, sets


@pytest.mark.parametrize("dim", [2, 3])
def test_mlled_effective_dimension_recovers_manifold(dim):
    from permutation_ad.baselines.kmeans import KMeansScorer

    # uniform points on a flat dim-torus (no boundary, constant density: the estimator's
    # assumption), (cos θ_j, sin θ_j) in 2 dim coordinates, rotated into 30 dimensions
    rng = np.random.default_rng(dim)
    theta = rng.uniform(0, 2 * np.pi, size=(2000, dim))
    basis, _ = np.linalg.qr(rng.normal(size=(30, 2 * dim)))
    x = np.concatenate([np.cos(theta), np.sin(theta)], 1) @ basis.T
    s = KMeansScorer(k=20, n_init=2, seed=0).fit(x)
    assert abs(s.dim - dim) < 0.35, s.dims
    sc = s.scores(np.r_[x[:5], 3.0 * x[:5]])                     # off the manifold
    for name, v in sc.items():
        assert v.shape == (10,) and np.all(v[5:] > v[:5].max()), name


def test_kmeans_scores_stay_finite_with_one_member_clusters():
    """k = 100 on few jets (the paper smoke: ~900) leaves clusters of one point, ρ = 0; the
    MLL scores were inf/NaN there."""
    from permutation_ad.baselines.kmeans import KMeansScorer

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(60, 5)), 50.0 + rng.normal(size=(1, 5)), -50.0 + rng.normal(size=(1, 5))]
    s = KMeansScorer(k=10, n_init=2, seed=0).fit(x)
    assert s.counts.min() == 1
    for name, v in s.scores(np.r_[x, rng.normal(size=(5, 5))]).items():
        assert np.all(np.isfinite(v)), name


def test_inn_logdet_is_the_jacobian():
    import tensorflow as tf

    from permutation_ad.baselines.inn import CouplingINN, reweighted_nll

    model = CouplingINN(4, blocks=3, hidden=8, seed=1)
    u = tf.constant(np.random.default_rng(0).normal(size=(5, 4)), tf.float32)
    model(u)
    for v in model.trainable_variables:       # leave the identity initialisation
        v.assign(0.3 * tf.random.stateless_normal(v.shape, seed=[1, 2]))
    with tf.GradientTape() as tape:
        tape.watch(u)
        z, logdet = model(u)
    jac = tape.batch_jacobian(z, u)
    np.testing.assert_allclose(logdet.numpy(), np.linalg.slogdet(jac.numpy().astype(np.float64))[1], atol=1e-4)
    # x' = log x of a log-normal x is standard normal: the reweighted NLL must say so
    x = np.exp(np.random.default_rng(1).normal(size=(7, 1)))
    nll_x = 0.5 * np.log(x[:, 0]) ** 2 + 0.5 * np.log(2 * np.pi) + np.log(x[:, 0])
    np.testing.assert_allclose(reweighted_nll(nll_x, 0.0, x, 0.0), 0.5 * np.log(x[:, 0]) ** 2 + 0.5 * np.log(2 * np.pi))


def test_inn_reweighting_is_the_closed_form_density_of_x_to_the_n():
    """Eq. 21 on a toy with known densities: x log-normal per dimension, so x^n is log-normal
    (log-mean n·mu, log-std |n|·sigma) and log x is normal; the whitening enters through its
    constant log|du/dx| (nll_u = nll_x + log_det). Guards the Jacobian's sign and the n = 0 (log) case."""
    from scipy import stats

    from permutation_ad.baselines.efp import Whitener
    from permutation_ad.baselines.inn import reweighted_nll

    rng = np.random.default_rng(3)
    mu, sigma = np.array([-3.0, -6.0]), np.array([0.7, 1.5])
    x = np.exp(mu + sigma * rng.normal(size=(50, 2)))
    nll_x = -stats.lognorm.logpdf(x, sigma, scale=np.exp(mu)).sum(1)
    w = Whitener.fit(x)
    jac = np.diag(w.scale) @ w.components.T                     # du/dx of u = (x - m) V diag(scale)
    assert np.isclose(w.log_det, np.linalg.slogdet(jac)[1])
    nll_u = nll_x + w.log_det                                    # -log p_u(u) = -log p_x(x) + log|dx/du|
    for n in (1.0, 1 / 3, 0.5, 2.0):
        exact = -stats.lognorm.logpdf(x ** n, n * sigma, scale=np.exp(n * mu)).sum(1)
        np.testing.assert_allclose(reweighted_nll(nll_u, w.log_det, x, n), exact - 2 * np.log(n), rtol=1e-9)
    exact_log = -stats.norm.logpdf(np.log(x), mu, sigma).sum(1)
    np.testing.assert_allclose(reweighted_nll(nll_u, w.log_det, x, 0.0), exact_log, rtol=1e-9)


def test_fspool_and_deepset_vae_are_permutation_invariant_and_ignore_padding():
    import tensorflow as tf

    from permutation_ad.baselines.deepset_vae import DeepSetVAE, chamfer

    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1] * 6], np.float32)
    model = DeepSetVAE(width=8, depth=2, latent_dim=2, fspool_pieces=3, beta=0.5, decoder_width=8,
                       decoder_depth=1, num_outputs=4, seed=0)
    base = model.score({"x": x, "mask": mask}).numpy()
    perm = rng.permutation(6)
    x2, m2 = x[:, perm], mask[:, perm]
    x3 = np.where(m2[..., None] > 0, x2, 99.0).astype(np.float32)   # garbage in the padding
    np.testing.assert_allclose(model.score({"x": x3, "mask": m2}).numpy(), base, rtol=1e-5)
    # Chamfer of a set with itself is 0; moving one output point: 1 (input side) + 3 (output side)
    a = tf.constant([[[0.0, 0, 0], [1, 0, 0]]])
    b = tf.constant([[[0.0, 0, 0], [1, 0, 3]]])
    m = tf.constant([[1.0, 1.0]])
    assert float(chamfer(a, m, a)[0]) < 1e-5
    np.testing.assert_allclose(float(chamfer(a, m, b)[0]), 1.0 + 3.0, rtol=1e-5)


# ------------------------------------------------------------------ every method, and the stage


def _auc(bkg, sig):
    return metrics.auc(np.r_[np.zeros(len(bkg)), np.ones(len(sig))], np.r_[bkg, sig])


def test_every_score_shape_determinism_and_obvious_anomaly(toy, tmp_path):
    from permutation_ad.baselines.methods import FeatureCache, run_method

    cfg = _tiny_config()
    runs = []
    for rep in range(2):
        feats = FeatureCache(toy)
        runs.append({name: run_method(name, bcfg.method_config(cfg, name), "train",
                                      ["background", "signal", "twoprong"],
                                      str(tmp_path / f"{rep}_{name}"), 3, feats, 0.1)
                     for name in cfg["run"]})
    for name, r in runs[0].items():
        assert set(r["labels"]) == set(r["scores"]["signal"]), name
        for sid in r["labels"]:
            target = "twoprong" if sid == "tau21" else "signal"   # τ21 counts 2 prongs, not 3
            b, s = r["scores"]["background"][sid], r["scores"][target][sid]
            assert b.shape == (60,) and s.shape == (60,) and np.all(np.isfinite(b)), (name, sid)
            np.testing.assert_allclose(runs[1][name]["scores"][target][sid], s, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}/{sid} not reproducible under a seed")
            auc = _auc(b, s)
            if name == "observables":
                auc = max(auc, 1 - auc)        # references: sign chosen on labels (as the report does)
            assert auc > 0.9, (name, sid, auc)


def test_stage_tables_figures_and_resume(toy, tmp_path):
    from permutation_ad.baselines.stage import run_baselines

    bench = {"toy": {"train": toy["train"], "background": toy["background"], "signals": {"top": toy["signal"]}}}
    cfg = {"run": ["observables", "kmeans"], "kmeans": {"k": 8, "n_init": 2, "image": {"size": 16}},
           "dark_jets": {"enabled": False}, "figures": True}
    rng = np.random.default_rng(0)
    extra = {"diffusion NLL/N": {"toy": {"background": rng.normal(size=60), "top": rng.normal(size=60) + 3}}}
    out = tmp_path / "bl"
    res = run_baselines(cfg, bench, str(out), seed=1, extra_scores=extra, extra_train_times={"diffusion NLL/N": 12.0},
                        progress=False)
    rows = {r["label"]: r for r in res["benchmarks"]["toy"]["signals"]["top"]}
    assert rows["diffusion NLL/N"]["auc"] > 0.9 and rows["diffusion NLL/N"]["train_time_s"] == 12.0
    assert "k-means MLLED" in rows and any(k.startswith("jet mass (") for k in rows)
    assert any(r["kind"].startswith("published") for r in rows.values())   # Table I beside ours
    md = (out / "baselines.md").read_text()
    assert "k-means MLLED" in md and "sign chosen on test labels" in md
    for kind in ("roc", "sic"):
        assert (out / "figures" / f"toy_top_{kind}.png").is_file()
    from shared.plotting import load_predictions
    assert len(load_predictions(str(out / "predictions" / "toy_top.npz"))) == len(
        [r for r in rows.values() if not r["kind"].startswith("published")])
    assert json.loads((out / "results.json").read_text())["benchmarks"]["toy"]["n_train"] == 240
    # second run: nothing retrained; a changed k-means config retrains k-means only
    res2 = run_baselines(cfg, bench, str(out), seed=1, progress=False)
    assert all(m["cached"] for m in res2["benchmarks"]["toy"]["methods"].values())
    cfg["kmeans"]["k"] = 6
    res3 = run_baselines(cfg, bench, str(out), seed=1, progress=False)
    cached = {n: m["cached"] for n, m in res3["benchmarks"]["toy"]["methods"].items()}
    assert cached == {"observables": True, "kmeans": False}
    with pytest.raises(ValueError, match="extra_scores"):
        run_baselines(cfg, bench, str(out), seed=1, progress=False,
                      extra_scores={"d": {"toy": {"background": np.zeros(3), "top": np.zeros(60)}}})


def test_config_validation_and_custom_instances():
    cfg = bcfg.baselines_config({"run": ["kmeans_pt1", "observables"],
                                 "kmeans_pt1": {"type": "kmeans", "image": {"pt_power": 1.0}}})
    m = bcfg.method_config(cfg, "kmeans_pt1")
    assert m["type"] == "kmeans" and m["image"]["pt_power"] == 1.0 and m["image"]["sigma"] == 3.0
    assert m["n_init"] == 10 and m["k"] == 100
    with pytest.raises(bcfg.BaselineConfigError, match="baselines.nope"):
        bcfg.baselines_config({"run": ["nope"]})
    with pytest.raises(bcfg.BaselineConfigError, match="dvae_image.alpha"):
        bcfg.baselines_config({"dvae_image": {"alpha": [1.0]}})
    with pytest.raises(bcfg.BaselineConfigError, match="observables.names"):
        bcfg.baselines_config({"observables": {"names": ["mass", "girth"]}})
