"""Every key of an lhco_fullphase config, its type and default (``shared.schema``).

Validated by every entry point before any data or TensorFlow work: a typo or a wrong type is
one error naming the config file and the dotted key. The meaning of the keys is documented in
``configs/paper.yaml`` and docs/lhco_fullphase.md.
"""
from __future__ import annotations

from shared.errors import ConfigError
from shared.schema import (REQUIRED, Bool, Choice, Custom, Float, Int, List, Section, Str,
                           validate)
from shared.training import check_trainer_section, trainer_config

PARTS = ("jet", "particle")                  # the two generator parts (one net each)
REGIONS = ("sr", "sb")                       # generated regions
GENERATORS = ("diffusion", "flow_matching")  # full-phase-space generators (model.generators)
# label-0 class of the weak-supervision scan: generated SR background of a generator, the true
# independent SR background (idealized), and low-dimensional CATHODE (flow samples / true
# background on 4 features). The first three use the transformer classifier (``classifier``).
FULL_METHODS = (*GENERATORS, "idealized")
LOWDIM_METHODS = ("lowdim", "lowdim_idealized")
METHODS = (*FULL_METHODS, *LOWDIM_METHODS)
SOURCES = ("files", "generated")
FM_SOLVERS = ("midpoint", "euler", "heun")   # = shared.diffusion.flow_matching.SOLVERS (tested)
JET_NET_KINDS = ("dense", "epic")            # the flow-matching jet model
LOWDIM_JET_ORDERS = ("mass", "pt")
LOWDIM_CLASSIFIERS = ("mlp", "hgb")
PT_REL_TRANSFORMS = ("log1m", "log")
JET_PHI_MODES = ("raw", "dijet_frame")
# data.* keys that shape the generators' preprocessing (lhco_fullphase.preprocess.Preprocessor)
PREPROCESSING_KEYS = ("data.pt_rel_transform", "data.jet_phi", "data.jet_pt_fraction",
                      "data.jet_centroid", "data.jet_mass_fraction", "data.pt_rel_eps",
                      "data.mass_zero_tol")


def _sde_mapping(value, key, source):
    if not isinstance(value, dict):
        raise ConfigError(source, key, f"must be a mapping like {{name: vpsde}}, got {value!r}")
    return dict(value)


def _check_sde(value, key, source):
    # after every other key (see _Schema): shared.diffusion.sde loads TensorFlow, which a typo
    # elsewhere should not wait for
    from shared.diffusion.sde import check_sde_config
    return check_sde_config(value, key, source)


def _windows(value, key, source):
    from lhco_fullphase.roles import region_masks
    value = _WINDOWS.check(value, key, source)
    lo, hi = value["mjj_scale"]
    if not 0 < lo < hi:
        raise ConfigError(source, f"{key}.mjj_scale", f"need 0 < lower < upper, got {[lo, hi]}")
    try:
        region_masks([], value)
    except ValueError as exc:
        raise ConfigError(source, key, str(exc)) from None
    return value


def _training_overrides(value, key, source):
    """``training_<part>`` / ``training_flow_<part>``: only the given Trainer keys (merged over
    ``training`` later)."""
    value = dict(value or {})
    checked = trainer_config(value, prefix=key, source=source)
    return {k: checked[k] for k in value}


def _trainer_with_defaults(defaults):
    """A Trainer section whose unset keys take ``defaults`` first, then the Trainer's."""
    def check(value, key, source):
        return trainer_config({**defaults, **dict(value or {})}, prefix=key, source=source)
    return Custom(check, default=None)


def _generators(value, key, source):
    value = List(Choice(*GENERATORS), min_length=1).check(value, key, source)
    if len(set(value)) != len(value):
        raise ConfigError(source, key, f"lists a generator twice: {value}")
    return value


_NET = {"width": Int(128, min=1), "num_blocks": Int(6, min=0), "num_heads": Int(2, min=1),
        "ffn_dim": Int(512, min=1), "time_embed_dim": Int(64, min=1),
        "dropout": Float(0.0, min=0.0, max=1.0)}
_FOURIER = {"num_frequencies": Int(16, min=1), "scale": Float(16.0, min=0.0, exclusive_min=True),
            "seed": Int(0), "include_input": Bool(False)}
_INTERVAL = List(Float(), length=2)
_WINDOWS = Section({
    "mjj_scale": List(Float(), default=[2300.0, 5000.0], length=2),
    "sr": List(Float(), default=[3300.0, 3700.0], length=2),
    "sb": List(_INTERVAL, default=[[2300.0, 3300.0], [3700.0, 5000.0]], min_length=1),
    "sb_train_fraction": Float(0.6, min=0.0, max=1.0, exclusive_min=True),
    "split_seed": Int(0),
})


def _fourier_override(value, key, source):
    """``model.<part>_net.mjj_fourier``: only the given keys (they override model.mjj_fourier)."""
    value = dict(value or {})
    checked = Section(_FOURIER).check(value, key, source)
    return {k: checked[k] for k in value}


