"""Stage ``prepare``: raw LHCO-format files → clustered dijet caches → event roles,
preprocessing constants (all in the data folder).

    python -m lhco_fullphase.prepare --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--data-dir DIR]

Raw input (``data.source``):

* ``files``: the official R&D file (``data.files.background``, QCD + signal with a label column)
  and optionally the independent SR-only QCD file (``data.files.extra_sr_background``); relative
  paths are relative to the data folder.
* ``generated``: Pythia 8 stand-ins made on first use with ``shared.data.embedded`` (QCD:
  ``lhco_qcd``, signal: ``lhco_signal``) and cached under ``<data dir>/raw``.

Each raw file is clustered once into its dijet cache (``artifacts.write_dijet_cache``; its
fingerprint: the raw file's identity, ``data.num_particles``, ``data.jet_radius``). The event
roles (``lhco_fullphase.roles``) and the generators' :class:`~lhco_fullphase.preprocess.Preprocessor`
(fitted on ``sb_train``) go to ``prepared/``, whose fingerprint adds the windows, split and role
sizes and the preprocessing keys: a changed setting or raw file redoes what depends on it (with
a one-line notice). Both are data-folder caches: ``--resume never`` reuses them when they match.

With ``lowdim.enabled`` the low-dimensional CATHODE features (m_J1, Δm_J, τ21^J1, τ21^J2) of
every event of the dijet caches go to ``prepared/lowdim_features.npz`` (a data-folder cache made
from the caches and ``lowdim.features``; the roles do not enter, so a new injection keeps it).

Downstream stages get the prepared data from :func:`load_prepared`, loaded once per process;
their fingerprints name exactly the roles they use (:meth:`Prepared.fingerprint`), so e.g. a new
injection does not retrain the generators.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.roles import ROLES, assign_roles, ids_digest, make_event_ids, region_masks
from lhco_fullphase.schema import PREPROCESSING_KEYS
from shared.errors import DataFormatError, UsageError

CACHE_KEYS = ("data.num_particles", "data.jet_radius")
ROLE_KEYS = ("windows", "weak_supervision.n_background_data", "weak_supervision.injections",
             "weak_supervision.n_idealized_background", "evaluate.n_signal", "evaluate.n_background")


# ---------------------------------------------------------------------------------------------
# raw files and dijet caches
# ---------------------------------------------------------------------------------------------

def raw_files(run, generate=False) -> list[tuple[int, str, Path]]:
    """[(source_index, name, path)] of the raw LHCO-format files; with ``generate`` the
    stand-ins of ``data.source: generated`` are made first if missing."""
    src = run.key("data.source")
    if src == "generated":
        from shared.data.embedded import embedded_path, ensure_embedded
        g = run.cfg["data"]["generated"]
        for key in ("n_background", "n_signal"):
            if g[key] is None:
                raise run.error(f"data.generated.{key}", "required for data.source: generated")
        kw = dict(chunk_size=int(g["chunk_size"]))
        out = []
        for index, (name, kind, n, seed) in enumerate((
                ("background", "lhco_qcd", g["n_background"], g["background_seed"]),
                ("signal", "lhco_signal", g["n_signal"], g["signal_seed"]))):
            raw = artifacts.raw_dir(run.data_dir)
            path = ensure_embedded(kind, raw, int(n), int(seed), workers=int(g["workers"]),
                                   progress=run.progress, **kw) if generate else \
                embedded_path(kind, raw, int(n), int(seed), **kw)
            out.append((index, name, Path(path)))
        return out
    files = run.cfg["data"]["files"]
    if not files["background"]:
        raise run.error("data.files.background", "a file is required for data.source: files")
    out = []
    for index, name in enumerate(("background", "extra_sr_background")):
        if files[name]:
            path = run.data_dir / str(files[name])
            if not path.is_file():
                raise DataFormatError(path, f"data.files.{name}", "file not found")
            out.append((index, name, path))
    return out


def cache_artifact(run, name, raw):
    """The dijet cache of one raw file (a data-folder cache)."""
    path = artifacts.dijet_cache_path(run.data_dir, name, raw, run.key("data.num_particles"))
    # official files: their identity (size, mtime); generated stand-ins: their name holds a
    # hash of everything that makes them (shared.data.embedded)
    files = run.key("data.source") == "files"
    return run.artifact(path, config=CACHE_KEYS, inputs=[raw] if files else [],
                        extra={"raw": str(raw)}, cache=True)


def make_dijet_cache(raw, path, *, num_particles, radius=1.0, source_index=0, start=0, stop=None,
                     chunksize=100_000, progress=True) -> int:
    """Cluster the rows [start, stop) of an LHCO R&D file chunk by chunk into the dijet cache at
    ``path`` (events with fewer than two jets are dropped and counted in ``n_dropped``).
    Returns the number of events written."""
    from tqdm.auto import tqdm

    from lhco_fullphase.events import cluster_dijets
    from shared.data.lhco import count_lhco, iter_lhco
    raw = Path(raw)
    if not raw.is_file():
        raise DataFormatError(raw, "file", "not found")
    total = count_lhco(raw)
    stop = total if stop is None else min(int(stop), total)
    attrs = {"source_file": str(raw.resolve()), "source_index": int(source_index),
             "rows": [int(start), int(stop)], "jet_radius": float(radius), "n_dropped": 0}

    def chunks():
        bar = tqdm(total=stop - start, desc=f"cluster {raw.name}", unit="ev", disable=not progress)
        for lo, chunk in zip(range(start, stop, chunksize),
                             iter_lhco(raw, start, stop, chunksize=chunksize, dtype=np.float64)):
            hi = min(lo + chunksize, stop)
            arrays, keep = cluster_dijets(chunk["particles"], num_particles, radius)
            arrays["label"] = chunk["label"][keep]
            arrays["event_id"] = make_event_ids(np.arange(lo, hi)[keep], source_index)
            attrs["n_dropped"] += (hi - lo) - int(keep.sum())
            bar.update(hi - lo)
            yield arrays
        bar.close()

    # the attributes are written after the last chunk (n_dropped is complete by then)
    return artifacts.write_dijet_cache(path, chunks(), num_particles, attrs,
                                       chunk_rows=min(1024, chunksize))


# ---------------------------------------------------------------------------------------------
# prepared data: roles + preprocessing
# ---------------------------------------------------------------------------------------------

def prepared_artifact(run, caches=None):
    """The ``prepared/`` folder (roles, preprocessing; a data-folder cache)."""
    if caches is None:
        caches = [(i, name, raw, cache_artifact(run, name, raw)) for i, name, raw in raw_files(run)]
    return run.artifact(artifacts.prepared_dir(run.data_dir),
                        config=["data.source", *PREPROCESSING_KEYS, *ROLE_KEYS],
                        upstream={name: art for _, name, _, art in caches},
                        folder=True, done_marker="info.json", cache=True)


def build_preprocessor(cfg, train):
    """The generators' Preprocessor (``data.*`` options, ``windows.mjj_scale``) fitted on the
    physical arrays ``train`` (the ``sb_train`` events)."""
    from lhco_fullphase.preprocess import Preprocessor
    d = cfg["data"]
    pre = Preprocessor(cfg["windows"]["mjj_scale"], d["pt_rel_eps"], d["mass_zero_tol"],
                       pt_rel_transform=d["pt_rel_transform"], jet_phi=d["jet_phi"],
                       jet_pt_fraction=d["jet_pt_fraction"], jet_centroid=d["jet_centroid"],
                       jet_mass_fraction=d["jet_mass_fraction"])
    return pre.fit(train["jets"], train["particles"], train["mask"], train["mjj"])


def prepare(run) -> "Prepared":
    """Make (or reuse) the dijet caches and the prepared data; returns the :class:`Prepared`
    (also kept for the later stages of this process)."""
    from shared.run import digest
    artifacts.write_run_info(run.out, run.data_dir)
    caches = []
    for index, name, raw in raw_files(run, generate=True):
        art = cache_artifact(run, name, raw)
        if art.prepare(log=run.log, what=f"dijet cache {art.path.name}"):
            run.log(f"dijet cache {art.path.name}: up to date")
        else:
            n = make_dijet_cache(raw, art.path, num_particles=int(run.key("data.num_particles")),
                                 radius=float(run.key("data.jet_radius")), source_index=index,
                                 chunksize=int(run.key("data.chunksize")), progress=run.progress)
            if n == 0:
                raise DataFormatError(raw, "events", "no event has two jets (R = "
                                      f"{run.key('data.jet_radius')}): nothing to prepare")
            art.record()
            run.log(f"dijet cache {art.path.name}: {n} events")
        caches.append((index, name, raw, art))
    art = prepared_artifact(run, caches)
    key = f"prepared/{art.digest}"
    if art.prepare(log=run.log, what="prepared data"):
        run.log(f"prepared data {art.path}: up to date")
        prep = run.cached(key, lambda: Prepared.load(run.data_dir))
        if run.key("lowdim.enabled"):
            make_lowdim_features(run, prep)
        return prep
    parts = [artifacts.read_dijet_cache(a.path) for *_, a in caches]
    arrays = _sorted_by_id({k: np.concatenate([p[k] for p in parts])
                            for k in artifacts.DIJET_DATASETS})
    has_extra = len(caches) > 1 and run.key("data.source") == "files"
    roles = assign_roles(arrays, run.cfg, has_extra, source=run.source)
    prep = Prepared(run.data_dir, {}, roles, arrays)
    pre = build_preprocessor(run.cfg, prep.take("sb_train"))
    sr, sb = region_masks(arrays["mjj"], run.cfg["windows"])
    label = arrays["label"]
    prep.info = {
        "caches": [str(a.path) for *_, a in caches], "raw": [str(r) for _, _, r, _ in caches],
        "cache_digests": {name: a.digest for _, name, _, a in caches},
        "num_particles": int(run.key("data.num_particles")), "preprocessor": pre.to_dict(),
        "roles": {k: int(len(v)) for k, v in roles.items()},
        "role_digests": {k: ids_digest(v) for k, v in roles.items()},
        "preprocessor_digest": digest(pre.to_dict()),
        "events": {"total": int(len(sr)), "sr": int(sr.sum()), "sb": int(sb.sum()),
                   "sr_background": int((sr & (label == 0)).sum()),
                   "sr_signal": int((sr & (label == 1)).sum())},
        "evaluation_signal": "all SR signal not injected" if run.key("evaluate.n_signal") is None
        else f"the first {run.key('evaluate.n_signal')} SR signal events not injected"}
    artifacts.write_prepared(run.data_dir, prep.info, roles)
    art.record()
    run.log(f"prepared data {art.path}: roles {prep.info['roles']}")
    prep = run.cached(key, lambda: prep)
    if run.key("lowdim.enabled"):
        make_lowdim_features(run, prep)
    return prep


# ---------------------------------------------------------------------------------------------
# low-dimensional CATHODE features (a data-folder cache)
# ---------------------------------------------------------------------------------------------

LOWDIM_FEATURE_CHUNK = 2000   # events per τ21 computation (bounds the memory, drives the bar)


def lowdim_features_artifact(run, prep):
    """``prepared/lowdim_features.npz``: made from the dijet caches and ``lowdim.features``."""
    return run.artifact(artifacts.lowdim_features_path(run.data_dir), config=["lowdim.features"],
                        extra={"caches": prep.info["cache_digests"]}, cache=True)


def make_lowdim_features(run, prep) -> None:
    """Compute (or reuse) the features of every event of the dijet caches."""
    from tqdm.auto import tqdm

    from lhco_fullphase.lowdim import FEATURE_NAMES, lowdim_features
    art = lowdim_features_artifact(run, prep)
    if art.prepare(log=run.log, what="low-dim CATHODE features"):
        run.log(f"low-dim CATHODE features {art.path.name}: up to date")
        return
    f = run.cfg["lowdim"]["features"]
    a = prep.arrays
    n = len(a["event_id"])
    feats = [lowdim_features({k: a[k][lo:lo + LOWDIM_FEATURE_CHUNK] for k in ("jets", "particles", "mask")},
                             f["jet_order"], f["beta"], f["R0"])
             for lo in tqdm(range(0, n, LOWDIM_FEATURE_CHUNK), desc="low-dim features", unit="chunk",
                            disable=not run.progress)]
    artifacts.write_lowdim_features(art.path, a["event_id"], np.concatenate(feats) if feats else
                                    np.zeros((0, 4)), FEATURE_NAMES)
    art.record()
    run.log(f"low-dim CATHODE features {art.path.name}: {n} events")


class LowdimFeatures:
    """The cached features; ``take(ids)`` returns those of the given event ids (N, 4)."""

    def __init__(self, event_id, features):
        self.event_id, self.features = np.asarray(event_id, np.int64), np.asarray(features, np.float64)

    def take(self, ids) -> np.ndarray:
        return self.features[positions(self.event_id, ids, "LowdimFeatures.take")]


def load_lowdim_features(run, prep) -> LowdimFeatures:
    """The features of the run's events (made here if missing or stale), once per process."""
    art = lowdim_features_artifact(run, prep)
    if not (art.complete() and art.matches()):
        make_lowdim_features(run, prep)

    def load():
        d = artifacts.read_lowdim_features(art.path)
        return LowdimFeatures(d["event_id"], d["features"])
    return run.cached(f"lowdim_features/{art.digest}", load)


