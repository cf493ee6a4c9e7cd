"""Jet features for permutation_ad: particle (Δη, Δφ, log pT-like) and jet (η, mass, N[, pT]).

Input is the Top-Tagging layout (constituent four-momenta ``p4`` (N, 200, 4) = E, px, py, pz,
zero padded, pT ordered) — the official files, our Pythia stand-ins (same layout) or a small
synthetic generator used by the tests. Output is the processed HDF5 layout of SPEC §1.4 with
*physical* (unstandardised) features; standardisation is fitted on each model's own training
sample (:class:`Standardizer`) and saved beside the model.

Multiplicity is discrete. The jet density model sees ``N + u`` with ``u ~ U(0, 1)`` during
training (uniform dequantisation, so that a continuous density of ``N + u`` integrates to the
probability of ``N`` over the unit bin); at evaluation it is taken at the bin centre ``N + 0.5``.
The processed files store ``N + 0.5`` (N = all constituents of the jet, before keeping the
leading P); the model adds ``u − 0.5``.
"""
from __future__ import annotations

import json
import os
import zlib

import h5py
import numpy as np

from shared.config import atomic_write_text
from shared.data.processed import write_processed

PT_FEATURES = ("log_pt", "log_pt_rel", "log_one_minus_pt_rel")
JET_FEATURES = ("pt", "eta", "mass", "n")
N_COLUMN = "n"


class DataError(ValueError):
    """Bad input: names the file (or config) and the field."""

    def __init__(self, path, field, message):
        super().__init__(f"{path}: field '{field}': {message}")
        self.path, self.field = path, field


def _wrap_phi(dphi):
    return (dphi + np.pi) % (2.0 * np.pi) - np.pi


def wrap_phi(dphi):
    """Wrap angle differences to [−π, π)."""
    return _wrap_phi(np.asarray(dphi))


def kinematics(p4):
    """(pt, eta, phi, mass) of four-vectors ``(..., 4)`` = E, px, py, pz."""
    e, px, py, pz = (p4[..., i].astype(np.float64) for i in range(4))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pt), where=pt > 0)), 0.0)
    phi = np.arctan2(py, px)
    m2 = e**2 - px**2 - py**2 - pz**2
    return pt, eta, phi, np.sqrt(np.clip(m2, 0.0, None))


