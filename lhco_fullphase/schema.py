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
METHODS = ("diffusion", "idealized")         # label-0 class of the weak-supervision scan
SOURCES = ("files", "generated")
GENERATORS = ("diffusion",)
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
    """``training_<part>``: only the given Trainer keys (merged over ``training`` later)."""
    value = dict(value or {})
    checked = trainer_config(value, prefix=key, source=source)
    return {k: checked[k] for k in value}


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


class _Schema(Section):
    """The top level; then each part's merged training settings (``training`` with
    ``training_<part>`` applied), the generation chunks and, last (it needs TensorFlow), the
    SDE: a bad combination fails before any work."""

    def _check(self, value, key, source):
        out = super()._check(value, key, source)
        for part in PARTS:
            trainer_config({**out["training"], **out[f"training_{part}"]},
                           prefix=f"training_{part}", source=source)
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
        "generator": Choice(*GENERATORS, default="diffusion"),
        "sde": Custom(_sde_mapping, default={"name": "vpsde", "beta_min": 0.1, "beta_max": 20.0},
                      nullable=False),
        "prediction": Choice("eps"),
        "weighting": Choice("standard", "likelihood"),
        "gaussian_skip": Bool(False),
        "jet_net": _net(128),
        "particle_net": _net(128),
        "mjj_fourier": Section(dict(_FOURIER)),
    }),
    # the low-dimensional CATHODE baseline's settings (free-form until it lands)
    "lowdim": Section(open=True),
    "training": Custom(check_trainer_section, default=None),
    "training_jet": Custom(_training_overrides, default=None),
    "training_particle": Custom(_training_overrides, default=None),
    "generation": Section({
        "num_events": Int(REQUIRED, min=1),
        "num_sb_events": Int(None, min=1),
        "ddim_steps": Int(REQUIRED, min=1),
        "second_order": Bool(True),
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
