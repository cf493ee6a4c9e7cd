"""Masked denoising score matching for noise-predicting networks (paper Eq. 1-2)."""
from __future__ import annotations

import tensorflow as tf

from shared.diffusion.score import call_score_net
from shared.diffusion.sde import expand_to

WEIGHTINGS = ("standard", "likelihood")


def _random(shape, seed, kind, dtype):
    """Uniform/normal draws: stateless for an int seed, a tf.random.Generator, or global RNG."""
    if isinstance(seed, tf.random.Generator):
        return seed.uniform(shape, dtype=dtype) if kind == "uniform" else seed.normal(shape, dtype=dtype)
    if seed is None:
        return tf.random.uniform(shape, dtype=dtype) if kind == "uniform" else \
            tf.random.normal(shape, dtype=dtype)
    s = tf.stack([tf.cast(seed, tf.int64), tf.constant(0 if kind == "uniform" else 1, tf.int64)])
    return tf.random.stateless_uniform(shape, s, dtype=dtype) if kind == "uniform" else \
        tf.random.stateless_normal(shape, s, dtype=dtype)


def dsm_loss(net, x0, mask, cond, sde, weighting="standard", training=True, seed=None):
    """Masked DSM loss, a scalar.

    "standard":   λ = σ², t ~ U(eps, 1)  ->  mean ||eps_hat − eps||².
    "likelihood": λ = g², t ~ q ∝ g²/σ²  ->  w · mean ||eps_hat − eps||² with the constant
                  w = sde.likelihood_weight(), an unbiased estimate of E_{U(eps,1)}[g²/σ² ||.||²].
    The mean runs over real elements × features only (padding contributes nothing); x0 (B,P,F)
    with mask (B,P), or x0 (B,F) with mask None.  ``seed``: int (stateless), tf.random.Generator
    or None (global TF RNG).  The constant ½ of Eq. 1 is dropped.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"dsm_loss: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    x0 = tf.convert_to_tensor(x0, tf.float32)
    batch = tf.shape(x0)[0]
    importance = weighting == "likelihood"
    t = sde.t_from_uniform(_random([batch], seed, "uniform", tf.float32), importance)
    noise = _random(tf.shape(x0), None if seed is None else
                    (seed if isinstance(seed, tf.random.Generator) else tf.cast(seed, tf.int64) + 7919),
                    "normal", tf.float32)
    if mask is not None:
        m = tf.expand_dims(tf.cast(mask, tf.float32), -1)
        noise = noise * m
        x0 = x0 * m
    alpha, sigma = sde.marginal(t)
    x_t = expand_to(alpha, x0) * x0 + expand_to(sigma, x0) * noise
    if mask is not None:
        cond_arg = None if cond is None else tf.convert_to_tensor(cond, tf.float32)
        eps_hat = call_score_net(net, x_t, t, tf.cast(mask, tf.float32), cond_arg, training=training)
        sq = tf.square(eps_hat - noise) * m
        count = tf.reduce_sum(m) * tf.cast(tf.shape(x0)[-1], tf.float32)
    else:
        cond_arg = None if cond is None else tf.convert_to_tensor(cond, tf.float32)
        eps_hat = call_score_net(net, x_t, t, None, cond_arg, training=training)
        sq = tf.square(eps_hat - noise)
        count = tf.cast(tf.size(sq), tf.float32)
    loss = tf.reduce_sum(sq) / tf.maximum(count, 1.0)
    if importance:
        loss = loss * sde.likelihood_weight()
    return loss