def jet_features(p4, num_particles, particle_pt_feature="log_pt",
                 jet_feature_names=("eta", "mass", "n"), path="<array>"):
    """Features of jets given as constituent four-momenta.

    Args:
        p4: (N, M, 4) E, px, py, pz, zero padded.
        num_particles: P, the leading-pT particles kept.
        particle_pt_feature: one of ``log_pt``, ``log_pt_rel``, ``log_one_minus_pt_rel``.
        jet_feature_names: subset/order of ``pt, eta, mass, n``.
    Returns:
        dict(constituents=(N, P, 3) float32 [Δη, Δφ, pt-feature], mask=(N, P) bool,
             jets=(N, J) float32 with ``n`` = total multiplicity + 0.5; the mask holds
             min(n, P) particles, a function of n, so conditioning on n stays consistent).
    """
    if particle_pt_feature not in PT_FEATURES:
        raise DataError(path, "data.particle_pt_feature", f"{particle_pt_feature!r} not in {PT_FEATURES}")
    bad = [n for n in jet_feature_names if n not in JET_FEATURES]
    if bad:
        raise DataError(path, "data.jet_features", f"unknown {bad}; choose from {JET_FEATURES}")
    p4 = np.asarray(p4)
    if p4.ndim != 3 or p4.shape[-1] != 4:
        raise DataError(path, "p4", f"expected (N, M, 4), got {p4.shape}")
    pt, eta, phi, _ = kinematics(p4)
    real = pt > 0
    n_total = real.sum(axis=1)
    jet = p4.astype(np.float64).sum(axis=1)
    jpt, jeta, jphi, jm = kinematics(jet)
    # keep the leading-pT particles (files are pT ordered, but do not rely on it)
    order = np.argsort(-np.where(real, pt, -1.0), axis=1, kind="stable")[:, :num_particles]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    pt, eta, phi, real = take(pt), take(eta), take(phi), take(real)
    if pt.shape[1] < num_particles:  # fewer slots in the file than requested
        pad = num_particles - pt.shape[1]
        pt, eta, phi = (np.pad(a, ((0, 0), (0, pad))) for a in (pt, eta, phi))
        real = np.pad(real, ((0, 0), (0, pad)))
    deta = eta - jeta[:, None]
    dphi = _wrap_phi(phi - jphi[:, None])
    safe_pt = np.where(real, pt, 1.0)
    rel = safe_pt / np.maximum(jpt, 1e-9)[:, None]
    if particle_pt_feature == "log_pt":
        ptf = np.log(safe_pt)
    elif particle_pt_feature == "log_pt_rel":
        ptf = np.log(rel)
    else:
        ptf = np.log(np.clip(1.0 - rel, 1e-8, None))
    cons = np.stack([deta, dphi, ptf], axis=-1)
    cons = np.where(real[..., None], cons, 0.0).astype(np.float32)
    n_kept = real.sum(axis=1)
    cols = {"pt": jpt, "eta": jeta, "mass": jm, "n": n_total + 0.5}
    jets = np.stack([cols[n] for n in jet_feature_names], axis=-1).astype(np.float32)
    empty = n_kept == 0
    if empty.any():
        raise DataError(path, "p4", f"{int(empty.sum())} jets without constituents")
    return {"constituents": cons, "mask": real, "jets": jets}


class Standardizer:
    """Masked standardisation of particles and jets; constants are JSON-able.

    ``x' = (x − mean) / std`` per feature; padding stays 0. The log|Jacobian| of the map
    ``x → x'`` for one jet is ``−Σ_real Σ_f log std_f − Σ_j log std_j``; add it to a log density
    in standardised units to get the density in physical units.
    """

    def __init__(self, p_mean, p_std, j_mean, j_std):
        self.p_mean, self.p_std = np.asarray(p_mean, np.float64), np.asarray(p_std, np.float64)
        self.j_mean, self.j_std = np.asarray(j_mean, np.float64), np.asarray(j_std, np.float64)

    @classmethod
    def fit(cls, constituents, mask, jets, dequantized_columns=(), min_std=1e-6):
        """Masked statistics; a dequantised column's variance includes the U(0,1) noise (+1/12)."""
        m = np.asarray(mask, bool)
        real = np.asarray(constituents, np.float64)[m]
        j = np.asarray(jets, np.float64)
        j_var = j.var(0)
        for c in dequantized_columns:
            j_var[c] += 1.0 / 12.0
        return cls(real.mean(0), np.maximum(real.std(0), min_std), j.mean(0),
                   np.maximum(np.sqrt(j_var), min_std))

    def transform(self, constituents, mask, jets):
        m = np.asarray(mask, bool)[..., None]
        c = (np.asarray(constituents, np.float64) - self.p_mean) / self.p_std
        c = np.where(m, c, 0.0).astype(np.float32)
        j = ((np.asarray(jets, np.float64) - self.j_mean) / self.j_std).astype(np.float32)
        return c, j

    def inverse(self, constituents, mask, jets):
        m = np.asarray(mask, bool)[..., None]
        c = np.where(m, np.asarray(constituents, np.float64) * self.p_std + self.p_mean, 0.0)
        return c, np.asarray(jets, np.float64) * self.j_std + self.j_mean

    def log_jacobian_particles(self, mask):
        """(B,) log|det d x'/d x| of the particle part of each jet."""
        return -np.asarray(mask, bool).sum(axis=1) * np.log(self.p_std).sum()

    def log_jacobian_jets(self):
        """Scalar log|det d x'/d x| of the jet-feature part."""
        return float(-np.log(self.j_std).sum())

    def to_dict(self):
        return {k: getattr(self, k).tolist() for k in ("p_mean", "p_std", "j_mean", "j_std")}

    @classmethod
    def from_dict(cls, d):
        return cls(d["p_mean"], d["p_std"], d["j_mean"], d["j_std"])

    def save_json(self, path):
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load_json(cls, path):
        with open(path) as fh:
            return cls.from_dict(json.load(fh))


