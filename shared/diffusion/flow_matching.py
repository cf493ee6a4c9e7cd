"""Optimal-transport conditional flow matching (Lipman et al. 2023, arXiv:2210.02747).

Convention (SPEC §3, EPiC-FM): t = 0 is data, t = 1 is noise,

    x_t = (1 − t) x + (σ_min + (1 − σ_min) t) z,     z ~ N(0, I),
    u_t = dx_t/dt = (1 − σ_min) z − x                 (the regression target),

with σ_min = 1e-4. A network v(x_t, t, mask, cond) regresses u_t (masked mean squared error);
samples solve dx/dt = v from t = 1 (x = z) down to t = 0 with a fixed-step solver. The velocity
net follows the ``eps_fn(x_t, t, mask, cond)`` calling contract of ``shared.diffusion.score``
(inputs named ``x``, ``t``, ``mask``, ``cond``), so :func:`shared.diffusion.score.eps_fn_from_model`
wraps it for the samplers here.

For Gaussian data N(μ, s²) the marginal velocity is known in closed form
(:func:`gaussian_velocity`): the tests use it to check the solvers.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from shared.diffusion.score import call_score_net

SIGMA_MIN = 1e-4
SOLVERS = ("euler", "midpoint", "heun")
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2}


def _draw(shape, seed, kind):
    """U(0, 1) or N(0, 1) draws: stateless for an int seed, else the global TF RNG."""
    if seed is None:
        return tf.random.uniform(shape) if kind == "uniform" else tf.random.normal(shape)
    s = tf.stack([tf.cast(seed, tf.int64), tf.constant(0 if kind == "uniform" else 1, tf.int64)])
    return tf.random.stateless_uniform(shape, s) if kind == "uniform" else tf.random.stateless_normal(shape, s)


def _mask_arrays(shape, mask):
    """(m3 NumPy broadcastable mask, mask tensor or None) for a sample of ``shape``."""
    if mask is None:
        return np.ones((shape[0],) + (1,) * (len(shape) - 1), np.float32), None
    m = np.asarray(mask, np.float32)
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"flow matching: mask shape {m.shape} does not match sample shape {tuple(shape)}")
    return m[..., None], tf.constant(m)


def _expand(t, x):
    """(B,) -> broadcastable against x (B, ...)."""
    return tf.reshape(t, [-1] + [1] * (len(x.shape) - 1))


def ot_path(x, z, t, sigma_min=SIGMA_MIN):
    """(x_t, u_t) of the OT path at times t (B,) for data x and noise z (same shape)."""
    tt = _expand(tf.cast(t, x.dtype), x)
    x_t = (1.0 - tt) * x + (sigma_min + (1.0 - sigma_min) * tt) * z
    return x_t, (1.0 - sigma_min) * z - x


def flow_matching_loss(net, x, mask, cond, sigma_min=SIGMA_MIN, training=True, seed=None):
    """Masked OT flow-matching loss, a scalar: mean ||v(x_t, t) − u_t||² over real elements ×
    features (padding contributes nothing), t ~ U(0, 1).

    x (B,P,F) with mask (B,P), or x (B,F) with mask None; ``cond`` (B,C) or None. ``seed``: int
    (stateless draws) or None (the global TF RNG, seeded per rank by the Trainer)."""
    x = tf.convert_to_tensor(x, tf.float32)
    t = _draw([tf.shape(x)[0]], seed, "uniform")
    z = _draw(tf.shape(x), None if seed is None else tf.cast(seed, tf.int64) + 7919, "normal")
    m = None
    if mask is not None:
        m = tf.expand_dims(tf.cast(mask, tf.float32), -1)
        x, z = x * m, z * m
    x_t, target = ot_path(x, z, t, sigma_min)
    cond = None if cond is None else tf.convert_to_tensor(cond, tf.float32)
    v = call_score_net(net, x_t, t, None if mask is None else tf.cast(mask, tf.float32), cond,
                       training=training)
    sq = tf.square(v - target)
    if m is None:
        return tf.reduce_mean(sq)
    count = tf.reduce_sum(m) * tf.cast(tf.shape(x)[-1], tf.float32)
    return tf.reduce_sum(sq * m) / tf.maximum(count, 1.0)


def ode_integrate(velocity_fn, x, mask, cond, steps, solver="midpoint", t_start=1.0, t_end=0.0,
                  progress=False):
    """Solve dx/dt = v(x, t, mask, cond) from ``t_start`` to ``t_end`` with ``steps`` uniform
    fixed steps of ``solver``: "euler" (1 evaluation/step), "midpoint" (explicit midpoint, as
    TorchDyn's, 2/step) or "heun" (trapezoidal RK2, 2/step). Returns float32 NumPy, 0 at padding."""
    if solver not in SOLVERS:
        raise ValueError(f"flow matching: solver must be one of {SOLVERS}, got {solver!r}")
    if int(steps) < 1:
        raise ValueError(f"flow matching: steps must be >= 1, got {steps}")
    x = np.asarray(x, np.float32)
    m3, mask_tf = _mask_arrays(x.shape, mask)
    cond_tf = None if cond is None else tf.constant(np.asarray(cond, np.float32))

    @tf.function(reduce_retracing=True)
    def call(y, t):
        return velocity_fn(y, tf.fill([tf.shape(y)[0]], t), mask_tf, cond_tf)

    def v(y, t):
        return call(tf.constant(y, tf.float32), tf.constant(t, tf.float32)).numpy() * m3

    ts = np.linspace(t_start, t_end, int(steps) + 1)
    x = x * m3
    for i in tqdm(range(int(steps)), desc=f"ODE ({solver})", disable=not progress):
        t, h = ts[i], ts[i + 1] - ts[i]
        k1 = v(x, t)
        if solver == "euler":
            x = x + h * k1
        elif solver == "midpoint":
            x = x + h * v(x + 0.5 * h * k1, t + 0.5 * h)
        else:
            x = x + 0.5 * h * (k1 + v(x + h * k1, ts[i + 1]))
    return (x * m3).astype(np.float32)


def ode_sample(velocity_fn, shape, mask, cond, steps, solver="midpoint", seed=None, progress=False):
    """Samples: z ~ N(0, I) (0 at padding) at t = 1 integrated to t = 0 (see :func:`ode_integrate`)."""
    m3, _ = _mask_arrays(shape, mask)
    z = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * m3
    return ode_integrate(velocity_fn, z, mask, cond, steps, solver, progress=progress)


def gaussian_velocity(mean, std, sigma_min=SIGMA_MIN):
    """Exact marginal velocity E[u_t | x_t] of the OT path for data N(mean, std²) per feature,
    as a ``velocity_fn(x, t, mask, cond)`` (TF ops). x_t is Gaussian with mean a μ and variance
    a² s² + b² (a = 1 − t, b = σ_min + (1 − σ_min) t), and
    v = −μ + (b(1 − σ_min) − a s²)(x − a μ) / (a² s² + b²)."""
    mu = tf.constant(np.asarray(mean, np.float32))
    s2 = tf.constant(np.asarray(std, np.float32) ** 2)

    def velocity_fn(x, t, mask=None, cond=None):
        tt = _expand(tf.cast(t, tf.float32), x)
        a, b = 1.0 - tt, sigma_min + (1.0 - sigma_min) * tt
        return -mu + (b * (1.0 - sigma_min) - a * s2) * (x - a * mu) / (a * a * s2 + b * b)

    return velocity_fn


__all__ = ["SIGMA_MIN", "SOLVERS", "EVALS_PER_STEP", "ot_path", "flow_matching_loss",
           "ode_integrate", "ode_sample", "gaussian_velocity"]
