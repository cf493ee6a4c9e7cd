"""Official-layout fixture files, written independently of the project's generator and writers.

The acceptance checks of the paper pipelines (issue 15) run on files in the *published* layouts
(SPEC §1.1, §1.2) that do not come from ``shared.data`` (neither its Pythia generator nor its
writers): this module writes them with pandas directly, from a simple random model of jets.

Top Quark Tagging Reference Dataset layout (``train.h5``, ``val.h5``, ``test.h5``; the Z′ file
``zprime_test.h5`` in the same layout): pandas ``format='table'``, key ``table``, 806 columns
``E_0, PX_0, PY_0, PZ_0, …, PZ_199, truthE, truthPX, truthPY, truthPZ, ttv, is_signal_new``;
float32 four-momenta (PyTables ``values_block_0``, 804 columns) and int64 ``ttv``,
``is_signal_new`` (``values_block_1``). Massless constituents, pT ordered, zero padded to 200.
Jets: 550 < pT < 650 GeV, |η| < 2; QCD one-prong (label 0), top three-prong with m ≈ 173 GeV
(label 1, truth = a top four-vector along the jet), Z′ two-prong with m ≈ 150 GeV (label 1,
truth zeros: that sample has no public file). ``ttv`` = 0 train, 1 test, 2 validation.

LHC Olympics 2020 R&D layout (``events_anomalydetection_v2.h5``, and the SR-only QCD file
``events_anomalydetection_qcd_extra_inneronly.h5``): pandas fixed format, key ``df``, one float64
block (N, 2101) with integer column labels 0..2100 = 700 × (pT, η, φ) + label; massless
particles in random (not pT) order, zero padded. Events: two wide jets (30–80 particles each
around their axes) + soft noise; QCD dijets with mjj = 2250 GeV + Exp(1000 GeV) (cut at
6500 GeV), so the windows 2300–3300 / 3300–3700 / 3700–5000 GeV are all populated; signal
(label 1) W′ → X Y with mjj ≈ N(3500, 100) GeV, two-prong jets of m ≈ 500 and 100 GeV.

Both writers set the ``pandas_version`` attribute if pandas (≥ 3) did not (SPEC §1.3b), so
pandas 2 and 3 read the files.

    python tests/official_layout.py --kind toptag --out D [--n-train 2000 --n-val 500 --n-test 1000 --n-zprime 1000]
    python tests/official_layout.py --kind lhco --out D [--n-background 10000 --n-signal 1500 --n-extra 3000]

Not physics: shapes and ranges only (enough for the pipelines to cluster, select and train).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import pandas as pd

# ---------------------------------------------------------------- layouts

TOPTAG_KEY = "table"
TOPTAG_SLOTS = 200
TOPTAG_P4_COLUMNS = [f"{c}_{j}" for j in range(TOPTAG_SLOTS) for c in ("E", "PX", "PY", "PZ")]
TOPTAG_TRUTH_COLUMNS = ["truthE", "truthPX", "truthPY", "truthPZ"]
TOPTAG_INT_COLUMNS = ["ttv", "is_signal_new"]
TOPTAG_FILES = {"train": "train.h5", "val": "val.h5", "test": "test.h5", "zprime": "zprime_test.h5"}
TTV = {"train": 0, "test": 1, "val": 2}

LHCO_KEY = "df"
LHCO_SLOTS = 700
LHCO_COLUMNS = 3 * LHCO_SLOTS + 1
LHCO_FILES = {"main": "events_anomalydetection_v2.h5",
              "extra": "events_anomalydetection_qcd_extra_inneronly.h5"}

# pandas >= 3 no longer writes this attribute; pandas 2 refuses table files without it
_PANDAS_VERSION = "0.15.2"

# ---------------------------------------------------------------- a simple random jet model


def _constituent_offsets(n_particles, prongs, target_mass, pt, rng, radius, prong_spread):
    """(Δη, Δφ, pT) of one jet's massless constituents around its axis.

    ``prongs`` hard subjets share the pT (Dirichlet); each particle belongs to one prong, harder
    particles sit closer to their prong axis. The angular scale is then adjusted so the jet mass
    is close to ``target_mass`` (m ∝ angular scale at small angles), and offsets are kept inside
    0.95 ``radius``."""
    share = np.ones(1) if prongs == 1 else np.sort(rng.dirichlet(np.full(prongs, 4.0)))[::-1]
    if prongs == 1:
        axes = np.zeros((1, 2))
    else:
        ang = rng.uniform(0, 2 * np.pi) + np.arange(prongs) * 2 * np.pi / prongs + rng.normal(0, 0.3, prongs)
        axes = np.stack([np.cos(ang), np.sin(ang)], -1) * rng.uniform(0.5, 1.0, (prongs, 1))
    # every prong gets at least two particles
    which = np.concatenate([np.repeat(np.arange(prongs), 2),
                            rng.choice(prongs, size=n_particles - 2 * prongs, p=share)])
    z = np.empty(n_particles)
    for k in range(prongs):
        sel = which == k
        z[sel] = share[k] * rng.dirichlet(np.full(sel.sum(), 0.7))
    z = np.maximum(z, 1e-4)
    z /= z.sum()
    r = np.abs(rng.normal(0, prong_spread, n_particles)) * (1.0 / (n_particles * z)) ** 0.25
    theta = rng.uniform(0, 2 * np.pi, n_particles)
    local = np.stack([r * np.cos(theta), r * np.sin(theta)], -1)
    # one prong: the spray alone is scaled; several: the prong separation is scaled
    def layout(a):
        return local * a if prongs == 1 else axes[which] * a + local

    a = 1.0 if prongs == 1 else 0.3
    for _ in range(4):
        off = layout(a)
        p4 = _massless_p4(z, off[:, 0], off[:, 1]).sum(0)
        m = np.sqrt(max(p4[0] ** 2 - p4[1] ** 2 - p4[2] ** 2 - p4[3] ** 2, 1e-12)) * pt
        a *= np.clip(target_mass / m, 0.5, 2.0)
    off = layout(a)
    off -= np.sum(z[:, None] * off, axis=0)            # pT-weighted centroid on the axis
    dr = np.hypot(off[:, 0], off[:, 1])
    far = dr > 0.95 * radius
    off[far] *= (0.95 * radius / dr[far])[:, None]
    return off[:, 0], off[:, 1], z * pt


def _massless_p4(pt, eta, phi):
    return np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)


def toptag_jets(n, kind, rng, pt_range=(550.0, 650.0), eta_max=2.0):
    """Jets of one class: p4 (n, 200, 4) float64 [E, px, py, pz] pT ordered, zero padded; truth (n, 4).

    ``kind``: ``qcd`` (one prong, m ~ lognormal around 60 GeV), ``top`` (three prongs,
    m ≈ N(173, 12) GeV), ``zprime`` (two prongs, m ≈ N(150, 20) GeV)."""
    prongs = {"qcd": 1, "top": 3, "zprime": 2}[kind]
    mult_mean = {"qcd": 40, "top": 60, "zprime": 55}[kind]
    p4 = np.zeros((n, TOPTAG_SLOTS, 4))
    truth = np.zeros((n, 4))
    for i in range(n):
        mult = int(np.clip(rng.poisson(mult_mean), 3 * prongs + 2, TOPTAG_SLOTS))
        mass = {"qcd": np.clip(rng.lognormal(np.log(60.0), 0.5), 10.0, 250.0),
                "top": rng.normal(173.0, 12.0), "zprime": rng.normal(150.0, 20.0)}[kind]
        pt_jet = rng.uniform(pt_range[0] + 5, pt_range[1] - 5)
        eta_jet, phi_jet = rng.uniform(-(eta_max - 0.2), eta_max - 0.2), rng.uniform(-np.pi, np.pi)
        deta, dphi, pt = _constituent_offsets(mult, prongs, mass, pt_jet, rng, 0.8,
                                              0.05 if prongs == 1 else 0.03)
        c = _massless_p4(pt, eta_jet + deta, phi_jet + dphi)
        c *= pt_jet / np.hypot(*c.sum(0)[1:3])          # jet pT exactly pt_jet (angles kept)
        order = np.argsort(-np.hypot(c[:, 1], c[:, 2]), kind="stable")
        p4[i, :mult] = c[order]
        if kind == "top":
            j = c.sum(0)
            p3 = j[1:] * rng.normal(1.0, 0.03)
            truth[i] = np.concatenate([[np.sqrt(np.sum(p3**2) + 172.5**2)], p3])
    return p4, truth


def _dijet_axes(mjj, m1, m2, rng, max_cos=0.45, boost_sigma=0.4):
    """Jet (pT, η, φ) of two jets of masses m1, m2 with invariant mass mjj (back to back in φ)."""
    n = len(mjj)
    pstar = np.sqrt(np.clip((mjj**2 - (m1 + m2) ** 2) * (mjj**2 - (m1 - m2) ** 2), 0, None)) / (2 * mjj)
    cos = rng.uniform(-max_cos, max_cos, n)
    pt = pstar * np.sqrt(1 - cos**2)
    ybst = rng.normal(0, boost_sigma, n)
    out = []
    for m, sign in ((m1, 1.0), (m2, -1.0)):
        pz_star, e_star = sign * pstar * cos, np.sqrt(pstar**2 + m**2)
        y = np.arctanh(pz_star / e_star) + ybst
        mt = np.sqrt(pt**2 + m**2)
        out.append(np.arcsinh(mt * np.sinh(y) / pt))     # η of the (massive) jet axis
    phi1 = rng.uniform(-np.pi, np.pi, n)
    phi2 = np.mod(phi1 + np.pi + rng.normal(0, 0.05, n) + np.pi, 2 * np.pi) - np.pi
    return pt, out[0], out[1], phi1, phi2


def lhco_events(n, kind, rng, mjj_range=None, n_particles_range=(30, 80), soft_mean=40):
    """Events (n, 700, 3) [pT, η, φ] float64, particles in random order, zero padded.

    ``kind``: ``qcd`` (mjj = 2250 + Exp(1000) GeV below 6500 GeV unless ``mjj_range`` (lo, hi)
    asks for a uniform window; jet masses lognormal around 120 GeV, one prong) or ``signal``
    (mjj ≈ N(3500, 100) GeV, jets X(500) and Y(100) with two prongs each)."""
    if kind == "qcd":
        if mjj_range is None:
            mjj = 2250.0 + rng.exponential(1000.0, n)
            while (bad := mjj > 6500.0).any():
                mjj[bad] = 2250.0 + rng.exponential(1000.0, bad.sum())
        else:
            mjj = rng.uniform(mjj_range[0], mjj_range[1], n)
        m1, m2 = (np.clip(rng.lognormal(np.log(120.0), 0.5, n), 20.0, 600.0) for _ in range(2))
        prongs = (1, 1)
    elif kind == "signal":
        mjj = rng.normal(3500.0, 100.0, n)
        m1, m2 = rng.normal(500.0, 15.0, n), rng.normal(100.0, 5.0, n)
        prongs = (2, 2)
    else:
        raise ValueError(f"lhco_events: kind must be 'qcd' or 'signal', got {kind!r}")
    pt, eta1, eta2, phi1, phi2 = _dijet_axes(mjj, m1, m2, rng)
    out = np.zeros((n, LHCO_SLOTS, 3))
    for i in range(n):
        parts = []
        for m, eta, phi, k in ((m1[i], eta1[i], phi1[i], prongs[0]), (m2[i], eta2[i], phi2[i], prongs[1])):
            mult = int(rng.integers(n_particles_range[0], n_particles_range[1] + 1))
            deta, dphi, ppt = _constituent_offsets(mult, k, m, pt[i], rng, 1.0, 0.06 if k == 1 else 0.04)
            parts.append(np.stack([ppt, eta + deta, phi + dphi], -1))
        n_soft = rng.poisson(soft_mean)
        parts.append(np.stack([0.2 + rng.exponential(1.0, n_soft), rng.uniform(-2.5, 2.5, n_soft),
                               rng.uniform(-np.pi, np.pi, n_soft)], -1))
        ev = np.concatenate(parts)
        ev[:, 2] = np.mod(ev[:, 2] + np.pi, 2 * np.pi) - np.pi
        ev = ev[rng.permutation(len(ev))]                  # the official files are not pT ordered
        out[i, : len(ev)] = ev
    return out


# ---------------------------------------------------------------- writers (pandas only)


def _add_pandas_version(path, key):
    import tables

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tables.open_file(path, mode="a") as f:
            node = f.get_node("/" + key)
            if "pandas_version" not in node._v_attrs:
                node._v_attrs.pandas_version = _PANDAS_VERSION


def write_toptag_file(path, p4, label, truth, ttv):
    """One Top-Tagging-layout file (pandas ``format='table'``, key ``table``)."""
    n = len(label)
    flo = np.concatenate([np.asarray(p4, np.float32).reshape(n, -1), np.asarray(truth, np.float32)], 1)
    df = pd.DataFrame(flo, columns=TOPTAG_P4_COLUMNS + TOPTAG_TRUTH_COLUMNS)
    df["ttv"] = np.full(n, ttv, np.int64)
    df["is_signal_new"] = np.asarray(label, np.int64)
    df.to_hdf(path, key=TOPTAG_KEY, format="table", mode="w")
    _add_pandas_version(path, TOPTAG_KEY)
    return path


def write_lhco_file(path, particles, label):
    """One LHCO-R&D-layout file (pandas fixed format, key ``df``, float64, integer columns)."""
    n = len(label)
    block = np.zeros((n, LHCO_COLUMNS), np.float64)
    block[:, :-1] = np.asarray(particles, np.float64).reshape(n, -1)
    block[:, -1] = label
    df = pd.DataFrame(block, columns=pd.Index(np.arange(LHCO_COLUMNS, dtype=np.int64)))
    df.to_hdf(path, key=LHCO_KEY, format="fixed", mode="w")
    _add_pandas_version(path, LHCO_KEY)
    return path


def write_toptag_set(out, n_train=2000, n_val=500, n_test=1000, n_zprime=1000, seed=0):
    """train/val/test (``n_*`` jets per class, QCD and top shuffled together) and the Z′ file.

    Returns {split: path} with split in train, val, test, zprime."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        q, tq = toptag_jets(n, "qcd", rng)
        t, tt = toptag_jets(n, "top", rng)
        order = rng.permutation(2 * n)
        p4, truth = np.concatenate([q, t])[order], np.concatenate([tq, tt])[order]
        label = np.repeat([0, 1], n)[order]
        paths[split] = write_toptag_file(os.path.join(out, TOPTAG_FILES[split]), p4, label, truth, TTV[split])
    z, tz = toptag_jets(n_zprime, "zprime", rng)
    paths["zprime"] = write_toptag_file(os.path.join(out, TOPTAG_FILES["zprime"]), z,
                                        np.ones(n_zprime, np.int64), tz, TTV["test"])
    return paths


