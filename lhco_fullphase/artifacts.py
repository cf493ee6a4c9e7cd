"""Every file lhco_fullphase writes: where it lives and, for our own formats, its layout, writer
and reader. Paths are relative to the run folder ``out`` (``--out``) or the data folder
``data_dir`` (``--data-dir``, else ``data.dir``, else ``OUT/data``); nothing depends on the
current directory.

data_dir/
  raw/<kind>_n<N>_seed<S>_<hash>.h5       generated stand-ins in the LHCO R&D layout
                                          (shared.data.embedded)
  processed/<name>_<raw stem>_P<P>.h5     dijet cache of one raw file (DIJET_FORMAT)
  prepared/info.json, roles.npz           preprocessing constants, counts, event roles
  prepared/lowdim_features.npz            low-dim CATHODE features of every event (event_id,
                                          features (N, 4)); made with lowdim.enabled
out/
  config.resolved.yaml, stage_times.json, run_info.json (the data folder of the run)
  models/<generator>/<jet|particle>/      one part of a generator (diffusion | flow_matching):
                                          checkpoints/{last,best}, history.*, train_summary.json,
                                          fingerprint.json
  models/lowdim/flow/                     the low-dim CATHODE MAF (same layout)
  generated/<generator>/<region>.h5       generated events (GENERATED_FORMAT), region sr | sb
  generated/<generator>/<region>_units/<chunk>.npz  work units of the sample stage (removed
                                          once merged)
  generated/lowdim/sr.npz                 the MAF's SR samples: features (N, 4), mjj, feature_names
  classify/<method>/inj<n>/init<i>/       one scan training (method: diffusion, flow_matching,
                                          idealized, lowdim, lowdim_idealized): scores.npz
                                          (+ checkpoints of the neural classifiers)
  classify/quality/<generator>/<region>/init<i>/  one generation-quality training: scores.npz
  sample_metrics/<generator>_<region>.json  W1 / FPD / KPD, generated vs true + truth baseline
  results_eval.json                       metrics of the scan and the quality checks
  predictions/sic_inj<n>.npz              curves (shared.plotting prediction format)
  results.json, results.md
  plots/<figure>.{png,pdf}
  diagnose/<generator>_<region>.json      lhco_fullphase.diagnose

Every output carries a fingerprint of what made it (``shared.run.Artifact``): ``<file>.fingerprint
.json`` beside a file, ``fingerprint.json`` inside a folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lhco_fullphase.events import JET_FEATURES, PARTICLE_FEATURES
from shared.errors import DataFormatError
from shared.io import atomic_path, atomic_savez, atomic_write_json, ensure_dir, read_json, read_npz

DIJET_FORMAT = "lhco_fullphase/dijet-v1"
DIJET_DATASETS = ("jets", "particles", "mask", "mjj", "label", "event_id")
GENERATED_FORMAT = "lhco_fullphase/generated-v1"
GENERATED_DATASETS = ("jets", "particles", "mask", "mjj")


# -- data folder -------------------------------------------------------------------------------

def raw_dir(data_dir) -> Path:
    return Path(data_dir) / "raw"


def dijet_cache_path(data_dir, name, raw, num_particles) -> Path:
    return Path(data_dir) / "processed" / f"{name}_{Path(raw).stem}_P{int(num_particles)}.h5"


def prepared_dir(data_dir) -> Path:
    return Path(data_dir) / "prepared"


def prepared_info_path(data_dir) -> Path:
    return prepared_dir(data_dir) / "info.json"


def roles_path(data_dir) -> Path:
    return prepared_dir(data_dir) / "roles.npz"


def lowdim_features_path(data_dir) -> Path:
    return prepared_dir(data_dir) / "lowdim_features.npz"


# -- run folder --------------------------------------------------------------------------------

def run_info_path(out) -> Path:
    return Path(out) / "run_info.json"


def model_dir(out, generator, part) -> Path:
    """A trained net: ``generator`` diffusion | flow_matching (part jet | particle) or lowdim
    (part flow)."""
    return Path(out) / "models" / generator / part


def train_summary_path(workdir) -> Path:
    return Path(workdir) / "train_summary.json"


def generated_path(out, generator, region) -> Path:
    return Path(out) / "generated" / generator / f"{region}.h5"


def generated_units_dir(out, generator, region) -> Path:
    return Path(out) / "generated" / generator / f"{region}_units"


def generated_unit_path(out, generator, region, chunk) -> Path:
    return generated_units_dir(out, generator, region) / f"{int(chunk):05d}.npz"


def lowdim_samples_path(out) -> Path:
    return Path(out) / "generated" / "lowdim" / "sr.npz"


def scan_dir(out, method, injection, init) -> Path:
    return Path(out) / "classify" / method / f"inj{int(injection)}" / f"init{int(init)}"


def quality_dir(out, generator, region, init) -> Path:
    return Path(out) / "classify" / "quality" / generator / region / f"init{int(init)}"


def sample_metrics_path(out, generator, region) -> Path:
    return Path(out) / "sample_metrics" / f"{generator}_{region}.json"


def scores_path(workdir) -> Path:
    return Path(workdir) / "scores.npz"


def results_eval_path(out) -> Path:
    return Path(out) / "results_eval.json"


def predictions_path(out, name) -> Path:
    return Path(out) / "predictions" / f"{name}.npz"


def results_path(out) -> Path:
    return Path(out) / "results.json"


def results_md_path(out) -> Path:
    return Path(out) / "results.md"


def plots_dir(out) -> Path:
    return Path(out) / "plots"


def diagnose_path(out, generator, region) -> Path:
    return Path(out) / "diagnose" / f"{generator}_{region}.json"


# -- the run's data folder ---------------------------------------------------------------------

def write_run_info(out, data_dir) -> None:
    atomic_write_json(run_info_path(out), {"data_dir": str(data_dir)})


def data_dir_of(out) -> Path:
    """The data folder a run used (``run_info.json``), else ``OUT/data``."""
    path = run_info_path(out)
    return Path(read_json(path, "run info")["data_dir"]) if path.is_file() else Path(out) / "data"


# -- dijet cache -------------------------------------------------------------------------------

def write_dijet_cache(path, chunks, num_particles, attrs=None, chunk_rows=1024) -> int:
    """Stream clustered events into the dijet cache at ``path`` (atomic: complete or absent).

    ``chunks``: iterable of dicts with the :data:`DIJET_DATASETS` arrays (physical units,
    ``lhco_fullphase.events``); ``attrs`` are stored as HDF5 attributes (lists/dicts as JSON).
    Returns the number of events written."""
    import h5py
    p = int(num_particles)
    shapes = {"jets": (2, 5), "particles": (2, p, 3), "mask": (2, p), "mjj": (), "label": (),
              "event_id": ()}
    dtypes = {"jets": "f4", "particles": "f4", "mask": "bool", "mjj": "f8", "label": "i1",
              "event_id": "i8"}
    written = 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        ds = {k: h5.create_dataset(k, shape=(0,) + s, maxshape=(None,) + s, dtype=dtypes[k],
                                   chunks=(max(int(chunk_rows), 1),) + s,
                                   compression="gzip" if k == "particles" else None)
              for k, s in shapes.items()}
        for arrays in chunks:
            k = len(arrays["event_id"])
            for name, d in ds.items():
                d.resize(written + k, axis=0)
                d[written:written + k] = arrays[name]
            written += k
        h5.attrs.update(_h5_attrs({"format": DIJET_FORMAT, "num_particles": p,
                                   "jet_features": list(JET_FEATURES),
                                   "particle_features": list(PARTICLE_FEATURES), **(attrs or {})}))
    return written


def read_dijet_cache(path, select=None) -> dict:
    """Arrays of a dijet cache (+ ``attrs``); ``select``: boolean mask or index array applied to
    every dataset. A missing file or another format names the file and the field."""
    return _read_h5(path, DIJET_FORMAT, DIJET_DATASETS, "run the prepare stage", select)


# -- prepared data -----------------------------------------------------------------------------

def write_prepared(data_dir, info, roles) -> None:
    """The prepared data: roles (event-id arrays) first, then the info that lists them."""
    ensure_dir(prepared_dir(data_dir))
    atomic_savez(roles_path(data_dir), **{k: np.asarray(v, np.int64) for k, v in roles.items()})
    atomic_write_json(prepared_info_path(data_dir), info)


def read_prepared(data_dir) -> tuple[dict, dict]:
    """(info, roles) of the prepared data folder."""
    info = read_json(prepared_info_path(data_dir), "prepared data (run the prepare stage)")
    roles = read_npz(roles_path(data_dir), "event roles (run the prepare stage)")
    return info, roles


# -- low-dimensional CATHODE features -----------------------------------------------------------

def write_lowdim_features(path, event_id, features, feature_names) -> Path:
    """Features (N, 4) of the events ``event_id`` (N,), sorted by id (``prepare.lowdim_features``)."""
    return atomic_savez(path, event_id=np.asarray(event_id, np.int64),
                        features=np.asarray(features, np.float64), feature_names=np.array(feature_names))


def read_lowdim_features(path) -> dict:
    return read_npz(path, "low-dimensional CATHODE features (run the prepare stage)")


# -- generated events --------------------------------------------------------------------------

def write_generated(path, arrays, attrs) -> Path:
    """Generated events (layout: ``lhco_fullphase.sample``), atomically."""
    import h5py
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for k, v in arrays.items():
            h5.create_dataset(k, data=v, compression="gzip" if k == "particles" else None)
        h5.attrs.update(_h5_attrs({"format": GENERATED_FORMAT, "jet_features": list(JET_FEATURES),
                                   "particle_features": list(PARTICLE_FEATURES), **attrs}))
    return Path(path)


def read_generated(path) -> dict:
    """Arrays of a generated file (+ ``attrs``); a clear error if it is not one."""
    return _read_h5(path, GENERATED_FORMAT, GENERATED_DATASETS, "run the sample stage")


def write_generated_unit(path, arrays, n_clipped) -> Path:
    """One work unit of the sample stage (npz: the arrays + ``n_clipped``)."""
    return atomic_savez(path, n_clipped=np.asarray(int(n_clipped)), **arrays)


def read_generated_unit(path) -> dict:
    return read_npz(path, "generated events (work unit)")


# -- classifier outputs ------------------------------------------------------------------------

def write_scores(workdir, **arrays) -> Path:
    """A classifier's outputs (``scores``, ``labels`` and the bookkeeping of its stage)."""
    return atomic_savez(scores_path(workdir), **{k: np.asarray(v) for k, v in arrays.items()})


def read_scores(workdir) -> dict:
    return read_npz(scores_path(workdir), "classifier scores")


def read_results_eval(out) -> dict:
    """The evaluation results; an error if a classifier unit (or what it was made from) was
    made again after them."""
    from shared.run import require_current
    require_current(results_eval_path(out), "evaluation", "run the classify and evaluate stages again")
    return read_json(results_eval_path(out), "evaluation results (run the evaluate stage)")


# -- HDF5 helpers --------------------------------------------------------------------------------

def _h5_attrs(attrs):
    return {k: (json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
            for k, v in attrs.items() if v is not None}


def _read_h5(path, fmt, required, hint, select=None) -> dict:
    import h5py
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file", f"not found ({hint})")
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != fmt:
                raise DataFormatError(path, "format", f"not a {fmt} file")
            missing = [k for k in required if k not in h5]
            if missing:
                raise DataFormatError(path, missing[0], "missing dataset")
            names = required if select is not None else list(h5.keys())
            out = {k: (h5[k][()] if select is None else h5[k][()][select]) for k in names}
            out["attrs"] = dict(h5.attrs)
    except OSError as exc:
        raise DataFormatError(path, "file", f"unreadable HDF5 ({exc})") from None
    return out
