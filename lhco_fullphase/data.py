"""Dijet + constituent features for full-phase-space CATHODE (SPEC §1.2, §3).

Input: the LHC Olympics 2020 R&D layout (official file or our generated stand-in), read in
chunks. Each event is clustered with anti-kT R = 1.0 (FastJet, via ``shared.data.jets``); the two
leading jets are kept with their constituents pT-ordered and zero-padded to ``num_particles``.

Physical arrays (what the processed cache stores):

* ``jets``       (N, 2, 5)  pT, η, φ, m, N  — jet 4-vector = sum of *all* its constituents
                             (masses clipped at 0); N = number of constituents *stored*
                             (≤ ``num_particles``).
* ``particles``  (N, 2, P, 3) pT_rel = pT/pT_jet, Δη, Δφ (Δφ wrapped to [−π, π)); 0 at padding.
* ``mask``       (N, 2, P) bool, 1 = real particle.
* ``mjj``        (N,) dijet invariant mass (GeV), ``label`` (N,), ``event_id`` (N,) int64.

Jet φ is kept as measured, in [−π, π): no ``clip(φ − π)`` recentring (SPEC §7 defect).

:class:`Preprocessor` maps physical arrays to network inputs and back (SPEC §3):
jet pT → log(pT/mjj), m → log(m/mjj) (0 if m = 0), particle pT_rel → log(1 − pT_rel) (the
original's choice, ``pt_rel_transform="log1m"``) or log pT_rel (``"log"``), then standardisation
with masked statistics; mjj → 2(ln mjj − ln a)/(ln b − ln a) − 1. Options (off = the original):
jet φ in the dijet frame, and set-level features of the stored particles (Σ pT_rel, centroid,
mass fraction) that the jet model generates and the inverse enforces.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
from sklearn.neighbors import KernelDensity

from shared.data import jets as jetlib
from shared.data.errors import DataFormatError
from shared.data.lhco import count_lhco, iter_lhco

JET_FEATURES = ("pt", "eta", "phi", "mass", "n")
PARTICLE_FEATURES = ("pt_rel", "deta", "dphi")
PT_REL_TRANSFORMS = ("log1m", "log")
JET_PHI_MODES = ("raw", "dijet_frame")
CACHE_DATASETS = ("jets", "particles", "mask", "mjj", "label", "event_id")
CACHE_FORMAT = "lhco_fullphase/dijet-v1"
# Event ids encode the source file: id = source_index * ID_STRIDE + row (rows < 10^12).
ID_STRIDE = 10**12


# ---------------------------------------------------------------------------------------------
# Clustering and physical features
# ---------------------------------------------------------------------------------------------

def wrap_phi(dphi):
    """Wrap angle differences to [−π, π)."""
    return jetlib.wrap_phi(dphi)


def sort_by_pt(jets, particles, mask):
    """Order events like the processed data: jets by pT (leading first), each jet's particles by
    pT_rel (descending), padding last. Returns (jets, particles, mask)."""
    jets, particles, mask = np.asarray(jets), np.asarray(particles), np.asarray(mask, bool)
    o = np.argsort(-jets[..., 0], axis=1, kind="stable")
    jets = np.take_along_axis(jets, o[..., None], 1)
    particles = np.take_along_axis(particles, o[..., None, None], 1)
    mask = np.take_along_axis(mask, o[..., None], 1)
    key = np.where(mask, particles[..., 0], -np.inf)
    o = np.argsort(-key, axis=-1, kind="stable")
    return (jets, np.take_along_axis(particles, o[..., None], 2), np.take_along_axis(mask, o, 2))


def dijet_mass(jets):
    """Invariant mass of the two jets (N, 2, ≥4) [pT, η, φ, m, …] -> (N,)."""
    jets = np.asarray(jets, dtype=np.float64)
    p4 = jetlib.p4_from_ptetaphim(jets[..., 0], jets[..., 1], jets[..., 2], jets[..., 3])
    total = p4.sum(axis=1)
    m2 = total[:, 0] ** 2 - np.sum(total[:, 1:] ** 2, axis=-1)
    return np.sqrt(np.clip(m2, 0.0, None))


def cluster_dijets(particles, num_particles, radius=1.0, algorithm="antikt"):
    """Cluster events (N, M, 3) [pT, η, φ] (pT = 0 is padding) into the two leading jets.

    Returns ``(arrays, keep)``: physical ``jets``, ``particles``, ``mask``, ``mjj`` for the events
    with at least two jets, and ``keep`` (N,) bool marking those events."""
    particles = np.asarray(particles, dtype=np.float64)
    jets_ak, consts_ak = jetlib.cluster_ptetaphi(particles, R=radius, algorithm=algorithm)
    import awkward as ak
    keep = np.asarray(ak.num(jets_ak, axis=1)) >= 2
    consts_ak = consts_ak[keep]
    n = int(keep.sum())
    jets = np.zeros((n, 2, 5), np.float64)
    parts = np.zeros((n, 2, num_particles, 3), np.float64)
    mask = np.zeros((n, 2, num_particles), bool)
    for j in range(2):
        # Jet 4-vector from all its constituents; only the leading num_particles are stored.
        cj = consts_ak[:, j]
        p4 = np.stack([ak.to_numpy(ak.sum(cj[f], axis=-1)) for f in ("E", "px", "py", "pz")], -1)
        kin = jetlib.ptetaphim_from_p4(p4)
        stored, m = jetlib.pad_p4(consts_ak[:, j], num_particles)
        pk = jetlib.ptetaphim_from_p4(stored)
        jets[:, j, :4] = kin
        jets[:, j, 4] = m.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            parts[:, j, :, 0] = np.where(m, pk[..., 0] / kin[:, None, 0], 0.0)
        parts[:, j, :, 1] = np.where(m, pk[..., 1] - kin[:, None, 1], 0.0)
        parts[:, j, :, 2] = np.where(m, wrap_phi(pk[..., 2] - kin[:, None, 2]), 0.0)
        mask[:, j] = m
    return {"jets": jets, "particles": parts, "mask": mask, "mjj": dijet_mass(jets)}, keep


# ---------------------------------------------------------------------------------------------
# Regions, splits, event ids
# ---------------------------------------------------------------------------------------------

def _interval(cfg, key):
    lo, hi = (float(v) for v in cfg[key])
    if not lo < hi:
        raise ValueError(f"windows.{key}: need lower < upper, got {cfg[key]}")
    return lo, hi


def region_masks(mjj, windows):
    """(sr, sb) boolean masks. Intervals are half-open [lo, hi) so no event is in both.

    ``windows``: mapping with ``sr: [lo, hi]`` and ``sb: [[lo, hi], ...]`` (GeV)."""
    mjj = np.asarray(mjj, dtype=np.float64)
    lo, hi = _interval(windows, "sr")
    sr = (mjj >= lo) & (mjj < hi)
    sb = np.zeros_like(sr)
    for i, band in enumerate(windows["sb"]):
        blo, bhi = (float(v) for v in band)
        if not blo < bhi:
            raise ValueError(f"windows.sb[{i}]: need lower < upper, got {band}")
        if blo < hi and lo < bhi:
            raise ValueError(f"windows.sb[{i}] {band} overlaps the signal region {windows['sr']}")
        sb |= (mjj >= blo) & (mjj < bhi)
    return sr, sb


def split_indices(n, fraction, seed):
    """Random split of range(n) into (first, second) index arrays, ``fraction`` in the first."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(fraction * n))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def make_event_ids(rows, source_index):
    """Globally unique ids: ``source_index * ID_STRIDE + row`` (int64)."""
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(rows < 0) or np.any(rows >= ID_STRIDE):
        raise ValueError(f"event rows must lie in [0, {ID_STRIDE})")
    return np.int64(source_index) * ID_STRIDE + rows


