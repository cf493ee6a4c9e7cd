"""Flow-matching (EPiC-FM) generator on prepared lhco data: train both parts, generate the SR
and SB samples, and measure the generation-quality AUC (generated vs true) with the same
classifier protocol as the diffusion generator — through the unchanged stage functions
(``train.train_generator``, ``sample.sample_region``, ``classify.quality``), with
``train.build_generator`` pointed at :func:`lhco_fullphase.flow_model.build_flow_generator`.

    python benchmarks/lhco_flow_matching.py --config benchmarks/lhco_methods_demo.yaml \
        --out /tmp/fm_run --data-dir /work/runs/lhco_before/data [--set flow_model.steps=100]

Reads the prepared data read-only; writes only under --out. Prints JSON (times, AUCs).
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def flow_config(cfg):
    """The config the stage functions see: training_<part> = training_flow_<part>,
    generation.ddim_steps = flow_model.steps."""
    c = copy.deepcopy(dict(cfg))
    for part in ("jet", "particle"):
        c[f"training_{part}"] = dict(cfg.get(f"training_flow_{part}") or {})
    c["generation"] = {**c["generation"], "ddim_steps": int(cfg["flow_model"].get("steps", 250))}
    return c


def main(argv=None):
    from lhco_fullphase import classify, sample, train
    from lhco_fullphase.flow_model import build_flow_generator
    from lhco_fullphase.model import PARTS
    from shared.config import build_parser, config_from_args

    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="prepared data (read only)")
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args(argv)
    cfg = flow_config(config_from_args(args))
    num_particles = int(cfg["data"]["num_particles"])
    train.build_generator = lambda c, pre, parts=PARTS: build_flow_generator(
        c["flow_model"], num_particles, pre, parts)
    res = {"stage_seconds": {}}
    for stage, fn in (("train_jet", lambda: train.train_generator(cfg, args.out, "jet", args.data_dir)),
                      ("train_particle", lambda: train.train_generator(cfg, args.out, "particle", args.data_dir)),
                      ("sample_sr", lambda: sample.sample_region(cfg, args.out, "sr", args.data_dir)),
                      ("sample_sb", lambda: sample.sample_region(cfg, args.out, "sb", args.data_dir)),
                      ("quality", None if args.skip_quality else
                       lambda: classify.quality(cfg, args.out, args.data_dir))):
        if fn is None:
            continue
        t0 = time.time()
        fn()
        res["stage_seconds"][stage] = round(time.time() - t0, 1)
    for part in ("jet", "particle"):
        with open(os.path.join(train.model_dir(args.out, part), "train_summary.json")) as f:
            res[f"train_{part}"] = json.load(f)
    if not args.skip_quality:
        for region in cfg.get("generation_quality", {}).get("regions", ["sb", "sr"]):
            aucs = []
            for i in range(int(cfg["generation_quality"].get("num_inits", 1))):
                with np.load(os.path.join(classify.run_dir(args.out, f"quality_{region}", None, i), "scores.npz")) as d:
                    aucs.append(float(d["auc"]))
            res[f"quality_{region}_auc"] = {"mean": float(np.mean(aucs)), "std": float(np.std(aucs)), "all": aucs}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
