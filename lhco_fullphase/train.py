"""Stage 2: train the jet or the particle diffusion generator on side-band events (EMA).

    python -m lhco_fullphase.train --config lhco_fullphase/configs/demo.yaml --out runs/lhco --model jet
    horovodrun -np 16 python -m lhco_fullphase.train --config lhco_fullphase/configs/paper.yaml \
        --out $SCRATCH/lhco --model particle

Each model goes to ``OUT/models/<jet|particle>/`` (``checkpoints/{last,best}``, history,
``train_summary.json``); it resumes from ``checkpoints/last`` automatically. Data: the
``sb_train`` (training) and ``sb_val`` (validation, early stopping) roles of the prepared data
(run ``lhco_fullphase.prepare`` first; the pipeline does).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from lhco_fullphase.model import PARTS, DijetDiffusion
from lhco_fullphase.prepare import Prepared, data_dir_for
from shared.config import atomic_write_text


def model_dir(out, part):
    return os.path.join(out, "models", part)


def network_arrays(pre, arrays, part=None):
    """Physical arrays -> network-space batch dict (jets, particles, mask, mjj)."""
    jx, px, mx = pre.transform(arrays["jets"], arrays["particles"], arrays["mask"], arrays["mjj"])
    out = {"jets": jx, "mjj": mx}
    if part != "jet":  # the jet model needs no particles: keep batches small
        out.update(particles=px, mask=arrays["mask"].astype(np.float32))
    return out


def build_generator(cfg, pre, parts=PARTS):
    """DijetDiffusion for ``cfg`` with weights created; multiplicity dequantised by 1/std(N)."""
    num_particles = int(cfg["data"]["num_particles"])
    n = pre.n_index
    model = DijetDiffusion(cfg["model"], num_particles, n_dequant=1.0 / float(pre.jet_std[n]), n_feature=n,
                           parts=parts, num_jet_features=pre.n_jet_features)
    for part in parts:
        model._mjj_cond(np.zeros(1, np.float32), part)  # builds the (fixed) Fourier frequencies
    return model


def training_config(cfg, part):
    """``training`` with the part's overrides from ``training_<part>`` (e.g. more epochs for
    the cheap jet model) applied."""
    tcfg = dict(cfg["training"])
    tcfg.update(dict(cfg.get(f"training_{part}") or {}))
    return tcfg


def train_generator(cfg, out, part, data_dir=None, ctx=None, progress=True):
    """Train one generator part; returns its folder. Skips when ``train_summary.json`` exists."""
    from shared.distributed import get_context
    from shared.training import Trainer

    if part not in PARTS:
        raise ValueError(f"--model: {part!r} not in {PARTS}")
    ctx = ctx or get_context()
    wd = model_dir(out, part)
    summary_path = os.path.join(wd, "train_summary.json")
    if os.path.isfile(summary_path):
        return wd
    prep = Prepared(data_dir_for(cfg, out, data_dir))
    train = network_arrays(prep.pre, prep.take("sb_train"), part)
    val = network_arrays(prep.pre, prep.take("sb_val"), part)
    tcfg = training_config(cfg, part)
    tcfg.setdefault("seed", int(cfg.get("seed", 0)) + (0 if part == "jet" else 1))
    tcfg["progress"] = bool(progress and tcfg.get("progress", True))
    model = build_generator(cfg, prep.pre, parts=(part,))
    trainer = Trainer(model, tcfg, wd, ctx=ctx, extra_state={"preprocessor": prep.pre.to_dict()})
    t0 = time.time()
    history = trainer.fit(train, val)
    if ctx.is_root:
        summary = {"part": part, "epochs_run": len(history), "best_epoch": trainer.state["best_epoch"],
                   "best_val_loss": trainer.state["best_val_loss"], "n_train": len(train["jets"]),
                   "n_val": len(val["jets"]), "weights": int(sum(np.prod(v.shape) for v in
                                                                 model.trainable_variables)),
                   "wall_s": time.time() - t0, "world_size": ctx.size}
        atomic_write_text(summary_path, json.dumps(summary, indent=1))
    ctx.barrier()
    return wd


def load_generator(cfg, out, pre, use_ema=None):
    """Full generator with the best (EMA) weights of both trained parts."""
    from shared.checkpoint import load_checkpoint

    use_ema = cfg["generation"].get("use_ema", True) if use_ema is None else use_ema
    full = build_generator(cfg, pre)
    for part in PARTS:
        single = build_generator(cfg, pre, parts=(part,))
        ema = use_ema and bool(training_config(cfg, part).get("ema_decay"))
        load_checkpoint(os.path.join(model_dir(out, part), "checkpoints", "best"), single, use_ema=ema)
        net = "jet_net" if part == "jet" else "particle_net"
        getattr(full, net).set_weights(getattr(single, net).get_weights())
    return full


def main(argv=None):
    from shared.config import build_parser, config_from_args
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=PARTS, help="which generator to train")
    p.add_argument("--data-dir", default=None, help="prepared data (default: data.dir or OUT/data)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if args.resume == "never":
        cfg["training"]["resume"] = "never"
    print(train_generator(cfg, args.out, args.model, args.data_dir))


if __name__ == "__main__":
    main()