def assert_disjoint(ids_a, ids_b, name_a="a", name_b="b"):
    """Raise ValueError if two event-id sets share any event (e.g. training vs evaluation)."""
    common = np.intersect1d(np.asarray(ids_a), np.asarray(ids_b))
    if common.size:
        raise ValueError(f"{name_a} and {name_b} share {common.size} events "
                         f"(e.g. ids {common[:5].tolist()}); evaluation must use independent events")


# ---------------------------------------------------------------------------------------------
# Processed cache
# ---------------------------------------------------------------------------------------------

def process_file(path, out_path, *, num_particles, radius=1.0, source_index=0, start=0,
                 stop=None, chunksize=100_000, progress=True):
    """Cluster an LHCO R&D file chunk by chunk and write the processed HDF5 cache atomically.

    Events with fewer than two jets are dropped (counted in the ``n_dropped`` attribute).
    Returns the number of events written."""
    from tqdm import tqdm

    path, out_path = Path(path), Path(out_path)
    if not path.is_file():
        raise DataFormatError(path, "file", "not found")
    total = count_lhco(path)
    stop = total if stop is None else min(int(stop), total)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=out_path.parent)
    os.close(fd)
    written = dropped = 0
    try:
        with h5py.File(tmp, "w") as h5:
            shapes = {"jets": (2, 5), "particles": (2, num_particles, 3), "mask": (2, num_particles),
                      "mjj": (), "label": (), "event_id": ()}
            dtypes = {"jets": "f4", "particles": "f4", "mask": "bool", "mjj": "f8", "label": "i1",
                      "event_id": "i8"}
            ds = {k: h5.create_dataset(k, shape=(0,) + s, maxshape=(None,) + s, dtype=dtypes[k],
                                       chunks=(min(1024, max(chunksize, 1)),) + s,
                                       compression="gzip" if k == "particles" else None)
                  for k, s in shapes.items()}
            bar = tqdm(total=stop - start, desc=f"cluster {path.name}", unit="ev",
                       disable=not progress)
            chunks = iter_lhco(path, start, stop, chunksize=chunksize, dtype=np.float64)
            for lo, chunk in zip(range(start, stop, chunksize), chunks):
                hi = min(lo + chunksize, stop)
                arrays, keep = cluster_dijets(chunk["particles"], num_particles, radius)
                arrays["label"] = chunk["label"][keep]
                arrays["event_id"] = make_event_ids(np.arange(lo, hi)[keep], source_index)
                k = int(keep.sum())
                for name, d in ds.items():
                    d.resize(written + k, axis=0)
                    d[written:written + k] = arrays[name]
                written += k
                dropped += (hi - lo) - k
                bar.update(hi - lo)
            bar.close()
            h5.attrs.update({"format": CACHE_FORMAT, "source_file": str(path.resolve()),
                             "source_index": int(source_index), "rows": json.dumps([start, stop]),
                             "num_particles": int(num_particles), "jet_radius": float(radius),
                             "jet_features": json.dumps(JET_FEATURES),
                             "particle_features": json.dumps(PARTICLE_FEATURES),
                             "n_dropped": int(dropped)})
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return written


