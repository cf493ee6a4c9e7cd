"""Stage ``train``: every part of every listed generator on side-band events (EMA), and the
low-dimensional CATHODE flow.

    python -m lhco_fullphase.train --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--generator diffusion|flow_matching|lowdim] [--model jet|particle]
    horovodrun -np 16 python -m lhco_fullphase.train --config lhco_fullphase/configs/paper.yaml \
        --out $SCRATCH/lhco --generator flow_matching --model particle

Generators (``model.generators``): ``diffusion`` (``model.DijetDiffusion``, settings ``model``,
``training`` + ``training_<part>``) and ``flow_matching`` (``flow_model.DijetFlowMatching``,
settings ``flow_model``, ``training`` + ``training_flow_<part>``). Each part goes to
``OUT/models/<generator>/<jet|particle>/`` (``lhco_fullphase.artifacts``) and holds only its own
net, so either can change without invalidating the other (or the other generator). With
``lowdim.enabled`` the conditional MAF of low-dimensional CATHODE is trained too
(``OUT/models/lowdim/flow/``, :func:`train_lowdim_flow`).

Data: the ``sb_train`` (training) and ``sb_val`` (validation, early stopping) roles of the
prepared data. A training is skipped when finished with the same settings and data, continued
from its last checkpoint when interrupted, and started afresh (with a one-line notice naming the
changed key) when a setting it depends on changed; ``--resume DIR`` continues one training from
that checkpoint folder. Seeds: the config's ``seed`` + 0/1 (diffusion jet/particle), + 2/3
(flow matching); ``lowdim.seed`` for the MAF. Horovod: every training is data-parallel.
"""
from __future__ import annotations

import time

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.prepare import load_prepared, prepare
from lhco_fullphase.schema import GENERATORS, PARTS

# config keys every part of a generator depends on (+ the part's own net, ``<section>.<part>_net``)
GENERATOR_KEYS = {
    "diffusion": ("seed", "data.num_particles", "model.sde", "model.prediction", "model.weighting",
                  "model.gaussian_skip", "model.mjj_fourier"),
    "flow_matching": ("seed", "data.num_particles", "flow_model.sigma_min", "flow_model.mjj_fourier"),
}
GENERATOR_SECTION = {"diffusion": "model", "flow_matching": "flow_model"}
# Trainer keys that do not change the trained weights (the seed is set from the top-level seed)
UNFINGERPRINTED_TRAINING = ("progress", "seed", "resume", "tensorboard")
TRAINABLE = (*GENERATORS, "lowdim")     # what --generator chooses


def network_arrays(pre, arrays, part=None):
    """Physical arrays -> network-space batch dict (jets, particles, mask, mjj)."""
    jx, px, mx = pre.transform(arrays["jets"], arrays["particles"], arrays["mask"], arrays["mjj"])
    out = {"jets": jx, "mjj": mx}
    if part != "jet":  # the jet model needs no particles: keep batches small
        out.update(particles=px, mask=arrays["mask"].astype(np.float32))
    return out


def generators(run) -> list[str]:
    """The run's full-phase-space generators (``model.generators``), in config order."""
    return list(run.key("model.generators"))


def build_generator(cfg, pre, generator="diffusion", parts=PARTS):
    """The ``generator``'s model for ``cfg`` with the mjj features built; multiplicity
    dequantised by 1/std(N)."""
    if generator == "diffusion":
        from lhco_fullphase.model import DijetDiffusion as cls
    elif generator == "flow_matching":
        from lhco_fullphase.flow_model import DijetFlowMatching as cls
    else:
        raise ValueError(f"generator {generator!r} not in {GENERATORS}")
    return cls.from_preprocessor(cfg[GENERATOR_SECTION[generator]], int(cfg["data"]["num_particles"]),
                                 pre, parts)


def training_section(generator, part) -> str:
    """The config section with the part's overrides of ``training``."""
    return f"training_{part}" if generator == "diffusion" else f"training_flow_{part}"


def training_config(cfg, part, generator="diffusion") -> dict:
    """``training`` with the part's overrides (``training_<part>`` for diffusion,
    ``training_flow_<part>`` for flow matching) applied."""
    return {**cfg["training"], **cfg[training_section(generator, part)]}


def fingerprinted(tcfg) -> dict:
    """Trainer settings without those that do not change the trained weights."""
    return {k: v for k, v in tcfg.items() if k not in UNFINGERPRINTED_TRAINING}


