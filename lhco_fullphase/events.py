"""Physics of dijet events: clustering into the two leading jets and their constituents, the
dijet mass, the pT ordering of the data, and set-level features of a jet's stored particles.

Physical arrays (what the dijet cache stores, ``lhco_fullphase.artifacts``):

* ``jets``       (N, 2, 5)  pT, η, φ, m, N  — jet 4-vector = sum of *all* its constituents
                             (masses clipped at 0); N = number of constituents *stored*
                             (≤ ``num_particles``).
* ``particles``  (N, 2, P, 3) pT_rel = pT/pT_jet, Δη, Δφ (Δφ wrapped to [−π, π)); 0 at padding.
* ``mask``       (N, 2, P) bool, 1 = real particle.
* ``mjj``        (N,) dijet invariant mass (GeV).

Jet φ is kept as measured, in [−π, π): no ``clip(φ − π)`` recentring (SPEC §7 defect).
"""
from __future__ import annotations

import numpy as np

JET_FEATURES = ("pt", "eta", "phi", "mass", "n")
PARTICLE_FEATURES = ("pt_rel", "deta", "dphi")


def wrap_phi(dphi):
    """Wrap angle differences to [−π, π)."""
    from shared.data.jets import wrap_phi as wrap  # FastJet helpers load on first use
    return wrap(dphi)


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
    from shared.data import jets as jetlib
    jets = np.asarray(jets, dtype=np.float64)
    p4 = jetlib.p4_from_ptetaphim(jets[..., 0], jets[..., 1], jets[..., 2], jets[..., 3])
    total = p4.sum(axis=1)
    m2 = total[:, 0] ** 2 - np.sum(total[:, 1:] ** 2, axis=-1)
    return np.sqrt(np.clip(m2, 0.0, None))


def cluster_dijets(particles, num_particles, radius=1.0, algorithm="antikt"):
    """Cluster events (N, M, 3) [pT, η, φ] (pT = 0 is padding) into the two leading jets.

    Returns ``(arrays, keep)``: physical ``jets``, ``particles``, ``mask``, ``mjj`` for the events
    with at least two jets, and ``keep`` (N,) bool marking those events."""
    import awkward as ak

    from shared.data import jets as jetlib
    particles = np.asarray(particles, dtype=np.float64)
    jets_ak, consts_ak = jetlib.cluster_ptetaphi(particles, R=radius, algorithm=algorithm)
    keep = np.asarray(ak.num(jets_ak, axis=1)) >= 2
    consts_ak = consts_ak[keep]
    n = int(keep.sum())
    jets = np.zeros((n, 2, 5), np.float64)
    parts = np.zeros((n, 2, num_particles, 3), np.float64)
    mask = np.zeros((n, 2, num_particles), bool)
    for j in range(2 if n else 0):   # no event kept (e.g. all empty): awkward has no fields then
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

