"""Variance-preserving diffusion schedules: the paper's linear-β VP-SDE and a cosine log-SNR one.

Both describe x_t = alpha(t) x_0 + sigma(t) eps with alpha^2 + sigma^2 = 1, t in [0, 1], as the
SDE dx = f(t) x dt + g(t) dw with f = -beta/2, g^2 = beta.  All methods accept NumPy arrays /
Python floats (-> NumPy) or TF tensors (-> TF, differentiable, usable inside tf.function).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

_LOG_2PI = math.log(2.0 * math.pi)


class _NP:
    exp, log, sqrt, expm1, log1p, tan, arctan, sin = (np.exp, np.log, np.sqrt, np.expm1, np.log1p,
                                                      np.tan, np.arctan, np.sin)

    @staticmethod
    def sigmoid(x):
        return 0.5 * (1.0 + np.tanh(0.5 * x))

    @staticmethod
    def softplus(x):
        return np.logaddexp(0.0, x)

    @staticmethod
    def asarray(x, like=None):
        return np.asarray(x, dtype=np.float64 if like is None else np.asarray(like).dtype)


class _TF:
    exp, log, sqrt, expm1, log1p, tan, sin, sigmoid, softplus = (
        tf.exp, tf.math.log, tf.sqrt, tf.math.expm1, tf.math.log1p, tf.tan, tf.sin,
        tf.sigmoid, tf.nn.softplus)
    arctan = tf.atan

    @staticmethod
    def asarray(x, like=None):
        dtype = like.dtype if like is not None and tf.is_tensor(like) else tf.float32
        return tf.cast(x, dtype) if tf.is_tensor(x) else tf.constant(x, dtype)


def _xp(*xs):
    return _TF if any(tf.is_tensor(x) for x in xs) else _NP


def expand_to(t, x):
    """Reshape per-set t (B,) so it broadcasts against x (B, ...)."""
    if tf.is_tensor(x) or tf.is_tensor(t):
        t = tf.cast(t, x.dtype) if tf.is_tensor(x) else t
        return tf.reshape(t, tf.concat([tf.shape(t), tf.ones([tf.rank(x) - 1], tf.int32)], 0))
    t = np.asarray(t)
    return t.reshape(t.shape + (1,) * (np.ndim(x) - t.ndim))


class _VPBase:
    """Shared VP machinery; subclasses define beta, int_beta, logsnr and the IS inverse CDF."""

    eps: float

    def marginal(self, t):
        """(alpha(t), sigma(t)) of the perturbation kernel N(alpha x0, sigma^2 I)."""
        xp = _xp(t)
        lam = self.logsnr(t)
        return xp.sqrt(xp.sigmoid(lam)), xp.sqrt(xp.sigmoid(-lam))

    def drift(self, x, t):
        """f(t) x = -beta(t) x / 2 (t of shape (B,) or scalar)."""
        b = self.beta(t)
        rank = b.shape.rank if tf.is_tensor(b) else np.ndim(b)
        if rank:
            b = expand_to(b, x)
        elif tf.is_tensor(x):
            b = tf.cast(b, x.dtype)
        return -0.5 * b * x

    def g2(self, t):
        """Squared diffusion coefficient g(t)^2 = beta(t)."""
        return self.beta(t)

    def score(self, eps_hat, t):
        """Score of the perturbed density from predicted noise: s = −eps_hat / σ(t)."""
        _, sigma = self.marginal(t)
        rank = sigma.shape.rank if tf.is_tensor(sigma) else np.ndim(sigma)
        return -eps_hat / (expand_to(sigma, eps_hat) if rank else sigma)

    def pf_drift(self, x, t, eps_hat):
        """Probability-flow ODE drift f̃ = f(t) x − ½ g(t)² s = f(t) x + ½ g(t)² eps_hat / σ(t).

        ``t`` scalar or per set (B,); the one place where eps → score → drift is written."""
        g2 = self.g2(t)
        rank = g2.shape.rank if tf.is_tensor(g2) else np.ndim(g2)
        g2 = expand_to(g2, x) if rank else g2
        return self.drift(x, t) - 0.5 * g2 * self.score(eps_hat, t)

    def prior_logp(self, z, mask=None):
        """log N(z; 0, I) summed over real elements: z (B,P,F) + mask (B,P), or z (B,F) -> (B,)."""
        xp = _xp(z)
        per = -0.5 * (z * z + _LOG_2PI)
        if mask is not None:
            m = tf.cast(mask, z.dtype) if xp is _TF else np.asarray(mask, dtype=np.asarray(z).dtype)
            per = per * (m[..., None] if xp is _NP else tf.expand_dims(m, -1))
        if xp is _TF:
            return tf.reduce_sum(tf.reshape(per, [tf.shape(per)[0], -1]), axis=1)
        return per.reshape(per.shape[0], -1).sum(axis=1)

    # -- time sampling ----------------------------------------------------------------------
    def t_from_uniform(self, u, importance=False):
        """Map u ~ U(0,1) to t: uniform on [eps, 1], or with density ∝ g^2/sigma^2 (importance)."""
        if importance:
            return self.importance_inverse_cdf(u)
        return self.eps + (1.0 - self.eps) * u

    def sample_t(self, n, importance=False, seed=None):
        """n times as float32 NumPy: uniform in [eps, 1] or importance-sampled (∝ g^2/sigma^2)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return np.asarray(self.t_from_uniform(rng.uniform(size=n), importance), dtype=np.float32)

    def importance_density(self, t):
        """Normalised density on [eps, 1] of the likelihood-weighting proposal, ∝ g^2/sigma^2."""
        _, sigma = self.marginal(t)
        return self.g2(t) / (sigma * sigma) / self.importance_norm()

    def likelihood_weight(self):
        """Constant IS weight: E_{t~U(eps,1)}[g^2/sigma^2 h(t)] = weight * E_{t~q}[h(t)]."""
        return self.importance_norm() / (1.0 - self.eps)


