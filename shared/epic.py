"""EPiC layers: equivariant point-cloud layers with a global context vector (Keras 3).

Buhmann, Kasieczka, Thaler, arXiv:2301.08128; the conditional, masked variant of EPiC-FM
(arXiv:2310.00049) used by the full-phase-space paper's flow-matching generator.

One :class:`EPiCLayer` updates a padded set of local (per-element) vectors ``x`` (B, P, L) and
one global vector ``g`` (B, G) per set:

    pooled = [mean(x), sum_scale · sum(x)]              (masked: real elements only)
    g  <- act(W_g2 [act(W_g1 [pooled, g, c]), c] + g)   (residual)
    x  <- act(W_l2 [act(W_l1 [x, g, c]), c] + x) · mask (residual, per element)

``c`` is an optional per-set conditioning vector (time embedding, jet features, ...) fed to every
MLP. The cost is linear in P (no pairwise terms); the layer is permutation equivariant in the
elements, and padded slots never influence real ones (pooling is masked, the local update is
per element, padded outputs are 0). ``sum_scale`` = 0.01 as in EPiC-GAN / EPiC-FM keeps the
sum-pooled part O(1) for sets of ~100 elements; the two pooled vectors are concatenated.

Input naming of :func:`build_epic_net`: ``x``, ``t``, ``mask``, ``cond`` (the contract of
``shared.diffusion.score.call_score_net``), so the net plugs into the flow-matching loss and ODE
samplers like the score nets of ``shared.layers``.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from shared.layers import TileCondition, TimeEmbedding


def _leaky(x):
    return ops.leaky_relu(x, negative_slope=0.01)


def _mask3(mask, dtype):
    return ops.expand_dims(ops.cast(mask, dtype), -1)


def _tile(v, x):
    """(B, C) -> (B, P, C) over the set of ``x`` (B, P, .)."""
    return ops.repeat(ops.expand_dims(v, 1), ops.shape(x)[1], axis=1)


@keras.saving.register_keras_serializable(package="shared")
class EPiCPooling(layers.Layer):
    """Masked [mean, sum_scale · sum] over the set: (B, P, W), mask (B, P) -> (B, 2W).

    An empty set pools to 0."""

    def __init__(self, sum_scale=0.01, **kwargs):
        super().__init__(**kwargs)
        self.sum_scale = float(sum_scale)

    def call(self, x, mask):
        m = _mask3(mask, x.dtype)
        total = ops.sum(x * m, axis=1)
        mean = total / ops.maximum(ops.sum(m, axis=1), 1.0)
        return ops.concatenate([mean, self.sum_scale * total], axis=-1)

    def get_config(self):
        return {**super().get_config(), "sum_scale": self.sum_scale}


@keras.saving.register_keras_serializable(package="shared")
class EPiCLayer(layers.Layer):
    """One EPiC layer (see the module docstring): ``(x, g, mask[, cond]) -> (x', g')``.

    ``local_dim`` = L (width of x, kept), ``global_dim`` = G (width of g, kept), ``hidden_dim``
    = width of the hidden layer of both MLPs (default L)."""

    def __init__(self, local_dim=150, global_dim=256, hidden_dim=None, sum_scale=0.01, **kwargs):
        super().__init__(**kwargs)
        self.local_dim = int(local_dim)
        self.global_dim = int(global_dim)
        self.hidden_dim = int(hidden_dim or local_dim)
        self.sum_scale = float(sum_scale)
        self.pool = EPiCPooling(self.sum_scale)
        self.global1 = layers.Dense(self.hidden_dim)
        self.global2 = layers.Dense(self.global_dim)
        self.local1 = layers.Dense(self.hidden_dim)
        self.local2 = layers.Dense(self.local_dim)

    def build(self, x_shape, g_shape, cond_shape=None):
        c = 0 if cond_shape is None else int(cond_shape[-1])
        if int(x_shape[-1]) != self.local_dim or int(g_shape[-1]) != self.global_dim:
            raise ValueError(f"EPiCLayer {self.name}: inputs of width {x_shape[-1]} (local) and "
                             f"{g_shape[-1]} (global), expected {self.local_dim} and {self.global_dim}")
        self.global1.build((None, 2 * self.local_dim + self.global_dim + c))
        self.global2.build((None, self.hidden_dim + c))
        self.local1.build((None, None, self.local_dim + self.global_dim + c))
        self.local2.build((None, None, self.hidden_dim + c))

    def call(self, x, g, mask, cond=None):
        def with_cond(v, per_element=False):
            if cond is None:
                return v
            return ops.concatenate([v, _tile(cond, v) if per_element else cond], axis=-1)

        h = _leaky(self.global1(with_cond(ops.concatenate([self.pool(x, mask), g], axis=-1))))
        g = _leaky(self.global2(with_cond(h)) + g)
        h = _leaky(self.local1(with_cond(ops.concatenate([x, _tile(g, x)], axis=-1), True)))
        x = _leaky(self.local2(with_cond(h, True)) + x) * _mask3(mask, x.dtype)
        return x, g

    def get_config(self):
        return {**super().get_config(), "local_dim": self.local_dim, "global_dim": self.global_dim,
                "hidden_dim": self.hidden_dim, "sum_scale": self.sum_scale}


def build_epic_net(num_features, cond_dim=0, local_dim=150, global_dim=256, num_layers=8,
                   hidden_dim=None, time_embed_dim=64, time_scale=1.0, sum_scale=0.01,
                   num_slots=None, name="epic_net"):
    """EPiC network over padded sets: per-element output (B, P, num_features), 0 at padding.

    Inputs ``[x (B,P,F)] + [t (B,)] + [mask (B,P)] + [cond (B,C)]``; ``t`` only if
    ``time_embed_dim > 0`` (embedded by ``shared.layers.TimeEmbedding``, Gaussian Fourier
    frequencies of std ``time_scale``), ``cond`` only if ``cond_dim > 0``. The context
    [time embedding, cond] enters every MLP. Structure (EPiC-FM): a residual per-element
    projection of [x, context] to ``local_dim``; the initial global vector from the masked
    [mean, sum_scale · sum] pooling and the context; ``num_layers`` :class:`EPiCLayer`; a Dense
    output of [local, context]. Permutation equivariant; ``num_slots`` may fix P.
    """
    x = keras.Input((num_slots, num_features), name="x")
    t = keras.Input((), name="t") if time_embed_dim > 0 else None
    mask = keras.Input((num_slots,), name="mask")
    cond = keras.Input((cond_dim,), name="cond") if cond_dim > 0 else None
    parts = []
    if t is not None:
        parts.append(TimeEmbedding(time_embed_dim, scale=time_scale, name=f"{name}_time")(t))
    if cond is not None:
        parts.append(cond)
    context = None if not parts else (parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1))
    tile = TileCondition(name=f"{name}_tile")

    def with_ctx(v):
        return v if context is None else ops.concatenate([v, tile(context, v)], axis=-1)

    m3 = _mask3(mask, "float32")
    h = _leaky(layers.Dense(local_dim, name=f"{name}_embed1")(with_ctx(x)))
    h = _leaky(layers.Dense(local_dim, name=f"{name}_embed2")(with_ctx(h)) + h) * m3
    pooled = EPiCPooling(sum_scale, name=f"{name}_pool")(h, mask)
    g_in = pooled if context is None else ops.concatenate([pooled, context], axis=-1)
    g = _leaky(layers.Dense(hidden_dim or local_dim, name=f"{name}_global1")(g_in))
    g = _leaky(layers.Dense(global_dim, name=f"{name}_global2")(
        g if context is None else ops.concatenate([g, context], axis=-1)))
    for i in range(num_layers):
        h, g = EPiCLayer(local_dim, global_dim, hidden_dim, sum_scale, name=f"{name}_layer{i}")(
            h, g, mask, context)
    out = layers.Dense(num_features, name=f"{name}_out")(with_ctx(h)) * m3
    inputs = [x] + ([t] if t is not None else []) + [mask] + ([cond] if cond is not None else [])
    return keras.Model(inputs, out, name=name)


__all__ = ["EPiCPooling", "EPiCLayer", "build_epic_net"]