def write_lhco_set(out, n_background=10000, n_signal=1500, n_extra=3000, seed=0):
    """The R&D file (QCD + signal, shuffled, label column) and the SR-only QCD file.

    Returns {"main": path, "extra": path}."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    ev = np.concatenate([lhco_events(n_background, "qcd", rng), lhco_events(n_signal, "signal", rng)])
    label = np.repeat([0.0, 1.0], [n_background, n_signal])
    order = rng.permutation(len(label))
    paths = {"main": write_lhco_file(os.path.join(out, LHCO_FILES["main"]), ev[order], label[order])}
    extra = lhco_events(n_extra, "qcd", rng, mjj_range=(3310.0, 3690.0))
    paths["extra"] = write_lhco_file(os.path.join(out, LHCO_FILES["extra"]), extra, np.zeros(n_extra))
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("toptag", "lhco"), required=True)
    ap.add_argument("--out", required=True, help="folder for the files (created)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=2000, help="toptag: train jets per class")
    ap.add_argument("--n-val", type=int, default=500, help="toptag: validation jets per class")
    ap.add_argument("--n-test", type=int, default=1000, help="toptag: test jets per class")
    ap.add_argument("--n-zprime", type=int, default=1000, help="toptag: Z' jets")
    ap.add_argument("--n-background", type=int, default=10000, help="lhco: QCD events in the R&D file")
    ap.add_argument("--n-signal", type=int, default=1500, help="lhco: signal events in the R&D file")
    ap.add_argument("--n-extra", type=int, default=3000, help="lhco: events in the SR-only QCD file")
    a = ap.parse_args(argv)
    for name in ("n_train", "n_val", "n_test", "n_zprime", "n_background", "n_signal", "n_extra"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.kind == "toptag":
        paths = write_toptag_set(a.out, a.n_train, a.n_val, a.n_test, a.n_zprime, a.seed)
    else:
        paths = write_lhco_set(a.out, a.n_background, a.n_signal, a.n_extra, a.seed)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
