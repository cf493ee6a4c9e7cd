"""Jet helpers on NumPy / awkward arrays: FastJet clustering, kinematics, N-subjettiness.

Four-momenta are (E, px, py, pz) on the last axis; particles given as (pT, eta, phi[, m]).
Padded arrays come with a mask (1 = real element); padding never contributes.
"""
import warnings

import awkward as ak
import fastjet
import numpy as np

ALGORITHMS = {
    "antikt": fastjet.antikt_algorithm,
    "kt": fastjet.kt_algorithm,
    "cambridge": fastjet.cambridge_algorithm,
}


def _mask_of(x, mask):
    if mask is None:
        return np.ones(x.shape[:-1], dtype=bool)
    return np.asarray(mask).astype(bool)


def p4_from_ptetaphim(pt, eta, phi, mass=None):
    """(E, px, py, pz) stacked on a new last axis; mass 0 when not given."""
    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    m2 = 0.0 if mass is None else np.asarray(mass, dtype=np.float64) ** 2
    e = np.sqrt(px**2 + py**2 + pz**2 + m2)
    return np.stack([e, px, py, pz], axis=-1)


def ptetaphim_from_p4(p4):
    """(pT, eta, phi, m) stacked on the last axis from (E, px, py, pz); m clipped at 0, eta 0 for pT 0."""
    p4 = np.asarray(p4, dtype=np.float64)
    e, px, py, pz = p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)), 0.0)
    phi = np.arctan2(py, px)
    m = np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None))
    return np.stack([pt, eta, phi, m], axis=-1)


def rapidity(p4):
    """Rapidity y = ½ ln((E + pz)/(E − pz)) of (..., 4) four-momenta, computed as FastJet does
    (from m_T² = pT² + max(m², 0), no cancellation for light particles); 0 where m_T = 0 (e.g.
    padding)."""
    p4 = np.asarray(p4, dtype=np.float64)
    e, px, py, pz = p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3]
    kt2 = px**2 + py**2
    mt2 = kt2 + np.clip(e**2 - kt2 - pz**2, 0.0, None)
    denom = (e + np.abs(pz)) ** 2
    ok = (mt2 > 0) & (denom > 0)
    y = 0.5 * np.log(np.where(ok, mt2, 1.0) / np.where(ok, denom, 1.0))
    return np.where(ok, np.where(pz > 0, -y, y), 0.0)


def wrap_phi(dphi):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(dphi) + np.pi) % (2 * np.pi) - np.pi


def jet_p4(p4, mask=None):
    """Sum of constituent four-momenta (..., P, 4) -> (..., 4), padding excluded."""
    p4 = np.asarray(p4, dtype=np.float64)
    m = _mask_of(p4, mask)
    return np.sum(p4 * m[..., None], axis=-2)


def jet_kinematics(p4, mask=None):
    """Jet pt, eta, phi, mass and constituent count n from padded constituents (..., P, 4)."""
    m = _mask_of(p4, mask)
    k = ptetaphim_from_p4(jet_p4(p4, m))
    return {"pt": k[..., 0], "eta": k[..., 1], "phi": k[..., 2], "mass": k[..., 3], "n": m.sum(-1)}


def jet_kinematics_ptetaphi(particles, mask=None):
    """Like `jet_kinematics` for massless particles given as (..., P, 3) = (pT, eta, phi)."""
    x = np.asarray(particles, dtype=np.float64)
    m = _mask_of(x, mask) & (x[..., 0] > 0)
    return jet_kinematics(p4_from_ptetaphim(x[..., 0], x[..., 1], x[..., 2]), m)


def to_awkward_p4(p4, mask=None):
    """Padded (N, P, 4) [E, px, py, pz] -> jagged awkward records (px, py, pz, E)."""
    p4 = np.asarray(p4, dtype=np.float64)
    m = _mask_of(p4, mask)
    counts = m.sum(-1)
    flat = p4[m]
    rec = ak.zip({"px": flat[:, 1], "py": flat[:, 2], "pz": flat[:, 3], "E": flat[:, 0]})
    return ak.unflatten(rec, counts)


def pad_p4(jagged, max_len):
    """Jagged records (px, py, pz, E) -> padded (N, max_len, 4) [E, px, py, pz] float64, mask.

    Elements beyond max_len are dropped (callers sort by pT first)."""
    jagged = jagged[:, :max_len]
    counts = ak.to_numpy(ak.num(jagged, axis=1))
    n = len(counts)
    out = np.zeros((n, max_len, 4), dtype=np.float64)
    mask = np.arange(max_len)[None, :] < counts[:, None]
    flat = ak.flatten(jagged, axis=1)
    for k, f in enumerate(("E", "px", "py", "pz")):
        out[..., k][mask] = ak.to_numpy(flat[f])
    return out, mask


def sort_by_pt(jagged, axis=-1):
    """Sort jagged (px, py, pz, E) records by decreasing pT along `axis`."""
    pt2 = jagged.px**2 + jagged.py**2
    return jagged[ak.argsort(pt2, axis=axis, ascending=False)]