# ---------------------------------------------------------------- processed HDF5 (SPEC §1.4)



def read_processed(path):
    """Read the processed layout → dict(constituents, mask, jets, label, attrs)."""
    if not os.path.exists(path):
        raise DataError(path, "<file>", "does not exist")
    try:
        from shared.data.processed import read_processed as _read
        return _read(path)
    except ImportError:
        pass
    out = {}
    with h5py.File(path, "r") as f:
        for k in ("constituents", "mask", "jets", "label"):
            if k not in f:
                raise DataError(path, k, "missing dataset")
            out[k] = f[k][()]
        out["attrs"] = dict(f.attrs)
    return out


# ---------------------------------------------------------------- synthetic jets (tests)

def synthetic_p4(n, num_slots, prongs, seed, pt_jet=600.0):
    """Cheap jet-like four-momenta: ``prongs`` hard subjets + soft spray, pT ordered.

    Only for tests and smoke runs: not physics. 1-prong ≈ QCD-like, 2/3-prong ≈ Z′/top-like.
    """
    rng = np.random.default_rng(seed)
    p4 = np.zeros((n, num_slots, 4), np.float32)
    for i in range(n):
        mult = int(np.clip(rng.poisson(12 + 6 * prongs), 3, num_slots))
        axes = rng.normal(0, 0.25 if prongs > 1 else 0.02, size=(prongs, 2))
        which = rng.integers(0, prongs, size=mult)
        deta = axes[which, 0] + rng.normal(0, 0.08, mult)
        dphi = axes[which, 1] + rng.normal(0, 0.08, mult)
        frac = rng.dirichlet(np.full(mult, 0.6))
        pt = np.sort(frac * pt_jet * rng.uniform(0.92, 1.08))[::-1]
        eta0, phi0 = rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        eta, phi = eta0 + deta, phi0 + dphi
        p4[i, :mult] = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    return p4


# ---------------------------------------------------------------- reading raw files

def read_p4(path, start=0, stop=None):
    """(p4, label) from a Top-Tagging-layout file (real or generated)."""
    if not os.path.exists(path):
        raise DataError(path, "<file>", "does not exist")
    from shared.data.toptag import read_toptag
    d = read_toptag(path, start=start, stop=stop)
    return np.asarray(d["p4"]), np.asarray(d["label"])


# ---------------------------------------------------------------- prepare stage

SPLITS = (("qcd", "train"), ("qcd", "val"), ("qcd", "test"),
          ("top", "train"), ("top", "val"), ("top", "test"), ("zprime", "test"))
_SYNTH_PRONGS = {"qcd": 1, "top": 3, "zprime": 2}
_LABEL = {"qcd": 0, "top": 1, "zprime": 1}


def processed_path(data_dir, sample, split):
    return os.path.join(data_dir, "processed", f"{sample}_{split}.h5")


def _split_size(dcfg, sample, split):
    return dcfg.get("n_zprime") if sample == "zprime" else dcfg.get(f"n_{split}")