def _net(width):
    return Section({**_NET, "width": Int(width, min=1),
                    "mjj_fourier": Custom(_fourier_override, default=None)})


# the flow-matching generator (lhco_fullphase.flow_model; docs/lhco_methods.md)
FLOW_MODEL_SCHEMA = Section({
    "sigma_min": Float(1.0e-4, min=0.0),       # width of the data end of the OT path (< 1)
    "solver": Choice(*FM_SOLVERS),             # ODE solver of the sampling
    "steps": Int(250, min=1),                  # ODE steps (midpoint/heun: 2 net evaluations each)
    "mjj_fourier": Section({**_FOURIER, "scale": Float(1.0, min=0.0, exclusive_min=True),
                            "include_input": Bool(True)}),
    "jet_net": Section({
        "kind": Choice(*JET_NET_KINDS),        # dense: MLP over the 2 x F features; epic: a set net
        "width": Int(256, min=1), "num_blocks": Int(3, min=0), "dropout": Float(0.0, min=0.0, max=1.0),
        "time_embed_dim": Int(64, min=1), "time_scale": Float(1.0, min=0.0, exclusive_min=True),
        "local_dim": Int(64, min=1), "global_dim": Int(64, min=1), "num_layers": Int(3, min=1),  # epic
        "mjj_fourier": Custom(_fourier_override, default=None)}),
    "particle_net": Section({
        "local_dim": Int(150, min=1), "global_dim": Int(256, min=1), "num_layers": Int(8, min=1),
        "hidden_dim": Int(None, min=1),        # null = local_dim
        "time_embed_dim": Int(64, min=1), "time_scale": Float(1.0, min=0.0, exclusive_min=True),
        "sum_scale": Float(0.01, min=0.0),
        "mjj_fourier": Custom(_fourier_override, default=None)}),
})

# low-dimensional CATHODE (lhco_fullphase.lowdim; defaults ~ the CATHODE paper)
LOWDIM_SCHEMA = Section({
    "enabled": Bool(False),                    # run the methods lowdim (+ lowdim_idealized)
    "features": Section({"jet_order": Choice(*LOWDIM_JET_ORDERS),
                         "beta": Float(1.0, min=0.0, exclusive_min=True),
                         "R0": Float(1.0, min=0.0, exclusive_min=True)}),
    "flow": Section({
        "num_blocks": Int(15, min=1),          # MADE blocks, feature order reversed between them
        "hidden_units": List(Int(min=1), default=[128], min_length=1),
        "max_log_scale": Float(3.0, min=0.0, exclusive_min=True),   # soft clamp c·tanh(s/c)
        "logit_margin": Float(0.02, min=0.0, exclusive_min=True),   # box = range ± margin·range
        "use_ema": Bool(True),                 # sample with the EMA weights (if ema_decay)
        "training": _trainer_with_defaults({"epochs": 100, "batch_size": 256, "learning_rate": 1e-4,
                                            "patience": 10, "ema_decay": None,
                                            "lr_schedule": "constant"}),
    }),
    "num_events": Int(None, min=1),            # SR samples; null = generation.num_events
    "seed": Int(0),                            # flow training (+1: sampling)
    "classifier": Section({
        "kind": Choice(*LOWDIM_CLASSIFIERS),   # mlp (CATHODE, 3 x 64) | hgb (boosted trees)
        "train_fraction": Float(0.8, min=0.0, max=1.0, exclusive_min=True),
        "hidden_units": List(Int(min=1), default=[64, 64, 64]),
        "dropout": Float(0.0, min=0.0, max=1.0),
        "training": _trainer_with_defaults({"epochs": 100, "batch_size": 128, "learning_rate": 1e-3,
                                            "patience": 10, "ema_decay": None,
                                            "lr_schedule": "constant"}),
        "hgb": Section({"max_iter": Int(200, min=1), "learning_rate": Float(0.1, min=0.0, exclusive_min=True),
                        "max_leaf_nodes": Int(31, min=2), "l2_regularization": Float(0.0, min=0.0),
                        "n_iter_no_change": Int(10, min=1),
                        # OpenMP threads: on a busy 2-core machine 2 threads ran 50x slower
                        "n_threads": Int(1, min=1)}),
    }),
})


def _sample_metrics(value, key, source):
    from shared.sample_metrics import sample_metrics_config
    return sample_metrics_config(value, prefix=key, source=source)


class _Schema(Section):
    """The top level; then each part's merged training settings (``training`` with
    ``training_<part>`` applied), the generation chunks and, last (it needs TensorFlow), the
    SDE: a bad combination fails before any work."""

    def _check(self, value, key, source):
        out = super()._check(value, key, source)
        for part in PARTS:
            for section in (f"training_{part}", f"training_flow_{part}"):
                trainer_config({**out["training"], **out[section]}, prefix=section, source=source)
        if not out["flow_model"]["sigma_min"] < 1.0:
            raise ConfigError(source, "flow_model.sigma_min",
                              f"must be < 1, got {out['flow_model']['sigma_min']}")
        g = out["generation"]
        if g["chunk_size"] is not None and g["chunk_size"] % g["batch_size"]:
            raise ConfigError(source, "generation.chunk_size",
                              f"must be a multiple of generation.batch_size ({g['batch_size']}), "
                              f"got {g['chunk_size']}")
        out["model"]["sde"] = _check_sde(out["model"]["sde"], "model.sde", source)
        return out