def generator_artifact(run, generator, part, prep=None):
    """The folder artifact of one part of one generator: its settings and its
    training/validation events."""
    prep = prep or load_prepared(run)
    return run.artifact(artifacts.model_dir(run.out, generator, part),
                        config=[*GENERATOR_KEYS[generator], f"{GENERATOR_SECTION[generator]}.{part}_net"],
                        extra={"generator": generator, "part": part,
                               "training": fingerprinted(training_config(run.cfg, part, generator)),
                               "prepared": prep.fingerprint("sb_train", "sb_val")},
                        folder=True, done_marker="train_summary.json")


def _seed(run, generator, part) -> int:
    return int(run.key("seed")) + 2 * GENERATORS.index(generator) + PARTS.index(part)


def train_generator(run, generator, part):
    """Train one part of one generator (every rank under Horovod); returns its artifact."""
    from shared.training import Trainer

    if generator not in GENERATORS:
        raise run.error("--generator", f"{generator!r} not in {GENERATORS}")
    if part not in PARTS:
        raise run.error("--model", f"{part!r} not in {PARTS}")
    prep = load_prepared(run)
    art = generator_artifact(run, generator, part, prep)
    what = f"models/{generator}/{part}"
    if run.start(art, what):
        run.log(f"{what}: up to date")
        return art
    train = network_arrays(prep.pre, prep.take("sb_train"), part)
    val = network_arrays(prep.pre, prep.take("sb_val"), part)
    tcfg = training_config(run.cfg, part, generator)
    tcfg.update(seed=_seed(run, generator, part), progress=bool(run.progress and tcfg["progress"]))
    model = build_generator(run.cfg, prep.pre, generator, parts=(part,))
    trainer = Trainer(model, tcfg, art.path, ctx=run.ctx,
                      extra_state={"preprocessor": prep.pre.to_dict()},
                      resume=run.resume if run.resume not in ("auto", "never") else "auto")
    t0 = time.time()
    history = trainer.fit(train, val)
    _write_summary(run, art, model, t0, generator=generator, part=part, epochs_run=len(history),
                   best_epoch=trainer.state["best_epoch"], best_val_loss=trainer.state["best_val_loss"],
                   n_train=len(train["jets"]), n_val=len(val["jets"]))
    return art


def _write_summary(run, art, model, t0, **info) -> None:
    """``train_summary.json`` (the done marker of a training folder), then every rank waits."""
    if run.ctx.is_root:
        from shared.io import atomic_write_json
        atomic_write_json(artifacts.train_summary_path(art.path), {
            **info, "weights": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            "wall_s": time.time() - t0, "world_size": run.ctx.size})
    run.ctx.barrier()


# ---------------------------------------------------------------------------------------------
# low-dimensional CATHODE: the conditional MAF on (m_J1, Δm_J, τ21^J1, τ21^J2) | mjj
# ---------------------------------------------------------------------------------------------

def lowdim_flow_artifact(run, prep=None):
    """The MAF's folder: its settings, the features (``prepare.lowdim_features_artifact``) and
    its training/validation events."""
    from lhco_fullphase.prepare import lowdim_features_artifact
    prep = prep or load_prepared(run)
    flow = dict(run.key("lowdim.flow"))
    flow["training"] = fingerprinted(flow["training"])
    return run.artifact(artifacts.model_dir(run.out, "lowdim", "flow"), config=["lowdim.seed"],
                        extra={"flow": flow, "prepared": prep.fingerprint("sb_train", "sb_val")},
                        upstream={"features": lowdim_features_artifact(run, prep)},
                        folder=True, done_marker="train_summary.json")


def train_lowdim_flow(run):
    """Train the low-dimensional CATHODE flow on the SB features (every rank); returns its
    artifact."""
    from lhco_fullphase.lowdim import train_flow
    from lhco_fullphase.prepare import load_lowdim_features
    prep = load_prepared(run)
    art = lowdim_flow_artifact(run, prep)
    if run.start(art, "models/lowdim/flow"):
        run.log("models/lowdim/flow: up to date")
        return art
    feats = load_lowdim_features(run, prep)
    x = {role: (feats.take(prep.roles[role]), prep.pre.scale_mjj(prep.take(role)["mjj"]))
         for role in ("sb_train", "sb_val")}
    t0 = time.time()
    model = train_flow(run.cfg, *x["sb_train"], *x["sb_val"], art.path, ctx=run.ctx, progress=run.progress)
    _write_summary(run, art, model, t0, generator="lowdim", part="flow", **model.fit_summary,
                   n_train=len(x["sb_train"][0]), n_val=len(x["sb_val"][0]))
    return art


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------

