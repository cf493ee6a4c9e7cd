"""Benchmarks: a QCD training set, a QCD test set and named signal test sets, all jet sets.

``{"train": jetset, "background": jetset, "signals": {name: jetset}}``

* :func:`toptag_benchmark` — the permutation_ad processed splits (QCD train, QCD / top / Z′
  test): the same jets the diffusion density is trained and scored on.
* :func:`darkjet_benchmark` — the two dark-jet signals of ``whats_anomalous_in_lhc_jets.txt``
  (semi-visible, two-prong) with their own QCD background (150 < pT < 300 GeV), generated with
  the Pythia 8 stand-in on first use and cached (``shared.data.embedded`` kinds ``darkqcd``,
  ``semivisible``, ``twoprong``); each split is an independent generation.
"""
from __future__ import annotations

import time

import numpy as np

from shared.errors import DataFormatError

from .jetset import check_jetset, from_p4, from_processed

RESERVED = ("train", "background")


def check_benchmark(bench, name):
    """Validated copy of a benchmark dict; names the benchmark and set on bad input."""
    where = f"benchmark '{name}'"
    if not isinstance(bench, dict):
        raise DataFormatError(where, "<benchmark>", "expected a dict with train, background, signals")
    for key in ("train", "background", "signals"):
        if key not in bench:
            raise DataFormatError(where, key, "missing")
    signals = bench["signals"]
    if not isinstance(signals, dict) or not signals:
        raise DataFormatError(where, "signals", "must be a non-empty dict")
    bad = [s for s in signals if s in RESERVED or "__" in s or "/" in s]
    if bad:
        raise DataFormatError(where, "signals", f"names {bad} are reserved or contain '__' / '/'")
    return {"train": check_jetset(bench["train"], f"{name}/train"),
            "background": check_jetset(bench["background"], f"{name}/background"),
            "signals": {s: check_jetset(js, f"{name}/{s}") for s, js in signals.items()}}


def toptag_benchmark(data_dir, particle_pt_feature="log_pt", jet_features=("eta", "mass", "n"),
                     n_train=None, n_test=None, signals=("top", "zprime")):
    """Benchmark from ``<data_dir>/processed/{qcd_train, qcd_test, <signal>_test}.h5`` (the
    permutation_ad prepare stage); ``n_test`` jets per test set (the first ones, like the
    evaluate stage), ``n_train`` QCD training jets (None: all)."""
    from permutation_ad.prepare import load_split

    def load(sample, split, limit):
        return from_processed(load_split(data_dir, sample, split, limit), particle_pt_feature,
                              jet_features)

    return {"train": load("qcd", "train", n_train), "background": load("qcd", "test", n_test),
            "signals": {s: load(s, "test", n_test) for s in signals}}


DARK_SIGNALS = ("semivisible", "twoprong")


def darkjet_benchmark(dcfg, cache_dir, progress=True):
    """Generate (or reuse) the dark-jet benchmark; ``dcfg`` is the ``baselines.dark_jets`` block
    (n_train, n_test, num_particles, workers, detector, seed). Returns (benchmark, info) with
    the generation wall time and the files used."""
    from shared.data.detector import DetectorConfig
    from shared.data.embedded import ensure_embedded
    from shared.data.toptag import read_toptag

    det = DetectorConfig(enabled=bool(dcfg.get("detector", True)))
    seed = int(dcfg["seed"])
    plan = {"train": ("darkqcd", int(dcfg["n_train"]), 10 * seed + 1),
            "background": ("darkqcd", int(dcfg["n_test"]), 10 * seed + 2)}
    for i, s in enumerate(DARK_SIGNALS):
        plan[s] = (s, int(dcfg["n_test"]), 10 * seed + 3 + i)
    out, files, t0 = {}, {}, time.perf_counter()
    for split, (kind, n, sd) in plan.items():
        path = ensure_embedded(kind, cache_dir, n, sd, workers=int(dcfg.get("workers", 1)),
                               detector=det, progress=progress)
        d = read_toptag(path)
        out[split] = from_p4(np.asarray(d["p4"]), int(dcfg["num_particles"]))
        files[split] = path
    bench = {"train": out["train"], "background": out["background"],
             "signals": {s: out[s] for s in DARK_SIGNALS}}
    return bench, {"files": files, "seconds": time.perf_counter() - t0}
