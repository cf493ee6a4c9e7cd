"""Low-dimensional CATHODE and its idealized counterpart on prepared lhco data: the scan of
``weak_supervision`` with ``lhco_fullphase.lowdim.scan_lowdim``; prints JSON with the median AUC
and max SIC per (method, injection), the stage times, and the SR generation-quality AUC of the
flow (its samples vs the true SR background, same 4-feature classifier).

    python benchmarks/lhco_lowdim.py --config benchmarks/lhco_methods_demo.yaml \
        --out /tmp/lowdim_run --data-dir /work/runs/lhco_before/data [--set lowdim.classifier.kind=mlp]

Reads the prepared data read-only; writes only under --out.
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

    from lhco_fullphase import artifacts, lowdim
    from lhco_fullphase.prepare import Prepared
    from shared import metrics
    from shared.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", required=True, help="prepared data (read only)")
    p.add_argument("--set", action="append", default=[], help="key=value override")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set)
    prep = Prepared.load(args.data_dir)
    t0 = time.time()
    _, times = lowdim.scan_lowdim(cfg, args.out, prep, progress=False)
    res = {"wall_s": round(time.time() - t0, 1), "times": times,
           "classifier": lowdim.lowdim_config(cfg)["classifier"]["kind"], "scan": {}}
    ws = cfg["weak_supervision"]
    mb = int(cfg.get("evaluate", {}).get("min_background", 10))
    for method in lowdim.METHODS:
        for n in ws["injections"]:
            aucs, sics = [], []
            for i in range(int(ws.get("num_inits", 1))):
                path = artifacts.scores_path(artifacts.scan_dir(args.out, method, n, i))
                if os.path.isfile(path):
                    with np.load(path) as d:
                        aucs.append(metrics.auc(d["labels"], d["scores"]))
                        sics.append(metrics.max_sic(d["labels"], d["scores"], mb))
            if aucs:
                res["scan"][f"{method}/inj{n}"] = {"auc": aucs, "max_sic": sics,
                                                   "auc_median": float(np.median(aucs)),
                                                   "max_sic_median": float(np.median(sics))}
    res["quality_sr_auc"] = sr_quality(cfg, args.out, prep)
    print(json.dumps(res, indent=1))


def sr_quality(cfg, out, prep, inits=3):
    """AUC of the 4-feature classifier (lowdim.classifier) trained flow samples vs the true SR
    background (``idealized_bkg``) on half the events, tested on the other half (per init)."""
    from lhco_fullphase import lowdim
    from shared import metrics

    true = lowdim.lowdim_features(prep.take("idealized_bkg"),
                                  lowdim.lowdim_config(cfg)["features"]["jet_order"])
    with np.load(os.path.join(out, "lowdim", "sr_samples.npz")) as s:
        gen = s["features"]
    aucs = []
    for seed in range(inits):
        rng = np.random.default_rng(seed)
        g = gen[rng.permutation(len(gen))[:len(true)]]
        x, y = np.concatenate([g, true]), np.r_[np.zeros(len(g)), np.ones(len(true))]
        idx = rng.permutation(len(x))
        tr, te = idx[:len(x) // 2], idx[len(x) // 2:]
        r = lowdim.train_and_score_lowdim(cfg, x[tr][y[tr] == 0], x[tr][y[tr] == 1], x[te], seed)
        aucs.append(metrics.auc(y[te], r["eval"]))
    return {"mean": float(np.mean(aucs)), "std": float(np.std(aucs)), "all": aucs}


if __name__ == "__main__":
    main()
