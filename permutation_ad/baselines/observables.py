"""Single-observable references: jet mass, constituent multiplicity, τ21, τ32.

Each is returned raw (one value per jet). It is an *unsupervised* score only up to its sign:
the report picks, per signal, the sign with AUC >= 0.5 on the test labels and marks it as
chosen that way (``report.orient_reference``).
"""
from __future__ import annotations

import numpy as np

from shared.data.jets import nsubjettiness

from .jetset import jet_column, massless_p4

OBSERVABLES = {
    "mass": "jet mass",
    "n": "constituent multiplicity",
    "tau21": "τ21",
    "tau32": "τ32",
}


def _ratio(num, den):
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def observables(js, names=("mass", "n", "tau21", "tau32"), R0=0.8):
    """{name: (N,)} for the requested observables; N-subjettiness (β = 1, exclusive-kT axes,
    FastJet) from the constituents of the jet set."""
    out = {}
    if any(n.startswith("tau") for n in names):
        taus = nsubjettiness(massless_p4(js), js["mask"], n_max=3, R0=R0)
    for name in names:
        if name in ("mass", "n"):
            out[name] = jet_column(js, name)
        elif name == "tau21":
            out[name] = _ratio(taus[:, 1], taus[:, 0])
        elif name == "tau32":
            out[name] = _ratio(taus[:, 2], taus[:, 1])
        else:
            raise KeyError(f"unknown observable {name!r}; choose from {sorted(OBSERVABLES)}")
    return out
