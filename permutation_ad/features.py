"""Jet features for permutation_ad: particles (Δη, Δφ, a log-pT feature) relative to the jet
axis and jet features (a chosen subset of pT, η, mass, N), from constituent four-momenta.

Input is the Top-Tagging layout (``p4`` (N, M, 4) = E, px, py, pz, zero padded); the output is
*physical* (unstandardised). Multiplicity is discrete: the ``n`` column stores the total
multiplicity + 0.5 (the bin centre); the density model adds u − 0.5, u ~ U(0, 1) during training
(uniform dequantisation, so a continuous density of N + u integrates to the probability of N).
"""
from __future__ import annotations

import numpy as np

from permutation_ad.schema import JET_FEATURES, PT_FEATURES
from shared.data.errors import DataFormatError
from shared.data.jets import ptetaphim_from_p4, wrap_phi

N_COLUMN = "n"


def jet_features(p4, num_particles, particle_pt_feature="log_pt",
                 jet_feature_names=("eta", "mass", "n"), path="<array>"):
    """Features of jets given as constituent four-momenta.

    Args:
        p4: (N, M, 4) E, px, py, pz, zero padded.
        num_particles: P, the leading-pT particles kept.
        particle_pt_feature: one of ``log_pt``, ``log_pt_rel``, ``log_one_minus_pt_rel``.
        jet_feature_names: subset/order of ``pt, eta, mass, n``.
        path: the file the jets came from (for error messages).
    Returns:
        dict(constituents=(N, P, 3) float32 [Δη, Δφ, pt-feature], mask=(N, P) bool,
             jets=(N, J) float32 with ``n`` = total multiplicity + 0.5; the mask holds
             min(n, P) particles, a function of n, so conditioning on n stays consistent).
    """
    if particle_pt_feature not in PT_FEATURES:
        raise DataFormatError(path, "data.particle_pt_feature",
                              f"{particle_pt_feature!r} not in {PT_FEATURES}")
    bad = [n for n in jet_feature_names if n not in JET_FEATURES]
    if bad:
        raise DataFormatError(path, "data.jet_features", f"unknown {bad}; choose from {JET_FEATURES}")
    p4 = np.asarray(p4)
    if p4.ndim != 3 or p4.shape[-1] != 4:
        raise DataFormatError(path, "p4", f"expected (N, M, 4), got {p4.shape}")
    kin = ptetaphim_from_p4(p4)
    pt, eta, phi = kin[..., 0], kin[..., 1], kin[..., 2]
    real = pt > 0
    n_total = real.sum(axis=1)
    if (n_total == 0).any():
        raise DataFormatError(path, "p4", f"{int((n_total == 0).sum())} jets without constituents")
    jpt, jeta, jphi, jm = np.moveaxis(ptetaphim_from_p4(p4.astype(np.float64).sum(axis=1)), -1, 0)
    # keep the leading-pT particles (files are pT ordered, but do not rely on it)
    order = np.argsort(-np.where(real, pt, -1.0), axis=1, kind="stable")[:, :num_particles]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    pt, eta, phi, real = take(pt), take(eta), take(phi), take(real)
    if pt.shape[1] < num_particles:  # fewer slots in the file than requested
        pad = num_particles - pt.shape[1]
        pt, eta, phi = (np.pad(a, ((0, 0), (0, pad))) for a in (pt, eta, phi))
        real = np.pad(real, ((0, 0), (0, pad)))
    deta = eta - jeta[:, None]
    dphi = wrap_phi(phi - jphi[:, None])
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
    cols = {"pt": jpt, "eta": jeta, "mass": jm, "n": n_total + 0.5}
    jets = np.stack([cols[n] for n in jet_feature_names], axis=-1).astype(np.float32)
    return {"constituents": cons, "mask": real, "jets": jets}


def n_column(jet_feature_names) -> int | None:
    """Index of the multiplicity among the jet features (None if it is not used)."""
    names = list(jet_feature_names)
    return names.index(N_COLUMN) if N_COLUMN in names else None
