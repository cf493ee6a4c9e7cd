"""Low-dimensional CATHODE and its idealized counterpart on prepared lhco data: the scan of
``weak_supervision`` with ``lhco_fullphase.lowdim.scan_lowdim``; prints JSON with the median AUC
and max SIC per (method, injection) and the stage times.

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
    from lhco_fullphase import lowdim
    from lhco_fullphase.classify import run_dir
    from shared import metrics
    from shared.config import build_parser, config_from_args

    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="prepared data (read only)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    t0 = time.time()
    _, times = lowdim.scan_lowdim(cfg, args.out, args.data_dir, progress=False)
    res = {"wall_s": round(time.time() - t0, 1), "times": times,
           "classifier": lowdim.lowdim_config(cfg)["classifier"]["kind"], "scan": {}}
    ws = cfg["weak_supervision"]
    mb = int(cfg.get("evaluate", {}).get("min_background", 10))
    for method in lowdim.METHODS:
        for n in ws["injections"]:
            aucs, sics = [], []
            for i in range(int(ws.get("num_inits", 1))):
                path = os.path.join(run_dir(args.out, method, n, i), "scores.npz")
                if os.path.isfile(path):
                    with np.load(path) as d:
                        aucs.append(metrics.auc(d["labels"], d["scores"]))
                        sics.append(metrics.max_sic(d["labels"], d["scores"], mb))
            if aucs:
                res["scan"][f"{method}/inj{n}"] = {"auc": aucs, "max_sic": sics,
                                                   "auc_median": float(np.median(aucs)),
                                                   "max_sic_median": float(np.median(sics))}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
