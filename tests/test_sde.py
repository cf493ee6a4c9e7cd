"""VP schedules: marginals vs a simulated SDE, importance-sampling density, NumPy/TF agreement."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from scipy.integrate import quad

from shared.diffusion.sde import CosineLogSNR, VPSDE, expand_to, make_sde

SDES = [VPSDE(), CosineLogSNR(10.0)]
IDS = ["vpsde", "cosine"]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_matches_simulated_sde(sde):
    """Euler–Maruyama of dx = -β/2 x dt + sqrt(β) dw from x0 reproduces N(α x0, σ²)."""
    rng = np.random.default_rng(0)
    n, steps, t_end = 40000, 1000, 0.4
    x0 = 1.5
    x = np.full(n, x0)
    ts = np.linspace(0.0, t_end, steps + 1)
    for t0, t1 in zip(ts[:-1], ts[1:]):
        dt = t1 - t0
        b = sde.beta(0.5 * (t0 + t1))
        x = x - 0.5 * b * x * dt + np.sqrt(b * dt) * rng.standard_normal(n)
    a0, _ = sde.marginal(0.0)
    alpha, sigma = sde.marginal(t_end)
    # the cosine schedule starts at alpha(0) slightly below 1: the SDE carries alpha(t)/alpha(0)
    assert abs(x.mean() - alpha / a0 * x0) < 4 * sigma / np.sqrt(n) + 2e-3
    assert abs(x.std() - sigma) < 0.01 * sigma + 2e-3


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_schedule_identities(sde):
    t = np.linspace(sde.eps, 1.0, 9)
    alpha, sigma = sde.marginal(t)
    np.testing.assert_allclose(alpha ** 2 + sigma ** 2, 1.0, atol=1e-12)
    assert np.all(np.diff(sigma) > 0)
    assert quad(sde.beta, 0.0, 0.6)[0] == pytest.approx(sde.int_beta(0.6), rel=1e-8)
    assert np.all(sde.g2(t) == sde.beta(t))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_importance_density_normalised_and_inverse_cdf(sde):
    total = quad(sde.importance_density, sde.eps, 1.0, limit=400, points=[1e-4, 1e-3, 1e-2])[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    for u in (0.05, 0.3, 0.5, 0.9):
        t_u = sde.importance_inverse_cdf(u)
        assert quad(sde.importance_density, sde.eps, t_u, limit=400)[0] == pytest.approx(u, abs=1e-6)
    t = sde.sample_t(20000, importance=True, seed=0)
    assert t.min() >= sde.eps * 0.999 and t.max() <= 1.0
    # empirical CDF at the median of the proposal
    assert abs(np.mean(t <= sde.importance_inverse_cdf(0.5)) - 0.5) < 0.02
    tu = sde.sample_t(1000, importance=False, seed=0)
    assert tu.min() >= sde.eps and tu.max() <= 1.0 and abs(tu.mean() - 0.5) < 0.05


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_numpy_and_tf_agree(sde):
    t = np.array([1e-3, 0.2, 0.7, 1.0])
    for fn in (lambda v: sde.marginal(v)[0], lambda v: sde.marginal(v)[1], sde.beta, sde.int_beta,
               lambda v: sde.importance_inverse_cdf(v * 0.9)):
        np.testing.assert_allclose(fn(tf.constant(t, tf.float64)).numpy(), fn(t), rtol=1e-10)
    x = np.random.default_rng(1).standard_normal((4, 5, 3))
    mask = np.ones((4, 5))
    mask[0, 2:] = 0
    lp_np = sde.prior_logp(x, mask)
    np.testing.assert_allclose(sde.prior_logp(tf.constant(x), tf.constant(mask)).numpy(), lp_np)
    expected = -0.5 * ((x ** 2 + np.log(2 * np.pi)) * mask[..., None]).sum((1, 2))
    np.testing.assert_allclose(lp_np, expected)
    np.testing.assert_allclose(sde.drift(x, t), -0.5 * expand_to(sde.beta(t), x) * x)


def test_make_sde():
    assert isinstance(make_sde({"name": "cosine_logsnr", "logsnr_max": 20}), CosineLogSNR)
    assert make_sde(VPSDE().get_config()).beta_max == 20.0
    with pytest.raises(ValueError, match="sde.name"):
        make_sde({"name": "nope"})
