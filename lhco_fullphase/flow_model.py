"""Flow-matching (EPiC-FM) generator of the dijet system (paper Sec. III.B, Fig. 2; SPEC §3).

The same two-part structure and interface as :class:`lhco_fullphase.model.DijetDiffusion`, so
the train / sample stages can swap it by config:

* Jet model: velocity field over the 2 jets (the Preprocessor's network jet features each)
  conditioned on (t, mjj). ``jet_net.kind: dense`` (the paper: a fully connected net over the
  2 × F features of the pT-ordered jets; ``shared.layers.build_vector_score_net`` without the
  diffusion-only output gain) or ``epic`` (an EPiC net over the set of 2 jets).
* Particle model: an EPiC net (``shared.epic.build_epic_net``) over the particles of ONE jet
  (3 features) conditioned on (t, that jet's network features incl. N, mjj); both jets go
  through the same net (jet axis folded into the batch), as in the diffusion generator.
  (The paper's particle model sees t and the jet's pT, η, φ, m only; here it also gets N and
  mjj, like our diffusion particle model.)

Both are trained with the OT flow-matching loss (``shared.diffusion.flow_matching``: x_t =
(1 − t)x + (σ + (1 − σ)t)z, σ = ``sigma_min``, target (1 − σ)z − x, masked); sampling solves
the ODE from noise (t = 1) to data (t = 0) with ``solver`` / ``steps`` (paper: midpoint, 250).
The multiplicity N is dequantised exactly as in the diffusion generator; the N of each
generated jet fixes its particle mask (the first N slots).

Model config (the dict passed as ``model_cfg``; defaults in :data:`FLOW_MODEL_DEFAULTS`, the
nets' in :data:`JET_NET_DEFAULTS` / :data:`PARTICLE_NET_DEFAULTS`; see docs/lhco_methods.md).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from lhco_fullphase.conditioning import DijetConditioning
from lhco_fullphase.schema import FLOW_MODEL_SCHEMA, PARTS
from shared.diffusion import flow_matching as fm
from shared.diffusion.score import eps_fn_from_model
from shared.epic import build_epic_net
from shared.layers import build_vector_score_net

# every key with its default (lhco_fullphase.schema.FLOW_MODEL_SCHEMA; docs/lhco_methods.md)
FLOW_MODEL_DEFAULTS = FLOW_MODEL_SCHEMA.check({}, "flow_model", None)
JET_NET_DEFAULTS = {k: v for k, v in FLOW_MODEL_DEFAULTS["jet_net"].items() if k != "mjj_fourier"}
PARTICLE_NET_DEFAULTS = {k: v for k, v in FLOW_MODEL_DEFAULTS["particle_net"].items() if k != "mjj_fourier"}


class DijetFlowMatching(DijetConditioning, keras.Model):
    """Two velocity models (jets | t, mjj; particles | t, jet, mjj) with the Trainer contract.

    Batch (dict, network space from ``lhco_fullphase.preprocess.Preprocessor``): ``jets`` (B, 2, F),
    ``particles`` (B, 2, P, 3), ``mask`` (B, 2, P), ``mjj`` (B,) scaled (the jet part needs only
    ``jets`` and ``mjj``). ``n_dequant``: width of one multiplicity unit in standardised units
    (1 / std of N) at feature index ``n_feature``; the jet model sees N + u, u ~ U(−½, ½)·width.
    ``parts``: the nets that exist (a part's checkpoint holds its own net only).
    """

    def __init__(self, model_cfg, num_particles, n_dequant=0.0, n_feature=4, parts=PARTS,
                 num_jet_features=5, **kwargs):
        super().__init__(**kwargs)
        self.parts = tuple(parts)
        if not self.parts or any(p not in PARTS for p in self.parts):
            raise ValueError(f"DijetFlowMatching: parts must be a non-empty subset of {PARTS}, got {parts}")
        # validated, defaults filled (a ConfigError naming the key otherwise)
        self.model_cfg = FLOW_MODEL_SCHEMA.check(dict(model_cfg or {}), "flow_model", None)
        self.num_particles = int(num_particles)
        self.n_dequant = float(n_dequant)
        self.n_feature = int(n_feature)
        nj = int(num_jet_features)
        self.sigma_min = float(self.model_cfg["sigma_min"])
        if not self.sigma_min < 1.0:
            raise ValueError(f"flow_model.sigma_min must be in [0, 1), got {self.sigma_min}")
        self.solver = self.model_cfg["solver"]
        self.steps = int(self.model_cfg["steps"])
        mjj_dim = self.init_conditioning(
            {part: {**self.model_cfg["mjj_fourier"], **self.model_cfg[f"{part}_net"]["mjj_fourier"]}
             for part in self.parts}, nj)

        self.jet_net = self.particle_net = None
        if "jet" in self.parts:
            jc = self.model_cfg["jet_net"]
            self.jet_kind = jc["kind"]
            if self.jet_kind == "dense":
                self.jet_net = build_vector_score_net(
                    2 * nj, cond_dim=mjj_dim["jet"], width=int(jc["width"]), num_blocks=int(jc["num_blocks"]),
                    time_embed_dim=int(jc["time_embed_dim"]), dropout=float(jc["dropout"]),
                    time_scale=float(jc["time_scale"]), log_time=False, output_gain=False,
                    name="jet_net")
            else:
                self.jet_net = build_epic_net(
                    nj, cond_dim=mjj_dim["jet"], local_dim=int(jc["local_dim"]),
                    global_dim=int(jc["global_dim"]), num_layers=int(jc["num_layers"]),
                    time_embed_dim=int(jc["time_embed_dim"]), time_scale=float(jc["time_scale"]),
                    num_slots=2, name="jet_net")
        if "particle" in self.parts:
            pc = self.model_cfg["particle_net"]
            self.particle_net = build_epic_net(
                3, cond_dim=nj + mjj_dim["particle"], local_dim=int(pc["local_dim"]),
                global_dim=int(pc["global_dim"]), num_layers=int(pc["num_layers"]),
                hidden_dim=pc["hidden_dim"], time_embed_dim=int(pc["time_embed_dim"]),
                time_scale=float(pc["time_scale"]), sum_scale=float(pc["sum_scale"]),
                name="particle_net")
        dq = np.zeros(nj, np.float32)
        dq[self.n_feature] = self.n_dequant
        self._dequant = tf.constant(dq)

    # -- layout -------------------------------------------------------------------------------
    def _jet_layout(self, jets):
        """(B, 2, F) -> the jet net's x and mask: flat (B, 2F) and None (dense) or the set."""
        if self.jet_kind == "dense":
            return tf.reshape(jets, (-1, 2 * self.num_jet_features)), None
        return jets, tf.ones_like(jets[..., 0])

    # -- Trainer contract ---------------------------------------------------------------------
    def compute_batch_loss(self, batch, training=True):
        """Sum of the selected parts' masked flow-matching losses."""
        jets = tf.cast(batch["jets"], tf.float32)
        loss = 0.0
        if "jet" in self.parts:
            u = tf.random.uniform(tf.shape(jets)[:2])[..., None] - 0.5
            x, m = self._jet_layout(jets + u * self._dequant)
            loss += fm.flow_matching_loss(self.jet_net, x, m, self.mjj_cond(batch["mjj"], "jet"),
                                          self.sigma_min, training=training)
        if "particle" in self.parts:
            fp, fmask, cond = self.particle_inputs(
                jets, tf.cast(batch["particles"], tf.float32), tf.cast(batch["mask"], tf.float32),
                self.mjj_cond(batch["mjj"], "particle"))
            loss += fm.flow_matching_loss(self.particle_net, fp, fmask, cond, self.sigma_min,
                                          training=training)
        return loss

    def call(self, inputs, training=False):
        """Velocities at t = 0.5 of each part's net (jet as (B, 2, F), then particle (2B, P, 3));
        builds the weights."""
        jets = tf.cast(inputs["jets"], tf.float32)
        t = tf.fill(tf.shape(jets)[:1], 0.5)
        out = []
        if self.jet_net is not None:
            x, m = self._jet_layout(jets)
            v = eps_fn_from_model(self.jet_net, training)(x, t, m, self.mjj_cond(inputs["mjj"], "jet"))
            out.append(tf.reshape(v, tf.shape(jets)))
        if self.particle_net is not None:
            fp, fmask, cond = self.particle_inputs(
                jets, tf.cast(inputs["particles"], tf.float32), tf.cast(inputs["mask"], tf.float32),
                self.mjj_cond(inputs["mjj"], "particle"))
            out.append(self.particle_net([fp, tf.repeat(t, 2), fmask, cond], training=training))
        return tuple(out)

    # -- generation ---------------------------------------------------------------------------
    def sample(self, mjj_scaled, n_from_jets, steps=None, second_order=None, seed=0, progress=False,
               solver=None):
        """Generate events at the given scaled mjj values (run with EMA weights loaded).

        ``steps``: ODE steps (None: config ``steps``); ``solver``: None = config ``solver``,
        except that ``second_order=False`` (the diffusion sampler's switch) selects "euler".
        ``n_from_jets(jets_x) -> (B, 2) int``: multiplicity from generated network-space jet
        features; clipped to [1, num_particles]. Returns network-space ``jets`` (B, 2, F),
        ``particles`` (B, 2, P, 3), ``mask`` (B, 2, P) bool — as ``DijetDiffusion.sample``."""
        if self.jet_net is None or self.particle_net is None:
            raise ValueError("DijetFlowMatching.sample needs both parts (parts=('jet', 'particle'))")
        solver = solver or ("euler" if second_order is False else self.solver)
        steps = self.steps if steps is None else int(steps)
        mjj_scaled = np.asarray(mjj_scaled, np.float32)
        b, p, nj = len(mjj_scaled), self.num_particles, self.num_jet_features
        jet_shape = (b, 2 * nj) if self.jet_kind == "dense" else (b, 2, nj)
        jet_mask = None if self.jet_kind == "dense" else np.ones((b, 2), np.float32)
        jets = fm.ode_sample(eps_fn_from_model(self.jet_net), jet_shape, jet_mask,
                             self.mjj_cond(mjj_scaled, "jet").numpy(), steps, solver, seed=seed,
                             progress=progress).reshape(b, 2, nj)
        n = np.clip(np.asarray(n_from_jets(jets)).astype(int), 1, p)
        mask = (np.arange(p)[None, None, :] < n[..., None]).astype(np.float32)
        _, fmask, cond = self.particle_inputs(tf.constant(jets), tf.zeros((b, 2, p, 3)), tf.constant(mask),
                                               self.mjj_cond(mjj_scaled, "particle"))
        parts = fm.ode_sample(eps_fn_from_model(self.particle_net), (2 * b, p, 3), fmask.numpy(),
                              cond.numpy(), steps, solver, seed=seed + 1, progress=progress)
        return {"jets": jets, "particles": parts.reshape(b, 2, p, 3) * mask[..., None],
                "mask": mask.astype(bool)}


def build_flow_generator(model_cfg, num_particles, pre, parts=PARTS):
    """:class:`DijetFlowMatching` for a fitted ``Preprocessor`` ``pre`` (multiplicity
    dequantised by 1/std(N)), with the fixed mjj Fourier frequencies built."""
    return DijetFlowMatching.from_preprocessor(model_cfg, num_particles, pre, parts)


__all__ = ["DijetFlowMatching", "build_flow_generator", "FLOW_MODEL_DEFAULTS", "JET_NET_DEFAULTS",
           "PARTICLE_NET_DEFAULTS"]
