"""Dirichlet variational autoencoder (``whats_anomalous_in_lhc_jets.txt`` Sec. 4, Table 2;
Dillon et al. 2021).

Encoder x -> Dense(hidden, selu) -> (μ, log σ²) in R dimensions; latent r = softmax(z),
z ~ N(μ, σ²): the softmax-Gaussian (Laplace) approximation of a Dirichlet(α) prior, whose
Gaussian has mean μ̃_i = log α_i − mean_j log α_j and variance
σ̃²_i = (1 − 2/R)/α_i + Σ_j 1/α_j / R² (paper Eq. 14). Decoder r -> Dense(D, no bias).

* ``output="softmax"`` (images): softmax output, reconstruction loss KL(x || x̂) for x and x̂
  normalised to unit sum (paper).
* ``output="linear"`` (whitened EFPs): linear output with bias, loss ½‖x − x̂‖² (our choice:
  the paper does not spell out the EFP reconstruction loss).

Loss = reconstruction + kl_weight · KL(N(μ, σ²) || N(μ̃, σ̃²)) (Eq. 15-16).
Anomaly score = reconstruction loss at z = μ (deterministic).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def dirichlet_prior(alpha):
    """(μ̃, σ̃²) of the softmax-Gaussian approximation of Dirichlet(alpha)."""
    a = np.asarray(alpha, np.float64)
    r = len(a)
    mu = np.log(a) - np.log(a).mean()
    var = (1.0 / a) * (1.0 - 2.0 / r) + (1.0 / a).sum() / r**2
    return mu.astype(np.float32), var.astype(np.float32)


@keras.saving.register_keras_serializable(package="baselines")
class DirichletVAE(keras.Model):
    """See the module docstring. Batches: ``{"x": (B, D)}``."""

    def __init__(self, input_dim, latent_dim=2, hidden=100, alpha=(1.0, 0.1), kl_weight=0.1,
                 output="softmax", seed=0, **kwargs):
        super().__init__(**kwargs)
        if output not in ("softmax", "linear"):
            raise ValueError(f"DirichletVAE output must be 'softmax' or 'linear', got {output!r}")
        if len(alpha) != latent_dim:
            raise ValueError(f"alpha has {len(alpha)} entries for latent_dim {latent_dim}")
        self.input_dim, self.latent_dim, self.hidden = int(input_dim), int(latent_dim), int(hidden)
        self.alpha, self.kl_weight, self.output_kind = list(alpha), float(kl_weight), output
        self.seed = int(seed)
        self.prior_mu, self.prior_var = dirichlet_prior(alpha)
        self.enc_hidden = keras.layers.Dense(self.hidden, activation="selu", name="enc_hidden")
        self.enc_out = keras.layers.Dense(2 * self.latent_dim, name="enc_out")
        self.dec = keras.layers.Dense(self.input_dim, use_bias=output == "linear", name="dec")
        self.noise = keras.random.SeedGenerator(self.seed)

    def encode(self, x):
        h = self.enc_out(self.enc_hidden(x))
        return h[:, :self.latent_dim], h[:, self.latent_dim:]

    def decode(self, r):
        out = self.dec(r)
        return tf.nn.softmax(out, axis=-1) if self.output_kind == "softmax" else out

    def reconstruction_loss(self, x, x_hat):
        if self.output_kind == "softmax":
            x_hat = tf.maximum(x_hat, 1e-12)
            return tf.reduce_sum(tf.math.xlogy(x, x) - x * tf.math.log(x_hat), axis=-1)
        return 0.5 * tf.reduce_sum(tf.square(x - x_hat), axis=-1)

    def kl_latent(self, mu, logvar):
        var = tf.exp(logvar)
        pm, pv = tf.constant(self.prior_mu), tf.constant(self.prior_var)
        return 0.5 * tf.reduce_sum(var / pv + tf.square(pm - mu) / pv - 1.0 - logvar + tf.math.log(pv),
                                   axis=-1)

    def call(self, x, training=False):
        mu, logvar = self.encode(x)
        z = mu
        if training:
            z = mu + tf.exp(0.5 * logvar) * keras.random.normal(tf.shape(mu), seed=self.noise)
        return self.decode(tf.nn.softmax(z, axis=-1)), mu, logvar

    def compute_batch_loss(self, batch, training):
        x = tf.cast(batch["x"], tf.float32)
        x_hat, mu, logvar = self(x, training=training)
        return tf.reduce_mean(self.reconstruction_loss(x, x_hat) + self.kl_weight * self.kl_latent(mu, logvar))

    def score(self, batch):
        """(B,) reconstruction loss at z = μ."""
        x = tf.cast(batch["x"], tf.float32)
        x_hat, _, _ = self(x, training=False)
        return self.reconstruction_loss(x, x_hat)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "latent_dim": self.latent_dim,
                "hidden": self.hidden, "alpha": self.alpha, "kl_weight": self.kl_weight,
                "output": self.output_kind, "seed": self.seed}
