"""Deep Set β-VAE (``deep_set_vae_dark_machines.txt``), on jet constituents.

Encoder: per-particle MLP Φ (``depth`` x Dense(width, relu)) -> 2L per particle -> FSPool over
the real particles -> (μ, log σ²) of an L-dimensional Gaussian latent. Loss (paper Eq. 6)
β · KL(N(μ, σ²) || N(0, I)) + (1 − β) · Chamfer(input set, decoded set).

* β = 1 (``deepset_kl``, the paper's best): no decoder; score = KL to the prior.
* β < 1 (``deepset_chamfer``): decoder z -> ``decoder_depth`` x Dense(decoder_width, relu) ->
  ``num_outputs`` particles; Chamfer distance (Eq. 5 without the particle-ID term: jets have
  no IDs here) = Σ_input min_output ‖x − y‖ + Σ_output min_input ‖x − y‖; score = the total
  loss with z = μ (deterministic).

Particle features: (Δη, Δφ, log pT), standardised with masked training statistics.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="baselines")
class FSPool(keras.layers.Layer):
    """Featurewise sort pooling (Zhang, Hare, Prügel-Bennett 2019) with a mask.

    Each channel is sorted over the real elements (descending) and summed with weights
    w_c(r), r = i / (n − 1) the relative rank, w_c piecewise linear with ``pieces`` pieces
    (learned); so sets of any size n are pooled consistently."""

    def __init__(self, pieces=20, **kwargs):
        super().__init__(**kwargs)
        self.pieces = int(pieces)

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.pieces + 1),
                                 initializer=keras.initializers.RandomNormal(stddev=1.0 / self.pieces),
                                 name="w")

    def call(self, x, mask):
        m = tf.cast(mask, x.dtype)                                    # (B, P)
        big = tf.constant(1e9, x.dtype)
        filled = x * m[..., None] - big * (1.0 - m[..., None])         # padding sorts last
        srt = tf.sort(filled, axis=1, direction="DESCENDING")          # (B, P, C)
        n = tf.reduce_sum(m, axis=1, keepdims=True)                    # (B, 1)
        pos = tf.cast(tf.range(tf.shape(x)[1]), x.dtype)[None, :]      # (1, P)
        rel = pos / tf.maximum(n - 1.0, 1.0)                           # (B, P) in [0, 1] on real slots
        real = tf.cast(pos < n, x.dtype)                               # sorted: first n are real
        idx = tf.clip_by_value(rel, 0.0, 1.0) * self.pieces
        lo = tf.clip_by_value(tf.floor(idx), 0.0, float(self.pieces - 1))
        frac = idx - lo
        wt = tf.transpose(self.w)                                      # (pieces + 1, C)
        w_lo = tf.gather(wt, tf.cast(lo, tf.int32))                    # (B, P, C)
        w_hi = tf.gather(wt, tf.cast(lo, tf.int32) + 1)
        weight = w_lo * (1.0 - frac[..., None]) + w_hi * frac[..., None]
        return tf.reduce_sum(weight * srt * real[..., None], axis=1)

    def get_config(self):
        return {**super().get_config(), "pieces": self.pieces}


def chamfer(x, mask, y):
    """(B,) Σ_real x min_y ‖x − y‖ + Σ_y min_real x ‖x − y‖ for sets x (B, P, F) with mask and
    y (B, M, F)."""
    d2 = tf.reduce_sum(tf.square(x[:, :, None, :] - y[:, None, :, :]), -1)   # (B, P, M)
    d = tf.sqrt(d2 + 1e-12)
    m = tf.cast(mask, x.dtype)
    to_out = tf.reduce_sum(tf.reduce_min(d, axis=2) * m, axis=1)
    d_masked = d + 1e9 * (1.0 - m)[:, :, None]
    to_in = tf.reduce_sum(tf.reduce_min(d_masked, axis=1), axis=1)
    return to_out + to_in


@keras.saving.register_keras_serializable(package="baselines")
class DeepSetVAE(keras.Model):
    """See the module docstring. Batches: ``{"x": (B, P, F), "mask": (B, P)}``."""

    def __init__(self, num_features=3, width=256, depth=3, latent_dim=8, fspool_pieces=20, beta=1.0,
                 decoder_width=256, decoder_depth=2, num_outputs=30, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.num_features, self.width, self.depth = int(num_features), int(width), int(depth)
        self.latent_dim, self.fspool_pieces, self.beta = int(latent_dim), int(fspool_pieces), float(beta)
        self.decoder_width, self.decoder_depth = int(decoder_width), int(decoder_depth)
        self.num_outputs, self.seed = int(num_outputs), int(seed)
        self.phi = [keras.layers.Dense(self.width, activation="relu", name=f"phi_{i}")
                    for i in range(self.depth)]
        self.phi_out = keras.layers.Dense(2 * self.latent_dim, name="phi_out")
        self.pool = FSPool(self.fspool_pieces, name="fspool")
        self.decoder = []
        if self.beta < 1.0:
            self.decoder = [keras.layers.Dense(self.decoder_width, activation="relu", name=f"dec_{i}")
                            for i in range(self.decoder_depth)]
            self.decoder.append(keras.layers.Dense(self.num_outputs * self.num_features, name="dec_out"))
        self.noise = keras.random.SeedGenerator(self.seed)

    def encode(self, x, mask):
        h = x
        for layer in self.phi:
            h = layer(h)
        pooled = self.pool(self.phi_out(h), mask)
        return pooled[:, :self.latent_dim], pooled[:, self.latent_dim:]

    def decode(self, z):
        h = z
        for layer in self.decoder:
            h = layer(h)
        return tf.reshape(h, (-1, self.num_outputs, self.num_features))

    @staticmethod
    def kl(mu, logvar):
        return 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(logvar) - 1.0 - logvar, axis=-1)

    def per_jet_loss(self, batch, training):
        x = tf.cast(batch["x"], tf.float32)
        mask = tf.cast(batch["mask"], tf.float32)
        mu, logvar = self.encode(x, mask)
        loss = self.beta * self.kl(mu, logvar)
        if self.beta < 1.0:
            z = mu
            if training:
                z = mu + tf.exp(0.5 * logvar) * keras.random.normal(tf.shape(mu), seed=self.noise)
            loss = loss + (1.0 - self.beta) * chamfer(x, mask, self.decode(z))
        return loss

    def compute_batch_loss(self, batch, training):
        return tf.reduce_mean(self.per_jet_loss(batch, training))

    def score(self, batch):
        """(B,) the loss at z = μ: KL for β = 1, β KL + (1 − β) Chamfer otherwise."""
        return self.per_jet_loss(batch, training=False)

    def get_config(self):
        return {**super().get_config(), "num_features": self.num_features, "width": self.width,
                "depth": self.depth, "latent_dim": self.latent_dim,
                "fspool_pieces": self.fspool_pieces, "beta": self.beta,
                "decoder_width": self.decoder_width, "decoder_depth": self.decoder_depth,
                "num_outputs": self.num_outputs, "seed": self.seed}


class SetStandardizer:
    """Masked per-feature standardisation of (Δη, Δφ, log pT) particle features."""

    def __init__(self, mean, std):
        self.mean, self.std = np.asarray(mean), np.asarray(std)

    @staticmethod
    def features(js):
        p, m = js["particles"], js["mask"]
        logpt = np.log(np.where(m, p[..., 2], 1.0))
        return np.where(m[..., None], np.stack([p[..., 0], p[..., 1], logpt], -1), 0.0)

    @classmethod
    def fit(cls, js):
        real = cls.features(js)[js["mask"]]
        return cls(real.mean(0), np.maximum(real.std(0), 1e-6))

    def transform(self, js):
        x = (self.features(js) - self.mean) / self.std
        return np.where(js["mask"][..., None], x, 0.0).astype(np.float32)
