"""Joint diffusion density of a jet: p(jet) = p(jet features) · p(particles | jet features).

Two noise-prediction networks trained together (paper §IV): a permutation-equivariant set net
(DeepSets + transformer blocks) over the particles, conditioned on t and the jet features, and a
residual MLP over the jet features, conditioned on t. Log-likelihoods come from the
probability-flow ODE (shared.diffusion.likelihood) and are returned per part, in standardised and in
physical units (standardisation Jacobian added).
"""
from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from shared import layers as shared_layers
from shared.diffusion import likelihood as shared_likelihood
from shared.diffusion import losses as shared_losses
from shared.diffusion import sde as shared_sde


def _as_one_element_set(vector_net, num_features):
    """Wrap a vector score net (x (B,F), t) as a set net over one element ([x (B,1,F), t, mask])
    so the jet features share the set code paths (loss, likelihood, prior) with the particles."""
    x = keras.Input((1, num_features), name="x")
    t = keras.Input((), name="t")
    mask = keras.Input((1,), name="mask")
    out = vector_net([keras.ops.reshape(x, (-1, num_features)), t])
    out = keras.ops.expand_dims(out, 1) * keras.ops.expand_dims(mask, -1)
    return keras.Model([x, t, mask], out, name="jet_score_set_net")


class JetDensityModel(keras.Model):
    """Particle + jet score nets; ``compute_batch_loss`` is the Trainer contract."""

    def __init__(self, num_particle_features, num_jet_features, num_particles, cfg,
                 n_column=None, n_bin_width=0.0, **kw):
        super().__init__(**kw)
        self.cfg = cfg
        self.num_particles = int(num_particles)
        self.num_jet_features = int(num_jet_features)
        self.sde = shared_sde.make_sde(dict(cfg.get("sde") or {"name": "vpsde"}))
        self.weighting = cfg.get("weighting", "standard")
        if self.weighting not in ("standard", "likelihood"):
            raise ValueError(f"config field 'model.weighting': {self.weighting!r} (standard|likelihood)")
        p, j = cfg["particle_net"], cfg["jet_net"]
        # standardised inputs: the skip is the exact ε of N(0, 1) data under this schedule
        skip = shared_layers.gaussian_skip_sde(cfg.get("gaussian_skip", False), self.sde)
        self.particle_net = shared_layers.build_set_score_net(
            num_features=num_particle_features, cond_dim=num_jet_features, width=p["width"],
            num_blocks=p["num_blocks"], num_heads=p["num_heads"], ffn_dim=p["ffn_dim"],
            gaussian_skip=skip, name="particle_score_net")
        self.jet_net = _as_one_element_set(shared_layers.build_vector_score_net(
            num_features=num_jet_features, cond_dim=0, width=j["width"], num_blocks=j["num_blocks"],
            gaussian_skip=skip, name="jet_score_net"), num_jet_features)
        # dequantisation of the multiplicity column, in standardised units (see features.py)
        dq = np.zeros((num_jet_features,), np.float32)
        if n_column is not None:
            dq[n_column] = n_bin_width
        self._dequant = tf.constant(dq)

    def compute_batch_loss(self, batch, training=True):
        """Jet DSM loss + particle DSM loss (weighting from config)."""
        cons = tf.convert_to_tensor(batch["constituents"], tf.float32)
        mask = tf.cast(batch["mask"], tf.float32)
        jets = tf.convert_to_tensor(batch["jets"], tf.float32)
        u = tf.random.uniform(tf.shape(jets)[:1])[:, None] - 0.5
        jets_dq = (jets + u * self._dequant)[:, None, :]
        jet_loss = shared_losses.dsm_loss(self.jet_net, jets_dq, tf.ones_like(jets_dq[..., 0]), None,
                                          self.sde, weighting=self.weighting, training=training)
        part_loss = shared_losses.dsm_loss(self.particle_net, cons, mask, jets, self.sde,
                                           weighting=self.weighting, training=training)
        return jet_loss + part_loss

    def call(self, inputs, training=False):
        cons, mask, jets = inputs
        t = tf.fill(tf.shape(jets)[:1], 0.5)
        return (self.particle_net([cons, t, mask, jets], training=training),
                self.jet_net([jets[:, None, :], t, tf.ones_like(jets[:, :1])], training=training))

    # ------------------------------------------------------------------ likelihood
    def eps_fns(self):
        """(particle_eps_fn, jet_eps_fn) with the ``eps_fn(x_t, t, mask, cond)`` contract."""
        pnet, jnet = self.particle_net, self.jet_net

        @tf.function(reduce_retracing=True)
        def particle_eps(x, t, mask, cond):
            return pnet([x, t, mask, cond], training=False)

        @tf.function(reduce_retracing=True)
        def jet_eps(x, t, mask, cond):
            return jnet([x, t, mask], training=False)

        return particle_eps, jet_eps

    def log_likelihood(self, constituents, mask, jets, preprocessor=None, options=None, seed=None):
        """Per-jet log-likelihood parts (run with EMA weights loaded).

        ``options``: :class:`shared.diffusion.likelihood.LikelihoodOptions` (default settings
        if None). Returns dict(logp_jet, logp_particles, logp (sum), n (real particles),
        nfe_jet, nfe_particles, seconds); all log densities in physical units when
        ``preprocessor`` is given (its log|Jacobian| added), else in standardised units.
        """
        options = options or shared_likelihood.LikelihoodOptions()
        part_eps, jet_eps = self.eps_fns()
        start = time.time()
        mask = np.asarray(mask, np.float32)
        jx, jmask = jets[:, None, :].astype(np.float32), np.ones((len(jets), 1), np.float32)
        rj = shared_likelihood.log_likelihood(jet_eps, jx, jmask, None, self.sde, seed=seed, options=options)
        rp = shared_likelihood.log_likelihood(part_eps, np.asarray(constituents, np.float32), mask,
                                              np.asarray(jets, np.float32), self.sde,
                                              seed=None if seed is None else seed + 1, options=options)
        lj, lp = np.asarray(rj.logp, np.float64), np.asarray(rp.logp, np.float64)
        if preprocessor is not None:
            lj = lj + preprocessor.log_jacobian_jets()
            lp = lp + preprocessor.log_jacobian_particles(mask)
        return {"logp_jet": lj, "logp_particles": lp, "logp": lj + lp, "n": mask.sum(1),
                "nfe_jet": int(rj.nfe), "nfe_particles": int(rp.nfe), "seconds": time.time() - start}


def anomaly_scores(ll):
    """Scores from a ``log_likelihood`` dict; higher = more anomalous.

    ``nll_per_particle`` (paper, default): −log p(jet) / N.
    ``nll_code_variant`` (authors' code): −log p(jet feats) − log p(particles | jet) / N.
    ``nll``: raw −log p(jet) (paper appendix A).
    """
    n = np.maximum(ll["n"], 1.0)
    return {"nll_per_particle": -ll["logp"] / n,
            "nll_code_variant": -ll["logp_jet"] - ll["logp_particles"] / n,
            "nll": -ll["logp"]}
