"""The eight prime energy-flow polynomials with d <= 3 (Komiske et al.; paper Eq. 6) of a jet
set, and the PCA whitening the INN and the EFP Dirichlet-VAE use (paper Sec. 2.3)."""
from __future__ import annotations

import numpy as np

N_PRIME_EFPS = 8


PRIME_D3 = ("d<=3", "p==1")


def prime_efps(js, beta=1.0):
    """(N, 8) EFPs of ``EFPSet('d<=3', 'p==1')`` without the constant graph (shared.efps):
    z_i = pT_i / Σ pT, R_ij = ΔR_ij^beta, hadronic measure."""
    from shared.efps import compute_efps, efp_set

    keep = [i for i, g in enumerate(efp_set(PRIME_D3, beta).graphs()) if len(g) > 0]
    if len(keep) != N_PRIME_EFPS:
        raise RuntimeError(f"energyflow gives {len(keep)} non-constant prime EFPs with d <= 3, "
                           f"expected {N_PRIME_EFPS}")
    parts = js["particles"]
    x = np.stack([parts[..., 2], parts[..., 0], parts[..., 1]], -1)   # (pT, η, φ)
    return compute_efps(x, js["mask"], select=PRIME_D3, beta=beta)[:, keep]


class Whitener:
    """PCA whitening ``u = (x - mean) V diag(λ)^-1/2`` fitted on training data; ``log_det`` is
    log|det du/dx| (constant), so log p_x(x) = log p_u(u) + log_det."""

    def __init__(self, mean, components, scale):
        self.mean = np.asarray(mean, np.float64)
        self.components = np.asarray(components, np.float64)
        self.scale = np.asarray(scale, np.float64)

    @classmethod
    def fit(cls, x, min_var=1e-12):
        x = np.asarray(x, np.float64)
        mean = x.mean(0)
        lam, vec = np.linalg.eigh(np.cov(x - mean, rowvar=False))
        lam = np.maximum(lam, min_var)
        return cls(mean, vec, 1.0 / np.sqrt(lam))

    def transform(self, x):
        return ((np.asarray(x, np.float64) - self.mean) @ self.components) * self.scale

    @property
    def log_det(self):
        return float(np.log(self.scale).sum())
