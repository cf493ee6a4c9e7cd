"""Low-dimensional CATHODE (Hallin et al. 2021, arXiv:2109.00546): the baseline of paper Fig. 7.

Features per event (:func:`lowdim_features`): (m_J1, Δm_J = m_J2 − m_J1, τ21^J1, τ21^J2) of the
two leading jets, J1 the lighter (CATHODE's order; ``features.jet_order: pt`` uses the leading
one), masses in GeV, τ21 = τ2/τ1 (β = 1, exclusive-kT axes, ``shared.data.jets.tau21``) of the
*stored* constituents (the leading ``data.num_particles``; the paper config stores all).

1. A conditional masked autoregressive flow (:class:`ConditionalMAF`, TFP bijectors, MADE
   blocks as Keras 3 layers) learns p(features | mjj) on the side-band training events
   (validation: ``sb_val``), trained by ``shared.training.Trainer`` (EMA, early stopping,
   checkpoints, Horovod). Features enter as logit((x − lo)/(hi − lo)) of a min-max box around
   the training range, standardised (:class:`LogitScaler`, as CATHODE); mjj as the scaled mjj
   of ``Preprocessor.scale_mjj``.
2. Background in the SR is sampled at mjj drawn from the same KDE as the full-phase-space
   generators (``Prepared.kde``) — :func:`sample_flow`.
3. The weak-supervision protocol of ``lhco_fullphase.classify`` on these 4 features
   (:func:`train_and_score_lowdim`): label 0 = sampled (``lowdim``) or true independent SR
   background (``lowdim_idealized``), label 1 = data; balanced class weights, stratified
   train/validation split, early stopping on the validation loss, scores of the independent
   evaluation set. Classifier: ``hgb`` (scikit-learn HistGradientBoosting, as in "Back to the
   roots", arXiv:2309.13111) or ``mlp`` (CATHODE's 3 × 64 ReLU net, Keras + Trainer).

The pipeline runs them as its stages do the full-phase-space methods (``lowdim.enabled``): the
features of every event are cached by the prepare stage (``prepare.make_lowdim_features``), the
MAF is trained by the train stage (``OUT/models/lowdim/flow``), sampled by the sample stage
(``OUT/generated/lowdim/sr.npz``), and every (method, injection, init) of ``lowdim`` and
``lowdim_idealized`` is a classify unit (``OUT/classify/<method>/inj<n>/init<i>/scores.npz``,
the keys of the diffusion scan). Config: the ``lowdim`` section (:data:`LOWDIM_DEFAULTS`,
``schema.LOWDIM_SCHEMA``, docs/lhco_methods.md).
"""
from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from lhco_fullphase.schema import LOWDIM_JET_ORDERS, LOWDIM_SCHEMA
from shared.data import jets as jetlib

FEATURE_NAMES = ("m_j1", "delta_m_j", "tau21_j1", "tau21_j2")
JET_ORDERS = LOWDIM_JET_ORDERS
# every key with its default (lhco_fullphase.schema.LOWDIM_SCHEMA; docs/lhco_methods.md)
LOWDIM_DEFAULTS = LOWDIM_SCHEMA.check({}, "lowdim", None)


def lowdim_config(cfg):
    """The ``lowdim`` section validated against ``schema.LOWDIM_SCHEMA``, defaults filled in (an
    unknown key or a bad value is a ConfigError naming ``lowdim.<key>``). ``cfg`` may be the full
    config (with a ``lowdim`` key) or the section itself."""
    source = getattr(cfg, "source", None)
    cfg = dict(cfg or {})
    if "lowdim" in cfg:
        section = cfg["lowdim"]
    else:   # the section itself, or a full config without one (all defaults)
        section = cfg if set(cfg) <= set(LOWDIM_SCHEMA.fields) else {}
    return LOWDIM_SCHEMA.check(dict(section or {}), "lowdim", source)


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------

def constituent_p4(jets, particles, mask):
    """Massless four-momenta (E, px, py, pz) of the stored constituents from the physical
    arrays: pT = pT_rel·pT_jet, η = η_jet + Δη, φ = φ_jet + Δφ. (N, 2, P, 4), 0 at padding."""
    jets, particles = np.asarray(jets, np.float64), np.asarray(particles, np.float64)
    m = np.asarray(mask, bool)
    pt = particles[..., 0] * jets[..., None, 0]
    eta = particles[..., 1] + jets[..., None, 1]
    phi = particles[..., 2] + jets[..., None, 2]
    return jetlib.p4_from_ptetaphim(pt, eta, phi, np.zeros_like(pt)) * m[..., None]