def _raw_p4(dcfg, data_dir, sample, split, n, seed, source_desc):
    """Four-momenta of one (sample, split) from the configured source."""
    src = dcfg.get("source", "embedded")
    if src == "synthetic":
        return synthetic_p4(n, 200, _SYNTH_PRONGS[sample], seed)
    if src == "files":
        files = dcfg.get("files") or {}
        key = "zprime" if sample == "zprime" else split
        path = files.get(key)
        if not path:
            raise DataError(source_desc, f"data.files.{key}", "path required for data.source=files")
        if not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        p4, label = read_p4(path)
        if sample != "zprime":
            p4 = p4[label == _LABEL[sample]]
        return p4[:n] if n else p4
    if src == "embedded":
        return _embedded_p4(data_dir, sample, split, n, seed, dcfg)
    raise DataError(source_desc, "data.source", f"{src!r} not in embedded|files|synthetic")


def _embedded_p4(data_dir, sample, split, n, seed, dcfg):
    """Generated stand-in jets (shared.data.embedded), one independent file per (sample, split)."""
    from shared.data.embedded import ensure_embedded
    raw_dir = os.path.join(data_dir, "raw")
    # each (sample, split) is its own generation with its own seed -> no train/test overlap
    path = ensure_embedded(sample, raw_dir, int(n), int(seed), workers=int(dcfg.get("workers", 1)),
                           progress=True)
    p4, _ = read_p4(str(path))
    return p4[:n]


def prepare(cfg, data_dir, source_desc="<config>", progress=True):
    """Build (or reuse) the processed HDF5 files of every split; returns {(sample, split): path}."""
    dcfg = cfg["data"]
    seed = int(cfg.get("seed", 0))
    attrs_common = {"num_particles": int(dcfg["num_particles"]),
                    "particle_pt_feature": dcfg.get("particle_pt_feature", "log_pt"),
                    "jet_features": list(dcfg.get("jet_features", ["eta", "mass", "n"])),
                    "source": dcfg.get("source", "embedded"), "seed": seed}
    out = {}
    from tqdm.auto import tqdm
    for sample, split in tqdm(SPLITS, desc="prepare data", disable=not progress):
        path = processed_path(data_dir, sample, split)
        n = _split_size(dcfg, sample, split)
        attrs = dict(attrs_common, sample=sample, split=split, n_requested=-1 if n is None else int(n),
                     particle_features=["deta", "dphi", attrs_common["particle_pt_feature"]],
                     n_dequantisation="jets[:, n] = total multiplicity + 0.5 (bin centre)")
        if os.path.exists(path) and _attrs_match(path, attrs):
            out[(sample, split)] = path
            continue
        p4 = _raw_p4(dcfg, data_dir, sample, split, n, seed + zlib.crc32(f"{sample}/{split}".encode()) % 1000, source_desc)
        feats = jet_features(p4, attrs["num_particles"], attrs["particle_pt_feature"],
                             attrs["jet_features"], path=source_desc)
        write_processed(path, feats["constituents"], feats["mask"], feats["jets"],
                        np.full(len(p4), _LABEL[sample], np.int8), attrs)
        out[(sample, split)] = path
    return out


def _attrs_match(path, attrs):
    try:
        with h5py.File(path, "r") as f:
            stored = dict(f.attrs)
    except OSError:
        return False
    if "attrs_json" in stored:  # shared.data.processed keeps the attributes as one JSON string
        raw = stored["attrs_json"]
        stored = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    for k, v in attrs.items():
        s = stored.get(k)
        if isinstance(v, (list, dict)):
            try:
                s = json.loads(s) if isinstance(s, (str, bytes)) else list(s)
            except (TypeError, ValueError):
                return False
        elif isinstance(s, bytes):
            s = s.decode()
        if hasattr(s, "item"):
            s = s.item()
        if s != v and not (isinstance(s, (list, tuple)) and list(s) == v):
            return False
    return True


def load_split(data_dir, sample, split, limit=None):
    """dict(constituents, mask, jets, label) of a processed split (first ``limit`` jets)."""
    d = read_processed(processed_path(data_dir, sample, split))
    sl = slice(None) if limit is None else slice(0, int(limit))
    return {k: np.asarray(d[k])[sl] for k in ("constituents", "mask", "jets", "label")}
