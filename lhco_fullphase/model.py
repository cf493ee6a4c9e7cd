"""Jet-level and particle-level diffusion generators of the dijet system (SPEC §3).

* Jet model: the set of the 2 jets (the Preprocessor's network jet features each) conditioned on
  (t, mjj); mjj (scaled to [−1, 1]) enters through fixed Fourier features (per net:
  ``model.mjj_fourier`` overridden by ``<net>.mjj_fourier``; ``include_input`` adds mjj itself).
* Particle model: the particles of ONE jet (3 features) conditioned on (t, that jet's 5 features
  incl. N, mjj); both jets go through the same network (jet axis folded into the batch).

Both are ``shared.layers.build_set_score_net`` noise predictors trained with
``shared.diffusion.losses.dsm_loss``; sampling uses ``shared.diffusion.sampler.sample`` (DDIM by
default; jets first, then the multiplicity N of each generated jet fixes its particle mask: the
first N slots).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from lhco_fullphase.conditioning import DijetConditioning
from shared.diffusion import losses as shared_losses
from shared.diffusion.sampler import sample
from shared.diffusion.score import eps_fn_from_model
from shared.diffusion.sde import make_sde
from shared.layers import build_set_score_net, gaussian_skip_sde

PARTS = ("jet", "particle")
NET_KEYS = ("width", "num_blocks", "num_heads", "ffn_dim", "time_embed_dim", "dropout")


class DijetDiffusion(DijetConditioning, keras.Model):
    """Two score models (jets | mjj, particles | jet, mjj) with the Trainer contract.

    Batch (dict, network space from ``lhco_fullphase.preprocess.Preprocessor``): ``jets`` (B, 2, 5),
    ``particles`` (B, 2, P, 3), ``mask`` (B, 2, P), ``mjj`` (B,) scaled.

    ``n_dequant``: width of one multiplicity unit in standardised units (1 / std of N); the jet
    model then sees N + u, u ~ U(−½, ½)·width, so that a continuous density covers the integers.
    """

    def __init__(self, model_cfg, num_particles, n_dequant=0.0, n_feature=4, parts=PARTS,
                 num_jet_features=5, **kwargs):
        super().__init__(**kwargs)
        self.parts = tuple(parts)
        if not self.parts or any(p not in PARTS for p in self.parts):
            raise ValueError(f"DijetDiffusion: parts must be a non-empty subset of {PARTS}, got {parts}")
        self.model_cfg = dict(model_cfg)
        self.num_particles = int(num_particles)
        self.n_dequant = float(n_dequant)
        self.n_feature = int(n_feature)
        self.sde = make_sde(self.model_cfg.get("sde", {"name": "vpsde"}))
        self.weighting = self.model_cfg.get("weighting", "standard")
        if self.model_cfg.get("prediction", "eps") != "eps":
            raise ValueError("model.prediction: only 'eps' is implemented (shared.diffusion.losses contract)")
        # mjj conditioning per net: model.mjj_fourier, overridden by <net>.mjj_fourier; only the
        # selected parts' layers exist (attributes jet_mjj_fourier / particle_mjj_fourier).
        mjj_dim = self.init_conditioning(
            {part: {"num_frequencies": 16, "scale": 16.0, "seed": 0, "include_input": False,
                    **dict(self.model_cfg.get("mjj_fourier", {})),
                    **dict(self.model_cfg[f"{part}_net"].get("mjj_fourier") or {})}
             for part in self.parts}, num_jet_features)
        skip = gaussian_skip_sde(self.model_cfg.get("gaussian_skip", False), self.sde)
        jcfg = {k: v for k, v in self.model_cfg["jet_net"].items() if k in NET_KEYS}
        pcfg = {k: v for k, v in self.model_cfg["particle_net"].items() if k in NET_KEYS}
        jcfg["gaussian_skip"] = pcfg["gaussian_skip"] = skip  # data are standardised: s = 1
        nj = self.num_jet_features
        # Only the selected parts' nets exist: a part's checkpoint holds its own net alone, so
        # either net can change (size, training) without invalidating the other's weights.
        self.jet_net = self.particle_net = None
        if "jet" in self.parts:
            self.jet_net = build_set_score_net(nj, cond_dim=mjj_dim["jet"], num_slots=2, name="jet_net", **jcfg)
        if "particle" in self.parts:
            self.particle_net = build_set_score_net(3, cond_dim=nj + mjj_dim["particle"], name="particle_net",
                                                    **pcfg)
        dq = np.zeros(nj, np.float32)
        dq[self.n_feature] = self.n_dequant
        self._dequant = tf.constant(dq)

    def compute_batch_loss(self, batch, training=True):
        """Sum of the selected parts' masked DSM losses (jet and/or particle; padding never
        contributes)."""
        jets = tf.cast(batch["jets"], tf.float32)
        loss = 0.0
        if "jet" in self.parts:
            u = tf.random.uniform(tf.shape(jets)[:2])[..., None] - 0.5
            jets_dq = jets + u * self._dequant
            loss += shared_losses.dsm_loss(self.jet_net, jets_dq, tf.ones_like(jets[..., 0]),
                                           self.mjj_cond(batch["mjj"], "jet"),
                                           self.sde, weighting=self.weighting, training=training)
        if "particle" in self.parts:
            parts = tf.cast(batch["particles"], tf.float32)
            mask = tf.cast(batch["mask"], tf.float32)
            fp, fm, cond = self.particle_inputs(jets, parts, mask, self.mjj_cond(batch["mjj"], "particle"))
            loss += shared_losses.dsm_loss(self.particle_net, fp, fm, cond, self.sde,
                                           weighting=self.weighting, training=training)
        return loss

    def call(self, inputs, training=False):
        """eps_hat at t = 0.5 of each part's net (jet, then particle), as a tuple; builds the
        weights."""
        jets = tf.cast(inputs["jets"], tf.float32)
        t = tf.fill(tf.shape(jets)[:1], 0.5)
        out = []
        if self.jet_net is not None:
            out.append(self.jet_net([jets, t, tf.ones_like(jets[..., 0]), self.mjj_cond(inputs["mjj"], "jet")],
                                    training=training))
        if self.particle_net is not None:
            parts = tf.cast(inputs["particles"], tf.float32)
            mask = tf.cast(inputs["mask"], tf.float32)
            fp, fm, cond = self.particle_inputs(jets, parts, mask, self.mjj_cond(inputs["mjj"], "particle"))
            out.append(self.particle_net([fp, tf.repeat(t, 2), fm, cond], training=training))
        return tuple(out)

    def sample(self, mjj_scaled, n_from_jets, steps, second_order=True, seed=0, progress=False,
               solver=None):
        """Generate events at the given scaled mjj values (run with EMA weights loaded).

        ``solver``: a ``shared.diffusion.sampler.METHODS`` name; None = DDIM, with the Heun
        correction if ``second_order``.
        ``n_from_jets(jets_x) -> (B, 2) int``: multiplicity from generated (network-space) jet
        features, e.g. via ``Preprocessor.inverse``; clipped to [1, num_particles].
        Returns network-space ``jets`` (B, 2, num_jet_features), ``particles`` (B, 2, P, 3), ``mask`` (B, 2, P)."""
        if self.jet_net is None or self.particle_net is None:
            raise ValueError("DijetDiffusion.sample needs both parts (parts=('jet', 'particle'))")
        mjj_scaled = np.asarray(mjj_scaled, np.float32)
        b, p = len(mjj_scaled), self.num_particles
        jet_eps, part_eps = eps_fn_from_model(self.jet_net), eps_fn_from_model(self.particle_net)

        solver = solver or ("ddim_heun" if second_order else "ddim")
        jets = sample(jet_eps, (b, 2, self.num_jet_features), np.ones((b, 2), np.float32),
                      self.mjj_cond(mjj_scaled, "jet").numpy(), self.sde, method=solver,
                      steps=steps, seed=seed, progress=progress)
        n = np.clip(np.asarray(n_from_jets(jets)).astype(int), 1, p)
        mask = (np.arange(p)[None, None, :] < n[..., None]).astype(np.float32)
        jets_for_cond = np.array(jets, np.float32)
        _, fm, cond = self.particle_inputs(tf.constant(jets_for_cond), tf.zeros((b, 2, p, 3)),
                                            tf.constant(mask), self.mjj_cond(mjj_scaled, "particle"))
        parts = sample(part_eps, (2 * b, p, 3), fm.numpy(), cond.numpy(), self.sde, method=solver,
                       steps=steps, seed=seed + 1, progress=progress)
        return {"jets": jets, "particles": np.asarray(parts).reshape(b, 2, p, 3) * mask[..., None],
                "mask": mask.astype(bool)}