def read_processed(path, select=None):
    """Read the processed cache written by :func:`process_file` -> dict of arrays (+ ``attrs``).

    ``select``: optional boolean mask or index array applied to every dataset."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file", "not found")
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != CACHE_FORMAT:
            raise DataFormatError(path, "format", f"not a {CACHE_FORMAT} file")
        out = {}
        for k in CACHE_DATASETS:
            if k not in h5:
                raise DataFormatError(path, k, "missing dataset")
            out[k] = h5[k][()] if select is None else h5[k][()][select]
        out["attrs"] = dict(h5.attrs)
    return out


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------

class Preprocessor:
    """Map physical -> network inputs (SPEC §3) and back; constants are JSON-able.

    Network jet features (:attr:`network_jet_features`): log(pT/mjj), η, φ, log(m/mjj), N, then
    the optional ones below. With only the defaults the map is exactly invertible.

    ``pt_rel_transform``: ``"log1m"`` = log(1 − pT_rel) (the original; the bulk of soft
    particles sits at ≈ 0 and the leading particle ~15 std away after standardisation) or
    ``"log"`` = log pT_rel (close to Gaussian over the constituents; better for diffusion).

    ``jet_phi``: ``"raw"`` (the original) or ``"dijet_frame"``: φ is replaced by (cos φ', sin φ')
    with φ' the azimuth in the frame that puts the jets at ±π/2 + ∓a/2 (a = deviation from
    back-to-back). A diffusion model over raw φ has to learn φ₂ = φ₁ ± π across the wrap and
    leaves the jets far from back-to-back (demo: 5 % quantile of Δφ_jj 2.2 vs 2.83); in this
    frame cos φ' = −sin(a/2) is standardised to unit spread. The event's absolute azimuth is
    dropped (the detector is φ-symmetric); :meth:`inverse` draws it uniformly from ``rng``
    (or uses 0 without one).

    Set-level features of the *stored* particles, each appended to the jet, generated by the jet
    model and enforced on the generated particles by :meth:`inverse` (a per-particle diffusion
    model does not keep them, and a classifier sees them at once):

    * ``jet_pt_fraction``: f = Σ pT_rel, as log(1 + δ − f) (δ = ``pt_fraction_delta``,
      f ≤ 1 + δ/2); enforced by rescaling pT_rel (demo: generated 0.5–1.5 vs true 0.73–1.0).
    * ``jet_centroid``: the pT-weighted mean (Δη, Δφ) of the stored particles; enforced by a
      translation (a truncated jet is not centred on its axis, but nearly).
    * ``jet_mass_fraction``: r = m(stored)/m(jet) ≤ 1 (massless constituents; 1 for m = 0), as
      log(1 + δ − r); enforced by scaling the offsets from the centroid (m ∝ angular size),
      a few fixed-point steps with the factor clipped to [0.5, 2].

    Physical jets keep their 5 features. ``pt_rel_eps``: the argument of the log is floored at
    this value (log1m: a one-particle jet has pT_rel = 1, the inverse returns 1 − eps there).
    ``mass_zero_tol``: log(m/mjj) is 0 for m = 0; on the way back any value above log(1 − tol)
    means m = 0, since a jet mass can never reach mjj.
    """

    def __init__(self, mjj_range=(2300.0, 5000.0), pt_rel_eps=1e-6, mass_zero_tol=1e-4,
                 jet_mean=None, jet_std=None, particle_mean=None, particle_std=None,
                 pt_rel_transform="log1m", jet_pt_fraction=False, pt_fraction_delta=0.1,
                 jet_phi="raw", jet_centroid=False, jet_mass_fraction=False):
        self.mjj_range = (float(mjj_range[0]), float(mjj_range[1]))
        if not 0 < self.mjj_range[0] < self.mjj_range[1]:
            raise ValueError(f"mjj_range must be 0 < a < b, got {mjj_range}")
        self.pt_rel_eps = float(pt_rel_eps)
        if pt_rel_transform not in PT_REL_TRANSFORMS:
            raise ValueError(f"pt_rel_transform must be one of {PT_REL_TRANSFORMS}, "
                             f"got {pt_rel_transform!r}")
        if jet_phi not in JET_PHI_MODES:
            raise ValueError(f"jet_phi must be one of {JET_PHI_MODES}, got {jet_phi!r}")
        self.pt_rel_transform = pt_rel_transform
        self.jet_phi = jet_phi
        self.jet_pt_fraction = bool(jet_pt_fraction)
        self.jet_centroid = bool(jet_centroid)
        self.jet_mass_fraction = bool(jet_mass_fraction)
        self.pt_fraction_delta = float(pt_fraction_delta)
        self.mass_zero_tol = float(mass_zero_tol)
        self.jet_mean = None if jet_mean is None else np.asarray(jet_mean, np.float64)
        self.jet_std = None if jet_std is None else np.asarray(jet_std, np.float64)
        self.particle_mean = None if particle_mean is None else np.asarray(particle_mean, np.float64)
        self.particle_std = None if particle_std is None else np.asarray(particle_std, np.float64)

    # -- mjj ---------------------------------------------------------------------------------
    def scale_mjj(self, mjj):
        a, b = np.log(self.mjj_range)
        return 2.0 * (np.log(np.asarray(mjj, np.float64)) - a) / (b - a) - 1.0

    def unscale_mjj(self, x):
        a, b = np.log(self.mjj_range)
        return np.exp((np.asarray(x, np.float64) + 1.0) * (b - a) / 2.0 + a)

    @property
    def network_jet_features(self):
        """Names of the network-space jet features, in order."""
        names = ["log_pt", "eta"]
        names += ["cos_phi", "sin_phi"] if self.jet_phi == "dijet_frame" else ["phi"]
        names += ["log_mass", "n"]
        names += ["pt_fraction"] if self.jet_pt_fraction else []
        names += ["centroid_deta", "centroid_dphi"] if self.jet_centroid else []
        names += ["mass_fraction"] if self.jet_mass_fraction else []
        return tuple(names)

    @property
    def n_jet_features(self):
        """Number of network-space jet features (5 without options)."""
        return len(self.network_jet_features)

    @property
    def n_index(self):
        """Position of the multiplicity N among the network-space jet features."""
        return self.network_jet_features.index("n")

    @property
    def is_plain(self):
        """True if the network jet features are just the 5 physical ones (transformed)."""
        return self.n_jet_features == len(JET_FEATURES)

    # -- elementwise transforms (before standardisation) --------------------------------------
    def _log_gap(self, v):
        d = self.pt_fraction_delta
        return np.log(1.0 + d - np.clip(v, 0.0, 1.0 + d / 2))

    def _log_gap_inverse(self, y):
        d = self.pt_fraction_delta
        return np.clip(1.0 + d - np.exp(y), 1e-6, 1.0 + d / 2)

    def _jet_forward(self, jets, mjj, particles=None, mask=None):
        j = np.array(jets, dtype=np.float64)
        mjj = np.asarray(mjj, np.float64)[:, None]
        pt = np.log(j[..., 0] / mjj)
        m = j[..., 3]
        with np.errstate(divide="ignore"):
            logm = np.where(m > 0, np.log(np.where(m > 0, m, 1.0) / mjj), 0.0)
        cols = [pt, j[..., 1]]
        if self.jet_phi == "dijet_frame":
            phi = dijet_frame_phi(j[..., 2])
            cols += [np.cos(phi), np.sin(phi)]
        else:
            cols.append(j[..., 2])
        cols += [logm, j[..., 4]]
        if self.jet_pt_fraction or self.jet_centroid or self.jet_mass_fraction:
            p = np.asarray(particles, np.float64)
            w = p[..., 0] * np.asarray(mask, bool)
            if self.jet_pt_fraction:
                cols.append(self._log_gap(w.sum(-1)))
            if self.jet_centroid:
                cols += list(particle_centroid(p, mask))
            if self.jet_mass_fraction:
                cols.append(self._log_gap(stored_mass_fraction(p, mask, j[..., 3] / j[..., 0])))
        return np.stack(cols, -1)

    def _columns(self, x):
        """Network-space jet array (unstandardised) -> {feature name: (…,) float64}."""
        return {n: np.asarray(x[..., i], np.float64) for i, n in enumerate(self.network_jet_features)}

    def _jet_backward(self, x, mjj, rng=None):
        col = self._columns(x)
        mjj = np.asarray(mjj, np.float64)[:, None]
        j = np.zeros(x.shape[:-1] + (len(JET_FEATURES),))
        j[..., 0] = np.exp(col["log_pt"]) * mjj
        j[..., 1] = col["eta"]
        if self.jet_phi == "dijet_frame":
            psi = 0.0 if rng is None else rng.uniform(-np.pi, np.pi, size=(x.shape[0], 1))
            j[..., 2] = wrap_phi(np.arctan2(col["sin_phi"], col["cos_phi"]) + psi)
        else:
            j[..., 2] = col["phi"]
        zero = col["log_mass"] > np.log1p(-self.mass_zero_tol)
        j[..., 3] = np.where(zero, 0.0, np.exp(np.minimum(col["log_mass"], 0.0)) * mjj)
        j[..., 4] = col["n"]
        return j

    def _particle_forward(self, p, mask):
        p = np.array(p, dtype=np.float64)
        arg = 1.0 - p[..., 0] if self.pt_rel_transform == "log1m" else p[..., 0]
        p[..., 0] = np.log(np.maximum(arg, self.pt_rel_eps))
        return p * mask[..., None]

    def _particle_backward(self, x, mask):
        p = np.array(x, dtype=np.float64)
        e = np.exp(p[..., 0])
        p[..., 0] = 1.0 - e if self.pt_rel_transform == "log1m" else e
        return p * mask[..., None]

    # -- fit / apply ---------------------------------------------------------------------------
    def fit(self, jets, particles, mask, mjj):
        """Standardisation constants from physical training arrays (masked particle stats)."""
        mask = np.asarray(mask, bool)
        if not mask.any():
            raise ValueError("Preprocessor.fit: no real particles")
        j = self._jet_forward(jets, mjj, particles, mask)
        j = j.reshape(-1, j.shape[-1])
        p = self._particle_forward(particles, mask)[mask]
        self.jet_mean, self.jet_std = j.mean(0), _safe_std(j.std(0))
        self.particle_mean, self.particle_std = p.mean(0), _safe_std(p.std(0))
        return self

    def _check(self):
        if self.jet_mean is None or self.particle_mean is None:
            raise RuntimeError("Preprocessor: call fit() or load constants first")

    def transform(self, jets, particles, mask, mjj):
        """Physical -> (jets_x (N,2,F), particles_x (N,2,P,3), mjj_x (N,)), float32, 0 at padding;
        F = :attr:`n_jet_features`."""
        self._check()
        mask = np.asarray(mask, bool)
        jx = (self._jet_forward(jets, mjj, particles, mask) - self.jet_mean) / self.jet_std
        px = (self._particle_forward(particles, mask) - self.particle_mean) / self.particle_std
        px = px * mask[..., None]
        return jx.astype(np.float32), px.astype(np.float32), self.scale_mjj(mjj).astype(np.float32)

    def inverse(self, jets_x, particles_x, mask, mjj_x, rng=None):
        """Network space -> physical (jets, particles, mjj), float64; padding stays 0.

        The set-level jet features (if any) are enforced on the particles; ``rng``
        (``numpy.random.Generator``) draws the event azimuth of ``jet_phi="dijet_frame"``."""
        self._check()
        mask = np.asarray(mask, bool)
        mjj = self.unscale_mjj(mjj_x)
        jraw = np.asarray(jets_x, np.float64) * self.jet_std + self.jet_mean
        jets = self._jet_backward(jraw, mjj, rng)
        p = np.asarray(particles_x, np.float64) * self.particle_std + self.particle_mean
        p = self._particle_backward(p, mask)
        col = self._columns(jraw)
        if self.jet_pt_fraction:
            target = self._log_gap_inverse(col["pt_fraction"])
            total = np.sum(p[..., 0] * mask, axis=-1)
            scale = np.where(total > 0, target / np.where(total > 0, total, 1.0), 1.0)
            p[..., 0] *= scale[..., None]
        if self.jet_centroid:
            have = particle_centroid(p, mask)
            for k, name in ((1, "centroid_deta"), (2, "centroid_dphi")):
                p[..., k] += (col[name] - have[k - 1])[..., None]
            p[..., 2] = wrap_phi(p[..., 2])
            p *= mask[..., None]
        if self.jet_mass_fraction:
            target = self._log_gap_inverse(col["mass_fraction"])
            m_over_pt = jets[..., 3] / jets[..., 0]
            for _ in range(4):
                r = stored_mass_fraction(p, mask, m_over_pt)
                k = np.clip(np.where(r > 0, target / np.where(r > 0, r, 1.0), 1.0), 0.5, 2.0)
                k = np.where((m_over_pt > 0) & (mask.sum(-1) > 1), k, 1.0)
                c = np.stack(particle_centroid(p, mask), -1)[..., None, :]
                p[..., 1:] = (c + k[..., None, None] * (p[..., 1:] - c)) * mask[..., None]
        return jets, p, mjj

    def to_dict(self):
        self._check()
        return {"mjj_range": list(self.mjj_range), "pt_rel_eps": self.pt_rel_eps,
                "pt_rel_transform": self.pt_rel_transform, "jet_phi": self.jet_phi,
                "jet_pt_fraction": self.jet_pt_fraction, "jet_centroid": self.jet_centroid,
                "jet_mass_fraction": self.jet_mass_fraction,
                "pt_fraction_delta": self.pt_fraction_delta,
                "mass_zero_tol": self.mass_zero_tol,
                "jet_mean": self.jet_mean.tolist(), "jet_std": self.jet_std.tolist(),
                "particle_mean": self.particle_mean.tolist(),
                "particle_std": self.particle_std.tolist()}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def dijet_frame_phi(phi):
    """(N, 2) jet azimuths -> azimuths in the frame with the jets at (π/2 + a/2, −π/2 − a/2),
    a = wrap(φ₀ − φ₁ − π) (so φ'₀ − φ'₁ ≡ φ₀ − φ₁)."""
    phi = np.asarray(phi, np.float64)
    a = wrap_phi(phi[:, 0] - phi[:, 1] - np.pi)
    rot = phi[:, 0] - np.pi / 2 - a / 2
    return wrap_phi(phi - rot[:, None])


def particle_centroid(particles, mask):
    """pT_rel-weighted mean (Δη, Δφ) of the real particles (0 for a jet without any)."""
    p = np.asarray(particles, np.float64)
    w = p[..., 0] * np.asarray(mask, bool)
    tot = w.sum(-1)
    safe = np.where(tot > 0, tot, 1.0)
    return (w * p[..., 1]).sum(-1) / safe, (w * p[..., 2]).sum(-1) / safe


def stored_mass_fraction(particles, mask, m_over_pt):
    """m(stored particles)/m(jet) for massless constituents (pT_rel, Δη, Δφ); only differences of
    η and φ enter, so the jet axis is not needed. ``m_over_pt``: jet m/pT; 1 where it is 0."""
    p = np.asarray(particles, np.float64)
    w = p[..., 0] * np.asarray(mask, bool)
    e = (w * np.cosh(p[..., 1])).sum(-1)
    pz = (w * np.sinh(p[..., 1])).sum(-1)
    px = (w * np.cos(p[..., 2])).sum(-1)
    py = (w * np.sin(p[..., 2])).sum(-1)
    m = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    m_over_pt = np.asarray(m_over_pt, np.float64)
    return np.where(m_over_pt > 0, m / np.where(m_over_pt > 0, m_over_pt, 1.0), 1.0)


def _safe_std(s):
    return np.where(s > 1e-12, s, 1.0)


# ---------------------------------------------------------------------------------------------
# mjj sampling for the signal region
# ---------------------------------------------------------------------------------------------

class MjjKDE:
    """Gaussian KDE of mjj, fitted on the *scaled* mjj (the [−1, 1] log variable above).

    The original fit sklearn's KDE on mjj in GeV with bandwidth 0.001: a kernel of 1 MeV on a
    ~1000 GeV spread, i.e. plain resampling of the fitted values. On the scaled variable the
    same configured bandwidth is a relative width (0.01 ≈ 0.4 % of mjj ≈ 13 GeV at 3.5 TeV)
    that actually smooths."""

    def __init__(self, preprocessor, bandwidth, sr):
        self.pre = preprocessor
        self.bandwidth = float(bandwidth)
        self.sr = (float(sr[0]), float(sr[1]))
        self.kde = None

    def fit(self, mjj):
        mjj = np.asarray(mjj, np.float64)
        if mjj.size == 0:
            raise ValueError("MjjKDE.fit: no events")
        self.kde = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth)
        self.kde.fit(self.pre.scale_mjj(mjj)[:, None])
        return self

    def sample_sr_mjj(self, n, seed, max_rounds=1000):
        """n mjj values (GeV) drawn from the KDE, restricted to the SR [lo, hi) by rejection."""
        if self.kde is None:
            raise RuntimeError("MjjKDE: call fit() first")
        rng = np.random.default_rng(seed)
        out, have = [], 0
        for _ in range(max_rounds):
            if have >= n:
                break
            draw = self.pre.unscale_mjj(
                self.kde.sample(max(2 * (n - have), 16), random_state=int(rng.integers(2**31)))[:, 0])
            draw = draw[(draw >= self.sr[0]) & (draw < self.sr[1])]
            out.append(draw)
            have += draw.size
        else:
            if have < n:
                raise RuntimeError(f"MjjKDE: the fitted density has (almost) no mass in the SR "
                                   f"{self.sr}; fit it on SR mjj values")
        return np.concatenate(out)[:n] if out else np.zeros(0)
