"""Tiny training entry point used by the tests (single process or under horovodrun).

    python tests/toy_train.py --config toy.yaml --out OUT [--set training.epochs=3]
    horovodrun -np 2 -H localhost:2 --gloo python tests/toy_train.py --config toy.yaml --out OUT

Config sections: ``data`` (n, dim, seed), ``model`` (width), ``training`` (Trainer keys),
``toy`` (sleep_per_epoch: seconds slept after each epoch so a test can kill the process;
grad_check: also compare the allreduced gradient with the full-batch gradient).
Writes ``OUT/result_rank{r}.json`` and ``OUT/weights_rank{r}.npz``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from shared.checkpoint import load_extra_state
from shared.cli import parser as build_parser
from shared.config import load_config, save_config
from shared.io import atomic_write_text
from shared.distributed import get_context
from shared.seeding import set_seeds


def make_data(n: int, dim: int, seed: int) -> dict:
    """Linear regression with a little noise; x has non-zero mean/scale to normalise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, size=(n, dim)).astype("float32")
    w = rng.normal(size=(dim, 1)).astype("float32")
    y = ((x - 2.0) / 3.0 @ w + 0.05 * rng.normal(size=(n, 1))).astype("float32")
    return {"x": x, "y": y}


def build_model(dim: int, width: int, seed: int):
    """A small MLP with the Trainer's model contract (``compute_batch_loss``)."""
    import keras
    import tensorflow as tf

    set_seeds(seed)

    class ToyRegressor(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(width, activation="tanh")
            self.out = keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.out(self.hidden(x))

        def compute_batch_loss(self, batch, training):
            pred = self(batch["x"], training=training)
            return tf.reduce_mean(tf.square(pred - batch["y"]))

    model = ToyRegressor()
    model(np.zeros((1, dim), "float32"))
    return model


def normalise(data: dict, consts: dict) -> dict:
    return {"x": ((data["x"] - np.asarray(consts["mean"], "float32"))
                  / np.asarray(consts["std"], "float32")).astype("float32"), "y": data["y"]}


def gradient_check(model, data, batch, ctx) -> float:
    """max |allreduce(mean of per-rank grads) − gradient on the concatenated batch|."""
    import tensorflow as tf

    n = batch * ctx.size

    def grads(idx):
        with tf.GradientTape() as tape:
            loss = model.compute_batch_loss({k: tf.constant(v[idx]) for k, v in data.items()}, True)
        return tape.gradient(loss, model.trainable_variables)

    local = ctx.allreduce_grads(grads(np.arange(ctx.rank * batch, (ctx.rank + 1) * batch)))
    full = grads(np.arange(n))
    return max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(local, full))


def main(argv=None) -> int:
    args = build_parser("toy training run for the tests", data_dir=False).parse_args(argv)
    ctx = get_context()
    cfg = load_config(args.config, [o for group in args.overrides for o in group], out=args.out)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if ctx.is_root:
        save_config(cfg, Path(args.out) / "config.resolved.yaml")
    data_cfg, model_cfg = cfg.section("data"), cfg.section("model")
    toy_cfg, train_cfg = cfg.section("toy"), cfg.section("training")

    from shared.training import Trainer

    data = make_data(int(data_cfg.get("n", 256)), int(data_cfg.get("dim", 4)),
                     int(data_cfg.get("seed", 1)))
    n_val = int(data_cfg.get("n_val", 64))
    # normalisation constants: reuse the saved ones when resuming (run_id shows which run made them)
    consts = load_extra_state(args.out) if args.resume != "never" else None
    if consts is None:
        consts = {"mean": data["x"].mean(0).tolist(), "std": data["x"].std(0).tolist(),
                  "run_id": ctx.broadcast_object(uuid.uuid4().hex)}
    data = normalise(data, consts)
    train = {k: v[n_val:] for k, v in data.items()}
    val = {k: v[:n_val] for k, v in data.items()}

    model = build_model(int(data_cfg.get("dim", 4)), int(model_cfg.get("width", 16)),
                        int(train_cfg.get("seed", 0)) + 17)
    result = {"rank": ctx.rank, "size": ctx.size, "horovod": ctx.horovod}
    if toy_cfg.get("grad_check", False):
        result["grad_max_abs_diff"] = gradient_check(model, data, int(toy_cfg.get("grad_batch", 8)),
                                                     ctx)
    sleep = float(toy_cfg.get("sleep_per_epoch", 0.0))
    trainer = Trainer(model, train_cfg, args.out, ctx=ctx, extra_state=consts, resume=args.resume)
    history = trainer.fit(train, val, on_epoch_end=(lambda t, r: time.sleep(sleep)) if sleep else None)
    result.update(history=history, extra_state=trainer.extra_state,
                  resumed_from=trainer.resumed_from, lr=trainer.current_lr(),
                  iterations=int(trainer.optimizer.iterations.numpy()))
    out = Path(args.out)
    np.savez(out / f"weights_rank{ctx.rank}.npz", *[w.numpy() for w in model.weights])
    atomic_write_text(out / f"result_rank{ctx.rank}.json", json.dumps(result, indent=1))
    ctx.log(f"[toy] done: rank 0 of {ctx.size}, horovod={ctx.horovod}, pid {os.getpid()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
