"""Energy-flow polynomials (EFPs, Komiske, Metodiev & Thaler 2018) of zero-padded jets, computed
with ``energyflow``.

Particles are (pT, η, φ) per particle — pT may be relative (pT/pT_jet) and η, φ relative to the
jet axis: with normalised pT fractions and the hadronic measure (ΔR between particles) the EFPs
are invariant under both. η is used as the rapidity (massless particles). A jet without real
particles gets 0 for every EFP.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# JetNet's set for the Fréchet / kernel physics distances: every EFP of degree d <= 4 (36: 21
# connected graphs and 15 products of them), hadronic measure, beta = 1, normalised.
DEFAULT_SELECT = ("d<=4",)


def efp_set(select: Sequence[str] = DEFAULT_SELECT, beta: float = 1.0, normed: bool = True):
    """``energyflow.EFPSet(*select, measure='hadr', beta, normed, coords='ptyphim')``."""
    import energyflow

    return energyflow.EFPSet(*select, measure="hadr", beta=float(beta), normed=bool(normed),
                             coords="ptyphim")


def efp_columns(subset: Sequence[str], select: Sequence[str] = DEFAULT_SELECT) -> np.ndarray:
    """Boolean mask over the EFP columns of ``select`` that also satisfy ``subset`` (e.g.
    ``("n==4", "d==4", "p==1")``); ValueError if none does."""
    cols = np.asarray(efp_set(select).sel(*subset), bool)
    if not cols.any():
        raise ValueError(f"no EFP of {list(select)} satisfies {list(subset)}")
    return cols


def compute_efps(particles, mask=None, select: Sequence[str] = DEFAULT_SELECT, beta: float = 1.0,
                 normed: bool = True, jobs: int | None = 1, chunk: int = 2000,
                 progress: bool = False) -> np.ndarray:
    """EFPs (N, E) of jets ``particles`` (N, P, 3) = (pT, η, φ), ``mask`` (N, P) (default pT > 0).

    ``jobs`` worker processes of energyflow (None = all CPUs); jets go in chunks of ``chunk``."""
    from tqdm.auto import tqdm

    x = np.asarray(particles, np.float64)
    if x.ndim != 3 or x.shape[-1] < 3:
        raise ValueError(f"particles: expected (N, P, 3) = (pT, eta, phi), got {x.shape}")
    m = x[..., 0] > 0 if mask is None else np.asarray(mask, bool)
    if m.shape != x.shape[:2]:
        raise ValueError(f"mask: shape {m.shape} does not match particles {x.shape[:2]}")
    efpset = efp_set(select, beta, normed)
    jets = [xi[mi, :3] for xi, mi in zip(x, m)]
    out = []
    for start in tqdm(range(0, len(jets), chunk), desc="EFPs", disable=not progress,
                      leave=False, dynamic_ncols=True):
        # (a single event comes back as a 1-D array)
        out.append(np.atleast_2d(efpset.batch_compute(jets[start:start + chunk], n_jobs=jobs)))
    values = np.concatenate(out) if out else np.zeros((0, len(efpset.sel())))
    empty = ~m.any(-1)
    values[empty] = 0.0
    return values


__all__ = ["DEFAULT_SELECT", "efp_set", "efp_columns", "compute_efps"]
