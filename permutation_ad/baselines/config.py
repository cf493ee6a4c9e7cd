"""The ``baselines:`` config section: every hyperparameter, with defaults in one place.

:data:`DEFAULTS` holds the paper-scale values (SPEC §4, Tables 2 and 3 of
``whats_anomalous_in_lhc_jets.txt``, ``deep_set_vae_dark_machines.txt``); the ``baselines:`` sections of
``permutation_ad/configs/paper.yaml`` and ``demo.yaml`` are the two example settings.
:func:`baselines_config` merges a user section over the defaults and validates it.

Methods: ``run`` lists method *instances* by name. A name that is a method type (``kmeans``,
``gmm``, ``dvae_image``, ``dvae_efp``, ``inn``, ``deepset_kl``, ``deepset_chamfer``,
``observables``) uses that type's block; any other name needs its own block with ``type:``
(e.g. ``kmeans_pt1: {type: kmeans, image: {pt_power: 1.0}}``), merged over the type's defaults.
A method's ``image`` / ``efp`` block is merged over the top-level ``image`` / ``efp`` block.
"""
from __future__ import annotations

import copy
from typing import Mapping

from shared.config import deep_merge
from shared.errors import ConfigError

METHOD_TYPES = ("kmeans", "gmm", "dvae_image", "dvae_efp", "inn", "deepset_kl",
                "deepset_chamfer", "observables")

# Training blocks use shared.training.Trainer keys (docs/training.md); unlisted keys keep the
# Trainer's defaults, except those set in _TRAINING_BASE (no EMA, constant LR, no early stop).
_TRAINING_BASE = {"lr_schedule": "constant", "ema_decay": None, "patience": None,
                  "checkpoint_every": 25, "progress": False, "tensorboard": False}

DEFAULTS = {
    "enabled": False,              # the pipeline's baselines stage runs only when true
    "run": list(METHOD_TYPES),
    # Jet images (SPEC §4): size x size pixels over (eta, phi) in [-extent, extent]^2; centred on
    # the pT centroid, principal axis rotated onto eta, flipped so the harder half is at
    # positive eta/phi; pixel intensity (sum pT)^pt_power; Gaussian filter of `sigma` pixels
    # (0 = off); normalised to unit sum.
    "image": {"size": 40, "extent": 0.8, "pt_power": 1.0, "sigma": 0.0,
              "center": True, "rotate": True, "flip": True},
    # Energy-flow polynomials: the 8 prime EFPs with d <= 3 (EFPSet('d<=3', 'p==1')), angular
    # exponent beta (R_ij^beta), z_i = pT_i / pT_jet, hadronic measure (shared.efps).
    "efp": {"beta": 1.0},
    "val_fraction": 0.1,            # of the training jets, held out for the NN methods' val loss
    "kmeans": {
        "image": {"pt_power": 0.25, "sigma": 3.0},
        "k": 100, "n_init": 10, "max_iter": 300, "init": "k-means++",
        "knc": 5,                   # KNC<knc>: mean distance to the knc nearest centroids
        "dim_scale": 1.1,           # c in d_i = ln(N(c rho_i) / N(rho_i)) / ln c (MLLED)
    },
    "gmm": {
        "image": {"pt_power": 0.25, "sigma": 3.0},
        "n_components": 100, "max_iter": 100, "tol": 1e-3, "init_params": "kmeans",
        # regularisation beta added to every variance: start at reg_start (null = mean
        # per-pixel variance of the training images), divide by 10 until the smallest fitted
        # variance is >= reg_ratio * beta (paper: 1e3), at most max_refits fits.
        "reg_start": None, "reg_ratio": 1000.0, "max_refits": 8,
    },
    "dvae_image": {
        "image": {"pt_power": 0.5, "sigma": 1.0},
        "latent_dim": 2, "alpha": [1.0, 0.1], "hidden": 100, "kl_weight": 0.1,
        "training": dict(_TRAINING_BASE, epochs=300, batch_size=2048, learning_rate=1e-2,
                         beta_1=0.9, beta_2=0.99),
    },
    "dvae_efp": {
        "efp": {"beta": 0.5},        # paper Sec. 4.3: kappa = 1, beta = 0.25 ... 0.5
        "latent_dim": 2, "alpha": [1.0, 0.1], "hidden": 100, "kl_weight": 0.1,
        "training": dict(_TRAINING_BASE, epochs=300, batch_size=2048, learning_rate=1e-2,
                         beta_1=0.9, beta_2=0.99),
    },
    "inn": {
        "efp": {"beta": 1.0},
        "blocks": 24, "hidden": 512, "clamp": 2.0,
        "noise": 0.5, "noise_decay": 0.95,     # noise std on the whitened inputs, x decay/epoch
        "lr_decay": 0.98,   # per epoch; realised as a cosine to lr * lr_decay^epochs (see docs)
        "powers": [1.0, 0.3333333333333333, 0.0],   # x^n reweighting of the score; 0 = log
        "training": dict(_TRAINING_BASE, epochs=300, batch_size=512, learning_rate=1e-4,
                         lr_schedule="cosine"),
    },
    "deepset_kl": {
        "beta": 1.0,                 # encoder only: loss = score = KL(q(z|x) || N(0, I))
        "width": 256, "depth": 3, "latent_dim": 8, "fspool_pieces": 20,
        "training": dict(_TRAINING_BASE, epochs=100, batch_size=500, learning_rate=1e-3,
                         lr_schedule="cosine", patience=4),
    },
    "deepset_chamfer": {
        "beta": 0.001,               # loss = beta KL + (1 - beta) Chamfer (paper Fig. 4 value)
        "width": 256, "depth": 3, "latent_dim": 8, "fspool_pieces": 20,
        "decoder_width": 256, "decoder_depth": 2, "num_outputs": None,   # None: P of the data
        "training": dict(_TRAINING_BASE, epochs=100, batch_size=500, learning_rate=1e-3,
                         lr_schedule="cosine", patience=4),
    },
    "observables": {"names": ["mass", "n", "tau21", "tau32"], "R0": 0.8},
    "metrics": {"min_background": 10, "eff_s": 0.2},
    # Dark-jet benchmark (semi-visible + two-prong signals with their own QCD background),
    # generated with the Pythia stand-in on first use (shared.data.embedded kinds darkqcd,
    # semivisible, twoprong). Paper: 100k training jets.
    "dark_jets": {"enabled": True, "n_train": 100000, "n_test": 10000, "num_particles": 100,
                  "workers": 1, "detector": True, "seed": 11},
    "figures": True,
}


