"""Dijet + particle transformer classifier for weak supervision (SPEC §3, paper Fig. 3).

Particles of each jet go through ONE transformer shared by both jets (attention only within the
jet, padding masked); the two jets' features go through their own transformer; the token sets are
concatenated to N1 + N2 + 2 tokens; Dense → Dropout → LeakyReLU → masked average pool →
Dense → Dropout → LeakyReLU → Dense(1, sigmoid). The output is invariant to swapping the jets,
to permuting the particles of a jet, and to extra padded slots.

Batch layout (dict): ``jets`` (B, 2, 5), ``particles`` (B, 2, P, 3), ``mask`` (B, 2, P) with
1 = real particle, optional ``cond`` (B, C) (e.g. scaled mjj for side-band studies), ``label``
(B,) and optional ``weight`` (B,) for :meth:`compute_batch_loss`.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from shared.layers import MaskedMeanPool, SetAttentionBlock, TileCondition

_LEAKY_SLOPE = 0.01


def _leaky(x):
    return ops.leaky_relu(x, negative_slope=_LEAKY_SLOPE)


@keras.saving.register_keras_serializable(package="lhco_fullphase")
class DijetClassifier(keras.Model):
    """Weakly supervised data-vs-background classifier over the two jets and their particles."""

    def __init__(self, num_particle_features=3, num_jet_features=5, cond_dim=0, width=64,
                 particle_blocks=4, jet_blocks=4, num_heads=2, ffn_dim=256, merge_width=128,
                 head_width=64, dropout=0.1, attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_particle_features = int(num_particle_features)
        self.num_jet_features = int(num_jet_features)
        self.cond_dim = int(cond_dim)
        self.width = int(width)
        self.particle_blocks = int(particle_blocks)
        self.jet_blocks = int(jet_blocks)
        self.num_heads = int(num_heads)
        self.ffn_dim = int(ffn_dim)
        self.merge_width = int(merge_width)
        self.head_width = int(head_width)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)

        w = self.width
        self.p_embed = layers.Dense(w, name="particle_embed")
        self.p_cond = layers.Dense(w, name="particle_cond") if self.cond_dim else None
        self.p_mix = layers.Dense(w, name="particle_mix")
        self.p_patch = layers.Dense(w, name="particle_patch")
        self.p_blocks = [SetAttentionBlock(w, self.num_heads, self.ffn_dim, self.attention_dropout,
                                           name=f"particle_block{i}") for i in range(self.particle_blocks)]
        self.p_norm = layers.LayerNormalization(epsilon=1e-6, name="particle_norm")
        self.j_embed = layers.Dense(w, name="jet_embed")
        self.j_cond = layers.Dense(w, name="jet_cond") if self.cond_dim else None
        self.j_mix = layers.Dense(w, name="jet_mix")
        self.j_patch = layers.Dense(w, name="jet_patch")
        self.j_blocks = [SetAttentionBlock(w, self.num_heads, self.ffn_dim, self.attention_dropout,
                                           name=f"jet_block{i}") for i in range(self.jet_blocks)]
        self.j_norm = layers.LayerNormalization(epsilon=1e-6, name="jet_norm")
        self.tile = TileCondition(name="tile_cond")
        self.merge = layers.Dense(self.merge_width, name="merge")
        self.merge_drop = layers.Dropout(self.dropout, name="merge_dropout")
        self.pool = MaskedMeanPool(name="token_pool")
        self.head = layers.Dense(self.head_width, name="head")
        self.head_drop = layers.Dropout(self.dropout, name="head_dropout")
        self.out = layers.Dense(1, activation="sigmoid", name="out")

    def build(self, input_shape=None):
        # Sub-layers are created by tracing one call on zeros of the given number of slots.
        p = None
        if isinstance(input_shape, dict) and input_shape.get("particles") is not None:
            p = input_shape["particles"][2]
        dummy = self._dummy(int(p) if p else 1)
        self.call({k: ops.convert_to_tensor(v) for k, v in dummy.items()}, training=False)
        self.built = True

    def _dummy(self, num_particles):
        d = {"jets": np.zeros((1, 2, self.num_jet_features), np.float32),
             "particles": np.zeros((1, 2, num_particles, self.num_particle_features), np.float32),
             "mask": np.ones((1, 2, num_particles), np.float32)}
        if self.cond_dim:
            d["cond"] = np.zeros((1, self.cond_dim), np.float32)
        return d

    def _encode(self, x, cond, embed, cond_layer, mix, patch, blocks, norm, mask, training):
        h = _leaky(embed(x))
        if cond_layer is not None:
            h = ops.concatenate([h, self.tile(_leaky(cond_layer(cond)), h)], axis=-1)
        h = patch(_leaky(mix(h)))
        for block in blocks:
            h = block(h, mask, training=training)
        return norm(h)

    def call(self, inputs, training=False):
        jets = ops.cast(inputs["jets"], "float32")
        parts = ops.cast(inputs["particles"], "float32")
        mask = ops.cast(inputs["mask"], "float32")
        cond = ops.cast(inputs["cond"], "float32") if self.cond_dim else None
        b, p = ops.shape(parts)[0], ops.shape(parts)[2]
        # Both jets through the same particle transformer: fold the jet axis into the batch.
        flat_parts = ops.reshape(parts, (b * 2, p, self.num_particle_features))
        flat_mask = ops.reshape(mask, (b * 2, p))
        flat_cond = None if cond is None else ops.reshape(
            ops.repeat(ops.expand_dims(cond, 1), 2, axis=1), (b * 2, self.cond_dim))
        hp = self._encode(flat_parts, flat_cond, self.p_embed, self.p_cond, self.p_mix,
                          self.p_patch, self.p_blocks, self.p_norm, flat_mask, training)
        hp = ops.reshape(hp, (b, 2 * p, self.width))
        jet_mask = ops.ones((b, 2), "float32")
        hj = self._encode(jets, cond, self.j_embed, self.j_cond, self.j_mix, self.j_patch,
                          self.j_blocks, self.j_norm, jet_mask, training)
        tokens = ops.concatenate([hp, hj], axis=1)
        token_mask = ops.concatenate([ops.reshape(mask, (b, 2 * p)), jet_mask], axis=1)
        h = _leaky(self.merge_drop(self.merge(tokens), training=training))
        h = self.pool(h, token_mask)
        h = _leaky(self.head_drop(self.head(h), training=training))
        return self.out(h)

    def compute_batch_loss(self, batch, training=True):
        """Binary cross-entropy on ``batch['label']``, weighted by ``batch['weight']`` if given."""
        prob = self(batch, training=training)[:, 0]
        label = tf.cast(batch["label"], prob.dtype)
        bce = keras.losses.binary_crossentropy(label[:, None], prob[:, None])
        if "weight" in batch:
            w = tf.cast(batch["weight"], bce.dtype)
            return tf.reduce_sum(w * bce) / tf.maximum(tf.reduce_sum(w), 1e-12)
        return tf.reduce_mean(bce)

    def predict_proba(self, arrays, batch_size=512):
        """(N,) probability of the 'data' class (label 1), float64; dropout off."""
        n = len(arrays["jets"])
        keys = ["jets", "particles", "mask"] + (["cond"] if self.cond_dim else [])
        out = []
        for i in range(0, n, batch_size):
            batch = {k: tf.constant(np.asarray(arrays[k][i:i + batch_size], np.float32)) for k in keys}
            out.append(self(batch, training=False).numpy()[:, 0])
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def build_for(self, num_particles):
        """Create the weights by calling the model once on zeros with P = ``num_particles``."""
        self(self._dummy(int(num_particles)))
        return self

    def get_config(self):
        return {**super().get_config(),
                "num_particle_features": self.num_particle_features,
                "num_jet_features": self.num_jet_features, "cond_dim": self.cond_dim,
                "width": self.width, "particle_blocks": self.particle_blocks,
                "jet_blocks": self.jet_blocks, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "merge_width": self.merge_width,
                "head_width": self.head_width, "dropout": self.dropout,
                "attention_dropout": self.attention_dropout}


CONFIG_KEYS = ("cond_dim", "width", "particle_blocks", "jet_blocks", "num_heads", "ffn_dim",
               "merge_width", "head_width", "dropout", "attention_dropout")


def build_classifier(cfg, num_particles=None):
    """DijetClassifier from the ``classifier`` config section (extra keys, e.g. epochs, ignored)."""
    kwargs = {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
    model = DijetClassifier(**kwargs, name="dijet_classifier")
    if num_particles is not None:
        model.build_for(int(num_particles))
    return model