def positions(sorted_ids, ids, what="take") -> np.ndarray:
    """Index of each of ``ids`` in the sorted id array ``sorted_ids``; KeyError if one is missing."""
    ids = np.asarray(ids, np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    if np.any(pos >= len(sorted_ids)) or np.any(sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] != ids):
        raise KeyError(f"{what}: unknown event ids")
    return pos


def _sorted_by_id(arrays):
    order = np.argsort(arrays["event_id"], kind="stable")
    return {k: v[order] for k, v in arrays.items()}


class Prepared:
    """The prepared data: ``info`` (preprocessing constants, counts, fingerprints), ``roles``
    (event-id sets) and — read from the dijet caches on first use — the physical arrays of all
    events sorted by id. ``take(role_or_ids)`` returns the arrays of those events."""

    def __init__(self, data_dir, info, roles, arrays=None):
        self.data_dir = Path(data_dir)
        self.info = info
        self.roles = {k: np.asarray(v, np.int64) for k, v in roles.items()}
        self._arrays = arrays
        self._derived = {}

    @classmethod
    def load(cls, data_dir) -> "Prepared":
        info, roles = artifacts.read_prepared(data_dir)
        missing = [r for r in ROLES if r not in roles]
        if missing:
            raise DataFormatError(artifacts.roles_path(data_dir), missing[0], "missing role")
        return cls(data_dir, info, roles)

    @property
    def arrays(self) -> dict:
        if self._arrays is None:
            parts = [artifacts.read_dijet_cache(p) for p in self.info["caches"]]
            self._arrays = _sorted_by_id({k: np.concatenate([p[k] for p in parts])
                                          for k in artifacts.DIJET_DATASETS})
        return self._arrays

    @property
    def pre(self):
        """The generators' Preprocessor."""
        if "pre" not in self._derived:
            from lhco_fullphase.preprocess import Preprocessor
            self._derived["pre"] = Preprocessor.from_dict(self.info["preprocessor"])
        return self._derived["pre"]

    def take(self, which) -> dict:
        ids = self.roles[which] if isinstance(which, str) else np.asarray(which, np.int64)
        pos = positions(self.arrays["event_id"], ids, "Prepared.take")
        return {k: v[pos] for k, v in self.arrays.items()}

    def fingerprint(self, *roles) -> dict:
        """What a downstream output made from these roles depends on: their ids, the dijet
        caches and the preprocessing (for ``Run.artifact(extra=...)``)."""
        return {"events": {r: self.info["role_digests"][r] for r in roles},
                "caches": self.info["cache_digests"],
                "preprocessor": self.info["preprocessor_digest"]}

    def classifier_preprocessor(self, cfg):
        """Preprocessing of the classifier inputs: the 5 physical jet features (raw φ) and the
        particles with ``classifier.pt_rel_transform`` (null: the generators'). The generators'
        Preprocessor if it is just that, else a plain one fitted on ``sb_train`` like it."""
        from lhco_fullphase.preprocess import Preprocessor
        want = cfg["classifier"]["pt_rel_transform"] or self.pre.pt_rel_transform
        if want == self.pre.pt_rel_transform and self.pre.is_plain:
            return self.pre
        if ("classifier_pre", want) not in self._derived:
            d = self.pre.to_dict()
            pre = Preprocessor(d["mjj_range"], d["pt_rel_eps"], d["mass_zero_tol"], pt_rel_transform=want)
            a = self.take("sb_train")
            self._derived[("classifier_pre", want)] = pre.fit(a["jets"], a["particles"], a["mask"], a["mjj"])
        return self._derived[("classifier_pre", want)]

    def kde(self, cfg):
        """The SR mjj KDE (``kde.fit_on``: sr_data = the data-class SR background; sb_train)."""
        from lhco_fullphase.kde import MjjKDE
        k = cfg["kde"]
        key = ("kde", k["fit_on"], float(k["bandwidth"]), tuple(cfg["windows"]["sr"]))
        if key not in self._derived:
            self._derived[key] = MjjKDE(self.pre, float(k["bandwidth"]), cfg["windows"]["sr"]).fit(
                self.take(KDE_ROLE[k["fit_on"]])["mjj"])
        return self._derived[key]


KDE_ROLE = {"sr_data": "data_bkg", "sb_train": "sb_train"}


def load_prepared(run) -> Prepared:
    """The run's prepared data, loaded once per process; an error naming the reason if it is
    missing or was made with other settings (run the prepare stage)."""
    art = prepared_artifact(run)
    if not (art.complete() and art.matches()):
        reason = art.stale_reason() or "missing"
        raise UsageError(f"{art.path}: prepared data {reason}; run the prepare stage "
                         "(python -m lhco_fullphase.prepare)")
    return run.cached(f"prepared/{art.digest}", lambda: Prepared.load(run.data_dir))


def main(argv=None):
    import json

    from lhco_fullphase.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    run = Run.from_args(parser(__doc__.split("\n")[0]).parse_args(argv), SCHEMA)
    prep = prepare(run)
    print(json.dumps({"roles": prep.info["roles"], "events": prep.info["events"]}, indent=1))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
