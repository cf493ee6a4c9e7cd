"""shared.sample_metrics / shared.efps: closed forms of W1, the Fréchet distance, the unbiased
MMD², EFP invariances, baselines and determinism of the JetNet-style sample metrics."""
import numpy as np
import pytest
from scipy import linalg

from shared.errors import ConfigError
from shared.efps import compute_efps, efp_columns
from shared.sample_metrics import (dijet_jet_samples, dijet_sample_metrics, fpd, frechet_distance,
                                   kpd, metrics_table, mmd2_poly_unbiased, sample_metrics,
                                   wasserstein_1d)

FAST = {"num_bootstrap": 6, "fpd_num_points": 4, "fpd_num_batches": 4, "kpd_num_batches": 8,
        "progress": False}


def toy_jets(n, p=8, width=0.2, seed=0):
    """Jets of 3..p particles: pT fractions (pT-ordered), Δη, Δφ ~ N(0, width)."""
    rng = np.random.default_rng(seed)
    mask = np.arange(p)[None] < rng.integers(3, p + 1, n)[:, None]
    pt = -np.sort(-rng.exponential(1.0, (n, p)) * mask, axis=1)
    pt /= pt.sum(1, keepdims=True)
    ang = rng.normal(0.0, width, (n, p, 2)) * mask[..., None]
    return {"particles": np.concatenate([pt[..., None], ang], -1), "mask": mask}


def random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# -- distances ----------------------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    # diagonal covariances: |Δμ|² + Σ (σ1 − σ2)²
    assert frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(
        np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2), rel=1e-10)
    # cov2 = a cov1 (commuting, not diagonal): |Δμ|² + (1 − √a)² Tr cov1
    c1 = random_cov(rng, 4)
    assert frechet_distance(mu1, c1, mu2, 2.5 * c1) == pytest.approx(
        np.sum((mu1 - mu2) ** 2) + (1 - np.sqrt(2.5)) ** 2 * np.trace(c1), rel=1e-10)
    # general covariances: Tr sqrtm(C1 C2) (another route to the same trace)
    c2 = random_cov(rng, 4)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2) - 2 * np.trace(linalg.sqrtm(c1 @ c2)).real
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(mu1, c1, mu2[:3], c2[:3, :3])


def test_fpd_extrapolates_to_the_gaussian_distance():
    rng = np.random.default_rng(1)
    d = 3
    mu1, mu2 = np.zeros(d), np.array([0.3, 0.0, -0.2])
    c1, c2 = random_cov(rng, d), random_cov(rng, d)
    x = rng.multivariate_normal(mu1, c1, 20000)
    y = rng.multivariate_normal(mu2, c2, 20000)
    truth = frechet_distance(mu1, c1, mu2, c2)
    value, err, sizes = fpd(x, y, 2000, 10000, 5, 5, np.random.default_rng(0))
    assert sizes[0] == 2000 and sizes[-1] == 10000
    assert abs(value - truth) < max(4 * err, 0.05 * truth), (value, err, truth)
    # same distribution: the extrapolation removes the finite-N bias (FD at N = 2000 is not 0)
    same, same_err, _ = fpd(x[:10000], x[10000:], 2000, 10000, 5, 5, np.random.default_rng(0))
    x1, x2 = x[:2000], x[2000:4000]
    fd_2000 = frechet_distance(x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0),
                               np.cov(x2, rowvar=False))
    assert same < 0.3 * fd_2000 and same < 0.02 * truth, (same, same_err, fd_2000)


def test_w1_of_shifted_samples_is_the_shift():
    x = np.random.default_rng(2).normal(size=5000)
    assert wasserstein_1d(x, x + 0.7) == pytest.approx(0.7, abs=1e-12)
    # uniform[0, 1] vs uniform[0, 2]: ∫|F1 − F2| = ∫0^1 x/2 dx + ∫1^2 (1 − x/2) dx = 1/2
    u = (np.arange(100000) + 0.5) / 100000
    assert wasserstein_1d(u, 2 * u) == pytest.approx(0.5, abs=1e-4)


