"""Every file permutation_ad writes: where it lives and, for our own formats, its layout,
writer and reader. Paths are relative to the run folder ``out`` (``--out``) or the data folder
``data_dir`` (``--data-dir``); nothing depends on the current directory.

data_dir/
  raw/<kind>_n<N>_seed<S>_<hash>.h5     generated stand-in jets (shared.data.embedded)
  processed/<sample>_<split>.h5         processed jets (shared.data.processed, SPEC §1.4) with
                                        physical features (permutation_ad.features)
out/
  config.resolved.yaml, stage_times.json
  models/<sample>_<objective>/          one density: checkpoints/{last,best}, history.*,
                                        preprocessor.json, train_summary.json, fingerprint.json
  classifier/                           supervised classifier: checkpoints, preprocessor.json,
                                        predictions.npz (prob_qcd, prob_top on the test jets)
  eval/loglik/<sample>_<objective>/<test>_<chunk>.npz   likelihood work units (LOGLIK_KEYS)
  eval/loglik_<sample>_<objective>.npz  merged: <key>_<test> for key in LOGLIK_KEYS
  eval/permutation.json                 Fig. 1 permutation test
  predictions/{sic_top,sic_zprime,roc_top}.npz   curves (shared.plotting prediction format)
  plots/<figure>.{png,pdf}
  results.json, table1.md
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.errors import DataFormatError
from shared.io import atomic_savez, read_npz

LOGLIK_KEYS = ("logp", "logp_jet", "logp_particles", "n")


def processed_path(data_dir, sample, split) -> Path:
    return Path(data_dir) / "processed" / f"{sample}_{split}.h5"


def raw_dir(data_dir) -> Path:
    return Path(data_dir) / "raw"


def model_dir(out, sample, objective) -> Path:
    return Path(out) / "models" / f"{sample}_{objective}"


def preprocessor_path(workdir) -> Path:
    return Path(workdir) / "preprocessor.json"


def train_summary_path(workdir) -> Path:
    return Path(workdir) / "train_summary.json"


def classifier_dir(out) -> Path:
    return Path(out) / "classifier"


def classifier_predictions_path(out) -> Path:
    return classifier_dir(out) / "predictions.npz"


def loglik_unit_path(out, sample, objective, test, chunk) -> Path:
    return Path(out) / "eval" / "loglik" / f"{sample}_{objective}" / f"{test}_{int(chunk):04d}.npz"


def loglik_path(out, sample, objective) -> Path:
    return Path(out) / "eval" / f"loglik_{sample}_{objective}.npz"


def permutation_path(out) -> Path:
    return Path(out) / "eval" / "permutation.json"


def predictions_path(out, name) -> Path:
    return Path(out) / "predictions" / f"{name}.npz"


def plots_dir(out) -> Path:
    return Path(out) / "plots"


def results_path(out) -> Path:
    return Path(out) / "results.json"


def table_path(out) -> Path:
    return Path(out) / "table1.md"


# -- log-likelihood files ----------------------------------------------------------------------

def write_loglik(path, values: dict) -> Path:
    """One likelihood file: arrays ``<key>[_<test>]`` (float64) plus ``nfe*``/``seconds*``."""
    return atomic_savez(path, **{k: np.asarray(v) for k, v in values.items()})


def read_loglik(path) -> dict:
    """Arrays of a likelihood file; a missing or unreadable file names itself."""
    return read_npz(path, "log-likelihood file")


def read_merged_loglik(out, sample, objective, tests) -> dict | None:
    """Merged log-likelihoods of one density ({key_test: array}), or None if not evaluated."""
    path = loglik_path(out, sample, objective)
    if not path.is_file():
        return None
    d = read_loglik(path)
    for t in tests:
        for k in LOGLIK_KEYS:
            if f"{k}_{t}" not in d:
                raise DataFormatError(path, f"{k}_{t}", "missing (an older or partial file?)")
    return d
