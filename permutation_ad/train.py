"""Train the joint jet density (particle + jet score nets) on one sample with one objective.

    python -m permutation_ad.train --config permutation_ad/configs/demo.yaml --out runs/demo \
        --sample qcd --objective standard [--data-dir DIR] [--set training.epochs=3]
    horovodrun -np 16 python -m permutation_ad.train --config permutation_ad/configs/paper.yaml ...

The model goes to ``OUT/models/<sample>_<objective>/`` (checkpoints, ``standardizer.json``,
``train_summary.json``); processed data to ``--data-dir`` (default ``OUT/data``), prepared on
first use. Training resumes from the last checkpoint automatically.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from permutation_ad import data as pdata

SAMPLES = ("qcd", "top")
OBJECTIVES = ("standard", "likelihood")


def model_dir(out, sample, objective):
    return os.path.join(out, "models", f"{sample}_{objective}")


def _standardized(split, std):
    c, j = std.transform(split["constituents"], split["mask"], split["jets"])
    return {"constituents": c, "mask": split["mask"].astype(np.float32), "jets": j}


def n_column(cfg):
    names = list(cfg["data"].get("jet_features", ["eta", "mass", "n"]))
    return names.index(pdata.N_COLUMN) if pdata.N_COLUMN in names else None


def build_model(cfg, std, num_particle_features=3):
    """JetDensityModel for ``cfg`` with the multiplicity dequantisation width of ``std``."""
    from permutation_ad.model import JetDensityModel
    nc = n_column(cfg)
    mcfg = dict(cfg["model"])
    model = JetDensityModel(num_particle_features, len(std.j_mean), cfg["data"]["num_particles"], mcfg,
                            n_column=nc, n_bin_width=0.0 if nc is None else 1.0 / float(std.j_std[nc]))
    P, J = int(cfg["data"]["num_particles"]), len(std.j_mean)
    model([np.zeros((1, P, num_particle_features), np.float32), np.ones((1, P), np.float32),
           np.zeros((1, J), np.float32)])  # creates the weights
    return model


def model_config(cfg, objective):
    """cfg with ``model.weighting`` set for ``objective``."""
    mcfg = dict(cfg["model"])
    mcfg["weighting"] = objective
    return dict(cfg, model=mcfg)


def train_density(cfg, out, sample, objective, data_dir=None, ctx=None, progress=True, resume="auto"):
    """Train one density; returns its folder. With ``resume='auto'`` it skips a finished model
    (``train_summary.json``) and continues an interrupted one; ``'never'`` starts afresh."""
    from shared.distributed import get_context
    from shared.training import Trainer
    from shared.seeding import set_seeds

    if sample not in SAMPLES:
        raise ValueError(f"--sample: {sample!r} not in {SAMPLES}")
    if objective not in OBJECTIVES:
        raise ValueError(f"--objective: {objective!r} not in {OBJECTIVES}")
    ctx = ctx or get_context()
    data_dir = data_dir or os.path.join(out, "data")
    workdir = model_dir(out, sample, objective)
    summary_path = os.path.join(workdir, "train_summary.json")
    if os.path.exists(summary_path) and resume == "auto":
        return workdir
    if ctx.is_root:
        pdata.prepare(cfg, data_dir, source_desc=getattr(cfg, "source", "<config>"), progress=progress)
    ctx.barrier()
    set_seeds(int(cfg.get("seed", 0)) + 1000 * SAMPLES.index(sample) + 100 * OBJECTIVES.index(objective))
    train = pdata.load_split(data_dir, sample, "train")
    val = pdata.load_split(data_dir, sample, "val")
    nc = n_column(cfg)
    std = pdata.Standardizer.fit(train["constituents"], train["mask"], train["jets"],
                                 dequantized_columns=() if nc is None else (nc,))
    cfg_o = model_config(cfg, objective)
    model = build_model(cfg_o, std)
    extra = {"standardizer": std.to_dict(), "sample": sample, "objective": objective}
    tcfg = dict(cfg["training"])
    tcfg.setdefault("seed", int(cfg.get("seed", 0)))
    if resume != "auto":
        tcfg["resume"] = resume
    trainer = Trainer(model, tcfg, workdir, ctx=ctx, extra_state=extra)
    start = time.time()
    history = trainer.fit(_standardized(train, std), _standardized(val, std))
    if ctx.is_root:
        std.save_json(os.path.join(workdir, "standardizer.json"))
        summary = {"sample": sample, "objective": objective, "seconds": time.time() - start,
                   "num_train": int(len(train["jets"])), "num_val": int(len(val["jets"])),
                   "num_weights": {"particle_net": int(model.particle_net.count_params()),
                                   "jet_net": int(model.jet_net.count_params())},
                   "history": _jsonable(history)}
        pdata.atomic_write_text(summary_path, json.dumps(summary, indent=1))
    ctx.barrier()
    return workdir


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "history"):
        return _jsonable(obj.history)
    return obj if isinstance(obj, (int, float, str, bool, type(None))) else str(obj)


def load_density(cfg, workdir, objective):
    """(model with EMA weights, Standardizer) of a trained density."""
    from shared.checkpoint import find_checkpoint, load_checkpoint
    std = pdata.Standardizer.load_json(os.path.join(workdir, "standardizer.json"))
    model = build_model(model_config(cfg, objective), std)
    ckpt_root = os.path.join(workdir, "checkpoints")
    which = "best" if find_checkpoint(os.path.join(ckpt_root, "best")) else "last"
    load_checkpoint(os.path.join(ckpt_root, which), model, use_ema=True)
    return model, std


def main(argv=None):
    from shared.config import build_parser, config_from_args, resolve_resume
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--sample", default="qcd", choices=SAMPLES)
    p.add_argument("--objective", default=None, choices=OBJECTIVES,
                   help="default: every objective in model.objectives")
    p.add_argument("--data-dir", default=None, help="processed/raw data cache (default OUT/data)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    data_dir = _data_dir(cfg, args)
    objectives = [args.objective] if args.objective else list(cfg["model"].get("objectives", OBJECTIVES))
    for obj in objectives:
        path = train_density(cfg, args.out, args.sample, obj, data_dir=data_dir,
                             resume=resolve_resume(args.resume, model_dir(args.out, args.sample, obj)))
        print(f"trained {args.sample}/{obj}: {path}")


def _data_dir(cfg, args):
    if getattr(args, "data_dir", None):
        return os.path.abspath(args.data_dir)
    d = (cfg.get("data") or {}).get("dir")
    return d if d else os.path.join(args.out, "data")


def cli(argv=None):
    """``main`` with bad-input errors reported as one line (exit code 2)."""
    from shared.config import run_cli
    run_cli(main, argv, (pdata.DataError,))


if __name__ == "__main__":
    cli()
