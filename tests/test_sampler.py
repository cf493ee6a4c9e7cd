"""Samplers with the analytic score of a Gaussian reproduce its mean and width; padding stays 0."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from shared.diffusion.sampler import (ddim_sample, euler_maruyama_sample, probability_flow_sample,
                                     sample, sampler_nfe, time_grid)
from shared.diffusion.sde import CosineLogSNR, VPSDE

MU, S = 0.7, 0.5
N, P, F = 2000, 4, 2


def gaussian_eps_fn(sde):
    def eps_fn(x, t, mask, cond):
        alpha, sigma = sde.marginal(t)
        shape = [-1] + [1] * (len(x.shape) - 1)
        alpha, sigma = tf.reshape(alpha, shape), tf.reshape(sigma, shape)
        return sigma * (x - alpha * MU) / (alpha * alpha * S * S + sigma * sigma)
    return eps_fn


def _mask():
    m = np.ones((N, P), np.float32)
    m[:, 3] = 0
    m[: N // 2, 2] = 0
    return m


SAMPLERS = {
    "ddim": lambda e, m, sde: ddim_sample(e, (N, P, F), m, None, sde, steps=200, seed=0),
    "ddim_heun": lambda e, m, sde: ddim_sample(e, (N, P, F), m, None, sde, steps=30,
                                               second_order=True, seed=0),
    "pf_ode": lambda e, m, sde: probability_flow_sample(e, (N, P, F), m, None, sde, seed=0),
    "euler_maruyama": lambda e, m, sde: euler_maruyama_sample(e, (N, P, F), m, None, sde,
                                                              steps=400, seed=0),
}


@pytest.mark.parametrize("sde", [VPSDE(), CosineLogSNR()], ids=["vpsde", "cosine"])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_reproduces_gaussian(name, sde):
    mask = _mask()
    x = SAMPLERS[name](gaussian_eps_fn(sde), mask, sde)
    real = x[mask == 1]
    n = real.size
    assert np.all(x[mask == 0] == 0)
    assert abs(real.mean() - MU) < 4 * S / np.sqrt(n) + 0.01
    assert abs(real.std() - S) < 4 * S / np.sqrt(2 * n) + 0.01


def test_seeded_and_vector_shapes():
    sde = VPSDE()
    e = gaussian_eps_fn(sde)
    a = ddim_sample(e, (8, 3), None, None, sde, steps=10, seed=3)
    b = ddim_sample(e, (8, 3), None, None, sde, steps=10, seed=3)
    c = ddim_sample(e, (8, 3), None, None, sde, steps=10, seed=4)
    assert a.shape == (8, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_time_grid():
    g = time_grid(10, 1e-3, "quadratic")
    assert g[0] == 1.0 and g[-1] == pytest.approx(1e-3) and np.all(np.diff(g) < 0)
    with pytest.raises(ValueError, match="grid"):
        time_grid(10, 1e-3, "bogus")


# ------------------------------------------------------------------ DPM-Solver++ and order ----
def test_dpm_solver_2m_reproduces_gaussian():
    sde = VPSDE()
    mask = _mask()
    x = sample(gaussian_eps_fn(sde), (N, P, F), mask, None, sde, method="dpm_solver_2m", steps=20,
               seed=0)
    real = x[mask == 1]
    assert np.all(x[mask == 0] == 0)
    assert abs(real.mean() - MU) < 4 * S / np.sqrt(real.size) + 0.01
    assert abs(real.std() - S) < 4 * S / np.sqrt(2 * real.size) + 0.01


@pytest.mark.parametrize("sde", [VPSDE(), CosineLogSNR()], ids=["vpsde", "cosine"])
def test_solver_order_against_the_exact_flow(sde):
    """For Gaussian data the probability-flow ODE maps the prior noise z to a known point:
    x(t) = α(t) μ + sqrt(α² s² + σ²)(t) · (z − α(1) μ)/sqrt(α(1)² s² + σ(1)²); the samplers
    start from the same z = N(0, I) draw (seeded), so their error against x̂0 at t_min is
    measurable. First-order DDIM must converge ~1/steps, Heun and DPM-Solver++(2M) ~1/steps²."""
    shape, t_min = (64, 3), 1e-3
    z = np.random.default_rng(5).standard_normal(shape)
    a1, s1 = (float(v) for v in sde.marginal(1.0))
    a0, s0 = (float(v) for v in sde.marginal(t_min))
    x_tmin = a0 * MU + np.sqrt(a0 ** 2 * S ** 2 + s0 ** 2) * (z - a1 * MU) / np.sqrt(a1 ** 2 * S ** 2 + s1 ** 2)
    eps_exact = s0 * (x_tmin - a0 * MU) / (a0 ** 2 * S ** 2 + s0 ** 2)
    x0_hat = (x_tmin - s0 * eps_exact) / a0           # what a perfect sampler returns
    e = gaussian_eps_fn(sde)

    def err(method, steps):
        x = sample(e, shape, None, None, sde, method=method, steps=steps, seed=5, t_min=t_min)
        return float(np.abs(x - x0_hat).max())

    for method, order in (("ddim", 1), ("ddim_heun", 2), ("dpm_solver_2m", 2)):
        e1, e2 = err(method, 16), err(method, 64)
        assert e2 < 0.05, (method, e2)
        observed = np.log2(e1 / e2) / 2      # 4x the steps -> error / 4^order
        assert observed > order - 0.35, (method, e1, e2, observed)


def test_sampler_dispatch_and_nfe():
    assert sampler_nfe("ddim", 10) == 11 and sampler_nfe("ddim_heun", 10) == 21
    assert sampler_nfe("dpm_solver_2m", 10) == 11
    with pytest.raises(ValueError, match="method"):
        sampler_nfe("euler", 5)
    sde = VPSDE()
    calls = tf.Variable(0)

    def counting(x, t, mask, cond):   # runs inside a tf.function: count with a variable
        calls.assign_add(1)
        return gaussian_eps_fn(sde)(x, t, mask, cond)

    for method in ("ddim", "ddim_heun", "dpm_solver_2m"):
        calls.assign(0)
        sample(counting, (4, 2), None, None, sde, method=method, steps=7, seed=0)
        assert int(calls.numpy()) == sampler_nfe(method, 7), method
    g = time_grid(12, 1e-3, "logsnr", sde)
    lam = 0.5 * np.asarray(sde.logsnr(g))
    assert g[0] == 1.0 and g[-1] == pytest.approx(1e-3) and np.allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-3)
