"""Training steps per second with and without XLA (``jit_compile``) for both packages' models.

    python -m benchmarks.train_step --out t.json [--cases pad_demo,pad_paper,lhco_demo,lhco_paper]

Each case builds the package's model from its committed config (``permutation_ad`` /
``lhco_fullphase`` ``configs/{demo,paper}.yaml``: net sizes, P, batch size), feeds random batches
of the right shapes (multiplicities uniform in [P/4, P]) and runs the Trainer's own train step
(``shared.training.Trainer``: gradient function — XLA-compiled when ``jit_compile`` — then
optimizer, clipping and EMA in graph mode) for ``--steps`` steps after ``--warmup`` steps
(tracing/compilation, reported separately).  Both settings alternate in ``--rounds`` rounds so
that machine load affects them alike; the ratio is the robust number.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from shared.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
CASES = ("pad_demo", "pad_paper", "lhco_demo", "lhco_paper")


def _masks(rng, b, p, shape=()):
    n = rng.integers(max(1, p // 4), p + 1, size=(b,) + shape)
    return (np.arange(p) < n[..., None]).astype(np.float32)


def build_case(name, rng, batch_size=None):
    """(model, batch dict of NumPy arrays, info) for one case."""
    from shared.config import load_config

    package, size = name.split("_")
    if package == "pad":
        from permutation_ad.model import JetDensityModel
        cfg = load_config(ROOT / "permutation_ad" / "configs" / f"{size}.yaml")
        p = int(cfg["data"]["num_particles"])
        nj = len(cfg["data"].get("jet_features", ["eta", "mass", "n"]))
        b = int(batch_size or cfg["training"]["batch_size"])
        model = JetDensityModel(3, nj, p, dict(cfg["model"], weighting="standard"), n_column=nj - 1,
                                n_bin_width=0.1)
        mask = _masks(rng, b, p)
        batch = {"constituents": rng.standard_normal((b, p, 3)).astype(np.float32) * mask[..., None],
                 "mask": mask, "jets": rng.standard_normal((b, nj)).astype(np.float32)}
    else:
        from lhco_fullphase.model import DijetDiffusion
        cfg = load_config(ROOT / "lhco_fullphase" / "configs" / f"{size}.yaml")
        p = int(cfg["data"]["num_particles"])
        b = int(batch_size or cfg["training"]["batch_size"])
        model = DijetDiffusion(cfg["model"], p, n_dequant=0.1, n_feature=4, num_jet_features=5)
        mask = _masks(rng, b, p, (2,))
        batch = {"jets": rng.standard_normal((b, 2, 5)).astype(np.float32),
                 "particles": rng.standard_normal((b, 2, p, 3)).astype(np.float32) * mask[..., None],
                 "mask": mask, "mjj": rng.uniform(-1, 1, b).astype(np.float32)}
    nets = {"particle_net": cfg["model"]["particle_net"], "jet_net": cfg["model"]["jet_net"]}
    return model, batch, {"num_particles": p, "batch_size": b, "nets": nets}


def time_steps(model, batch, jit, steps, warmup, seed=0):
    """(seconds of ``warmup`` steps incl. tracing/compilation, seconds per step after) for the
    Trainer's train step."""
    import tensorflow as tf
    from shared.training import Trainer

    cfg = {"jit_compile": jit, "batch_size": len(next(iter(batch.values()))), "epochs": 1,
           "progress": False, "seed": seed, "clip_norm": 1.0, "ema_decay": 0.999}
    trainer = Trainer(model, cfg, tempfile.mkdtemp(prefix="train_step_"))
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    trainer._ensure_built(batch)
    trainer.optimizer = trainer._make_optimizer(steps + warmup)
    trainer.ema_variables = trainer._make_ema()
    trainer._build_steps()
    t0 = time.perf_counter()
    for _ in range(warmup):
        float(trainer._train_step(tensors)[0])
    t1 = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer._train_step(tensors)
    float(loss)
    return t1 - t0, (time.perf_counter() - t1) / steps


def run_case(name, steps, warmup, rounds, batch_size=None):
    import keras

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model, batch, info = build_case(name, rng, batch_size)
    res = {False: [], True: []}
    compile_s = {}
    for r in range(rounds):
        for jit in ((False, True) if r % 2 == 0 else (True, False)):
            w, per = time_steps(model, batch, jit, steps, warmup if r < 2 else 1)
            if r < 2:
                compile_s[jit] = w
            res[jit].append(per)
    s_no, s_jit = np.median(res[False]), np.median(res[True])
    return dict(info, case=name, steps_per_s_graph=1.0 / s_no, steps_per_s_xla=1.0 / s_jit,
                xla_speedup=s_no / s_jit, seconds_per_step_graph=res[False],
                seconds_per_step_xla=res[True], warmup_seconds_graph=compile_s[False],
                warmup_seconds_xla=compile_s[True], load_avg_1min=os.getloadavg()[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="train_step.json")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round (demo cases)")
    ap.add_argument("--paper-steps", type=int, default=3, help="timed steps per round (paper cases)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paper-batch-size", type=int, default=None,
                    help="override the paper configs' batch size (CPU time)")
    args = ap.parse_args(argv)
    import tensorflow as tf

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"--cases: unknown {bad}; choose from {CASES}")
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    out = {"device": device, "cpu_count": os.cpu_count(), "cases": {}}
    for c in cases:
        paper = c.endswith("paper")
        print(f"[train_step] {c} ...", flush=True)
        r = run_case(c, args.paper_steps if paper else args.steps, args.warmup, args.rounds,
                     args.paper_batch_size if paper else None)
        out["cases"][c] = r
        print(f"  {c:11} P={r['num_particles']:3d} batch {r['batch_size']:4d}: graph "
              f"{r['steps_per_s_graph']:.2f} steps/s, XLA {r['steps_per_s_xla']:.2f} steps/s "
              f"(x{r['xla_speedup']:.2f}; warm-up {r['warmup_seconds_graph']:.0f} s / "
              f"{r['warmup_seconds_xla']:.0f} s)", flush=True)
    atomic_write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
