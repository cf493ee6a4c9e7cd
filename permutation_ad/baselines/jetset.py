"""The one input form every baseline reads: a *jet set*, a dict of NumPy arrays.

``particles`` (N, P, 3) float
    (Δη, Δφ, pT) of the leading-pT constituents relative to the jet axis; Δφ in radians,
    wrapped. pT in GeV or in any unit common to the jet (e.g. pT/pT_jet): images, EFPs and
    N-subjettiness use only ratios within a jet; the Deep Set VAEs see log pT (standardised).
    Padded slots are zero.
``mask`` (N, P) bool
    True for real constituents.
``jet`` dict[str, (N,)], optional
    Per-jet columns; recognised: ``mass`` (GeV), ``n`` (total constituent multiplicity, before
    truncation to P), ``pt``, ``eta``. Missing ``mass`` / ``n`` are computed from the particles
    (massless constituents; the multiplicity of the kept ones).

Converters: :func:`from_processed` (the permutation_ad processed split),
:func:`from_p4` (Top-Tagging-layout four-momenta).
"""
from __future__ import annotations

import hashlib

import numpy as np

from shared.data import jets as J
from shared.errors import DataFormatError

class JetSetError(DataFormatError):
    """A jet set with a missing or malformed field; names the set and the field."""

    def __init__(self, name, field, message):
        super().__init__(f"jet set '{name}'", field, message)


def check_jetset(js, name="<jets>"):
    """Validate ``js``; returns it with ``mask`` as bool and ``jet`` a dict of float arrays."""
    if not isinstance(js, dict):
        raise JetSetError(name, "<set>", f"expected a dict, got {type(js).__name__}")
    for key in ("particles", "mask"):
        if key not in js:
            raise JetSetError(name, key, "missing")
    x = np.asarray(js["particles"])
    m = np.asarray(js["mask"]).astype(bool)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise JetSetError(name, "particles", f"expected (N, P, 3) = (deta, dphi, pt), got {x.shape}")
    if m.shape != x.shape[:2]:
        raise JetSetError(name, "mask", f"expected {x.shape[:2]}, got {m.shape}")
    if len(x) == 0:
        raise JetSetError(name, "particles", "no jets")
    if not np.isfinite(x).all():
        raise JetSetError(name, "particles", "contains NaN or inf")
    if np.any(x[..., 2][m] <= 0):
        raise JetSetError(name, "particles", "real constituents need pT > 0")
    if np.any(m.sum(1) == 0):
        raise JetSetError(name, "mask", f"{int((m.sum(1) == 0).sum())} jets without constituents")
    jet = {}
    for k, v in (js.get("jet") or {}).items():
        v = np.asarray(v, np.float64)
        if v.shape != (len(x),):
            raise JetSetError(name, f"jet.{k}", f"expected shape ({len(x)},), got {v.shape}")
        jet[k] = v
    return {"particles": x.astype(np.float64), "mask": m, "jet": jet}


def n_jets(js):
    return len(js["particles"])


def fingerprint(js):
    """Short hash of a jet set's content (resume keys), at float32 precision: float64 pT
    computed from the same file were seen to differ in the last bit between processes (about
    1 run in 10 here), which must not invalidate a cache."""
    h = hashlib.sha256()
    for a in (np.asarray(js["particles"], np.float32), np.asarray(js["mask"], bool)):
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    for k in sorted(js.get("jet") or {}):
        h.update(k.encode())
        h.update(np.ascontiguousarray(js["jet"][k], np.float32).tobytes())
    return h.hexdigest()[:16]


def massless_p4(js):
    """(N, P, 4) (E, px, py, pz) of the constituents placed at (η, φ) = (Δη, Δφ): angles between
    constituents, hence the jet mass and N-subjettiness, are those of the original jet."""
    x, m = js["particles"], js["mask"]
    p4 = J.p4_from_ptetaphim(x[..., 2], x[..., 0], x[..., 1])
    return p4 * m[..., None]


