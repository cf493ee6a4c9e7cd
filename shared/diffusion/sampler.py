"""Samplers for noise-predicting diffusion models: DDIM (+ Heun), DPM-Solver++(2M), probability-flow
ODE, Euler–Maruyama.

All take ``eps_fn(x_t, t, mask, cond)`` (t of shape (B,)), a ``shape`` (B,P,F) with mask (B,P)
or (B,F) with mask None, and return float32 NumPy samples with padded slots set to 0.
:func:`sample` dispatches on a method name (config ``generation.sampler``); :func:`sampler_nfe`
gives the network evaluations a method spends for a number of steps.
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


GRIDS = ("linear", "quadratic", "logsnr")


def time_grid(steps, t_min, kind="quadratic", sde=None):
    """Decreasing times 1 -> t_min: "linear" in t, "quadratic" (denser near t_min), or "logsnr"
    (uniform in λ = log α/σ, the grid of DPM-Solver; needs ``sde``)."""
    u = np.linspace(0.0, 1.0, int(steps) + 1)
    if kind == "linear":
        return 1.0 - (1.0 - t_min) * u
    if kind == "quadratic":
        return t_min + (1.0 - t_min) * (1.0 - u) ** 2
    if kind == "logsnr":
        if sde is None:
            raise ValueError("sampler: the 'logsnr' time grid needs the sde")
        ts = np.linspace(0.0, 1.0, 4097) * (1.0 - t_min) + t_min
        lam = 0.5 * np.asarray(sde.logsnr(ts), np.float64)     # increasing as t decreases
        target = np.linspace(lam[-1], lam[0], int(steps) + 1)
        out = np.interp(target, lam[::-1], ts[::-1])
        out[0], out[-1] = 1.0, t_min
        return out
    raise ValueError(f"sampler: time grid must be one of {GRIDS}, got {kind!r}")


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
    ts = time_grid(steps, t_min, grid, sde)
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


def dpm_solver_2m_sample(eps_fn, shape, mask, cond, sde, steps, seed=None, t_min=None,
                         grid="logsnr", lower_order_final=True, progress=False):
    """DPM-Solver++(2M) (Lu et al. 2022, data prediction, multistep): second order at ONE
    network evaluation per step, from t = 1 to ``t_min`` (default sde.eps).

    With λ = log(α/σ), h_i = λ_i − λ_{i−1} and x̂0 = (x − σ ε̂)/α:
    x_i = (σ_i/σ_{i−1}) x_{i−1} − α_i (e^{−h_i} − 1) D_i, D_i = x̂0_{i−1} for the first step
    (that is DDIM) and (1 + 1/(2r)) x̂0_{i−1} − 1/(2r) x̂0_{i−2}, r = h_{i−1}/h_i, after.
    ``lower_order_final``: first order on the last step when steps < 15 (more stable for few
    steps).  Returns the denoised x̂0 at ``t_min`` (one more evaluation, as :func:`ddim_sample`).
    """
    rng, m3, mask_tf, cond_tf = _setup(shape, mask, cond, seed)
    call = _eps_caller(eps_fn)
    t_min = sde.eps if t_min is None else t_min
    ts = time_grid(steps, t_min, grid, sde)
    alpha, sigma = (np.asarray(v, np.float64) for v in sde.marginal(ts))
    lam = np.log(alpha) - np.log(sigma)
    x = rng.standard_normal(shape).astype(np.float64) * m3

    def x0_at(x_, i):
        e = call(tf.constant(x_.astype(np.float32)), tf.constant(ts[i], tf.float32), mask_tf,
                 cond_tf).numpy().astype(np.float64)
        return (x_ - sigma[i] * e) / alpha[i] * m3

    prev = None
    steps = int(steps)
    for i in tqdm(range(1, steps + 1), desc="DPM-Solver++(2M)", disable=not progress):
        d0 = x0_at(x, i - 1)
        h = lam[i] - lam[i - 1]
        first = prev is None or (lower_order_final and steps < 15 and i == steps)
        if first:
            d = d0
        else:
            r = (lam[i - 1] - lam[i - 2]) / h
            d = (1.0 + 0.5 / r) * d0 - (0.5 / r) * prev
        x = (sigma[i] / sigma[i - 1]) * x - alpha[i] * np.expm1(-h) * d
        prev = d0
    return x0_at(x, steps).astype(np.float32)            # x0_at masks already


METHODS = ("ddim", "ddim_heun", "dpm_solver_2m")


def sampler_nfe(method, steps):
    """Network evaluations of :func:`sample` for ``steps`` steps (incl. the final denoising)."""
    if method not in METHODS:
        raise ValueError(f"sampler: method must be one of {METHODS}, got {method!r}")
    return 2 * int(steps) + 1 if method == "ddim_heun" else int(steps) + 1


def sample(eps_fn, shape, mask, cond, sde, method="ddim_heun", steps=100, seed=None, t_min=None,
           grid=None, progress=False):
    """Dispatch to a deterministic sampler by name: ``ddim`` (first order), ``ddim_heun``
    (DDIM + Heun correction, the paper's), ``dpm_solver_2m``.  ``grid`` None = the method's
    default (quadratic for DDIM, logsnr for DPM-Solver)."""
    if method not in METHODS:
        raise ValueError(f"sampler: method must be one of {METHODS}, got {method!r}")
    if method == "dpm_solver_2m":
        return dpm_solver_2m_sample(eps_fn, shape, mask, cond, sde, steps, seed=seed, t_min=t_min,
                                    grid=grid or "logsnr", progress=progress)
    return ddim_sample(eps_fn, shape, mask, cond, sde, steps, second_order=method == "ddim_heun",
                       seed=seed, t_min=t_min, grid=grid or "quadratic", progress=progress)


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
    ts = time_grid(steps, t_min, grid, sde)
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
