"""Supervised top-vs-QCD classifier with the same set backbone as the particle score net.

Backbone (DeepSets + transformer blocks, conditioned on the jet features) → masked mean pooling
after the last transformer block → Dense(128, LeakyReLU) → Dense(1, sigmoid)
(shared.layers.build_set_classifier). Permutation invariant. It is the reference the density
ratio log p_top − log p_QCD is compared to (paper Fig. 5).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from shared import layers as shared_layers


class SetClassifier(keras.Model):
    """Binary cross-entropy on ``batch['label']``; Trainer contract ``compute_batch_loss``."""

    def __init__(self, num_particle_features, num_jet_features, cfg, **kw):
        super().__init__(**kw)
        self.net = shared_layers.build_set_classifier(
            num_features=num_particle_features, cond_dim=num_jet_features, width=cfg["width"],
            num_blocks=cfg["num_blocks"], num_heads=cfg["num_heads"], ffn_dim=cfg["ffn_dim"],
            head_width=cfg.get("dense", 128), name="top_qcd_classifier")

    def call(self, inputs, training=False):
        cons, mask, jets = inputs
        return self.net([cons, mask, jets], training=training)

    def compute_batch_loss(self, batch, training=True):
        prob = self([batch["constituents"], tf.cast(batch["mask"], tf.float32), batch["jets"]],
                    training=training)[:, 0]
        label = tf.cast(batch["label"], prob.dtype)
        return tf.reduce_mean(keras.losses.binary_crossentropy(label[:, None], prob[:, None]))

    def predict_proba(self, constituents, mask, jets, batch_size=512):
        """(N,) probability of 'top' (float64)."""
        out = []
        for i in range(0, len(jets), batch_size):
            sl = slice(i, i + batch_size)
            out.append(self([tf.constant(constituents[sl], tf.float32),
                             tf.constant(np.asarray(mask[sl], np.float32)),
                             tf.constant(jets[sl], tf.float32)], training=False).numpy()[:, 0])
        return np.concatenate(out).astype(np.float64)
