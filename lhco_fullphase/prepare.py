"""Stage 1: raw LHCO-format files → clustered dijet caches → event roles, preprocessing, mjj KDE.

    python -m lhco_fullphase.prepare --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--data-dir DIR]

Raw input (``data.source``):

* ``files``: the official R&D file (``data.files.background``, QCD + signal with a label column)
  and optionally the independent SR-only QCD file (``data.files.extra_sr_background``); relative
  paths are relative to the data folder.
* ``generated``: Pythia 8 stand-ins made on first use with ``shared.data.embedded`` (QCD:
  ``lhco_qcd``, signal: ``lhco_signal``) and cached under ``<data dir>/raw``.

Every event gets an id ``source_index·10¹² + row`` (``data.make_event_ids``). The roles written to
``<data dir>/roles.npz`` are disjoint id sets:

* ``sb_train`` / ``sb_val``: background in the side bands (generator training / validation),
* ``data_bkg``: true SR background in the "data" class, ``inj_pool``: SR signal to inject (the
  first n of it for injection n), ``idealized_bkg``: independent true SR background (idealized
  detector; generation-quality check in the SR),
* ``eval_bkg`` / ``eval_sig``: the evaluation set, used by NO training.

With only one background file the SR background is partitioned into data / idealized /
evaluation; with the extra SR file the idealized and evaluation sets come from it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lhco_fullphase import data as ldata
from shared.config import ConfigError, atomic_write_text

ROLES = ("sb_train", "sb_val", "data_bkg", "inj_pool", "idealized_bkg", "eval_bkg", "eval_sig")
TRAINING_ROLES = ("sb_train", "sb_val", "data_bkg", "inj_pool", "idealized_bkg")
EVAL_ROLES = ("eval_bkg", "eval_sig")


def data_dir_for(cfg, out, data_dir=None):
    """--data-dir, else ``data.dir`` from the config, else ``<out>/data`` (absolute)."""
    d = data_dir or cfg["data"].get("dir") or os.path.join(out, "data")
    return os.path.abspath(os.path.expanduser(str(d)))


def _raw_files(cfg, data_dir, progress):
    """[(source_index, name, path)] of the raw LHCO-format files; generates stand-ins if needed."""
    d = cfg["data"]
    src = d.get("source", "files")
    if src == "generated":
        from shared.data.embedded import ensure_embedded
        g = d.get("generated") or {}
        for key in ("n_background", "n_signal"):
            if key not in g:
                raise ConfigError(getattr(cfg, "source", None), f"data.generated.{key}", "missing")
        raw = os.path.join(data_dir, "raw")
        kw = dict(workers=int(g.get("workers", 1)), chunk_size=int(g.get("chunk_size", 250)),
                  progress=progress)
        bkg = ensure_embedded("lhco_qcd", raw, int(g["n_background"]), int(g.get("background_seed", 1)), **kw)
        sig = ensure_embedded("lhco_signal", raw, int(g["n_signal"]), int(g.get("signal_seed", 2)), **kw)
        return [(0, "background", bkg), (1, "signal", sig)]
    if src == "files":
        files = d.get("files") or {}
        if not files.get("background"):
            raise ConfigError(getattr(cfg, "source", None), "data.files.background", "missing")
        out = [(0, "background", os.path.join(data_dir, str(files["background"])))]
        if files.get("extra_sr_background"):
            out.append((1, "extra_sr_background", os.path.join(data_dir, str(files["extra_sr_background"]))))
        return out
    raise ConfigError(getattr(cfg, "source", None), "data.source", f"'files' or 'generated', got {src!r}")


def _processed_path(data_dir, name, raw, num_particles):
    return os.path.join(data_dir, "processed", f"{name}_{Path(raw).stem}_P{num_particles}.h5")


def _take_first(pool, n, what, cfg_key):
    if n is None:
        return pool, pool[:0]
    n = int(n)
    if n > len(pool):
        raise ValueError(f"{cfg_key}: {what} needs {n} events, only {len(pool)} available "
                         "(generate more data or lower the number)")
    return pool[:n], pool[n:]


def assign_roles(arrays, cfg, has_extra):
    """Disjoint event-id sets per role (see module doc) from the concatenated processed arrays."""
    w = cfg["windows"]
    ws, ev = cfg["weak_supervision"], cfg["evaluate"]
    rng = np.random.default_rng(int(w.get("split_seed", 0)))
    ids, label = arrays["event_id"], arrays["label"]
    source = ids // ldata.ID_STRIDE
    sr, sb = ldata.region_masks(arrays["mjj"], w)
    main = source == 0
    sb_ids = ids[sb & (label == 0) & main]
    a, b = ldata.split_indices(len(sb_ids), float(w.get("sb_train_fraction", 0.6)), int(w.get("split_seed", 0)))
    roles = {"sb_train": sb_ids[a], "sb_val": sb_ids[b]}

    bkg_main = rng.permutation(ids[sr & (label == 0) & main])
    roles["data_bkg"], rest = _take_first(bkg_main, ws["n_background_data"], "SR data background",
                                          "weak_supervision.n_background_data")
    if has_extra:
        rest = rng.permutation(ids[sr & (label == 0) & (source == 1)])
    n_ideal = ws.get("n_idealized_background")
    roles["idealized_bkg"], rest = _take_first(rest, n_ideal, "idealized SR background",
                                               "weak_supervision.n_idealized_background")
    roles["eval_bkg"], _ = _take_first(rest, ev.get("n_background"), "evaluation background",
                                       "evaluate.n_background")

    sig = rng.permutation(ids[sr & (label == 1)])
    n_inj = max([int(x) for x in ws["injections"]] or [0])
    roles["inj_pool"], rest = _take_first(sig, n_inj, "injected signal", "weak_supervision.injections")
    roles["eval_sig"], _ = _take_first(rest, ev.get("n_signal"), "evaluation signal", "evaluate.n_signal")
    for r in ROLES:
        roles[r] = np.sort(roles[r]).astype(np.int64)
    check_roles(roles)
    return roles


def check_roles(roles):
    """Every pair of roles is disjoint; above all no evaluation event in any training role."""
    names = list(roles)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ldata.assert_disjoint(roles[a], roles[b], a, b)


class Prepared:
    """The processed events of all sources (physical units), their roles and the fitted
    preprocessing. ``take(role_or_ids)`` returns the arrays of those events."""

    def __init__(self, data_dir):
        self.data_dir = os.path.abspath(data_dir)
        info_path = os.path.join(self.data_dir, "prepared.json")
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"{info_path}: not prepared yet (run lhco_fullphase.prepare)")
        with open(info_path) as f:
            self.info = json.load(f)
        parts = [ldata.read_processed(p) for p in self.info["processed"]]
        keys = ldata.CACHE_DATASETS
        self.arrays = {k: np.concatenate([p[k] for p in parts]) for k in keys}
        order = np.argsort(self.arrays["event_id"], kind="stable")
        self.arrays = {k: v[order] for k, v in self.arrays.items()}
        with np.load(os.path.join(self.data_dir, "roles.npz")) as r:
            self.roles = {k: r[k] for k in r.files}
        self.pre = ldata.Preprocessor.from_dict(self.info["preprocessor"])

    def take(self, which):
        ids = self.roles[which] if isinstance(which, str) else np.asarray(which, np.int64)
        pos = np.searchsorted(self.arrays["event_id"], ids)
        if np.any(pos >= len(self.arrays["event_id"])) or np.any(self.arrays["event_id"][pos] != ids):
            raise KeyError("Prepared.take: unknown event ids")
        return {k: v[pos] for k, v in self.arrays.items()}

    def classifier_preprocessor(self, cfg):
        """Preprocessing of the classifier inputs: the 5 physical jet features (raw φ) and the
        particles with ``classifier.pt_rel_transform`` (default: the generators'). The generators'
        Preprocessor if it is just that, else a plain one fitted on ``sb_train`` like it."""
        want = cfg.get("classifier", {}).get("pt_rel_transform") or self.pre.pt_rel_transform
        if want == self.pre.pt_rel_transform and self.pre.is_plain:
            return self.pre
        d = self.pre.to_dict()
        pre = ldata.Preprocessor(d["mjj_range"], d["pt_rel_eps"], d["mass_zero_tol"],
                                 pt_rel_transform=want)
        a = self.take("sb_train")
        return pre.fit(a["jets"], a["particles"], a["mask"], a["mjj"])

    def kde(self, cfg):
        """The SR mjj KDE (``kde.fit_on``: sr_data = the data-class SR background; sb_train)."""
        k = cfg.get("kde", {})
        fit_on = k.get("fit_on", "sr_data")
        role = {"sr_data": "data_bkg", "sb_train": "sb_train"}.get(fit_on)
        if role is None:
            raise ConfigError(getattr(cfg, "source", None), "kde.fit_on", f"sr_data or sb_train, got {fit_on!r}")
        return ldata.MjjKDE(self.pre, float(k.get("bandwidth", 0.01)), cfg["windows"]["sr"]).fit(
            self.take(role)["mjj"])


# data.* keys that shape the generators' preprocessing, with their defaults (the original's).
PREPROCESSING_KEYS = {"pt_rel_transform": "log1m", "jet_phi": "raw", "jet_pt_fraction": False,
                      "jet_centroid": False, "jet_mass_fraction": False}


def _setting(d, key):
    v = d.get(key, PREPROCESSING_KEYS[key])
    return bool(v) if isinstance(PREPROCESSING_KEYS[key], bool) else v


def prepare(cfg, data_dir, progress=True):
    """Run stage 1 (skips what exists); returns the ``prepared.json`` summary."""
    data_dir = os.path.abspath(data_dir)
    info_path = os.path.join(data_dir, "prepared.json")
    d = cfg["data"]
    settings = {k: _setting(d, k) for k in PREPROCESSING_KEYS}
    settings["num_particles"] = int(d["num_particles"])
    for key, allowed in (("pt_rel_transform", ldata.PT_REL_TRANSFORMS), ("jet_phi", ldata.JET_PHI_MODES)):
        if settings[key] not in allowed:
            raise ConfigError(getattr(cfg, "source", None), f"data.{key}",
                              f"one of {allowed}, got {settings[key]!r}")
    if os.path.isfile(info_path) and os.path.isfile(os.path.join(data_dir, "roles.npz")):
        with open(info_path) as f:
            info = json.load(f)
        cached = {k: _setting(info["preprocessor"], k) for k in PREPROCESSING_KEYS}
        cached["num_particles"] = int(info["num_particles"])
        if cached != settings:
            diff = {k: (cached[k], settings[k]) for k in settings if cached[k] != settings[k]}
            raise ValueError(f"{info_path}: prepared with other data settings (cached, config): "
                             f"{diff}; use another --data-dir or delete {info_path}")
        return info
    num_particles = settings["num_particles"]
    raws = _raw_files(cfg, data_dir, progress)
    processed = []
    for index, name, raw in raws:
        out = _processed_path(data_dir, name, raw, num_particles)
        if not os.path.isfile(out):
            ldata.process_file(raw, out, num_particles=num_particles, radius=float(d.get("jet_radius", 1.0)),
                               source_index=index, chunksize=int(d.get("chunksize", 100_000)),
                               progress=progress)
        processed.append(out)
    parts = [ldata.read_processed(p) for p in processed]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in ldata.CACHE_DATASETS}
    has_extra = d.get("source") == "files" and len(raws) > 1
    roles = assign_roles(arrays, cfg, has_extra)

    order = np.argsort(arrays["event_id"])
    sorted_ids = arrays["event_id"][order]
    train = order[np.searchsorted(sorted_ids, roles["sb_train"])]
    w = cfg["windows"]
    pre = ldata.Preprocessor(w.get("mjj_scale", (2300.0, 5000.0)), float(d.get("pt_rel_eps", 1e-6)),
                             float(d.get("mass_zero_tol", 1e-4)),
                             **{k: settings[k] for k in PREPROCESSING_KEYS})
    pre.fit(arrays["jets"][train], arrays["particles"][train], arrays["mask"][train], arrays["mjj"][train])
    sr, sb = ldata.region_masks(arrays["mjj"], w)
    info = {"processed": processed, "raw": [r[2] for r in raws], "num_particles": num_particles,
            "preprocessor": pre.to_dict(), "roles": {k: int(len(v)) for k, v in roles.items()},
            "events": {"total": int(len(sr)), "sr": int(sr.sum()), "sb": int(sb.sum()),
                       "sr_background": int((sr & (arrays["label"] == 0)).sum()),
                       "sr_signal": int((sr & (arrays["label"] == 1)).sum())}}
    os.makedirs(data_dir, exist_ok=True)
    tmp = os.path.join(data_dir, "roles.tmp.npz")
    np.savez(tmp, **roles)
    os.replace(tmp, os.path.join(data_dir, "roles.npz"))
    atomic_write_text(info_path, json.dumps(info, indent=1))
    return info


def main(argv=None):
    from shared.config import build_parser, config_from_args
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="raw + processed data (default: data.dir or OUT/data)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    info = prepare(cfg, data_dir_for(cfg, args.out, args.data_dir))
    print(json.dumps({"roles": info["roles"], "events": info["events"]}, indent=1))


if __name__ == "__main__":
    main()
