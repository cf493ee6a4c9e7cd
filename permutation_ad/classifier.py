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
from shared.config import atomic_savez


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


def train_classifier(cfg, out, data_dir, ctx=None):
    """Train on the QCD/top training samples (val for early stopping); write
    ``OUT/classifier/predictions.npz`` (prob_qcd, prob_top on the test jets). Skips if present."""
    import os

    from permutation_ad import data as pdata
    from shared.checkpoint import find_checkpoint, load_checkpoint
    from shared.distributed import get_context
    from shared.seeding import set_seeds
    from shared.training import TRAINER_DEFAULTS, Trainer

    workdir = os.path.join(out, "classifier")
    pred_path = os.path.join(workdir, "predictions.npz")
    if os.path.exists(pred_path):
        return pred_path
    ctx = ctx or get_context()
    ccfg = dict(cfg["classifier"])
    set_seeds(int(cfg.get("seed", 0)) + 4242)

    def both(split):
        q, t = pdata.load_split(data_dir, "qcd", split), pdata.load_split(data_dir, "top", split)
        return {k: np.concatenate([q[k], t[k]]) for k in q}

    train, val = both("train"), both("val")
    names = list(cfg["data"].get("jet_features", ["eta", "mass", "n"]))
    std = pdata.Standardizer.fit(train["constituents"], train["mask"], train["jets"])

    def prep(d):
        c, j = std.transform(d["constituents"], d["mask"], d["jets"])
        return {"constituents": c, "mask": d["mask"].astype(np.float32), "jets": j,
                "label": d["label"].astype(np.float32)}

    model = SetClassifier(train["constituents"].shape[-1], len(names), ccfg)
    P = train["constituents"].shape[1]
    model([np.zeros((1, P, 3), np.float32), np.ones((1, P), np.float32), np.zeros((1, len(names)), np.float32)])
    tcfg = {k: v for k, v in ccfg.items() if k in TRAINER_DEFAULTS}
    tcfg.setdefault("seed", int(cfg.get("seed", 0)))
    trainer = Trainer(model, tcfg, workdir, ctx=ctx, extra_state={"standardizer": std.to_dict()})
    trainer.fit(prep(train), prep(val))
    ckpt = os.path.join(workdir, "checkpoints", "best")
    if find_checkpoint(ckpt) is None:
        ckpt = os.path.join(workdir, "checkpoints", "last")
    load_checkpoint(ckpt, model, use_ema=find_checkpoint(ckpt) is not None
                    and os.path.exists(os.path.join(find_checkpoint(ckpt), "ema.npz")))
    probs = {}
    for s in ("qcd", "top"):
        d = prep(pdata.load_split(data_dir, s, "test"))
        probs[f"prob_{s}"] = model.predict_proba(d["constituents"], d["mask"], d["jets"])
    if ctx.is_root:
        std.save_json(os.path.join(workdir, "standardizer.json"))
        atomic_savez(pred_path, num_weights=np.asarray(model.net.count_params()), **probs)
    return pred_path