def lowdim_features(arrays, jet_order="mass", beta=1.0, R0=1.0):
    """(N, 4) float64 (m_J1, m_J2 − m_J1, τ21^J1, τ21^J2) from physical arrays (``jets`` (N,2,5),
    ``particles`` (N,2,P,3), ``mask`` (N,2,P)); J1 = the lighter jet (``jet_order="mass"``) or
    the leading-pT one (``"pt"``). τ21 = 0 for a jet with fewer than 2 stored constituents."""
    if jet_order not in JET_ORDERS:
        raise ValueError(f"lowdim_features: jet_order must be one of {JET_ORDERS}, got {jet_order!r}")
    for key in ("jets", "particles", "mask"):
        if key not in arrays:
            raise KeyError(f"lowdim_features: arrays lack {key!r}")
    jets, mask = np.asarray(arrays["jets"], np.float64), np.asarray(arrays["mask"], bool)
    n, _, p = mask.shape
    if n == 0:
        return np.zeros((0, 4))
    p4 = constituent_p4(jets, arrays["particles"], mask)
    tau = jetlib.tau21(p4.reshape(n * 2, p, 4), mask.reshape(n * 2, p), R0=R0, beta=beta).reshape(n, 2)
    mass = jets[..., 3]
    key = mass if jet_order == "mass" else -jets[..., 0]
    o = np.argsort(key, axis=1, kind="stable")
    mass, tau = np.take_along_axis(mass, o, 1), np.take_along_axis(tau, o, 1)
    return np.stack([mass[:, 0], mass[:, 1] - mass[:, 0], tau[:, 0], tau[:, 1]], -1)


class LogitScaler:
    """x -> standardised logit((x − lo)/(hi − lo)); the box [lo, hi] is the fitted range widened
    by ``margin`` × range per side. Inverse maps any real y back inside the box."""

    def __init__(self, margin=0.02, lo=None, hi=None, mean=None, std=None):
        self.margin = float(margin)
        self.lo, self.hi, self.mean, self.std = (None if v is None else np.asarray(v, np.float64)
                                                 for v in (lo, hi, mean, std))

    def fit(self, x):
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"LogitScaler.fit: need (N >= 2, D) features, got shape {x.shape}")
        span = np.maximum(x.max(0) - x.min(0), 1e-9)
        self.lo, self.hi = x.min(0) - self.margin * span, x.max(0) + self.margin * span
        self.mean, self.std = np.zeros(x.shape[1]), np.ones(x.shape[1])
        y = self.transform(x)
        self.mean, self.std = y.mean(0), np.maximum(y.std(0), 1e-9)
        return self

    def transform(self, x):
        u = np.clip((np.asarray(x, np.float64) - self.lo) / (self.hi - self.lo), 1e-7, 1 - 1e-7)
        return (np.log(u) - np.log1p(-u) - self.mean) / self.std

    def inverse(self, y):
        u = 1.0 / (1.0 + np.exp(-(np.asarray(y, np.float64) * self.std + self.mean)))
        return self.lo + u * (self.hi - self.lo)

    def log_det_jacobian(self, x):
        """Σ_d log |dy_d/dx_d| (N,): converts a density in y to one in x."""
        u = np.clip((np.asarray(x, np.float64) - self.lo) / (self.hi - self.lo), 1e-300, None)
        return np.sum(-np.log(self.std) - np.log(u) - np.log1p(-np.minimum(u, 1 - 1e-16))
                      - np.log(self.hi - self.lo), axis=-1)

    def to_dict(self):
        return {"margin": self.margin, **{k: getattr(self, k).tolist() for k in ("lo", "hi", "mean", "std")}}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Conditional MAF (TFP bijectors, Keras 3 MADE)
# ---------------------------------------------------------------------------------------------

def made_degrees(num_features, hidden_units):
    """MADE degrees: inputs 1..D, hidden cycling over 1..D−1 (0 for D = 1), outputs 1..D."""
    d = int(num_features)
    deg = [np.arange(1, d + 1)]
    for h in hidden_units:
        deg.append(np.arange(int(h)) % max(d - 1, 1) + min(1, d - 1))
    return deg