class VPSDE(_VPBase):
    """Linear-β VP-SDE of Song et al.: β(t) = β_min + t (β_max − β_min) (paper: 0.1 → 20)."""

    def __init__(self, beta_min=0.1, beta_max=20.0, eps=1e-5):
        self.beta_min, self.beta_max, self.eps = float(beta_min), float(beta_max), float(eps)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def int_beta(self, t):
        """∫_0^t β(s) ds."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def logsnr(self, t):
        """log(alpha^2/sigma^2) = -log(expm1(∫β))."""
        xp = _xp(t)
        return -xp.log(xp.expm1(self.int_beta(t)))

    def marginal(self, t):
        xp = _xp(t)
        ib = self.int_beta(t)
        return xp.exp(-0.5 * ib), xp.sqrt(-xp.expm1(-ib))

    def importance_norm(self):
        # log(e^I - 1) is the antiderivative of g^2/sigma^2 = β / (1 - e^{-I}).
        lo = math.log(math.expm1(self.int_beta(self.eps)))
        hi = math.log(math.expm1(self.int_beta(1.0)))
        return hi - lo

    def importance_inverse_cdf(self, u):
        xp = _xp(u)
        lo = math.log(math.expm1(self.int_beta(self.eps)))
        big_l = lo + u * self.importance_norm()
        i = xp.softplus(big_l)  # solves log(e^I - 1) = L
        db = self.beta_max - self.beta_min
        # root of β_min t + db t²/2 = I, written without cancellation for small I
        return 2.0 * i / (self.beta_min + xp.sqrt(self.beta_min ** 2 + 2.0 * db * i))

    def get_config(self):
        return {"name": "vpsde", "beta_min": self.beta_min, "beta_max": self.beta_max,
                "eps": self.eps}


class CosineLogSNR(_VPBase):
    """Cosine schedule in log-SNR: logsnr(t) = −2 log tan(a t + b), logsnr(0) = L, logsnr(1) = −L.

    alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(−logsnr).  As an SDE, β(t) = d/dt softplus(−logsnr)
    = −logsnr'(t) sigmoid(−logsnr(t)); the likelihood-IS proposal ∝ g^2/sigma^2 = −logsnr'(t) is
    uniform in log-SNR.  (The SDE started at t = 0 has alpha(0)^2 = sigmoid(L) ≠ 1; for L ≥ 10 the
    difference is < 5e-5 and the densities refer to x at t = eps, as for VPSDE.)  The network still
    predicts eps; v-prediction is not implemented.
    """

    def __init__(self, logsnr_max=10.0, eps=1e-5):
        self.logsnr_max, self.eps = float(logsnr_max), float(eps)
        self._b = math.atan(math.exp(-0.5 * self.logsnr_max))
        self._a = math.atan(math.exp(0.5 * self.logsnr_max)) - self._b

    def logsnr(self, t):
        xp = _xp(t)
        return -2.0 * xp.log(xp.tan(self._a * t + self._b))

    def _dlogsnr_dt(self, t):
        xp = _xp(t)
        return -4.0 * self._a / xp.sin(2.0 * (self._a * t + self._b))

    def beta(self, t):
        xp = _xp(t)
        return -self._dlogsnr_dt(t) * xp.sigmoid(-self.logsnr(t))

    def int_beta(self, t):
        """∫_0^t β(s) ds = softplus(−logsnr(t)) − softplus(−L)."""
        xp = _xp(t)
        return xp.softplus(-self.logsnr(t)) - float(np.logaddexp(0.0, -self.logsnr_max))

    def importance_norm(self):
        return float(self.logsnr(np.float64(self.eps)) - self.logsnr(np.float64(1.0)))

    def importance_inverse_cdf(self, u):
        xp = _xp(u)
        lam = float(self.logsnr(np.float64(self.eps))) - u * self.importance_norm()
        return (xp.arctan(xp.exp(-0.5 * lam)) - self._b) / self._a

    def get_config(self):
        return {"name": "cosine_logsnr", "logsnr_max": self.logsnr_max, "eps": self.eps}


def check_sde_config(value, key="model.sde", source=None) -> dict:
    """Config-schema check of an SDE section: a ConfigError naming ``key`` if ``make_sde``
    would reject it."""
    from shared.errors import ConfigError
    if not isinstance(value, dict):
        raise ConfigError(source, key, f"must be a mapping like {{name: vpsde}}, got {value!r}")
    try:
        make_sde(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(source, key, str(exc)) from None
    return dict(value)


def make_sde(config: dict):
    """Build a schedule from a config dict: {name: vpsde|cosine_logsnr, ...parameters}."""
    cfg = dict(config or {})
    name = cfg.pop("name", "vpsde")
    cls = {"vpsde": VPSDE, "cosine_logsnr": CosineLogSNR}.get(name)
    if cls is not None:
        import inspect
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise ValueError(f"sde {name!r}: unknown parameter(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**cfg)
    raise ValueError(f"sde.name: unknown schedule {name!r} (expected 'vpsde' or 'cosine_logsnr')")