def cluster(events, R, ptmin=0.0, algorithm="antikt"):
    """Cluster jagged (px, py, pz, E) events with FastJet.

    Returns (jets, constituents): jets (events x jets) and their constituents
    (events x jets x particles), jets sorted by decreasing pT, constituents likewise.
    Events without particles give no jets."""
    jetdef = fastjet.JetDefinition(ALGORITHMS[algorithm], float(R))
    events = ak.zip({f: ak.values_astype(events[f], np.float64) for f in ("px", "py", "pz", "E")})
    nonempty = ak.to_numpy(ak.num(events, axis=1)) > 0
    if not np.any(nonempty):
        empty = ak.Array([[]] * len(events))
        return empty, ak.Array([[]] * len(events))
    cs = fastjet.ClusterSequence(events[nonempty], jetdef)
    jets = cs.inclusive_jets(min_pt=float(ptmin))
    consts = cs.constituents(min_pt=float(ptmin))
    order = ak.argsort(jets.px**2 + jets.py**2, axis=1, ascending=False)
    jets, consts = jets[order], consts[order]
    consts = sort_by_pt(consts, axis=2)
    if np.all(nonempty):
        return jets, consts
    # Re-insert empty events (as events with no jets) at their positions.
    pos = np.where(nonempty, np.cumsum(nonempty) - 1, len(jets))
    jets = ak.concatenate([jets, jets[:1, :0]])
    consts = ak.concatenate([consts, consts[:1, :0]])
    return jets[pos], consts[pos]


def cluster_padded(p4, mask=None, R=0.8, ptmin=0.0, algorithm="antikt"):
    """`cluster` for padded (N, P, 4) [E, px, py, pz] input."""
    return cluster(to_awkward_p4(p4, mask), R, ptmin, algorithm)


def cluster_ptetaphi(particles, mask=None, R=1.0, ptmin=0.0, algorithm="antikt"):
    """`cluster` for padded massless (N, P, 3) = (pT, eta, phi) input (pT = 0 is padding)."""
    x = np.asarray(particles, dtype=np.float64)
    m = _mask_of(x, mask) & (x[..., 0] > 0)
    return cluster_padded(p4_from_ptetaphim(x[..., 0], x[..., 1], x[..., 2]), m, R, ptmin, algorithm)


def jets_to_numpy(jets, n_jets):
    """Leading `n_jets` jets per event as (N, n_jets, 4) [E, px, py, pz] (zeros where missing)."""
    out, _ = pad_p4(jets, n_jets)
    return out


def nsubjettiness(p4, mask=None, n_max=2, R0=0.8, beta=1.0):
    """tau_1..tau_n_max per jet, (N, n_max), with exclusive-kT axes from FastJet.

    tau_N = sum_i pT_i min_k dR_ik^beta / sum_i pT_i R0^beta, with dR² = Δy² + Δφ² in rapidity
    y (of the constituents and of the massive axes), as fastjet-contrib's Nsubjettiness. Jets
    with fewer than N constituents get tau_N = 0."""
    p4 = np.asarray(p4, dtype=np.float64)
    m = _mask_of(p4, mask)
    kin = ptetaphim_from_p4(p4)
    pt, phi, y = kin[..., 0], kin[..., 2], rapidity(p4)
    counts = m.sum(-1)
    norm = np.sum(pt * m, axis=-1) * R0**beta
    taus = np.zeros((p4.shape[0], n_max), dtype=np.float64)
    jetdef = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    for n in range(1, n_max + 1):
        sel = np.nonzero(counts >= n)[0]
        if len(sel) == 0:
            continue
        cs = fastjet.ClusterSequence(to_awkward_p4(p4[sel], m[sel]), jetdef)
        with warnings.catch_warnings():
            # fastjet warns for every algorithm but kt/C-A/genkt; this is kt.
            warnings.simplefilter("ignore", UserWarning)
            axes = cs.exclusive_jets(n_jets=n)
        ax_p4 = np.stack([ak.to_numpy(ak.flatten(axes[f])) for f in ("E", "px", "py", "pz")], -1)
        ax_y = rapidity(ax_p4).reshape(len(sel), n)
        ax_phi = ptetaphim_from_p4(ax_p4)[..., 2].reshape(len(sel), n)
        dy = y[sel][:, :, None] - ax_y[:, None, :]
        dphi = wrap_phi(phi[sel][:, :, None] - ax_phi[:, None, :])
        dr = np.sqrt(dy**2 + dphi**2) ** beta
        num = np.sum(pt[sel] * m[sel] * dr.min(-1), axis=-1)
        taus[sel, n - 1] = np.divide(num, norm[sel], out=np.zeros_like(num), where=norm[sel] > 0)
    return taus


def tau21(p4, mask=None, R0=0.8, beta=1.0):
    """tau_2 / tau_1 per jet (0 where tau_1 = 0)."""
    t = nsubjettiness(p4, mask, n_max=2, R0=R0, beta=beta)
    return np.divide(t[:, 1], t[:, 0], out=np.zeros(len(t)), where=t[:, 0] > 0)


def tau32(p4, mask=None, R0=0.8, beta=1.0):
    """tau_3 / tau_2 per jet (0 where tau_2 = 0)."""
    t = nsubjettiness(p4, mask, n_max=3, R0=R0, beta=beta)
    return np.divide(t[:, 2], t[:, 1], out=np.zeros(len(t)), where=t[:, 1] > 0)