@keras.saving.register_keras_serializable(package="lhco_fullphase")
class ConditionalMADE(layers.Layer):
    """Autoregressive (shift, log_scale) of x (B, D) given cond (B, C): output d depends on
    x_<d only (masked Dense layers) and on all of cond. log_scale is soft-clamped to
    ±``max_log_scale``."""

    def __init__(self, num_features, hidden_units=(128,), max_log_scale=3.0, **kwargs):
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        self.hidden_units = tuple(int(h) for h in hidden_units)
        self.max_log_scale = float(max_log_scale)
        deg = made_degrees(self.num_features, self.hidden_units)
        self._masks = [(deg[i][:, None] <= deg[i + 1][None, :]).astype("float32")
                       for i in range(len(self.hidden_units))]
        out_mask = (deg[-1][:, None] < deg[0][None, :]).astype("float32")
        self._masks.append(np.concatenate([out_mask, out_mask], axis=1))
        self.hidden = [layers.Dense(h, name=f"hidden{i}") for i, h in enumerate(self.hidden_units)]
        self.cond_proj = layers.Dense(self.hidden_units[0] if self.hidden_units else 2 * self.num_features,
                                      use_bias=False, name="cond")
        self.out = layers.Dense(2 * self.num_features, name="out",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))

    def build(self, x_shape, cond_shape=None):
        width = self.num_features
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.out.build((None, width))
        if cond_shape is not None:
            self.cond_proj.build(cond_shape)

    def call(self, x, cond=None):
        h = x
        for i, layer in enumerate(self.hidden):
            h = ops.matmul(h, layer.kernel * self._masks[i]) + layer.bias
            if i == 0 and cond is not None:
                h = h + self.cond_proj(cond)
            h = ops.relu(h)
        y = ops.matmul(h, self.out.kernel * self._masks[-1]) + self.out.bias
        if not self.hidden and cond is not None:
            y = y + self.cond_proj(cond)
        shift, log_scale = y[..., :self.num_features], y[..., self.num_features:]
        return shift, self.max_log_scale * ops.tanh(log_scale / self.max_log_scale)

    def get_config(self):
        return {**super().get_config(), "num_features": self.num_features,
                "hidden_units": list(self.hidden_units), "max_log_scale": self.max_log_scale}