def trainings(run, which=None, parts=PARTS) -> list[tuple[str, str]]:
    """(generator, part) of every training of the run (``which``: only those generators);
    ("lowdim", "flow") with ``lowdim.enabled``."""
    which = list(which) if which is not None else [*generators(run)] + \
        (["lowdim"] if run.key("lowdim.enabled") else [])
    return [(g, p) for g in which if g != "lowdim" for p in parts] + \
        [("lowdim", "flow") for g in which if g == "lowdim"]


def train_all(run, which=None, parts=PARTS) -> dict:
    """Every requested training; returns {(generator, part): Artifact}. ``--resume DIR`` needs
    exactly one."""
    todo = trainings(run, which, parts)
    if run.resume not in ("auto", "never") and len(todo) > 1:
        from shared.errors import UsageError
        raise UsageError(f"--resume {run.resume}: a checkpoint folder continues ONE training; "
                         "choose it with --generator and --model")
    return {(g, p): (train_lowdim_flow(run) if g == "lowdim" else train_generator(run, g, p))
            for g, p in todo}


def load_generator(run, generator="diffusion", prep=None):
    """The generator with the best (EMA, ``generation.use_ema``) weights of both trained parts,
    loaded once per process; an error if a part is missing or was trained with other settings."""
    from shared.errors import UsageError
    prep = prep or load_prepared(run)
    arts = {part: generator_artifact(run, generator, part, prep) for part in PARTS}
    for part, art in arts.items():
        if not (art.complete() and art.matches()):
            raise UsageError(f"{art.path}: generator {art.stale_reason() or 'not trained'}; run the "
                             f"train stage (python -m lhco_fullphase.train --generator {generator} "
                             f"--model {part})")
    key = f"generator/{generator}/" + "/".join(a.digest for a in arts.values())
    return run.cached(key, lambda: _assemble(run.cfg, prep.pre, generator, arts))


def _assemble(cfg, pre, generator, arts):
    from shared.checkpoint import load_checkpoint
    full = build_generator(cfg, pre, generator)
    for part, art in arts.items():
        single = build_generator(cfg, pre, generator, parts=(part,))
        ema = cfg["generation"]["use_ema"] and bool(training_config(cfg, part, generator)["ema_decay"])
        load_checkpoint(art.path / "checkpoints" / "best", single, use_ema=ema)
        net = f"{part}_net"
        getattr(full, net).set_weights(getattr(single, net).get_weights())
    return full


def load_lowdim_flow(run, prep=None):
    """The trained low-dimensional CATHODE flow (best, EMA if configured), once per process."""
    from lhco_fullphase.lowdim import load_flow
    from shared.errors import UsageError
    art = lowdim_flow_artifact(run, prep)
    if not (art.complete() and art.matches()):
        raise UsageError(f"{art.path}: low-dimensional CATHODE flow {art.stale_reason() or 'not trained'}; "
                         "run the train stage (python -m lhco_fullphase.train --generator lowdim)")
    return run.cached(f"lowdim_flow/{art.digest}", lambda: load_flow(run.cfg, art.path))


def main(argv=None):
    from lhco_fullphase.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--generator", default=None, choices=TRAINABLE,
                   help="which generator to train (default: every one of the run)")
    p.add_argument("--model", default=None, choices=PARTS,
                   help="which part of the full-phase-space generators (default: both; given "
                        "without --generator: that part of every generator, not the lowdim flow)")
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    run.root_only(prepare)
    # --model alone: that part of every full-phase-space generator (the MAF is its own job:
    # --generator lowdim); neither: every training of the run
    which = [args.generator] if args.generator else (generators(run) if args.model else None)
    if which == ["lowdim"] and not run.key("lowdim.enabled"):
        run.log("lowdim.enabled is false: no low-dimensional CATHODE flow to train")
        return
    for (g, part), art in train_all(run, which, (args.model,) if args.model else PARTS).items():
        run.log(f"trained {g}/{part}: {art.path}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