class BaselineConfigError(ConfigError):
    """A bad ``baselines`` config value; names the config file and the dotted key."""


def _merge(base, over):
    return deep_merge(copy.deepcopy(dict(base)), dict(over or {}))


def baselines_config(cfg: Mapping | None, source=None, key="baselines") -> dict:
    """DEFAULTS merged with ``cfg`` (the ``baselines:`` mapping); validated (every method's
    block, its ``training`` block with the Trainer's rules). Errors name ``source`` and the key
    (``key`` is the section's dotted name in the config)."""
    out = _merge(DEFAULTS, dict(cfg or {}))

    def err(k, msg):
        return BaselineConfigError(source, f"{key}.{k}", msg)

    run = out["run"]
    if isinstance(run, str) or not isinstance(run, (list, tuple)) or not run:
        raise err("run", f"must be a non-empty list of method names, got {run!r}")
    if len(set(run)) != len(run):
        raise err("run", f"duplicate names in {run!r}")
    unknown = sorted(set(out) - set(DEFAULTS) - set(run))
    if unknown:
        raise err(unknown[0], "unknown key: not a setting, and not a method named in 'run'")
    for name in run:
        method_config(out, name, source, key)
    vf = out["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 0.5:
        raise err("val_fraction", f"must be in [0, 0.5), got {vf!r}")
    dj = out["dark_jets"]
    for k in ("n_train", "n_test", "num_particles", "workers", "seed"):
        if not isinstance(dj.get(k), int) or isinstance(dj.get(k), bool) or dj[k] < (0 if k == "seed" else 1):
            raise err(f"dark_jets.{k}", f"must be a positive integer, got {dj.get(k)!r}")
    for k in ("enabled", "detector"):
        if not isinstance(dj.get(k), bool):
            raise err(f"dark_jets.{k}", f"must be true or false, got {dj.get(k)!r}")
    if not isinstance(out["enabled"], bool):
        raise err("enabled", f"must be true or false, got {out['enabled']!r}")
    mc = out["metrics"]
    if not (isinstance(mc.get("min_background"), int) and mc["min_background"] >= 1):
        raise err("metrics.min_background", f"must be a positive integer, got {mc.get('min_background')!r}")
    if not (isinstance(mc.get("eff_s"), (int, float)) and 0 < mc["eff_s"] <= 1):
        raise err("metrics.eff_s", f"must be in (0, 1], got {mc.get('eff_s')!r}")
    return out


def check_baselines_section(value, key, source) -> dict:
    """``shared.schema.Custom`` check of a ``baselines:`` section: the resolved section
    (wire as ``"baselines": Custom(check_baselines_section, default=None)``)."""
    return baselines_config(value or {}, source, key)


def method_config(cfg: Mapping, name: str, source=None, prefix="baselines") -> dict:
    """Resolved block of method instance ``name``: its type's defaults, the type block of
    ``cfg``, then ``cfg[name]``; ``image``/``efp`` merged over the top-level blocks."""
    def err(k, msg):
        return BaselineConfigError(source, f"{prefix}.{k}", msg)

    block = cfg.get(name)
    if name in METHOD_TYPES:
        mtype = name
        if isinstance(block, Mapping) and block.get("type", name) != name:
            raise err(f"{name}.type", "a built-in method name cannot change its type")
    else:
        if not isinstance(block, Mapping) or "type" not in block:
            raise err(name, f"unknown method; use one of {METHOD_TYPES} or give a block with 'type:'")
        mtype = block["type"]
        if mtype not in METHOD_TYPES:
            raise err(f"{name}.type", f"{mtype!r} not in {METHOD_TYPES}")
    out = _merge(DEFAULTS[mtype], cfg.get(mtype) if name != mtype else {})
    out = _merge(out, block if isinstance(block, Mapping) else {})
    out["type"] = mtype
    if "image" in out:
        out["image"] = _merge(_merge(DEFAULTS["image"], cfg.get("image")), out["image"])
    if "efp" in out:
        out["efp"] = _merge(_merge(DEFAULTS["efp"], cfg.get("efp")), out["efp"])
    unknown = sorted(set(out) - set(DEFAULTS[mtype]) - {"type"})
    if unknown:
        raise err(f"{name}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(DEFAULTS[mtype]))})")
    _validate_method(out, lambda k, msg: err(f"{name}.{k}", msg))
    if "training" in out:
        from shared.training import trainer_config
        trainer_config(out["training"], prefix=f"{prefix}.{name}.training", source=source)
    return out


def _validate_method(m, err):
    def need(key, ok, what):
        if not ok:
            raise err(key, f"{what}, got {m.get(key)!r}")

    def pos_int(key):
        need(key, isinstance(m.get(key), int) and not isinstance(m.get(key), bool) and m[key] > 0,
             "must be a positive integer")

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for block, defaults in (("image", DEFAULTS["image"]), ("efp", DEFAULTS["efp"])):
        if block in m:
            bad = sorted(set(m[block]) - set(defaults))
            if bad:
                raise err(f"{block}.{bad[0]}", f"unknown key (known: {', '.join(sorted(defaults))})")
    if "image" in m:
        im = m["image"]
        if not (isinstance(im["size"], int) and im["size"] > 1):
            raise err("image.size", f"must be an integer > 1, got {im['size']!r}")
        for k in ("extent", "pt_power"):
            if not (number(im[k]) and im[k] > 0):
                raise err(f"image.{k}", f"must be > 0, got {im[k]!r}")
        if not (number(im["sigma"]) and im["sigma"] >= 0):
            raise err("image.sigma", f"must be >= 0, got {im['sigma']!r}")
    if "efp" in m and not (number(m["efp"]["beta"]) and m["efp"]["beta"] > 0):
        raise err("efp.beta", f"must be > 0, got {m['efp']['beta']!r}")
    t = m["type"]
    if t == "kmeans":
        for k in ("k", "n_init", "max_iter", "knc"):
            pos_int(k)
        need("dim_scale", number(m["dim_scale"]) and m["dim_scale"] > 1, "must be > 1")
    elif t == "gmm":
        for k in ("n_components", "max_iter", "max_refits"):
            pos_int(k)
    elif t in ("dvae_image", "dvae_efp"):
        pos_int("latent_dim")
        pos_int("hidden")
        a = m["alpha"]
        need("alpha", isinstance(a, (list, tuple)) and len(a) == m["latent_dim"]
             and all(number(v) and v > 0 for v in a),
             f"must be {m['latent_dim']} positive numbers (one per latent dimension)")
    elif t == "inn":
        for k in ("blocks", "hidden"):
            pos_int(k)
        need("powers", isinstance(m["powers"], (list, tuple)) and m["powers"]
             and all(number(v) and 0 <= v <= 1 for v in m["powers"]),
             "must be a list of numbers in [0, 1] (0 = log)")
        for k in ("noise_decay", "lr_decay"):
            need(k, number(m[k]) and 0 < m[k] <= 1, "must be in (0, 1]")
    elif t in ("deepset_kl", "deepset_chamfer"):
        for k in ("width", "depth", "latent_dim", "fspool_pieces"):
            pos_int(k)
        need("beta", number(m["beta"]) and 0 <= m["beta"] <= 1, "must be in [0, 1]")
        if t == "deepset_chamfer":
            need("beta", m["beta"] < 1, "must be < 1 (beta = 1 has no decoder: use deepset_kl)")
    elif t == "observables":
        from .observables import OBSERVABLES
        bad = [n for n in m["names"] if n not in OBSERVABLES]
        need("names", not bad, f"unknown {bad}; choose from {sorted(OBSERVABLES)}")
