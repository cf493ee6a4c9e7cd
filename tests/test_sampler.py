"""Samplers with the analytic score of a Gaussian reproduce its mean and width; padding stays 0."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from shared.diffusion.sampler import ddim_sample, euler_maruyama_sample, probability_flow_sample, time_grid
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
