"""Tiny synthetic LHCO-R&D-like events for the lhco_fullphase tests (not physics)."""
import numpy as np


def synthetic_events(n, seed=0, max_particles=700, n1=(10, 40), n2=(8, 30), phi1=None):
    """(n, max_particles, 3) [pT, η, φ] with two collimated back-to-back sprays + soft noise,
    particles shuffled (the R&D format is not pT ordered), and labels (n,)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, max_particles, 3))
    for i in range(n):
        p1 = rng.uniform(-np.pi, np.pi) if phi1 is None else phi1
        eta1, eta2 = rng.uniform(-1.5, 1.5, 2)
        rows = []
        for k, (lo, hi), pt_tot, phi, eta in ((0, n1, rng.uniform(1300, 2000), p1, eta1),
                                               (1, n2, rng.uniform(900, 1600), p1 + np.pi, eta2)):
            m = rng.integers(lo, hi + 1)
            frac = rng.dirichlet(np.full(m, 0.7))
            rows.append(np.stack([pt_tot * frac, eta + rng.normal(0, 0.15, m),
                                  phi + rng.normal(0, 0.15, m)], -1))
        soft = rng.integers(0, 6)
        rows.append(np.stack([rng.uniform(0.5, 3, soft), rng.uniform(-4, 4, soft),
                              rng.uniform(-np.pi, np.pi, soft)], -1))
        ev = np.concatenate(rows)
        ev[:, 2] = (ev[:, 2] + np.pi) % (2 * np.pi) - np.pi
        ev = ev[rng.permutation(len(ev))]
        out[i, :len(ev)] = ev
    return out, rng.integers(0, 2, n)
