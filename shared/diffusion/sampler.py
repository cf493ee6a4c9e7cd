"""Samplers for noise-predicting diffusion models: DDIM (+ Heun), probability-flow ODE, Euler–Maruyama.

All take ``eps_fn(x_t, t, mask, cond)`` (t of shape (B,)), a ``shape`` (B,P,F) with mask (B,P)
or (B,F) with mask None, and return float32 NumPy samples with padded slots set to 0.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm


def _setup(shape, mask, cond, seed):
    rng = np.random.default_rng(seed)
    m = None if mask is None else np.asarray(mask, np.float32)
    if m is not None and m.shape != tuple(shape[:2]):
        raise ValueError(f"sampler: mask shape {m.shape} does not match sample shape {tuple(shape)}")
    m3 = np.ones((shape[0],) + (1,) * (len(shape) - 1), np.float32) if m is None else m[..., None]
    cond_tf = None if cond is None else tf.constant(np.asarray(cond, np.float32))
    mask_tf = None if m is None else tf.constant(m)
    return rng, m3, mask_tf, cond_tf


def _eps_caller(eps_fn):
    @tf.function(reduce_retracing=True)
    def call(x, t, mask, cond):
        return eps_fn(x, tf.fill([tf.shape(x)[0]], t), mask, cond)
    return call


def _scalar(v):
    return float(np.asarray(v))


def time_grid(steps, t_min, kind="quadratic"):
    """Decreasing times 1 -> t_min: "linear" in t, or "quadratic" (denser near t_min)."""
    u = np.linspace(0.0, 1.0, int(steps) + 1)
    if kind == "linear":
        return 1.0 - (1.0 - t_min) * u
    if kind == "quadratic":
        return t_min + (1.0 - t_min) * (1.0 - u) ** 2
    raise ValueError(f"sampler: time grid must be 'linear' or 'quadratic', got {kind!r}")


def ddim_sample(eps_fn, shape, mask, cond, sde, steps, second_order=False, seed=None,
                t_min=None, grid="quadratic", progress=False):
    """Deterministic DDIM (η = 0) from t = 1 to ``t_min`` (default sde.eps) in ``steps`` steps.

    DDIM is Euler's method for y = x/α in the variable s = σ/α (dy/ds = eps_hat);
    ``second_order`` adds Heun's correction (Karras et al. 2022), costing 2 evaluations per step.
    ``grid``: see :func:`time_grid`.  Returns the denoised prediction x̂0 at ``t_min``.
    """
    rng, m3, mask_tf, cond_tf = _setup(shape, mask, cond, seed)
    call = _eps_caller(eps_fn)
    t_min = sde.eps if t_min is None else t_min
    ts = time_grid(steps, t_min, grid)
    alpha, sigma = sde.marginal(ts)
    s = sigma / alpha
    y = rng.standard_normal(shape).astype(np.float32) * m3 / alpha[0]

    def eps_at(y_, i):
        x = tf.constant((y_ * alpha[i]).astype(np.float32))
        return call(x, tf.constant(ts[i], tf.float32), mask_tf, cond_tf).numpy() * m3

    for i in tqdm(range(int(steps)), desc="DDIM", disable=not progress):
        e = eps_at(y, i)
        y_next = y + (s[i + 1] - s[i]) * e
        if second_order:
            y_next = y + (s[i + 1] - s[i]) * 0.5 * (e + eps_at(y_next, i + 1))
        y = y_next
    x0_hat = y - s[-1] * eps_at(y, len(ts) - 1)   # x/α − (σ/α) eps_hat
    return (x0_hat * m3).astype(np.float32)


def probability_flow_sample(eps_fn, shape, mask, cond, sde, rtol=1e-4, atol=1e-5, method="RK45",
                            t_min=None, seed=None):
    """Integrate dx/dt = f(t)x + ½ g² eps_hat/σ backwards from t = 1 to ``t_min`` with solve_ivp."""
    rng, m3, mask_tf, cond_tf = _setup(shape, mask, cond, seed)
    call = _eps_caller(eps_fn)
    t_min = sde.eps if t_min is None else t_min
    x1 = rng.standard_normal(shape) * m3

    def rhs(t, y):
        x = y.reshape(shape)
        e = call(tf.constant(x, tf.float32), tf.constant(t, tf.float32), mask_tf, cond_tf).numpy()
        return (sde.pf_drift(x, float(t), e) * m3).ravel()

    sol = solve_ivp(rhs, (1.0, t_min), x1.ravel(), method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"probability_flow_sample: ODE solver failed: {sol.message}")
    return (sol.y[:, -1].reshape(shape) * m3).astype(np.float32)


def euler_maruyama_sample(eps_fn, shape, mask, cond, sde, steps, seed=None, t_min=None,
                          grid="linear", progress=False):
    """Reverse-time VP-SDE, dx = [f x − g² s] dt + g dw̄, Euler–Maruyama with ``steps`` steps;
    the last step adds no noise."""
    rng, m3, mask_tf, cond_tf = _setup(shape, mask, cond, seed)
    call = _eps_caller(eps_fn)
    t_min = sde.eps if t_min is None else t_min
    ts = time_grid(steps, t_min, grid)
    x = rng.standard_normal(shape) * m3
    for i in tqdm(range(int(steps)), desc="Euler-Maruyama", disable=not progress):
        t, dt = ts[i], ts[i] - ts[i + 1]
        e = call(tf.constant(x, tf.float32), tf.constant(t, tf.float32), mask_tf, cond_tf).numpy()
        g2 = _scalar(sde.g2(t))
        x = x - (sde.drift(x, t) - g2 * sde.score(e, t)) * dt   # reverse-time drift f x − g² s
        if i < int(steps) - 1:
            x = x + np.sqrt(g2 * dt) * rng.standard_normal(shape)
        x = x * m3
    return x.astype(np.float32)