class ConditionalMAF(keras.Model):
    """p(y | cond) = N(z; 0, I) |dz/dy| with y = f(z) a chain of ``num_blocks`` TFP
    ``MaskedAutoregressiveFlow`` bijectors (each a :class:`ConditionalMADE`), the feature order
    reversed between blocks. Trainer contract: batch ``x`` (B, D) (network space), ``cond`` (B, C)."""

    def __init__(self, num_features=4, cond_dim=1, num_blocks=15, hidden_units=(128,), max_log_scale=3.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_features, self.cond_dim = int(num_features), int(cond_dim)
        self.made = [ConditionalMADE(self.num_features, hidden_units, max_log_scale, name=f"made{i}")
                     for i in range(int(num_blocks))]

    def _bijector(self, cond):
        import tensorflow_probability as tfp
        tfb = tfp.bijectors
        chain = []
        for i, made in enumerate(self.made):
            if i:
                chain.append(tfb.Permute(np.arange(self.num_features)[::-1]))
            chain.append(tfb.MaskedAutoregressiveFlow(
                shift_and_log_scale_fn=lambda y, made=made: made(y, cond), name=f"maf{i}"))
        return tfb.Chain(chain[::-1])   # Chain applies its last bijector first

    def log_prob(self, x, cond):
        """log p(x | cond) (B,) in network space."""
        x = tf.cast(x, tf.float32)
        cond = tf.cast(cond, tf.float32)
        bij = self._bijector(cond)
        z = bij.inverse(x)
        base = -0.5 * tf.reduce_sum(z * z, -1) - 0.5 * self.num_features * np.log(2 * np.pi)
        return base + bij.inverse_log_det_jacobian(x, event_ndims=1)

    def compute_batch_loss(self, batch, training=True):
        return -tf.reduce_mean(self.log_prob(batch["x"], batch["cond"]))

    def call(self, inputs, training=False):
        return self.log_prob(inputs["x"], inputs["cond"])

    def sample(self, cond, seed=0, batch_size=20000):
        """One sample per row of ``cond`` (N, C), network space, float64 NumPy."""
        cond = np.asarray(cond, np.float32).reshape(-1, self.cond_dim)
        rng = np.random.default_rng(seed)
        forward = tf.function(lambda z, c: self._bijector(c).forward(z), reduce_retracing=True)
        out = [forward(tf.constant(rng.standard_normal((len(c), self.num_features)), tf.float32),
                       tf.constant(c)).numpy() for c in np.array_split(cond, max(1, -(-len(cond) // batch_size)))]
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.num_features))


def _as_cond(mjj_scaled):
    return np.asarray(mjj_scaled, np.float32).reshape(-1, 1)


def _build_maf(fcfg, num_features=4):
    model = ConditionalMAF(num_features, 1, int(fcfg["num_blocks"]), tuple(fcfg["hidden_units"]),
                           float(fcfg["max_log_scale"]))
    model.log_prob(np.zeros((1, num_features), np.float32), np.zeros((1, 1), np.float32))  # build
    return model


def train_flow(cfg, train_features, train_mjj, val_features, val_mjj, workdir, ctx=None, progress=True):
    """Train the conditional MAF on physical features (N, 4) at scaled mjj (N,) (``Preprocessor
    .scale_mjj``); resumes from ``workdir/checkpoints/last``; ``ctx``: the distributed context
    (None: Horovod's if running, data-parallel). Returns the model with the best (EMA if
    ``flow.use_ema``) weights loaded, ``model.scaler`` (:class:`LogitScaler`) and
    ``model.fit_summary`` (epochs_run, best_epoch, best_val_loss) set."""
    from shared.training import Trainer
    lc = lowdim_config(cfg)
    fcfg = lc["flow"]
    train_features = np.asarray(train_features, np.float64)
    if len(train_features) != len(np.asarray(train_mjj)) or len(val_features) != len(np.asarray(val_mjj)):
        raise ValueError("train_flow: features and mjj differ in length")
    scaler = LogitScaler(fcfg["logit_margin"]).fit(train_features)
    data = lambda f, m: {"x": scaler.transform(f).astype(np.float32), "cond": _as_cond(m)}  # noqa: E731
    tcfg = {**fcfg["training"], "seed": int(lc["seed"])}
    tcfg["progress"] = bool(progress and tcfg.get("progress", True))
    keras.utils.set_random_seed(int(lc["seed"]))
    model = _build_maf(fcfg, train_features.shape[1])
    trainer = Trainer(model, tcfg, workdir, ctx=ctx, extra_state={"scaler": scaler.to_dict()})
    history = trainer.fit(data(train_features, train_mjj), data(val_features, val_mjj))
    model.scaler = LogitScaler.from_dict(trainer.extra_state["scaler"])
    trainer.load_best(use_ema=bool(fcfg["use_ema"]))
    model.fit_summary = {"epochs_run": len(history), "best_epoch": trainer.state["best_epoch"],
                         "best_val_loss": trainer.state["best_val_loss"]}
    return model


def load_flow(cfg, workdir, which="best"):
    """The MAF of a finished :func:`train_flow` run in ``workdir`` (with ``model.scaler``)."""
    from shared.checkpoint import load_checkpoint
    fcfg = lowdim_config(cfg)["flow"]
    model = _build_maf(fcfg)
    path = os.path.join(workdir, "checkpoints", which)
    state = load_checkpoint(path, model, use_ema=bool(fcfg["use_ema"] and fcfg["training"].get("ema_decay")))
    model.scaler = LogitScaler.from_dict(state["extra_state"]["scaler"])
    return model


def log_density(model, features, mjj_scaled):
    """log p(features | mjj) (N,) in physical units (the logit/standardisation Jacobian included)."""
    x = np.asarray(features, np.float64)
    y = model.scaler.transform(x).astype(np.float32)
    return model.log_prob(y, _as_cond(mjj_scaled)).numpy().astype(np.float64) + model.scaler.log_det_jacobian(x)


def sample_flow(model, mjj_scaled, seed):
    """Physical features (N, 4) sampled at the scaled mjj values (N,)."""
    return model.scaler.inverse(model.sample(_as_cond(mjj_scaled), seed=seed))


# ---------------------------------------------------------------------------------------------
# Classifier and weak supervision
# ---------------------------------------------------------------------------------------------

class DenseClassifier(keras.Model):
    """MLP (ReLU) -> sigmoid; Trainer contract with batch ``x``, ``label``, ``weight``
    (weighted binary cross-entropy)."""

    def __init__(self, hidden_units=(64, 64, 64), dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden = [layers.Dense(int(h), activation="relu") for h in hidden_units]
        self.drop = layers.Dropout(float(dropout))
        self.out = layers.Dense(1, activation="sigmoid")

    def call(self, x, training=False):
        h = tf.cast(x, tf.float32)
        for layer in self.hidden:
            h = self.drop(layer(h), training=training)
        return self.out(h)[:, 0]

    def compute_batch_loss(self, batch, training=True):
        p = tf.clip_by_value(self(batch["x"], training=training), 1e-7, 1 - 1e-7)
        y = tf.cast(batch["label"], tf.float32)
        w = tf.cast(batch["weight"], tf.float32)
        bce = -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
        return tf.reduce_sum(w * bce) / tf.reduce_sum(w)


def train_and_score_lowdim(cfg, x0, x1, eval_x, seed, workdir=None, progress=False):
    """Train one data-vs-background classifier on the 4 features (label 0: ``x0``, label 1:
    ``x1``, physical units) with the protocol of ``classify.train_and_score`` (balanced class
    weights, stratified ``train_fraction`` split, early stopping on the validation loss) and
    return ``{"eval": scores of eval_x (N,), "val_loss": ..., "epochs": ...}``.

    ``workdir``: the Trainer's folder for ``mlp`` (checkpoints; a temporary one if None). One
    call = one independent single-process training (no gradient averaging under Horovod)."""
    from sklearn.model_selection import train_test_split
    from sklearn.utils.class_weight import compute_sample_weight
    cc = lowdim_config(cfg)["classifier"]
    x = np.concatenate([np.asarray(x0, np.float64), np.asarray(x1, np.float64)])
    label = np.r_[np.zeros(len(x0)), np.ones(len(x1))].astype(np.float32)
    weight = compute_sample_weight("balanced", label).astype(np.float32)   # equal total per class
    tr, va = (np.sort(i) for i in train_test_split(np.arange(len(label)), train_size=float(cc["train_fraction"]),
                                                    stratify=label, random_state=int(seed)))
    eval_x = np.asarray(eval_x, np.float64)
    if cc["kind"] == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier
        h = cc["hgb"]
        clf = HistGradientBoostingClassifier(
            max_iter=int(h["max_iter"]), learning_rate=float(h["learning_rate"]),
            max_leaf_nodes=int(h["max_leaf_nodes"]), l2_regularization=float(h["l2_regularization"]),
            early_stopping=True, n_iter_no_change=int(h["n_iter_no_change"]), scoring="loss",
            random_state=int(seed))
        from threadpoolctl import threadpool_limits
        with threadpool_limits(int(h["n_threads"]) if h["n_threads"] else None):
            clf.fit(x[tr], label[tr], sample_weight=weight[tr], X_val=x[va], y_val=label[va],
                    sample_weight_val=weight[va])
            scores = clf.predict_proba(eval_x)[:, 1]
        val_loss = float(-np.max(clf.validation_score_))
        return {"eval": scores, "val_loss": val_loss, "epochs": int(clf.n_iter_)}
    from shared.distributed import DistContext
    from shared.training import Trainer
    mean, std = x[tr].mean(0), np.maximum(x[tr].std(0), 1e-12)
    z = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    sel = lambda i: {"x": z(x[i]), "label": label[i], "weight": weight[i]}  # noqa: E731
    keras.utils.set_random_seed(int(seed))
    model = DenseClassifier(tuple(cc["hidden_units"]), float(cc["dropout"]))
    tcfg = {**cc["training"], "seed": int(seed)}
    tcfg["progress"] = bool(progress and tcfg.get("progress", True))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, tcfg, workdir or tmp, ctx=DistContext())
        hist = trainer.fit(sel(tr), sel(va))
        trainer.load_best()
    scores = np.concatenate([model(z(c)).numpy() for c in np.array_split(eval_x, max(1, len(eval_x) // 50000))])
    return {"eval": scores.astype(np.float64), "val_loss": float(trainer.state["best_val_loss"]),
            "epochs": len(hist)}


__all__ = ["FEATURE_NAMES", "LOWDIM_DEFAULTS", "lowdim_config", "constituent_p4",
           "lowdim_features", "LogitScaler", "ConditionalMADE", "ConditionalMAF", "train_flow",
           "load_flow", "log_density", "sample_flow", "DenseClassifier", "train_and_score_lowdim"]
