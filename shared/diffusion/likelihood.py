"""Log-likelihood of sets (or vectors) through the probability-flow ODE (paper Eq. 3-4).

log p_eps(x) = log p_1(x(1)) + ∫_eps^1 ∇·f̃(x(t), t) dt,   f̃ = f(t) x − ½ g(t)² s(x, t),
s = −eps_hat / σ(t).  The ODE for the flattened state [x, Δlogp] of a whole batch is integrated
with SciPy ``solve_ivp``; drift and divergence come from one ``tf.function``.  Only real elements
count: the probe, the divergence and the prior are masked.  Units are those of the model inputs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

DIVERGENCES = ("hutchinson", "exact")
PROBES = ("gaussian", "rademacher")


@dataclass(frozen=True)
class LikelihoodOptions:
    """Settings of the PF-ODE likelihood (the config's ``likelihood:`` section)."""

    divergence: str = "hutchinson"   # hutchinson (paper) | exact
    probe: str = "gaussian"          # gaussian | rademacher (Hutchinson probes)
    method: str = "RK45"             # solve_ivp method
    rtol: float = 1e-4
    atol: float = 1e-5
    t_eps: float = 1e-5              # integrate from t_eps to 1
    batch_size: int | None = None    # sets per ODE solve (None: all at once)

    def __post_init__(self):
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence: must be one of {DIVERGENCES}, got {self.divergence!r}")
        if self.probe not in PROBES:
            raise ValueError(f"probe: must be one of {PROBES}, got {self.probe!r}")
        for name in ("rtol", "atol", "t_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: must be a positive number, got {v!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or
                                            not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size: must be a positive integer or null, got {self.batch_size!r}")

    @classmethod
    def from_config(cls, mapping, source=None, prefix="likelihood"):
        """Options from a config mapping; an unknown key or bad value is a ConfigError naming
        ``prefix.key``."""
        from shared.errors import ConfigError
        mapping = dict(mapping or {})
        known = {f.name for f in fields(cls)}
        for key in mapping:
            if key not in known:
                raise ConfigError(source, f"{prefix}.{key}",
                                  f"unknown key (known keys here: {', '.join(sorted(known))})")
        try:
            return cls(**mapping)
        except ValueError as exc:
            key, _, msg = str(exc).partition(": ")
            raise ConfigError(source, f"{prefix}.{key}", msg) from None

    def as_dict(self) -> dict:
        return asdict(self)


class LikelihoodResult(NamedTuple):
    logp: np.ndarray              # (B,) float64, log-density in model-input units
    nfe: int                      # drift+divergence evaluations summed over chunks
    latent: np.ndarray | None     # x(1), same shape as x, if requested


def make_ode_fn(eps_fn, sde, divergence, vector_input):
    """tf.function (x, t, mask, cond, probe) -> (f̃ masked, divergence (B,))."""

    def drift(x, t_vec, mask, cond):
        call_x = x[:, 0, :] if vector_input else x
        eps_hat = eps_fn(call_x, t_vec, None if vector_input else mask, cond)
        if vector_input:
            eps_hat = eps_hat[:, None, :]
        return sde.pf_drift(x, t_vec[0], eps_hat) * tf.expand_dims(mask, -1)

    @tf.function(reduce_retracing=True)
    def hutchinson(x, t, mask, cond, probe):
        t_vec = tf.fill([tf.shape(x)[0]], t)
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = drift(x, t_vec, mask, cond)
            fp = tf.reduce_sum(f * probe)
        grad = tape.gradient(fp, x)
        return f, tf.reduce_sum(grad * probe, axis=[1, 2])

    @tf.function(reduce_retracing=True)
    def exact(x, t, mask, cond, probe):
        # trace = Σ_d e_dᵀ J e_d: the batch is replicated D = P·F times, copy d gets the
        # one-hot probe e_d, and one backward pass gives every diagonal element (memory ∝ D·B;
        # batch_jacobian's pfor crashed TF 2.21 on CPU)
        del probe
        b, p, nf = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        d = p * nf
        eye = tf.reshape(tf.eye(d, dtype=x.dtype), [d, 1, p, nf])
        probes = tf.reshape(eye * tf.expand_dims(tf.expand_dims(mask, 0), -1), [d * b, p, nf])
        x_rep = tf.reshape(tf.tile(x[None], [d, 1, 1, 1]), [d * b, p, nf])
        mask_rep = tf.reshape(tf.tile(mask[None], [d, 1, 1]), [d * b, p])
        cond_rep = None if cond is None else tf.tile(cond, [d, 1])
        t_rep = tf.fill([d * b], t)
        with tf.GradientTape() as tape:
            tape.watch(x_rep)
            fp = tf.reduce_sum(drift(x_rep, t_rep, mask_rep, cond_rep) * probes)
        grad = tape.gradient(fp, x_rep)
        div = tf.reduce_sum(tf.reshape(tf.reduce_sum(grad * probes, axis=[1, 2]), [d, b]), axis=0)
        return drift(x, tf.fill([b], t), mask, cond), div

    return hutchinson if divergence == "hutchinson" else exact


def log_likelihood(eps_fn, x, mask, cond, sde, *, divergence="hutchinson", probe="gaussian",
                   rtol=1e-4, atol=1e-5, method="RK45", t_eps=1e-5, seed=None, batch_size=None,
                   return_latent=False, progress=False) -> LikelihoodResult:
    """log p(x) per set, integrating the probability-flow ODE from ``t_eps`` to 1.

    x (B,P,F) with mask (B,P) (None = all real), or x (B,F) for vector models (mask ignored).
    ``divergence="hutchinson"`` draws one probe per set per ODE solve (Skilling-Hutchinson,
    unbiased for the trace); ``"exact"`` takes the trace of the per-set Jacobian by evaluating
    the batch P·F times at once (cost and memory ∝ P·F: lower ``batch_size`` for large sets).
    Deterministic given ``seed``.  ``batch_size`` sets per ODE solve (None = all at once).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"log_likelihood: divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if probe not in PROBES:
        raise ValueError(f"log_likelihood: probe must be one of {PROBES}, got {probe!r}")
    x = np.asarray(x, dtype=np.float64)
    vector_input = x.ndim == 2
    x3 = x[:, None, :] if vector_input else x
    if x3.ndim != 3:
        raise ValueError(f"log_likelihood: x must be (B,P,F) or (B,F), got shape {x.shape}")
    n, p, nf = x3.shape
    if vector_input or mask is None:
        m = np.ones((n, p), dtype=np.float64)
    else:
        m = np.asarray(mask, dtype=np.float64)
        if m.shape != (n, p):
            raise ValueError(f"log_likelihood: mask shape {m.shape} does not match x {x.shape}")
    x3 = x3 * m[..., None]
    cond_arr = None if cond is None else np.asarray(cond, dtype=np.float32)
    ode_fn = make_ode_fn(eps_fn, sde, divergence, vector_input)
    rng = np.random.default_rng(seed)
    bs = n if not batch_size else int(batch_size)

    logp = np.empty(n, dtype=np.float64)
    latent = np.empty_like(x3) if return_latent else None
    nfe = 0
    starts = range(0, n, bs)
    for start in tqdm(starts, desc="log-likelihood", disable=not progress):
        sl = slice(start, min(start + bs, n))
        xb, mb = x3[sl], m[sl]
        b = xb.shape[0]
        mask_tf = tf.constant(mb, tf.float32)
        cond_tf = None if cond_arr is None else tf.constant(cond_arr[sl])
        if divergence == "hutchinson":
            if probe == "gaussian":
                z = rng.standard_normal(xb.shape)
            else:
                z = rng.choice([-1.0, 1.0], size=xb.shape)
            probe_tf = tf.constant(z * mb[..., None], tf.float32)
        else:
            probe_tf = tf.zeros([1, 1, 1], tf.float32)
        # the ODE state holds real coordinates only, so padding cannot even change step sizes
        real_idx = np.flatnonzero(np.broadcast_to(mb[..., None] > 0, xb.shape))
        n_state = real_idx.size

        def rhs(t, y, xb_shape=xb.shape, mask_tf=mask_tf, cond_tf=cond_tf, probe_tf=probe_tf,
                real_idx=real_idx, n_state=n_state):
            full = np.zeros(int(np.prod(xb_shape)), dtype=np.float32)
            full[real_idx] = y[:n_state]
            f, div = ode_fn(tf.constant(full.reshape(xb_shape)), tf.constant(t, tf.float32),
                            mask_tf, cond_tf, probe_tf)
            return np.concatenate([f.numpy().ravel()[real_idx].astype(np.float64),
                                   div.numpy().astype(np.float64)])

        y0 = np.concatenate([xb.ravel()[real_idx], np.zeros(b)])
        sol = solve_ivp(rhs, (t_eps, 1.0), y0, method=method, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"log_likelihood: ODE solver failed: {sol.message}")
        y1 = sol.y[:, -1]
        z1 = np.zeros(xb.size)
        z1[real_idx] = y1[:n_state]
        z1 = z1.reshape(xb.shape)
        delta = y1[n_state:]
        logp[sl] = sde.prior_logp(z1, mb) + delta
        nfe += int(sol.nfev)
        if return_latent:
            latent[sl] = z1
    if return_latent and vector_input:
        latent = latent[:, 0, :]
    return LikelihoodResult(logp=logp, nfe=nfe, latent=latent)
