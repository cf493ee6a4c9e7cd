"""Invertible neural network density on the prime EFPs (``whats_anomalous_in_lhc_jets.txt``
Sec. 5, Table 3), in Keras.

Physics space x = the 8 EFPs -> PCA whitening u (constant Jacobian) -> ``blocks`` x
[affine coupling block, fixed random orthogonal mixing] -> z ~ N(0, I).
Coupling block: u = (u1, u2), (s, t) = subnet(u1) with subnet Dense(hidden, relu) ->
Dense(2 dim(u2)) (zero-initialised: each block starts as the identity), soft clamp
s -> clamp · tanh(s), z2 = u2 · exp(s) + t, log|J| = Σ s.
Training: NLL of u with Gaussian noise of std ``noise`` · noise_decay^epoch added to u.
Scores: NLL in physics space, reweighted to the space x' = x^n (paper Eq. 21, constant Σ log n
dropped): NLL_n(x) = NLL_x(x) + (n − 1) Σ_i log x_i; n = 0 means x' = log x. Also the latent
distance ‖z‖ (the paper's latent-space score).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="baselines")
class AffineCoupling(keras.layers.Layer):
    """Affine coupling of the second part of the features on the first ``split`` ones."""

    def __init__(self, dim, split, hidden=512, clamp=2.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.split, self.hidden, self.clamp = int(dim), int(split), int(hidden), float(clamp)
        self.net_hidden = keras.layers.Dense(self.hidden, activation="relu")
        self.net_out = keras.layers.Dense(2 * (self.dim - self.split), kernel_initializer="zeros",
                                          bias_initializer="zeros")

    def call(self, u):
        u1, u2 = u[:, :self.split], u[:, self.split:]
        st = self.net_out(self.net_hidden(u1))
        k = self.dim - self.split
        s = self.clamp * tf.tanh(st[:, :k])
        z2 = u2 * tf.exp(s) + st[:, k:]
        return tf.concat([u1, z2], axis=-1), tf.reduce_sum(s, axis=-1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "split": self.split,
                "hidden": self.hidden, "clamp": self.clamp}


def random_orthogonal(dim, seed):
    """A fixed (dim, dim) orthogonal matrix drawn from ``seed`` (QR with sign fix: Haar)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


@keras.saving.register_keras_serializable(package="baselines")
class CouplingINN(keras.Model):
    """The flow u -> z; batches ``{"x": (B, dim)}`` hold whitened inputs."""

    def __init__(self, dim, blocks=24, hidden=512, clamp=2.0, noise=0.5, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.blocks, self.hidden, self.clamp = int(dim), int(blocks), int(hidden), float(clamp)
        self.noise_init, self.seed = float(noise), int(seed)
        self.couplings = [AffineCoupling(self.dim, self.dim // 2, self.hidden, self.clamp,
                                         name=f"coupling_{i}") for i in range(self.blocks)]
        self.rotations = [tf.constant(random_orthogonal(self.dim, [self.seed, i]))
                          for i in range(self.blocks)]
        # training noise std; a weight so that a resumed run continues the schedule
        self.noise_std = self.add_weight(shape=(), initializer=keras.initializers.Constant(noise),
                                         trainable=False, name="noise_std")
        self.noise_gen = keras.random.SeedGenerator(self.seed)

    def call(self, u):
        """(z, log|det dz/du|)."""
        logdet = tf.zeros(tf.shape(u)[:1])
        z = u
        for coupling, rot in zip(self.couplings, self.rotations):
            z, ld = coupling(z)
            z = tf.matmul(z, rot)
            logdet = logdet + ld
        return z, logdet

    def nll(self, u):
        """(B,) −log p(u)."""
        z, logdet = self(u)
        return 0.5 * tf.reduce_sum(tf.square(z), -1) + 0.5 * self.dim * np.log(2 * np.pi) - logdet

    def compute_batch_loss(self, batch, training):
        u = tf.cast(batch["x"], tf.float32)
        if training:
            u = u + self.noise_std * keras.random.normal(tf.shape(u), seed=self.noise_gen)
        return tf.reduce_mean(self.nll(u))

    def batch_nll(self, batch):
        """(B,) −log p(u) of ``batch["x"]`` (no noise)."""
        return self.nll(tf.cast(batch["x"], tf.float32))

    def latent_norm(self, batch):
        z, _ = self(tf.cast(batch["x"], tf.float32))
        return tf.norm(z, axis=-1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "blocks": self.blocks, "hidden": self.hidden,
                "clamp": self.clamp, "noise": self.noise_init, "seed": self.seed}


def noise_schedule(model, noise, decay):
    """``on_epoch_end`` callback: noise std ``noise · decay^epoch`` for the next epoch."""
    def callback(trainer, record):
        model.noise_std.assign(float(noise) * float(decay) ** int(record["epoch"]))
    return callback


def reweighted_nll(nll_u, log_det_whiten, x, power, floor=1e-12):
    """NLL in the space x' = x^power (power 0: log x), from −log p(u) of the whitened u:
    −log p_x = −log p_u − log|du/dx|; then + (power − 1) Σ log x (Σ log power dropped)."""
    nll_x = np.asarray(nll_u, np.float64) - log_det_whiten
    return nll_x + (float(power) - 1.0) * np.log(np.maximum(x, floor)).sum(1)
