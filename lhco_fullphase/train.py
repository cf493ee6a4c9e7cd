"""Stage ``train``: the jet and the particle diffusion generators on side-band events (EMA).

    python -m lhco_fullphase.train --config lhco_fullphase/configs/demo.yaml --out runs/lhco --model jet
    horovodrun -np 16 python -m lhco_fullphase.train --config lhco_fullphase/configs/paper.yaml \
        --out $SCRATCH/lhco --model particle

Each part goes to ``OUT/models/<jet|particle>/`` (``lhco_fullphase.artifacts``) and holds only
its own net, so either can change without invalidating the other. Data: the ``sb_train``
(training) and ``sb_val`` (validation, early stopping) roles of the prepared data. A part is
skipped when finished with the same settings and data, continued from its last checkpoint when
interrupted, and trained afresh (with a one-line notice naming the changed key) when a setting
it depends on changed; ``--resume DIR`` continues one training from that checkpoint folder.
Settings: ``training`` with the part's ``training_<part>`` overrides; the seed is the config's
``seed`` (+1 for the particle part).
"""
from __future__ import annotations

import time

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.prepare import load_prepared, prepare
from lhco_fullphase.schema import PARTS

# config keys every part depends on, and the part's own net
MODEL_KEYS = ("seed", "data.num_particles", "model.generator", "model.sde", "model.prediction",
              "model.weighting", "model.gaussian_skip", "model.mjj_fourier")
# Trainer keys that do not change the trained weights (the seed is set from the top-level seed)
UNFINGERPRINTED_TRAINING = ("progress", "seed", "resume", "tensorboard")


def network_arrays(pre, arrays, part=None):
    """Physical arrays -> network-space batch dict (jets, particles, mask, mjj)."""
    jx, px, mx = pre.transform(arrays["jets"], arrays["particles"], arrays["mask"], arrays["mjj"])
    out = {"jets": jx, "mjj": mx}
    if part != "jet":  # the jet model needs no particles: keep batches small
        out.update(particles=px, mask=arrays["mask"].astype(np.float32))
    return out


def build_generator(cfg, pre, parts=PARTS):
    """DijetDiffusion for ``cfg`` with weights created; multiplicity dequantised by 1/std(N)."""
    from lhco_fullphase.model import DijetDiffusion
    n = pre.n_index
    model = DijetDiffusion(cfg["model"], int(cfg["data"]["num_particles"]),
                           n_dequant=1.0 / float(pre.jet_std[n]), n_feature=n, parts=parts,
                           num_jet_features=pre.n_jet_features)
    for part in parts:
        model._mjj_cond(np.zeros(1, np.float32), part)  # builds the (fixed) Fourier frequencies
    return model


def training_config(cfg, part) -> dict:
    """``training`` with the part's overrides from ``training_<part>`` (e.g. more epochs for
    the cheap jet model) applied."""
    return {**cfg["training"], **cfg[f"training_{part}"]}


def generator_artifact(run, part, prep=None):
    """The folder artifact of one part: its settings and its training/validation events."""
    prep = prep or load_prepared(run)
    tcfg = {k: v for k, v in training_config(run.cfg, part).items()
            if k not in UNFINGERPRINTED_TRAINING}
    return run.artifact(artifacts.model_dir(run.out, part),
                        config=[*MODEL_KEYS, f"model.{part}_net"],
                        extra={"part": part, "training": tcfg,
                               "prepared": prep.fingerprint("sb_train", "sb_val")},
                        folder=True, done_marker="train_summary.json")


def train_generator(run, part):
    """Train one part (every rank under Horovod); returns its artifact."""
    from shared.training import Trainer

    if part not in PARTS:
        raise run.error("--model", f"{part!r} not in {PARTS}")
    prep = load_prepared(run)
    art = generator_artifact(run, part, prep)
    if run.start(art, f"models/{part}"):
        run.log(f"models/{part}: up to date")
        return art
    train = network_arrays(prep.pre, prep.take("sb_train"), part)
    val = network_arrays(prep.pre, prep.take("sb_val"), part)
    tcfg = training_config(run.cfg, part)
    tcfg.update(seed=int(run.key("seed")) + PARTS.index(part),
                progress=bool(run.progress and tcfg["progress"]))
    model = build_generator(run.cfg, prep.pre, parts=(part,))
    trainer = Trainer(model, tcfg, art.path, ctx=run.ctx,
                      extra_state={"preprocessor": prep.pre.to_dict()},
                      resume=run.resume if run.resume not in ("auto", "never") else "auto")
    t0 = time.time()
    history = trainer.fit(train, val)
    if run.ctx.is_root:
        from shared.io import atomic_write_json
        atomic_write_json(artifacts.train_summary_path(art.path), {
            "part": part, "epochs_run": len(history), "best_epoch": trainer.state["best_epoch"],
            "best_val_loss": trainer.state["best_val_loss"], "n_train": len(train["jets"]),
            "n_val": len(val["jets"]),
            "weights": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            "wall_s": time.time() - t0, "world_size": run.ctx.size})
    run.ctx.barrier()
    return art


def train_all(run, parts=PARTS) -> dict:
    """Every requested part; returns {part: Artifact}. ``--resume DIR`` needs exactly one."""
    if run.resume not in ("auto", "never") and len(parts) > 1:
        from shared.errors import UsageError
        raise UsageError(f"--resume {run.resume}: a checkpoint folder continues ONE training; "
                         "choose it with --model jet|particle")
    return {part: train_generator(run, part) for part in parts}


def load_generator(run, prep=None):
    """Full generator with the best (EMA, ``generation.use_ema``) weights of both trained parts,
    loaded once per process; an error if a part is missing or was trained with other settings."""
    from shared.errors import UsageError
    prep = prep or load_prepared(run)
    arts = {part: generator_artifact(run, part, prep) for part in PARTS}
    for part, art in arts.items():
        if not (art.complete() and art.matches()):
            raise UsageError(f"{art.path}: generator {art.stale_reason() or 'not trained'}; "
                             f"run the train stage (python -m lhco_fullphase.train --model {part})")
    key = "generator/" + "/".join(a.digest for a in arts.values())
    return run.cached(key, lambda: _assemble(run.cfg, prep.pre, arts))


def _assemble(cfg, pre, arts):
    from shared.checkpoint import load_checkpoint
    full = build_generator(cfg, pre)
    for part, art in arts.items():
        single = build_generator(cfg, pre, parts=(part,))
        ema = cfg["generation"]["use_ema"] and bool(training_config(cfg, part)["ema_decay"])
        load_checkpoint(art.path / "checkpoints" / "best", single, use_ema=ema)
        net = f"{part}_net"
        getattr(full, net).set_weights(getattr(single, net).get_weights())
    return full


def main(argv=None):
    from lhco_fullphase.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--model", default=None, choices=PARTS,
                   help="which generator part to train (default: both)")
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    run.root_only(prepare)
    for part, art in train_all(run, (args.model,) if args.model else PARTS).items():
        run.log(f"trained {part}: {art.path}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
