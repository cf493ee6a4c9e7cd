"""Unit tests of permutation_ad: features, masking, standardisation, classifier invariance,
likelihood units/invariance, scoring and the prediction-file format."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from permutation_ad.features import jet_features
from permutation_ad.preprocess import Preprocessor
from shared.data.errors import DataFormatError
from shared.data.jets import wrap_phi


def _p4(pt, eta, phi):
    pt, eta, phi = map(np.asarray, (pt, eta, phi))
    return np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)


def test_dphi_wraps_across_pi():
    # constituents on both sides of φ = ±π: Δφ must stay small, not ≈ 2π
    phi = np.array([np.pi - 0.05, -np.pi + 0.05, np.pi - 0.1, 0.0])
    pt = np.array([100.0, 90.0, 50.0, 0.0])  # last slot is padding
    p4 = _p4(pt, np.array([0.1, -0.1, 0.0, 0.0]), phi)[None]
    f = jet_features(p4, 4, "log_pt")
    dphi = f["constituents"][0, :3, 1]
    assert np.all(np.abs(dphi) < 0.2), dphi
    w = wrap_phi(np.array([3 * np.pi / 2, -3 * np.pi / 2, 0.3]))
    np.testing.assert_allclose(w, [-np.pi / 2, np.pi / 2, 0.3], atol=1e-12)


def test_masking_truncation_and_features():
    rng = np.random.default_rng(0)
    n_real = [7, 3]
    p4 = np.zeros((2, 10, 4))
    for i, n in enumerate(n_real):
        pt = np.sort(rng.uniform(5, 100, n))[::-1]
        p4[i, :n] = _p4(pt, rng.normal(0, 0.2, n) + 1.0, rng.normal(0, 0.2, n) + 2.0)
    f = jet_features(p4, 5, "log_pt", ("eta", "mass", "n", "pt"))
    assert f["constituents"].shape == (2, 5, 3) and f["mask"].shape == (2, 5)
    np.testing.assert_array_equal(f["mask"].sum(1), [5, 3])  # min(N, P)
    np.testing.assert_allclose(f["jets"][:, 2], [7.5, 3.5])  # total multiplicity + 0.5
    assert np.all(f["constituents"][~f["mask"]] == 0)
    pts = np.exp(f["constituents"][0, :, 2])
    assert np.all(np.diff(pts) <= 1e-4)  # leading pT first
    jet = p4.sum(1)
    np.testing.assert_allclose(f["jets"][:, 3], np.hypot(jet[:, 1], jet[:, 2]), rtol=1e-5)
    rel = jet_features(p4, 5, "log_pt_rel")["constituents"][..., 2]
    assert np.all(rel[f["mask"]] < 0)
    om = jet_features(p4, 5, "log_one_minus_pt_rel")["constituents"][..., 2]
    assert np.all(np.isfinite(om)) and np.all(om[f["mask"]] < 0)


def test_bad_input_names_field():
    with pytest.raises(DataFormatError, match="particle_pt_feature"):
        jet_features(np.zeros((1, 3, 4)), 3, "pt")
    with pytest.raises(DataFormatError, match="'p4'"):
        jet_features(np.zeros((1, 3, 3)), 3)
    with pytest.raises(DataFormatError, match="jet_features"):
        jet_features(np.zeros((1, 3, 4)), 3, "log_pt", ("eta", "width"))


def test_preprocessor_masked_roundtrip_and_jacobian(tmp_path):
    rng = np.random.default_rng(1)
    cons = rng.normal([1.0, -2.0, 3.0], [0.5, 2.0, 0.1], size=(200, 6, 3))
    mask = rng.uniform(size=(200, 6)) < 0.7
    cons[~mask] = 1e3  # garbage in padding must not leak into the statistics
    jets = rng.normal([0.0, 50.0, 20.0], [1.0, 10.0, 3.0], size=(200, 3))
    std = Preprocessor.fit(cons, mask, jets)
    c, j = std.transform(cons, mask, jets)
    np.testing.assert_allclose(c[mask].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(c[mask].std(0), 1, atol=1e-4)
    assert np.all(c[~mask] == 0)
    back_c, back_j = std.inverse(c, mask, j)
    np.testing.assert_allclose(back_c[mask], cons[mask], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(back_j, jets, rtol=1e-5, atol=1e-4)
    # Jacobian: a Gaussian with the standardiser's mean/std in physical units equals N(0,1) in
    # standardised units plus the log|Jacobian|
    def gauss(x, m, s):
        return -0.5 * ((x - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    phys = (np.where(mask[..., None], gauss(cons, std.p_mean, std.p_std), 0).sum((1, 2))
            + gauss(jets, std.j_mean, std.j_std).sum(1))
    stdu = (np.where(mask[..., None], gauss(c, 0, 1), 0).sum((1, 2)) + gauss(j, 0, 1).sum(1))
    np.testing.assert_allclose(phys, stdu + std.log_jacobian_particles(mask) + std.log_jacobian_jets(),
                               rtol=1e-4, atol=1e-3)
    std.save_json(tmp_path / "s.json")
    again = Preprocessor.load_json(tmp_path / "s.json")
    np.testing.assert_allclose(again.p_std, std.p_std)
    # dequantised column: variance includes the U(0,1) noise, so a constant N is not degenerate
    dq = Preprocessor.fit(cons, mask, np.full((200, 1), 12.5), dequantized_columns=(0,))
    np.testing.assert_allclose(dq.j_std, [np.sqrt(1 / 12)], rtol=1e-6)


def _tiny_cfg():
    return {"width": 8, "num_blocks": 1, "num_heads": 2, "ffn_dim": 16, "dense": 8}


def test_classifier_permutation_invariant_and_ignores_padding():
    from permutation_ad.classifier import SetClassifier
    rng = np.random.default_rng(2)
    model = SetClassifier(3, 2, _tiny_cfg())
    cons = rng.normal(size=(4, 7, 3)).astype(np.float32)
    mask = (rng.uniform(size=(4, 7)) < 0.7).astype(np.float32)
    mask[:, 0] = 1
    cons *= mask[..., None]
    jets = rng.normal(size=(4, 2)).astype(np.float32)
    p = model.predict_proba(cons, mask, jets)
    perm = rng.permutation(7)
    np.testing.assert_allclose(model.predict_proba(cons[:, perm], mask[:, perm], jets), p, atol=1e-5)
    junk = cons + (1 - mask[..., None]) * 50.0
    np.testing.assert_allclose(model.predict_proba(junk, mask, jets), p, atol=1e-5)
    assert np.all((p > 0) & (p < 1))


def test_density_likelihood_units_and_permutation():
    import keras
    from permutation_ad.train import build_model
    from shared.diffusion.likelihood import LikelihoodOptions
    keras.utils.set_random_seed(0)  # an unseeded random net made the permutation check flaky
    cfg = {"data": {"num_particles": 5, "jet_features": ["eta", "mass", "n"]},
           "model": {"sde": {"name": "vpsde"}, "weighting": "standard",
                     "particle_net": {"width": 8, "num_blocks": 1, "num_heads": 2, "ffn_dim": 16},
                     "jet_net": {"width": 8, "num_blocks": 1}}}
    std = Preprocessor([0, 0, 1], [0.5, 0.5, 2.0], [0, 100, 10], [1, 20, 3])
    model = build_model(cfg, std)
    rng = np.random.default_rng(3)
    c = rng.normal(size=(2, 5, 3)).astype(np.float32)
    m = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    c *= m[..., None]
    j = rng.normal(size=(2, 3)).astype(np.float32)
    lik = LikelihoodOptions(divergence="exact", rtol=1e-4, atol=1e-4)
    a = model.log_likelihood(c, m, j, preprocessor=None, options=lik, seed=0)
    b = model.log_likelihood(c, m, j, preprocessor=std, options=lik, seed=0)
    np.testing.assert_allclose(b["logp"] - a["logp"],
                               std.log_jacobian_particles(m) + std.log_jacobian_jets(), rtol=1e-6)
    perm = np.array([2, 0, 4, 1, 3])
    # the particle score net is permutation-equivariant to float precision ...
    part_eps, _ = model.eps_fns()
    t = np.full((2,), 0.3, np.float32)
    e = part_eps(c, t, m, j).numpy()
    np.testing.assert_allclose(part_eps(c[:, perm], t, m[:, perm], j).numpy(), e[:, perm], atol=1e-5)
    # ... so log p is invariant up to the adaptive ODE solver's error (steps differ by round-off)
    p = model.log_likelihood(c[:, perm], m[:, perm], j, options=lik, seed=0)
    np.testing.assert_allclose(p["logp"], a["logp"], atol=0.3)
    assert np.all(np.isfinite(a["logp"])) and a["nfe_particles"] > 0
    np.testing.assert_array_equal(a["n"], [3, 5])
    # loss: finite scalar for both weightings
    batch = {"constituents": c, "mask": m, "jets": j}
    assert np.isfinite(float(model.compute_batch_loss(batch, training=False)))


def test_scores_and_metrics():
    from permutation_ad.report import curve_metrics, min_background_for
    from permutation_ad.model import anomaly_scores
    ll = {"logp": np.array([-10.0, -40.0]), "logp_jet": np.array([-2.0, -4.0]),
          "logp_particles": np.array([-8.0, -36.0]), "n": np.array([2.0, 4.0])}
    s = anomaly_scores(ll)
    np.testing.assert_allclose(s["nll_per_particle"], [5.0, 10.0])
    np.testing.assert_allclose(s["nll_code_variant"], [2.0 + 4.0, 4.0 + 9.0])
    np.testing.assert_allclose(s["nll"], [10.0, 40.0])
    assert min_background_for(1000, {"min_background": 10, "min_background_eff": 1e-4}) == 10
    assert min_background_for(10 ** 6, {"min_background": 10, "min_background_eff": 1e-4}) == 100
    rng = np.random.default_rng(4)
    lab = np.r_[np.zeros(500), np.ones(500)].astype(int)
    sc = np.r_[rng.normal(0, 1, 500), rng.normal(1, 1, 500)]
    m = curve_metrics(lab, sc, {"min_background": 10})
    assert 0.70 < m["auc"] < 0.82 and m["max_sic"] > 1.0
    assert m["inv_eps_b_at_eps_s_0.2"] > m["inv_eps_b_at_eps_s_0.5"] > 1.0
    assert curve_metrics(lab, -sc, {"min_background": 10})["auc"] < 0.3


def test_prediction_file_roundtrip_and_errors(tmp_path):
    from shared.plotting import load_predictions, save_predictions
    lab, sc = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.3, 0.5])
    path = str(tmp_path / "p.npz")
    save_predictions(path, {"a": (lab, sc)}, title="t")
    got = load_predictions(path)
    np.testing.assert_array_equal(got["a"][0], lab)
    np.savez(tmp_path / "bad.npz", scores_x=sc)
    with pytest.raises(ValueError, match="labels_x"):
        load_predictions(str(tmp_path / "bad.npz"))