def jet_column(js, name):
    """Per-jet ``mass`` or ``n`` (given, else computed from the particles), or a given column."""
    jet = js.get("jet") or {}
    if name in jet:
        return np.asarray(jet[name], np.float64)
    if name == "mass":
        return J.jet_kinematics(massless_p4(js), js["mask"])["mass"]
    if name == "n":
        return js["mask"].sum(1).astype(np.float64)
    raise KeyError(f"jet column {name!r} is neither given nor computable (have {sorted(jet)})")


def from_processed(split, particle_pt_feature="log_pt", jet_features=("eta", "mass", "n")):
    """Jet set from a permutation_ad processed split.

    ``split``: dict with ``constituents`` (N, P, 3) = (Δη, Δφ, pT feature), ``mask`` (N, P),
    ``jets`` (N, J) with columns ``jet_features`` (config ``data.jet_features``);
    ``particle_pt_feature`` (config ``data.particle_pt_feature``): ``log_pt`` -> pT in GeV,
    ``log_pt_rel`` / ``log_one_minus_pt_rel`` -> pT / pT_jet. The processed ``n`` column is
    the total multiplicity + 0.5 (bin centre); it is returned as the integer multiplicity."""
    c = np.asarray(split["constituents"], np.float64)
    m = np.asarray(split["mask"]).astype(bool)
    if c.ndim != 3 or c.shape[-1] != 3:
        raise JetSetError("<processed>", "constituents", f"expected (N, P, 3), got {c.shape}")
    f = c[..., 2]
    if particle_pt_feature in ("log_pt", "log_pt_rel"):
        pt = np.exp(f)
    elif particle_pt_feature == "log_one_minus_pt_rel":
        pt = 1.0 - np.exp(f)
    else:
        raise JetSetError("<processed>", "particle_pt_feature", f"unknown {particle_pt_feature!r}")
    parts = np.stack([c[..., 0], c[..., 1], np.where(m, pt, 0.0)], -1) * m[..., None]
    jet = {}
    jets = split.get("jets")
    if jets is not None:
        jets = np.asarray(jets, np.float64)
        if jets.ndim != 2 or jets.shape[1] != len(jet_features):
            raise JetSetError("<processed>", "jets", f"shape {jets.shape} does not match "
                                                     f"jet_features {list(jet_features)}")
        for i, name in enumerate(jet_features):
            jet[name] = jets[:, i] - 0.5 if name == "n" else jets[:, i]
    return check_jetset({"particles": parts, "mask": m, "jet": jet}, "<processed>")


def from_p4(p4, num_particles, mask=None):
    """Jet set from constituent four-momenta (N, M, 4) = (E, px, py, pz), zero padded (the
    Top-Tagging layout): the axis, mass, pT, η and multiplicity use all constituents, the
    particles the ``num_particles`` leading-pT ones."""
    p4 = np.asarray(p4, np.float64)
    if p4.ndim != 3 or p4.shape[-1] != 4:
        raise JetSetError("<p4>", "p4", f"expected (N, M, 4), got {p4.shape}")
    k = J.ptetaphim_from_p4(p4)
    real = (k[..., 0] > 0) if mask is None else (np.asarray(mask, bool) & (k[..., 0] > 0))
    kin = J.jet_kinematics(p4, real)
    order = np.argsort(-np.where(real, k[..., 0], -1.0), axis=1, kind="stable")[:, :num_particles]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    pt, eta, phi, keep = take(k[..., 0]), take(k[..., 1]), take(k[..., 2]), take(real)
    if pt.shape[1] < num_particles:
        pad = ((0, 0), (0, num_particles - pt.shape[1]))
        pt, eta, phi, keep = (np.pad(a, pad) for a in (pt, eta, phi, keep))
    parts = np.stack([eta - kin["eta"][:, None], J.wrap_phi(phi - kin["phi"][:, None]), pt], -1)
    parts = parts * keep[..., None]
    jet = {"mass": kin["mass"], "n": kin["n"].astype(np.float64), "pt": kin["pt"], "eta": kin["eta"]}
    return check_jetset({"particles": parts, "mask": keep, "jet": jet}, "<p4>")
