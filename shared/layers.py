"""Keras 3 building blocks for score networks over particle sets and fixed-size vectors.

Every set layer takes the padding mask ``(B, P)`` (1 = real element) explicitly; padded slots
never influence real ones, and the builders return zeros at padded slots.  Networks predict the
noise ``eps_hat`` (score = -eps_hat / sigma(t)), see docs/ARCHITECTURE.md.

Input naming: models built here name their inputs ``x``, ``t``, ``mask`` and ``cond``.  With
``cond_dim == 0`` the ``cond`` input is omitted (a zero-width input is not supported by every
backend op); ``shared.diffusion.score.call_score_net`` feeds a model whatever subset of
``(x, t, mask, cond)`` it declares, so callers never need to special-case this.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from shared.diffusion.sde import make_sde


_LEAKY_SLOPE = 0.01
# Builder defaults for the small-t conditioning (see TimeEmbedding / ContextGain).
LOG_TIME_DEFAULT = True
OUTPUT_GAIN_DEFAULT = True


def _leaky(x):
    return ops.leaky_relu(x, negative_slope=_LEAKY_SLOPE)


def _mask3(mask, dtype):
    """(B, P) mask -> (B, P, 1) in ``dtype``."""
    return ops.expand_dims(ops.cast(mask, dtype), -1)


@keras.saving.register_keras_serializable(package="shared")
class FourierFeatures(layers.Layer):
    """Fixed Fourier projection of scalars: (B,) or (B, d) -> (B, 2 * num_frequencies).

    ``kind="gaussian"``: random frequencies ~ N(0, scale^2) (Tancik et al.), fixed by ``seed``.
    ``kind="sinusoidal"``: geometric frequencies 1 ... ``max_frequency`` (transformer style).
    """

    def __init__(self, num_frequencies=16, kind="gaussian", scale=16.0, max_frequency=1000.0,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("gaussian", "sinusoidal"):
            raise ValueError(f"FourierFeatures: kind must be 'gaussian' or 'sinusoidal', got {kind!r}")
        self.num_frequencies = int(num_frequencies)
        self.kind = kind
        self.scale = float(scale)
        self.max_frequency = float(max_frequency)
        self.seed = int(seed)

    def build(self, input_shape):
        d = 1 if len(input_shape) == 1 else int(input_shape[-1])
        if self.kind == "gaussian":
            w = np.random.default_rng(self.seed).normal(0.0, self.scale, (d, self.num_frequencies))
        else:
            freqs = np.exp(np.linspace(0.0, math.log(self.max_frequency), self.num_frequencies))
            w = np.tile(freqs[None, :], (d, 1)) / d
        self.kernel = self.add_weight(shape=(d, self.num_frequencies), trainable=False,
                                      initializer=keras.initializers.Constant(w.astype("float32")),
                                      name="frequencies")

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if len(x.shape) == 1:
            x = ops.expand_dims(x, -1)
        proj = 2.0 * math.pi * ops.matmul(x, ops.cast(self.kernel, x.dtype)) if self.kind == "gaussian" \
            else ops.matmul(x, ops.cast(self.kernel, x.dtype))
        return ops.concatenate([ops.sin(proj), ops.cos(proj)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_frequencies": self.num_frequencies, "kind": self.kind,
                "scale": self.scale, "max_frequency": self.max_frequency, "seed": self.seed}


@keras.saving.register_keras_serializable(package="shared")
class TimeEmbedding(layers.Layer):
    """Diffusion time t (B,) -> (B, dim): Fourier features then two Dense layers.

    ``log_time=True`` adds features of log t (floored at ``log_time_floor``): log t / 10 and
    Gaussian Fourier features of log t with frequency std ``log_time_scale``.  Raw-t Fourier
    features are almost constant for t << 1/scale, where σ(t) still spans decades and the score
    −ε̂/σ amplifies every error; log t resolves that range (cf. EDM's c_noise = ¼ log σ).
    """

    def __init__(self, dim=64, num_frequencies=16, kind="gaussian", scale=16.0, seed=0,
                 log_time=False, log_time_scale=0.05, log_time_floor=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_frequencies = int(num_frequencies)
        self.kind = kind
        self.scale = float(scale)
        self.seed = int(seed)
        self.log_time = bool(log_time)
        self.log_time_scale = float(log_time_scale)
        self.log_time_floor = float(log_time_floor)
        self.fourier = FourierFeatures(num_frequencies, kind=kind, scale=scale, seed=seed)
        self.log_fourier = FourierFeatures(num_frequencies, kind="gaussian", scale=log_time_scale,
                                           seed=seed + 1) if self.log_time else None
        self.dense1 = layers.Dense(self.dim)
        self.dense2 = layers.Dense(self.dim)

    def _num_features(self):
        return 2 * self.num_frequencies * (2 if self.log_time else 1) + (1 if self.log_time else 0)

    def build(self, input_shape):
        self.fourier.build(input_shape)
        if self.log_fourier is not None:
            self.log_fourier.build(input_shape)
        self.dense1.build((None, self._num_features()))
        self.dense2.build((None, self.dim))

    def call(self, t):
        feats = self.fourier(t)
        if self.log_time:
            t = ops.cast(t, feats.dtype)
            if len(t.shape) == 1:
                t = ops.expand_dims(t, -1)
            log_t = ops.log(ops.maximum(t, self.log_time_floor))
            feats = ops.concatenate([feats, self.log_fourier(log_t), 0.1 * log_t], axis=-1)
        return self.dense2(_leaky(self.dense1(feats)))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_frequencies": self.num_frequencies,
                "kind": self.kind, "scale": self.scale, "seed": self.seed,
                "log_time": self.log_time, "log_time_scale": self.log_time_scale,
                "log_time_floor": self.log_time_floor}


@keras.saving.register_keras_serializable(package="shared")
class ContextGain(layers.Layer):
    """Per-set, per-feature output gain exp(clip(Dense(context))), initialised to exactly 1.

    The optimal ε̂ shrinks ∝ σ(t) as t → 0 (ε* = −σ ∇log p_t); after the output LayerNorm the net
    cannot express that scale, a learned gain of the time context can (log-linear in log t).
    """

    def __init__(self, units, max_log_gain=10.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.max_log_gain = float(max_log_gain)
        self.dense = layers.Dense(self.units, kernel_initializer="zeros", bias_initializer="zeros")

    def build(self, context_shape):
        self.dense.build(context_shape)

    def call(self, context):
        return ops.exp(ops.clip(self.dense(context), -self.max_log_gain, self.max_log_gain))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "max_log_gain": self.max_log_gain}


@keras.saving.register_keras_serializable(package="shared")
class GaussianSkip(layers.Layer):
    """The exact ε of Gaussian data N(0, s²) under a VP schedule: σ(t) x_t / (α(t)² s² + σ(t)²).

    Added to a network's output (``gaussian_skip`` in the builders), the net learns only the
    non-Gaussian remainder.  Near t = 1 (β = 20 in the paper's VP-SDE) the PF-ODE multiplies
    every error of ∇·ε̂ by ½β/σ ≈ 10, while ε* there is ≈ σ x for standardised data: with the
    skip the analytic part carries that identity map and its exact divergence.
    ``sde``: the model's schedule (``shared.diffusion.sde``); ``data_std``: s (1 = standardised).
    """

    def __init__(self, sde, data_std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.sde = make_sde(sde) if isinstance(sde, dict) else sde   # dict: from get_config
        self.data_std = float(data_std)

    def call(self, x, t):
        alpha, sigma = self.sde.marginal(ops.cast(t, x.dtype))
        coef = sigma / (alpha * alpha * self.data_std ** 2 + sigma * sigma)
        return x * ops.reshape(coef, (-1,) + (1,) * (len(x.shape) - 1))

    def get_config(self):
        return {**super().get_config(), "sde": self.sde.get_config(), "data_std": self.data_std}


def gaussian_skip_sde(enabled, sde, field="model.gaussian_skip"):
    """The builders' ``gaussian_skip`` argument from a config switch: the model's SDE or None."""
    if not isinstance(enabled, bool):
        raise ValueError(f"config field {field!r} must be true or false, got {enabled!r}")
    return sde if enabled else None


@keras.saving.register_keras_serializable(package="shared")
class MaskedMeanPool(layers.Layer):
    """Mean over real elements: (B, P, W), mask (B, P) -> (B, W); an empty set pools to 0."""

    def call(self, x, mask):
        m = _mask3(mask, x.dtype)
        return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="shared")
class TileCondition(layers.Layer):
    """Tile a per-set vector (B, C) over the set of ``x`` (B, P, .) -> (B, P, C)."""

    def call(self, cond, x):
        p = ops.shape(x)[1]
        return ops.repeat(ops.expand_dims(cond, 1), p, axis=1)


@keras.saving.register_keras_serializable(package="shared")
class SetAttentionBlock(layers.Layer):
    """Pre-LN transformer block over a padded set.

    x <- x + MHA(LN(x)) with keys restricted to real elements; x <- x + FFN(LN(x)); the output is
    zeroed at padded slots.  A padded query may attend to itself only, so fully padded rows (and
    empty sets) give finite values instead of a softmax over nothing.
    """

    def __init__(self, width=128, num_heads=2, ffn_dim=512, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.num_heads = int(num_heads)
        self.ffn_dim = int(ffn_dim)
        self.dropout = float(dropout)
        self.norm1 = layers.LayerNormalization(epsilon=1e-6)
        self.attn = layers.MultiHeadAttention(num_heads=self.num_heads,
                                              key_dim=max(self.width // self.num_heads, 1),
                                              dropout=self.dropout)
        self.norm2 = layers.LayerNormalization(epsilon=1e-6)
        self.ffn1 = layers.Dense(self.ffn_dim)
        self.ffn2 = layers.Dense(self.width)
        self.drop = layers.Dropout(self.dropout)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attn.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.ffn1.build(input_shape)
        self.ffn2.build(tuple(input_shape[:-1]) + (self.ffn_dim,))

    def call(self, x, mask, training=None):
        m = ops.cast(mask, "bool")
        p = ops.shape(x)[1]
        eye = ops.cast(ops.eye(p), "bool")[None]
        attn_mask = ops.logical_or(ops.logical_and(m[:, :, None], m[:, None, :]), eye)
        h = self.norm1(x)
        x = x + self.attn(h, h, attention_mask=attn_mask, training=training)
        h = self.ffn2(self.drop(_leaky(self.ffn1(self.norm2(x))), training=training))
        return (x + h) * _mask3(mask, x.dtype)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="shared")
class ResidualDense(layers.Layer):
    """x + Dense(act(Dense(LN(x)) + Dense(context))): residual MLP block with optional context."""

    def __init__(self, width=256, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.dropout = float(dropout)
        self.norm = layers.LayerNormalization(epsilon=1e-6)
        self.dense1 = layers.Dense(self.width)
        self.context_proj = layers.Dense(self.width, use_bias=False)
        self.dense2 = layers.Dense(self.width)
        self.drop = layers.Dropout(self.dropout)

    def build(self, x_shape, context_shape=None):
        self.norm.build(x_shape)
        self.dense1.build(x_shape)
        self.dense2.build(tuple(x_shape[:-1]) + (self.width,))
        if context_shape is not None:
            self.context_proj.build(context_shape)

    def call(self, x, context=None, training=None):
        h = self.dense1(self.norm(x))
        if context is not None:
            h = h + self.context_proj(context)
        return x + self.dense2(self.drop(_leaky(h), training=training))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "dropout": self.dropout}


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------

def _set_trunk(x, mask, context, width, num_blocks, num_heads, ffn_dim, dropout, name):
    """Per-element embedding + tiled context + DeepSets summary + transformer blocks -> (B,P,W)."""
    h = _leaky(layers.Dense(width, name=f"{name}_embed")(x))
    if context is not None:
        h = ops.concatenate([h, TileCondition(name=f"{name}_tile")(context, h)], axis=-1)
        h = _leaky(layers.Dense(width, name=f"{name}_mix")(h))
    pooled = MaskedMeanPool(name=f"{name}_pool")(h, mask)
    h = ops.concatenate([h, TileCondition(name=f"{name}_tile_pool")(pooled, h)], axis=-1)
    h = layers.Dense(width, name=f"{name}_deepsets")(h) * _mask3(mask, h.dtype)
    for i in range(num_blocks):
        h = SetAttentionBlock(width, num_heads, ffn_dim, dropout, name=f"{name}_block{i}")(h, mask)
    return h


def _context(t, cond, time_embed_dim, width, name, time_scale=16.0, log_time=False):
    parts = []
    if t is not None:
        parts.append(TimeEmbedding(time_embed_dim, scale=time_scale, log_time=log_time,
                                   name=f"{name}_time")(t))
    if cond is not None:
        parts.append(cond)
    if not parts:
        return None
    c = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
    return _leaky(layers.Dense(width, name=f"{name}_context")(c))


def build_set_score_net(num_features, cond_dim=0, width=128, num_blocks=6, num_heads=2,
                        ffn_dim=512, time_embed_dim=64, dropout=0.0, num_slots=None,
                        time_scale=16.0, log_time=LOG_TIME_DEFAULT,
                        output_gain=OUTPUT_GAIN_DEFAULT, gaussian_skip=None, data_std=1.0,
                        name="set_score_net"):
    """Permutation-equivariant noise predictor over padded sets.

    Inputs ``[x (B,P,F), t (B,), mask (B,P)] + [cond (B,C)]`` (cond only if ``cond_dim > 0``);
    output eps_hat (B,P,F), exactly 0 at padded slots.  ``num_slots`` may fix P (None = any).
    ``time_scale``: std of the Gaussian Fourier frequencies of t (large = fast variation in t,
    which an ODE solver pays for in steps).  ``log_time``: also embed log t (see
    :class:`TimeEmbedding`); ``output_gain``: multiply the output by a learned per-set gain of
    the context (:class:`ContextGain`), so ε̂ can shrink ∝ σ(t) at small t.
    ``gaussian_skip``: None, or the model's SDE: add :class:`GaussianSkip` (ε of N(0,
    ``data_std``²) data) so the net learns only the non-Gaussian part.
    """
    x = keras.Input((num_slots, num_features), name="x")
    t = keras.Input((), name="t")
    mask = keras.Input((num_slots,), name="mask")
    cond = keras.Input((cond_dim,), name="cond") if cond_dim > 0 else None
    context = _context(t, cond, time_embed_dim, width, name, time_scale, log_time)
    h = _set_trunk(x, mask, context, width, num_blocks, num_heads, ffn_dim, dropout, name)
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_out_norm")(h)
    out = layers.Dense(num_features, name=f"{name}_out")(h) * _mask3(mask, h.dtype)
    if output_gain:
        out = out * ops.expand_dims(ContextGain(num_features, name=f"{name}_gain")(context), 1)
    if gaussian_skip is not None:
        out = out + GaussianSkip(gaussian_skip, data_std, name=f"{name}_skip")(x, t) * \
            _mask3(mask, out.dtype)
    inputs = [x, t, mask] + ([cond] if cond is not None else [])
    return keras.Model(inputs, out, name=name)


def build_set_classifier(num_features, cond_dim=0, width=128, num_blocks=6, num_heads=2,
                         ffn_dim=512, head_width=128, dropout=0.0, num_slots=None,
                         name="set_classifier"):
    """Same backbone as :func:`build_set_score_net` (no time) + masked mean pooling after the
    last transformer block + Dense(head_width, LeakyReLU) + Dense(1, sigmoid).

    Inputs ``[x, mask] + [cond]``; output (B, 1) probability; permutation invariant.
    """
    x = keras.Input((num_slots, num_features), name="x")
    mask = keras.Input((num_slots,), name="mask")
    cond = keras.Input((cond_dim,), name="cond") if cond_dim > 0 else None
    context = _context(None, cond, 0, width, name)
    h = _set_trunk(x, mask, context, width, num_blocks, num_heads, ffn_dim, dropout, name)
    pooled = MaskedMeanPool(name=f"{name}_head_pool")(h, mask)
    h = _leaky(layers.Dense(head_width, name=f"{name}_head")(pooled))
    out = layers.Dense(1, activation="sigmoid", name=f"{name}_out")(h)
    inputs = [x, mask] + ([cond] if cond is not None else [])
    return keras.Model(inputs, out, name=name)


def build_vector_score_net(num_features, cond_dim=0, width=256, num_blocks=4, time_embed_dim=64,
                           dropout=0.0, time_scale=16.0, log_time=LOG_TIME_DEFAULT,
                           output_gain=OUTPUT_GAIN_DEFAULT, gaussian_skip=None, data_std=1.0,
                           name="vector_score_net"):
    """Residual MLP noise predictor for fixed-size vectors.

    Inputs ``[x (B,F), t (B,)] + [cond (B,C)]`` (no mask: every feature is real); output (B,F).
    ``log_time`` / ``output_gain`` / ``gaussian_skip`` as in :func:`build_set_score_net`.
    """
    x = keras.Input((num_features,), name="x")
    t = keras.Input((), name="t")
    cond = keras.Input((cond_dim,), name="cond") if cond_dim > 0 else None
    context = _context(t, cond, time_embed_dim, width, name, time_scale, log_time)
    h = layers.Dense(width, name=f"{name}_embed")(x)
    for i in range(num_blocks):
        h = ResidualDense(width, dropout, name=f"{name}_block{i}")(h, context)
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_out_norm")(h)
    out = layers.Dense(num_features, name=f"{name}_out")(_leaky(h))
    if output_gain:
        out = out * ContextGain(num_features, name=f"{name}_gain")(context)
    if gaussian_skip is not None:
        out = out + GaussianSkip(gaussian_skip, data_std, name=f"{name}_skip")(x, t)
    inputs = [x, t] + ([cond] if cond is not None else [])
    return keras.Model(inputs, out, name=name)
