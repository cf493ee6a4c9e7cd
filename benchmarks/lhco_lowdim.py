"""Low-dimensional CATHODE and its idealized counterpart alone, through the pipeline's own stage
functions (prepare → train the MAF → sample the SR → the scan units of ``lowdim`` and
``lowdim_idealized``); prints JSON with the median AUC and max SIC per (method, injection), the
step times, and the SR generation-quality AUC of the flow (its samples vs the true SR
background, same 4-feature classifier).

    python benchmarks/lhco_lowdim.py --config lhco_fullphase/configs/demo.yaml \
        --out /tmp/lowdim_run --data-dir /work/runs/lhco/data [--set lowdim.classifier.kind=mlp]

``lowdim.enabled`` is switched on. The data folder is prepared (or reused when it matches the
config) and gets the low-dim feature cache (``prepared/lowdim_features.npz``); everything else is
written under --out.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main(argv=None):
    import argparse

    from lhco_fullphase import artifacts
    from lhco_fullphase.classify import classify, units
    from lhco_fullphase.evaluate import scan_metrics
    from lhco_fullphase.prepare import prepare
    from lhco_fullphase.sample import sample
    from lhco_fullphase.schema import LOWDIM_METHODS, SCHEMA
    from lhco_fullphase.train import train_all
    from shared.run import Run

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", required=True, help="the data folder (prepared data reused)")
    p.add_argument("--set", action="append", default=[], help="key=value override")
    args = p.parse_args(argv)
    run = Run.from_config(args.config, args.out, SCHEMA, overrides=[*args.set, "lowdim.enabled=true"],
                          data_dir=args.data_dir, progress=False)
    times = {}
    steps = (("prepare", lambda: prepare(run)), ("flow", lambda: train_all(run, ["lowdim"])),
             ("sample", lambda: sample(run, ("sr",), ["lowdim"])),
             ("classifiers", lambda: classify(run, ("scan",), only_methods=LOWDIM_METHODS)))
    for name, fn in steps:
        t0 = time.time()
        fn()
        times[f"{name}_s"] = round(time.time() - t0, 1)
    res = {"times": times, "classifier": run.key("lowdim.classifier.kind"), "scan": {}}
    mb, band = int(run.key("evaluate.min_background")), float(run.key("evaluate.band"))
    for method in LOWDIM_METHODS:
        for n in run.key("weak_supervision.injections"):
            runs = [artifacts.read_scores(artifacts.scan_dir(run.out, *u[1:])) for u in units(run, ("scan",))
                    if u[1:3] == (method, int(n))]
            if runs:
                m = scan_metrics(runs, int(n), mb, band)
                res["scan"][f"{method}/inj{n}"] = {k: m[k] for k in ("auc", "max_sic", "auc_summary",
                                                                     "max_sic_summary")}
    res["quality_sr_auc"] = sr_quality(run)
    print(json.dumps(res, indent=1))


def sr_quality(run, inits=3):
    """AUC of the 4-feature classifier (``lowdim.classifier``) trained on flow samples vs the true
    SR background (``idealized_bkg``) on half the events, tested on the other half (per init)."""
    from lhco_fullphase.lowdim import train_and_score_lowdim
    from lhco_fullphase.prepare import load_lowdim_features, load_prepared
    from lhco_fullphase.sample import read_lowdim_samples
    from shared import metrics

    prep = load_prepared(run)
    true = load_lowdim_features(run, prep).take(prep.roles["idealized_bkg"])
    gen = read_lowdim_samples(run, prep)["features"]
    aucs = []
    for seed in range(inits):
        rng = np.random.default_rng(seed)
        g = gen[rng.permutation(len(gen))[:len(true)]]
        x, y = np.concatenate([g, true]), np.r_[np.zeros(len(g)), np.ones(len(true))]
        idx = rng.permutation(len(x))
        tr, te = idx[:len(x) // 2], idx[len(x) // 2:]
        r = train_and_score_lowdim(run.cfg, x[tr][y[tr] == 0], x[tr][y[tr] == 1], x[te], seed)
        aucs.append(metrics.auc(y[te], r["eval"]))
    return {"mean": float(np.mean(aucs)), "std": float(np.std(aucs)), "all": aucs}


if __name__ == "__main__":
    main()
