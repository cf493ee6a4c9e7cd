"""Every key of a permutation_ad config, its type and default (``shared.schema``).

Validated by every entry point before any data or TensorFlow work: a typo or a wrong type is
one error naming the config file and the dotted key. The meaning of the keys is documented in
``configs/paper.yaml`` and docs/permutation_ad.md.
"""
from __future__ import annotations

from permutation_ad.baselines.config import check_baselines_section
from shared.errors import ConfigError
from shared.schema import (REQUIRED, Any_, Bool, Choice, Custom, Float, Int, List, Section, Str,
                           validate)
from shared.training import TRAINER_DEFAULTS, check_trainer_section

SAMPLES = ("qcd", "top")
OBJECTIVES = ("standard", "likelihood")
TEST_SAMPLES = ("qcd", "top", "zprime")
PT_FEATURES = ("log_pt", "log_pt_rel", "log_one_minus_pt_rel")
JET_FEATURES = ("pt", "eta", "mass", "n")
SOURCES = ("embedded", "files", "synthetic")


def _mapping(value, key, source):
    """A mapping, checked in full at the end (``_Schema``): its check loads TensorFlow, which a
    typo elsewhere should not wait for."""
    if not isinstance(value, dict):
        raise ConfigError(source, key, f"must be a mapping, got {value!r}")
    return dict(value)


ODE_METHODS = ("RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")   # scipy solve_ivp


def _likelihood(value, key, source):
    from shared.diffusion.likelihood import LikelihoodOptions
    out = LikelihoodOptions.from_config(value or {}, source, prefix=key).as_dict()
    if out["method"] not in ODE_METHODS:
        raise ConfigError(source, f"{key}.method", f"must be one of {list(ODE_METHODS)}, got {out['method']!r}")
    return out


def _check_sde(value, key, source):
    from shared.diffusion.sde import check_sde_config
    return check_sde_config(value, key, source)


class _Schema(Section):
    """The top level; the SDE and likelihood sections last (their checks need TensorFlow), so a
    typo anywhere is reported at once."""

    def _check(self, value, key, source):
        out = super()._check(value, key, source)
        out["likelihood"] = _likelihood(out["likelihood"], "likelihood", source)
        out["model"]["sde"] = _check_sde(out["model"]["sde"], "model.sde", source)
        return out


def _classifier(value, key, source):
    net = Section({"width": Int(128, min=1), "num_blocks": Int(6, min=0),
                   "num_heads": Int(2, min=1), "ffn_dim": Int(512, min=1),
                   "dense": Int(128, min=1)})
    value = dict(value or {})
    train = {k: value.pop(k) for k in list(value) if k in TRAINER_DEFAULTS}
    return {**net.check(value, key, source), **check_trainer_section(train, key, source)}


SCHEMA = _Schema({
    "seed": Int(0),
    "data": Section({
        "source": Choice(*SOURCES, default="embedded"),
        "dir": Str(None),
        "files": Section({"train": Str(None), "val": Str(None), "test": Str(None),
                          "zprime": Str(None)}),
        "n_train": Int(None, min=1), "n_val": Int(None, min=1), "n_test": Int(None, min=1),
        "n_zprime": Int(None, min=1),
        "num_particles": Int(REQUIRED, min=1),
        "particle_pt_feature": Choice(*PT_FEATURES, default="log_pt"),
        "jet_features": List(Choice(*JET_FEATURES), default=["eta", "mass", "n"], min_length=1),
        "workers": Int(1, min=1),
    }),
    "model": Section({
        "sde": Custom(_mapping, default={"name": "vpsde", "beta_min": 0.1, "beta_max": 20.0},
                      nullable=False),
        "gaussian_skip": Bool(False),
        "particle_net": Section({"width": Int(128, min=1), "num_blocks": Int(6, min=0),
                                 "num_heads": Int(2, min=1), "ffn_dim": Int(512, min=1)}),
        "jet_net": Section({"width": Int(256, min=1), "num_blocks": Int(5, min=0)}),
        "objectives": List(Choice(*OBJECTIVES), default=list(OBJECTIVES), min_length=1),
        "samples": List(Choice(*SAMPLES), default=list(SAMPLES), min_length=1),
    }),
    "training": Custom(check_trainer_section, default=None),
    "likelihood": Custom(_mapping, default={}),
    "evaluate": Section({
        "num_jets": Int(None, min=1),
        "chunk_size": Int(1000, min=1),
        "min_background": Int(10, min=1),
        "min_background_eff": Float(1e-4, min=0.0),
        "permutation": Section({"num_permutations": Int(5, min=2), "repeats": Int(10, min=2),
                                "jet_index": Int(0, min=0)}),
    }),
    "classifier": Custom(_classifier, default=None),
    "baselines": Custom(check_baselines_section, default=None),
})


def validate_config(cfg, source=None) -> dict:
    """``cfg`` checked against :data:`SCHEMA`, defaults filled in."""
    return validate(cfg, SCHEMA, source)