def test_mmd2_unbiased_estimator_exact_and_expectation():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(37, 5)), rng.normal(0.5, 1.0, size=(23, 5))
    # brute force: all kernel values, diagonals of k(x, x), k(y, y) excluded
    k = lambda a, b: (a @ b.T / 5 + 1.0) ** 4  # noqa: E731
    off = lambda m: (m.sum() - np.trace(m)) / (len(m) * (len(m) - 1))  # noqa: E731
    ref = off(k(x, x)) + off(k(y, y)) - 2 * k(x, y).mean()
    assert mmd2_poly_unbiased(x, y) == pytest.approx(ref, rel=1e-10)
    # degree 1: k = x·y/d + 1, so E[MMD²] = |μx − μy|² / d exactly (unbiased)
    shift = np.array([0.4, -0.2, 0.0, 0.0, 0.1])
    vals = [mmd2_poly_unbiased(rng.normal(size=(400, 5)), rng.normal(size=(400, 5)) + shift, 1)
            for _ in range(50)]
    assert np.mean(vals) == pytest.approx(shift @ shift / 5, abs=4 * np.std(vals) / np.sqrt(50))


def test_kpd_zero_for_identical_positive_for_different():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 4))
    c = rng.normal(0.0, 1.3, size=(4000, 4))
    same, same_err = kpd(a, b, 1000, 10, np.random.default_rng(0))
    diff, diff_err = kpd(a, c, 1000, 10, np.random.default_rng(0))
    assert abs(same) < 3 * same_err
    assert diff > 10 * diff_err and diff > 10 * abs(same)


# -- EFPs ---------------------------------------------------------------------------------------
def test_efps_invariances_and_closed_form():
    jets = toy_jets(20, seed=5)
    x, m = jets["particles"], jets["mask"]
    ref = compute_efps(x, m)
    assert ref.shape == (20, 36)
    scaled = x * np.array([7.0, 1.0, 1.0])                 # pT_rel vs pT: normalised
    moved = x + np.array([0.0, 0.4, -0.3]) * m[..., None]  # η, φ relative to any axis
    perm = np.random.default_rng(0).permutation(x.shape[1])
    padded = np.concatenate([x, np.zeros((20, 3, 3))], 1)
    np.testing.assert_allclose(compute_efps(scaled, m), ref, rtol=1e-10)
    np.testing.assert_allclose(compute_efps(moved, m), ref, rtol=1e-8)
    np.testing.assert_allclose(compute_efps(x[:, perm], m[:, perm]), ref, rtol=1e-10)
    np.testing.assert_allclose(compute_efps(padded, np.pad(m, ((0, 0), (0, 3)))), ref, rtol=1e-10)
    # two particles: the n = 2, d = 1 EFP is Σ_ij z_i z_j ΔR_ij = 2 z1 z2 ΔR (β = 1)
    two = np.array([[[3.0, 0.1, 0.2], [1.0, -0.2, -0.2]]])
    col = np.flatnonzero(efp_columns(["n==2", "d==1"]))
    assert compute_efps(two)[0, col] == pytest.approx(2 * 0.75 * 0.25 * 0.5)
    # a jet without particles gets 0
    assert not compute_efps(np.zeros((1, 4, 3))).any()


# -- sample metrics -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples():
    """True jets, generated jets from the same law, and generated jets twice as wide, with EFPs."""
    out = {"true": toy_jets(800, seed=10), "same": toy_jets(400, seed=11),
           "wide": toy_jets(400, width=0.3, seed=12)}
    for s in out.values():
        s["efps"] = compute_efps(s["particles"], s["mask"])
    return out


