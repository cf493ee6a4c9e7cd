"""A simple, documented detector smearing that stands in for Delphes.

Applied to the visible final-state particles of each event (flat arrays; the caller keeps
the event boundaries with the returned keep-mask):

* Neutrinos and stable beyond-SM particles (|id| > 1 000 000) are invisible and always removed.
* Tracker: charged particles with |eta| < `tracker_eta` and pT > `track_pt_min` are kept as
  tracks; pT is smeared by sigma/pT = track_res_const (+) track_res_pt * pT (in quadrature),
  direction and mass unchanged. Charged particles below the pT threshold inside the tracker
  are lost (they curl up in the field). Muons outside the tracker are lost.
* Calorimeters (|eta| < `calo_eta`): photons and electrons outside the tracker go to the
  ECAL, sigma/E = ecal_stoch/sqrt(E) (+) ecal_const; all other particles (neutral hadrons,
  charged hadrons outside the tracker) go to the HCAL, sigma/E = hcal_stoch/sqrt(E) (+)
  hcal_const, with the forward resolution fcal_* beyond |eta| > `fcal_eta`. Deposits below
  `ecal_e_min` / `hcal_e_min` are dropped; survivors are massless along the true direction.

With ``enabled=False`` only the invisible particles are removed (particle level).
"""
import dataclasses

import numpy as np

_NEUTRINOS = (12, 14, 16)
_EM = (11, 22)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the smearing; energies/momenta in GeV."""

    enabled: bool = True
    tracker_eta: float = 2.5
    track_pt_min: float = 0.5
    track_res_const: float = 0.01
    track_res_pt: float = 5e-4
    calo_eta: float = 5.0
    fcal_eta: float = 3.2
    ecal_stoch: float = 0.10
    ecal_const: float = 0.01
    hcal_stoch: float = 0.50
    hcal_const: float = 0.05
    fcal_stoch: float = 1.00
    fcal_const: float = 0.10
    ecal_e_min: float = 0.5
    hcal_e_min: float = 1.0

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**(d or {}))


def visible(pid):
    """True for particles a detector can see (not neutrinos, not stable BSM states)."""
    a = np.abs(np.asarray(pid))
    return ~np.isin(a, _NEUTRINOS) & (a < 1_000_000)


def smear(px, py, pz, e, pid, charge, rng, config=DetectorConfig()):
    """Smear flat particle arrays. Returns (keep, (px, py, pz, e)) for the kept particles."""
    px, py, pz, e = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, e))
    pid = np.asarray(pid)
    keep = visible(pid)
    if not config.enabled:
        return keep, (px[keep], py[keep], pz[keep], e[keep])
    apid = np.abs(pid)
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), np.sign(pz) * 1e6))
    aeta = np.abs(eta)
    charged = np.asarray(charge) != 0
    in_tracker = aeta < config.tracker_eta
    track = keep & charged & in_tracker & (pt > config.track_pt_min)
    lost = charged & in_tracker & ~track  # low-pT tracks
    lost |= (apid == 13) & ~in_tracker
    calo = keep & ~track & ~lost & (aeta < config.calo_eta)
    em = calo & np.isin(apid, _EM)
    fwd = aeta > config.fcal_eta

    scale = np.ones_like(pt)
    # Tracks: momentum scale, direction and mass unchanged.
    sig = np.hypot(config.track_res_const, config.track_res_pt * pt)
    scale[track] = np.clip(1.0 + sig[track] * rng.standard_normal(track.sum()), 0.0, None)
    # Calorimeter deposits: energy smeared, massless along the particle direction.
    stoch = np.where(em, config.ecal_stoch, np.where(fwd, config.fcal_stoch, config.hcal_stoch))
    const = np.where(em, config.ecal_const, np.where(fwd, config.fcal_const, config.hcal_const))
    sig_e = np.hypot(stoch / np.sqrt(np.maximum(e, 1e-12)), const)
    e_new = e.copy()
    e_new[calo] = np.clip(e[calo] * (1.0 + sig_e[calo] * rng.standard_normal(calo.sum())), 0.0, None)
    thr = np.where(em, config.ecal_e_min, config.hcal_e_min)
    calo_ok = calo & (e_new > thr) & (p > 0)

    out_px, out_py, out_pz, out_e = px * scale, py * scale, pz * scale, e.copy()
    m2 = np.clip(e**2 - p**2, 0.0, None)
    out_e[track] = np.sqrt((p[track] * scale[track]) ** 2 + m2[track])
    f = np.divide(e_new, p, out=np.zeros_like(p), where=p > 0)
    out_px[calo], out_py[calo], out_pz[calo] = px[calo] * f[calo], py[calo] * f[calo], pz[calo] * f[calo]
    out_e[calo] = e_new[calo]
    final = track | calo_ok
    return final, (out_px[final], out_py[final], out_pz[final], out_e[final])
