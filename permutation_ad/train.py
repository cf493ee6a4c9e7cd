"""Stage ``train``: the joint jet density (particle + jet score nets) of one training sample
with one objective.

    python -m permutation_ad.train --config permutation_ad/configs/demo.yaml --out runs/demo \
        --sample qcd --objective standard [--data-dir DIR] [--set training.epochs=3]
    horovodrun -np 16 python -m permutation_ad.train --config permutation_ad/configs/paper.yaml ...

The model goes to ``OUT/models/<sample>_<objective>/`` (``permutation_ad.artifacts``). It is
skipped when finished with the same settings and data, continued from its last checkpoint when
interrupted, and trained afresh (with a one-line notice) when a setting it depends on changed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from permutation_ad import artifacts
from permutation_ad.features import n_column
from permutation_ad.prepare import load_split, prepare, processed_artifact
from permutation_ad.preprocess import Preprocessor
from permutation_ad.schema import OBJECTIVES, SAMPLES

MODEL_KEYS = ("seed", "data.jet_features", "model.sde", "model.gaussian_skip",
              "model.particle_net", "model.jet_net")


def _training_keys(cfg_training):
    return [f"training.{k}" for k in cfg_training if k != "progress"]


def density_artifact(run, sample, objective):
    """The folder artifact of one density: its settings and its training/validation data."""
    return run.artifact(artifacts.model_dir(run.out, sample, objective),
                        config=[*MODEL_KEYS, *_training_keys(run.cfg["training"])],
                        upstream={f"{split}": processed_artifact(run, sample, split)
                                  for split in ("train", "val")},
                        extra={"sample": sample, "objective": objective},
                        folder=True, done_marker="train_summary.json")


def build_model(cfg, preprocessor, objective="standard", num_particle_features=3):
    """JetDensityModel for ``cfg`` (weights created) with the multiplicity dequantisation width
    of ``preprocessor``."""
    from permutation_ad.model import JetDensityModel
    nc = n_column(cfg["data"]["jet_features"])
    model = JetDensityModel(num_particle_features, len(preprocessor.j_mean),
                            cfg["data"]["num_particles"], dict(cfg["model"], weighting=objective),
                            n_column=nc,
                            n_bin_width=0.0 if nc is None else 1.0 / float(preprocessor.j_std[nc]))
    p, j = int(cfg["data"]["num_particles"]), len(preprocessor.j_mean)
    model([np.zeros((1, p, num_particle_features), np.float32), np.ones((1, p), np.float32),
           np.zeros((1, j), np.float32)])
    return model


def train_density(run, sample, objective):
    """Train one density (every rank under Horovod); returns its artifact."""
    from shared.seeding import set_seeds
    from shared.training import Trainer

    if sample not in SAMPLES:
        raise run.error("--sample", f"{sample!r} not in {SAMPLES}")
    if objective not in OBJECTIVES:
        raise run.error("--objective", f"{objective!r} not in {OBJECTIVES}")
    art = density_artifact(run, sample, objective)
    if run.start(art, f"models/{sample}_{objective}"):
        run.log(f"models/{sample}_{objective}: up to date")
        return art
    seed = int(run.key("seed", 0))
    set_seeds(seed + 1000 * SAMPLES.index(sample) + 100 * OBJECTIVES.index(objective))
    train, val = load_split(run, sample, "train"), load_split(run, sample, "val")
    nc = n_column(run.key("data.jet_features"))
    pre = Preprocessor.fit(train["constituents"], train["mask"], train["jets"],
                           dequantized_columns=() if nc is None else (nc,))
    model = build_model(run.cfg, pre, objective)
    tcfg = dict(run.cfg["training"], seed=seed, progress=run.progress and run.cfg["training"]["progress"])
    trainer = Trainer(model, tcfg, art.path, ctx=run.ctx,
                      extra_state={"preprocessor": pre.to_dict(), "sample": sample,
                                   "objective": objective},
                      resume=run.resume if run.resume not in ("auto", "never") else "auto")
    start = time.time()
    history = trainer.fit(pre.transform_split(train), pre.transform_split(val))
    if run.ctx.is_root:
        pre.save_json(artifacts.preprocessor_path(art.path))
        from shared.io import atomic_write_json
        atomic_write_json(artifacts.train_summary_path(art.path), {
            "sample": sample, "objective": objective, "seconds": time.time() - start,
            "num_train": int(len(train["jets"])), "num_val": int(len(val["jets"])),
            "world_size": run.ctx.size,
            "num_weights": {"particle_net": int(model.particle_net.count_params()),
                            "jet_net": int(model.jet_net.count_params())},
            "best_epoch": trainer.state["best_epoch"], "history": history})
    run.ctx.barrier()
    return art


def train_all(run, samples=None, objectives=None) -> dict:
    """Every configured (sample, objective) density; returns {(sample, objective): Artifact}."""
    samples = samples or run.key("model.samples")
    objectives = objectives or run.key("model.objectives")
    if run.resume not in ("auto", "never") and len(samples) * len(objectives) > 1:
        from shared.errors import UsageError
        raise UsageError(f"--resume {run.resume}: a checkpoint folder continues ONE training; "
                         "choose it with --sample and --objective")
    return {(s, o): train_density(run, s, o) for s in samples for o in objectives}


def load_density(cfg, workdir, objective):
    """(model with EMA weights of the best checkpoint, Preprocessor) of a trained density."""
    from shared.checkpoint import find_checkpoint, load_checkpoint
    pre = Preprocessor.load_json(artifacts.preprocessor_path(workdir))
    model = build_model(cfg, pre, objective)
    ckpts = Path(workdir) / "checkpoints"
    which = "best" if find_checkpoint(ckpts / "best") else "last"
    load_checkpoint(ckpts / which, model, use_ema=bool(cfg["training"].get("ema_decay")))
    return model, pre


def main(argv=None):
    from permutation_ad.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--sample", default=None, choices=SAMPLES,
                   help="default: every sample in model.samples")
    p.add_argument("--objective", default=None, choices=OBJECTIVES,
                   help="default: every objective in model.objectives")
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    run.root_only(prepare)
    done = train_all(run, [args.sample] if args.sample else None,
                     [args.objective] if args.objective else None)
    for (s, o), art in done.items():
        run.log(f"trained {s}/{o}: {art.path}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