def test_sample_metrics_against_baselines(samples):
    same = sample_metrics(samples["same"], samples["true"], FAST)
    wide = sample_metrics(samples["wide"], samples["true"], FAST)
    assert same["n_generated"] == 400 and same["n_true"] == 800 and same["num_efps"] == 36
    assert same["w1_samples"] == 400 and same["kpd"]["batch_size"] == 200
    keys = ["w1_mass", "w1_particle_pt", "w1_particle_eta", "w1_particle_phi", "w1_efp", "fpd",
            "kpd"]
    for key in keys:
        s, w = same[key], wide[key]
        # the baseline does not depend on the generated sample
        assert s["baseline"] == w["baseline"]
        # a perfect generator is compatible with the baseline
        assert s["value"] < s["baseline"] + 4 * (s["error"] + s["baseline_error"]) + 1e-9, key
        if key != "w1_particle_pt":  # the wide sample differs in angles only
            # far outside what truth-vs-truth and a perfect generator give
            assert w["value"] > w["baseline"] + 5 * (s["error"] + w["baseline_error"]), key
    assert len(same["w1_efp"]["per_efp"]) == 5
    table = metrics_table(wide, "wide")
    assert "| FPD |" in table and "| W1 particle eta |" in table


def test_sample_metrics_mass_w1_is_the_shift(samples):
    true = dict(samples["true"], mass=np.random.default_rng(6).gamma(4.0, 0.05, 800))
    gen = dict(true, mass=true["mass"] + 0.3)
    res = sample_metrics(gen, true, FAST)["w1_mass"]
    # triangle inequality: |W1(G, A) − shift| <= W1(G − shift, A), a truth-vs-truth distance
    assert abs(res["value"] - 0.3) < 3 * res["baseline"] + 3 * res["baseline_error"]


def test_sample_metrics_deterministic_under_seed(samples):
    a = sample_metrics(samples["wide"], samples["true"], dict(FAST, seed=3))
    b = sample_metrics(samples["wide"], samples["true"], dict(FAST, seed=3))
    c = sample_metrics(samples["wide"], samples["true"], dict(FAST, seed=4))
    assert a == b
    assert a["w1_mass"] != c["w1_mass"]  # the seed matters, so a == b is meaningful


def test_bad_input_and_config_named(samples):
    with pytest.raises(ConfigError, match="kpd_batchsize"):
        sample_metrics(samples["same"], samples["true"], {"kpd_batchsize": 10})
    with pytest.raises(ConfigError, match="num_bootstrap"):
        sample_metrics(samples["same"], samples["true"], {"num_bootstrap": 0})
    with pytest.raises(ValueError, match=r"generated\['mask'\]"):
        sample_metrics(dict(samples["same"], mask=samples["same"]["mask"][:, :3]),
                       samples["true"], FAST)
    with pytest.raises(ValueError, match="no EFP"):
        sample_metrics(samples["same"], samples["true"], dict(FAST, w1_efp_select=["d==7"]))


def test_dijet_adapter_orders_and_pools():
    a, b = toy_jets(60, seed=20), toy_jets(60, seed=21)
    rng = np.random.default_rng(7)
    jets = np.zeros((60, 2, 5))
    jets[..., 0] = rng.uniform(100, 1000, (60, 2))
    jets[..., 3] = rng.uniform(10, 200, (60, 2))
    events = {"jets": jets, "particles": np.stack([a["particles"], b["particles"]], 1),
              "mask": np.stack([a["mask"], b["mask"]], 1)}
    views = dijet_jet_samples(events)
    lead = np.argmax(jets[..., 0], 1)
    np.testing.assert_array_equal(views["j0"]["mass"], jets[np.arange(60), lead, 3])
    np.testing.assert_array_equal(views["j1"]["particles"],
                                  events["particles"][np.arange(60), 1 - lead])
    assert views["pooled"]["particles"].shape == (120, 8, 3)
    np.testing.assert_array_equal(views["pooled"]["mass"][::2], views["j0"]["mass"])
    res = dijet_sample_metrics(events, events, dict(FAST, dijet_views=["pooled", "j1"],
                                                    max_jets=50))
    assert set(res) == {"pooled", "j1"}
    assert res["pooled"]["n_generated"] == 100 and res["j1"]["n_true"] == 50
    assert "w1_particle_pt_rel" in res["j1"]
    with pytest.raises(ValueError, match="jets"):
        dijet_jet_samples({"particles": events["particles"], "mask": events["mask"]})