SCHEMA = _Schema({
    "seed": Int(0),
    "data": Section({
        "source": Choice(*SOURCES, default="files"),
        "dir": Str(None),
        "files": Section({"background": Str(None), "extra_sr_background": Str(None)}),
        "generated": Section({"n_background": Int(None, min=1), "background_seed": Int(1),
                              "n_signal": Int(None, min=1), "signal_seed": Int(2),
                              "workers": Int(1, min=1), "chunk_size": Int(250, min=1)}),
        "chunksize": Int(100_000, min=1),
        "num_particles": Int(REQUIRED, min=1),
        "jet_radius": Float(1.0, min=0.0, exclusive_min=True),
        "pt_rel_transform": Choice(*PT_REL_TRANSFORMS, default="log1m"),
        "jet_pt_fraction": Bool(False),
        "jet_centroid": Bool(False),
        "jet_mass_fraction": Bool(False),
        "jet_phi": Choice(*JET_PHI_MODES, default="raw"),
        "pt_rel_eps": Float(1e-6, min=0.0, exclusive_min=True),
        "mass_zero_tol": Float(1e-4, min=0.0, exclusive_min=True),
    }),
    "windows": Custom(_windows, default=None),
    "kde": Section({"fit_on": Choice("sr_data", "sb_train"),
                    "bandwidth": Float(0.01, min=0.0, exclusive_min=True)}),
    "model": Section({
        "generators": Custom(_generators, default=["diffusion"], nullable=False),
        "sde": Custom(_sde_mapping, default={"name": "vpsde", "beta_min": 0.1, "beta_max": 20.0},
                      nullable=False),
        "prediction": Choice("eps"),
        "weighting": Choice("standard", "likelihood"),
        "gaussian_skip": Bool(False),
        "jet_net": _net(128),
        "particle_net": _net(128),
        "mjj_fourier": Section(dict(_FOURIER)),
    }),
    "flow_model": FLOW_MODEL_SCHEMA,
    "lowdim": LOWDIM_SCHEMA,
    "training": Custom(check_trainer_section, default=None),
    "training_jet": Custom(_training_overrides, default=None),
    "training_particle": Custom(_training_overrides, default=None),
    "training_flow_jet": Custom(_training_overrides, default=None),
    "training_flow_particle": Custom(_training_overrides, default=None),
    "generation": Section({
        "num_events": Int(REQUIRED, min=1),
        "num_sb_events": Int(None, min=1),
        "ddim_steps": Int(REQUIRED, min=1),
        "second_order": Bool(True),
        "sampler": Choice("ddim", "ddim_heun", "dpm_solver_2m", default=None),
        "batch_size": Int(1000, min=1),
        "chunk_size": Int(None, min=1),
        "seed": Int(None),
        "use_ema": Bool(True),
        "enforce_mjj": Bool(False),
        "clip": Float(30.0, min=0.0, exclusive_min=True),
    }),
    "classifier": Section({
        "pt_rel_transform": Choice(None, *PT_REL_TRANSFORMS, default=None),
        "width": Int(64, min=1), "particle_blocks": Int(4, min=0), "jet_blocks": Int(4, min=0),
        "num_heads": Int(2, min=1), "ffn_dim": Int(256, min=1), "merge_width": Int(128, min=1),
        "head_width": Int(64, min=1), "dropout": Float(0.1, min=0.0, max=1.0),
        "attention_dropout": Float(0.0, min=0.0, max=1.0), "cond_dim": Int(0, min=0),
        "train_fraction": Float(0.8, min=0.0, max=1.0, exclusive_min=True),
        "training": Custom(check_trainer_section, default=None),
    }),
    "weak_supervision": Section({
        "n_background_data": Int(REQUIRED, min=1),
        "injections": List(Int(min=0), default=REQUIRED, min_length=1),
        "num_inits": Int(1, min=1),
        "idealized": Bool(True),
        "n_idealized_background": Int(None, min=1),
    }),
    "generation_quality": Section({
        "regions": List(Choice(*REGIONS), default=list(REGIONS)),
        "num_inits": Int(1, min=1),
        "fractions": List(Float(min=0.0, max=1.0, exclusive_min=True), default=[0.5, 0.25, 0.25],
                          length=3),
    }),
    # generated-vs-true sample metrics (W1, FPD, KPD) per generator and region
    "sample_metrics": Custom(_sample_metrics, default=None),
    "evaluate": Section({
        "n_signal": Int(None, min=1),
        "n_background": Int(None, min=1),
        "min_background": Int(10, min=1),
        "band": Float(0.68, min=0.0, max=1.0, exclusive_min=True),
    }),
})


def validate_config(cfg, source=None) -> dict:
    """``cfg`` checked against :data:`SCHEMA`, defaults filled in."""
    return validate(cfg, SCHEMA, source)
