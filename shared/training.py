"""Custom data-parallel training loop: cosine LR, EMA, clipping, early stopping, checkpoints.

The model contract: a ``keras.Model`` with
``compute_batch_loss(batch: dict[str, tf.Tensor], training: bool) -> scalar tf.Tensor``.
Config keys and defaults: :data:`TRAINER_DEFAULTS` (documented in docs/training.md).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from shared.checkpoint import (ArchitectureMismatch, CheckpointError, find_checkpoint,
                               load_checkpoint, save_checkpoint)
from shared.errors import ConfigError
from shared.io import atomic_write_text
from shared.distributed import DistContext, get_context
from shared.seeding import epoch_rng, set_seeds

TRAINER_DEFAULTS = {
    "epochs": 100,                 # passes over the training data
    "batch_size": 128,             # per rank; global batch = batch_size × world size
    "val_batch_size": None,        # None: same as batch_size
    "learning_rate": 1e-3,         # peak LR (after warmup), before world-size scaling
    "min_learning_rate": 0.0,      # cosine floor reached at the last step
    "lr_schedule": "cosine",       # cosine | constant
    "warmup_epochs": 0.0,          # linear warmup from ~0 to learning_rate (may be fractional)
    "scale_lr_by_world_size": False,  # learning_rate × world size (linear scaling rule)
    "optimizer": "adam",           # adam | adamw (adam with weight_decay > 0 becomes adamw)
    "weight_decay": 0.0,           # decoupled weight decay (AdamW)
    "beta_1": 0.9,
    "beta_2": 0.999,
    "epsilon": 1e-7,
    "clip_norm": None,             # global-norm gradient clipping; None/0 = off
    "ema_decay": 0.999,            # EMA of trainable weights; None/0 = off
    "validation_use_ema": True,    # validate (and pick the best checkpoint) with EMA weights
    "patience": 10,                # epochs without val improvement before stopping; None = off
    "min_delta": 0.0,              # improvement needed to reset the patience counter
    "seed": 0,                     # shuffling, TF/NumPy seeds (rank added for TF noise)
    "deterministic": False,        # tf.config.experimental.enable_op_determinism
    "jit_compile": "auto",         # XLA-compile the gradient computation (allreduce outside):
    #                                true | false | auto (= JIT_AUTO of the device type)
    "drop_remainder": False,       # drop the last partial training batch of each epoch
    "checkpoint_every": 1,         # save checkpoints/last every N epochs (and at the end)
    "resume": "auto",              # auto | never | path of a checkpoint folder
    "progress": True,              # tqdm bar on rank 0
    "tensorboard": True,           # per-epoch scalars in workdir/tensorboard/ (rank 0)
}

_POSITIVE_INT = ("epochs", "batch_size", "checkpoint_every")
_NONNEG_FLOAT = ("learning_rate", "min_learning_rate", "warmup_epochs", "weight_decay",
                 "min_delta")
_BOOLS = ("scale_lr_by_world_size", "validation_use_ema", "deterministic", "drop_remainder",
          "progress", "tensorboard")
# jit_compile: auto per device type. CPU: off — benchmarks/train_step.py (2026-11-30, two runs)
# found no consistent gain: XLA/graph steps/s 0.91-1.16x (permutation_ad demo net), 0.94-1.46x
# (its paper net), 1.23-1.25x (lhco demo), 0.96-1.09x (lhco paper); docs/training.md.
# GPU: XLA for the gradient only, Horovod's allreduce stays outside (SPEC §8).
JIT_AUTO = {"CPU": False, "GPU": True}


def resolve_jit_compile(value) -> bool:
    """``jit_compile`` as a bool: ``auto`` -> JIT_AUTO of the device the step runs on (GPU when
    TensorFlow sees one)."""
    if value != "auto":
        return bool(value)
    import tensorflow as tf

    return JIT_AUTO["GPU" if tf.config.list_physical_devices("GPU") else "CPU"]


def trainer_config(cfg: Mapping | None, prefix: str | None = None, source=None) -> dict:
    """Defaults merged with ``cfg``, validated; ConfigError names the file and the key
    (``prefix.key``), also for an unknown key."""
    source = source if source is not None else getattr(cfg, "source", None)
    cfg = dict(cfg or {})
    out = dict(TRAINER_DEFAULTS)
    out.update({k: v for k, v in cfg.items() if k in TRAINER_DEFAULTS})
    name = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)  # noqa: E731
    unknown = sorted(k for k in cfg if k not in TRAINER_DEFAULTS)
    if unknown:
        raise ConfigError(source, name(unknown[0]),
                          f"unknown training key (known: {', '.join(sorted(TRAINER_DEFAULTS))})")

    def bad(key, what):
        return ConfigError(source, name(key), f"{what}, got {out[key]!r}")

    for key in _POSITIVE_INT:
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 1:
            raise bad(key, "must be a positive integer")
    for key in _NONNEG_FLOAT:
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)) or out[key] < 0:
            raise bad(key, "must be a non-negative number")
    for key in _BOOLS:
        if not isinstance(out[key], bool):
            raise bad(key, "must be true or false")
    if out["jit_compile"] != "auto" and not isinstance(out["jit_compile"], bool):
        raise bad("jit_compile", "must be true, false or auto")
    for key in ("clip_norm", "ema_decay", "val_batch_size"):
        if out[key] is not None and (isinstance(out[key], bool)
                                     or not isinstance(out[key], (int, float)) or out[key] < 0):
            raise bad(key, "must be a non-negative number or null")
    if out["ema_decay"] is not None and out["ema_decay"] >= 1:
        raise bad("ema_decay", "must be in [0, 1)")
    if out["patience"] is not None and (isinstance(out["patience"], bool)
                                        or not isinstance(out["patience"], int)
                                        or out["patience"] < 1):
        raise bad("patience", "must be a positive integer or null")
    if out["lr_schedule"] not in ("cosine", "constant"):
        raise bad("lr_schedule", "must be 'cosine' or 'constant'")
    if out["optimizer"] not in ("adam", "adamw"):
        raise bad("optimizer", "must be 'adam' or 'adamw'")
    if out["min_learning_rate"] > out["learning_rate"]:
        raise bad("min_learning_rate", "must not exceed learning_rate")
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int):
        raise bad("seed", "must be an integer")
    if not isinstance(out["resume"], str):
        raise bad("resume", "must be 'auto', 'never' or a checkpoint folder")
    return out


def check_trainer_section(value, key, source) -> dict:
    """Config-schema check of a training section (``shared.schema.Custom``): the section with
    every Trainer default filled in."""
    return trainer_config(value or {}, prefix=key, source=source)


def _keras():
    import keras

    return keras


def make_lr_schedule(peak: float, minimum: float, warmup_steps: int, total_steps: int,
                     kind: str = "cosine"):
    """Keras LearningRateSchedule evaluated at ``optimizer.iterations`` (one call per step)."""
    keras = _keras()
    import tensorflow as tf

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        """Linear warmup to ``peak`` over ``warmup_steps``, then cosine to ``minimum`` at
        ``total_steps`` (constant: stays at ``peak`` after warmup)."""

        def __init__(self):
            self.peak, self.minimum = float(peak), float(minimum)
            self.warmup, self.total, self.kind = int(warmup_steps), int(total_steps), kind

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = self.peak * (step + 1.0) / max(self.warmup, 1)
            if self.kind == "constant":
                after = tf.constant(self.peak, tf.float32)
            else:
                frac = tf.clip_by_value((step - self.warmup) / max(self.total - self.warmup, 1),
                                        0.0, 1.0)
                after = self.minimum + 0.5 * (self.peak - self.minimum) * (
                    1.0 + tf.cos(math.pi * frac))
            return tf.where(step < self.warmup, warm, after)

        def get_config(self):
            return {"peak": self.peak, "minimum": self.minimum, "warmup_steps": self.warmup,
                    "total_steps": self.total, "kind": self.kind}

    return WarmupCosine()


def lr_at(step: int, peak: float, minimum: float, warmup_steps: int, total_steps: int,
          kind: str = "cosine") -> float:
    """Reference (pure Python) value of the schedule at an optimizer step."""
    if step < warmup_steps:
        return peak * (step + 1) / max(warmup_steps, 1)
    if kind == "constant":
        return peak
    frac = min(max((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0), 1.0)
    return minimum + 0.5 * (peak - minimum) * (1 + math.cos(math.pi * frac))


def _check_data(data: Mapping, name: str) -> int:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{name}: expected a non-empty dict of NumPy arrays")
    sizes = {k: len(v) for k, v in data.items()}
    n = next(iter(sizes.values()))
    for key, size in sizes.items():
        if size != n:
            raise ValueError(f"{name}['{key}']: first dimension {size} differs from "
                             f"{n} of the other arrays ({sizes})")
    if n == 0:
        raise ValueError(f"{name}: arrays are empty")
    return n


class _TensorBoardLog:
    """Per-epoch scalars of the training history as ``tf.summary`` events in ``path``
    (step = epoch). Epochs are written when their ``checkpoints/last`` is, so a resumed run
    continues at the next step and never writes a step twice; a run starting at epoch 0
    replaces the event files of an earlier run in ``path``."""

    SCALARS = ("loss", "val_loss", "lr", "grad_norm", "steps_per_s")

    def __init__(self, path: Path, written_epoch: int, ema_decay: float | None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        if written_epoch == 0:
            for old in path.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = tf.summary.create_file_writer(str(path))
        self.written, self.ema_decay = written_epoch, ema_decay
        # what tf.summary.scalar writes, without its import of the tensorboard package (not a
        # TF 2.21 dependency): a float32 tensor summary tagged for the "scalars" plugin
        self.metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def write(self, history: list[dict]) -> None:
        import tensorflow as tf

        new = [rec for rec in history if rec["epoch"] > self.written]
        with self.writer.as_default():
            for rec in new:
                values = {k: rec.get(k) for k in self.SCALARS}
                values["ema_decay"] = self.ema_decay
                for name, value in values.items():
                    if value is not None:
                        tf.summary.write(name, tf.constant(float(value), tf.float32),
                                         step=rec["epoch"], metadata=self.metadata)
        self.writer.flush()
        if new:
            self.written = new[-1]["epoch"]

    def close(self) -> None:
        self.writer.close()


class Trainer:
    """Trains ``model`` (see module docstring) on dicts of NumPy arrays; see docs/training.md.

    ``workdir`` receives ``checkpoints/{last,best}``, ``history.{json,csv}`` and (config
    ``tensorboard``, rank 0) ``tensorboard/`` event files. A run resumes
    from ``checkpoints/last`` automatically (``resume="auto"``; "never" starts fresh; a folder
    path resumes from that checkpoint). ``extra_state`` (JSON-able) is stored with every
    checkpoint; after a resume ``trainer.extra_state`` is the saved value.
    """

    def __init__(self, model, cfg: Mapping | None, workdir, ctx: DistContext | None = None,
                 extra_state=None, resume: str | None = None):
        self.model = model
        self.cfg = trainer_config(cfg)
        self.workdir = Path(workdir).resolve()
        self.ckpt_dir = self.workdir / "checkpoints"
        self.ctx = ctx or get_context()
        self.extra_state = extra_state
        self.resume = resume if resume is not None else self.cfg["resume"]
        self.optimizer = None
        self.ema_variables = None
        self._backup = None
        self.history: list[dict] = []
        self.state = {"epoch": 0, "best_val_loss": None, "best_epoch": None, "bad_epochs": 0,
                      "stopped": False}
        self.resumed_from = None
        self._train_step = self._eval_step = None

    # -- setup --------------------------------------------------------------------------------
    def _batch(self, data: Mapping, idx: np.ndarray) -> dict:
        import tensorflow as tf

        return {k: tf.convert_to_tensor(np.asarray(v)[idx]) for k, v in data.items()}

    def _ensure_built(self, train: Mapping) -> None:
        if not self.model.trainable_variables:
            # build the model's weights with one forward pass on a small batch
            self.model.compute_batch_loss(self._batch(train, np.arange(min(2, _check_data(
                train, "train")))), training=False)
        if not self.model.trainable_variables:
            raise ValueError("model has no trainable variables after a forward pass")

    def _make_optimizer(self, steps_per_epoch: int):
        keras = _keras()
        c = self.cfg
        peak = self.ctx.scale_lr(c["learning_rate"], c["scale_lr_by_world_size"])
        minimum = min(c["min_learning_rate"], peak)
        total = c["epochs"] * steps_per_epoch
        warmup = int(round(c["warmup_epochs"] * steps_per_epoch))
        self.schedule_args = dict(peak=peak, minimum=minimum, warmup_steps=warmup,
                                  total_steps=total, kind=c["lr_schedule"])
        schedule = make_lr_schedule(**self.schedule_args)
        kwargs = dict(learning_rate=schedule, beta_1=c["beta_1"], beta_2=c["beta_2"],
                      epsilon=c["epsilon"])
        if c["optimizer"] == "adamw" or c["weight_decay"] > 0:
            opt = keras.optimizers.AdamW(weight_decay=c["weight_decay"], **kwargs)
        else:
            opt = keras.optimizers.Adam(**kwargs)
        opt.build(self.model.trainable_variables)
        return opt

    def _make_ema(self):
        import tensorflow as tf

        if not self.cfg["ema_decay"]:
            return None
        # a copy of the current weights (not a fresh random init)
        return [tf.Variable(tf.identity(tf.convert_to_tensor(v)), trainable=False,
                            name=f"ema_{i}") for i, v in enumerate(self.model.trainable_variables)]

    def _build_steps(self):
        import tensorflow as tf

        model, opt, ctx = self.model, self.optimizer, self.ctx
        variables = model.trainable_variables
        clip = self.cfg["clip_norm"] or None
        decay = self.cfg["ema_decay"] or None
        ema = self.ema_variables

        def grad_fn(batch):
            with tf.GradientTape() as tape:
                loss = model.compute_batch_loss(batch, training=True)
                total = loss + tf.add_n(model.losses) if model.losses else loss
            grads = tape.gradient(total, variables)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(grads, variables)]
            return loss, grads

        jit = resolve_jit_compile(self.cfg["jit_compile"])
        if jit:
            # Horovod ops cannot run inside XLA: compile the gradient alone
            grad_fn = tf.function(grad_fn, jit_compile=True, reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def train_step(batch):
            loss, grads = grad_fn(batch)
            grads = ctx.allreduce_grads(grads)
            norm = tf.linalg.global_norm(grads)
            if clip:
                grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=norm)
            opt.apply(grads, variables)
            if ema is not None:
                for e, v in zip(ema, variables):
                    e.assign(decay * e + (1.0 - decay) * tf.cast(v, e.dtype))
            return loss, norm

        @tf.function(reduce_retracing=True, jit_compile=jit)
        def eval_step(batch):
            return model.compute_batch_loss(batch, training=False)

        self._train_step, self._eval_step = train_step, eval_step

    def _restore(self, steps_per_epoch: int) -> None:
        if self.resume == "never":
            return
        path = self.ckpt_dir / "last" if self.resume == "auto" else Path(self.resume)
        found = find_checkpoint(path)
        if found is None and self.resume == "auto":
            # last (and last.prev) damaged, emptied or not written yet: best holds the progress
            found = find_checkpoint(self.ckpt_dir / "best")
            if found is not None:
                self.ctx.log(f"[trainer] WARNING: no complete checkpoint in {path}; resuming "
                             f"from {found} instead")
        if found is None:
            if self.resume != "auto":
                raise FileNotFoundError(f"--resume {path}: no complete checkpoint there")
            return
        try:
            state = load_checkpoint(found, self.model, self.optimizer, self.ema_variables)
        except ArchitectureMismatch:
            raise
        except CheckpointError as exc:
            best = find_checkpoint(self.ckpt_dir / "best") if self.resume == "auto" else None
            if best is None:
                raise
            self.ctx.log(f"[trainer] WARNING: {exc}; resuming from {best} instead")
            state = load_checkpoint(best, self.model, self.optimizer, self.ema_variables)
            found = best
        saved_spe, saved_size = state.get("steps_per_epoch"), state.get("world_size")
        if saved_spe != steps_per_epoch or saved_size != self.ctx.size:
            raise CheckpointError(
                found, "steps_per_epoch", f"written with {saved_spe} steps/epoch on {saved_size} "
                f"rank(s), this run has {steps_per_epoch} on {self.ctx.size}; the LR schedule "
                "would not continue. Use the same data, batch_size and ranks, or --resume never")
        saved_extra = state.get("extra_state")
        if self.extra_state is not None and saved_extra is not None and \
                json.loads(json.dumps(self.extra_state, default=_jsonable)) != saved_extra:
            self.ctx.log(f"[trainer] extra_state differs from {found}; using the saved one")
        if saved_extra is not None:
            self.extra_state = saved_extra
        self.history = list(state.get("history", []))
        for key in ("epoch", "best_val_loss", "best_epoch", "bad_epochs", "stopped"):
            self.state[key] = state.get(key, self.state[key])
        self.resumed_from = str(found)
        self.ctx.log(f"[trainer] resumed from {found} after epoch {self.state['epoch']}")

    # -- public -------------------------------------------------------------------------------
    def current_lr(self) -> float:
        """LR the optimizer uses for its next step."""
        return float(np.asarray(self.optimizer.learning_rate))

    @contextlib.contextmanager
    def ema_scope(self, enabled: bool = True):
        """Temporarily swap the EMA weights into the model (no-op if EMA is off)."""
        if not enabled or self.ema_variables is None:
            yield
            return
        import tensorflow as tf

        variables = self.model.trainable_variables
        if self._backup is None:
            self._backup = [tf.Variable(tf.convert_to_tensor(v), trainable=False)
                            for v in variables]
        for b, v, e in zip(self._backup, variables, self.ema_variables):
            b.assign(tf.convert_to_tensor(v))
            v.assign(e)
        try:
            yield
        finally:
            for b, v in zip(self._backup, variables):
                v.assign(b)

    def ema_weights(self) -> list[np.ndarray] | None:
        """EMA copies of the trainable weights as NumPy arrays (None if EMA is off)."""
        return None if self.ema_variables is None else [e.numpy() for e in self.ema_variables]

    def load_ema_into(self, model=None) -> None:
        """Assign the EMA weights to ``model``'s (default: the trained model's) trainable weights."""
        if self.ema_variables is None:
            raise RuntimeError("EMA is off (ema_decay is 0/null)")
        for v, e in zip((model or self.model).trainable_variables, self.ema_variables):
            v.assign(e.numpy())

    def evaluate(self, data: Mapping, use_ema: bool | None = None) -> float:
        """Mean loss over ``data`` (sharded over ranks, weighted by batch size)."""
        n = _check_data(data, "val")
        if self._eval_step is None:
            raise RuntimeError("call fit() first (it builds the optimizer and steps)")
        use_ema = self.cfg["validation_use_ema"] if use_ema is None else use_ema
        bs = int(self.cfg["val_batch_size"] or self.cfg["batch_size"])
        local = self.ctx.shard(n, drop_remainder=False)
        total = 0.0
        with self.ema_scope(use_ema):
            for start in range(0, len(local), bs):
                idx = local[start:start + bs]
                total += float(self._eval_step(self._batch(data, idx))) * len(idx)
        return self.ctx.sum(total) / n

    def fit(self, train: Mapping, val: Mapping | None = None, on_epoch_end=None) -> list[dict]:
        """Train; returns the per-epoch history (also in workdir/history.{json,csv}).

        ``on_epoch_end(trainer, record)`` is called on every rank after each epoch's
        checkpoint is written."""
        from tqdm.auto import tqdm

        c, ctx = self.cfg, self.ctx
        n = _check_data(train, "train")
        if val is not None:
            _check_data(val, "val")
        set_seeds(c["seed"] + 1000003 * ctx.rank, deterministic=c["deterministic"])
        n_local = n // ctx.size
        bs = c["batch_size"]
        steps = n_local // bs if c["drop_remainder"] else math.ceil(n_local / bs)
        if steps < 1:
            raise ValueError(f"train: {n} examples give no full batch of {bs} per rank on "
                             f"{ctx.size} rank(s); lower batch_size or set drop_remainder false")
        self.steps_per_epoch = steps

        self._ensure_built(train)
        self.optimizer = self._make_optimizer(steps)
        self.ema_variables = self._make_ema()
        self._restore(steps)
        # every rank starts from rank 0's weights, optimizer state and EMA
        ctx.broadcast_variables(list(self.model.weights) + list(self.optimizer.variables)
                                + list(self.ema_variables or []))
        self._build_steps()
        if ctx.is_root:
            self.workdir.mkdir(parents=True, exist_ok=True)

        epoch = self.state["epoch"]
        if self.state["stopped"] or epoch >= c["epochs"]:
            ctx.log(f"[trainer] nothing to do: training already finished at epoch {epoch}")
            return self.history
        tb = (_TensorBoardLog(self.workdir / "tensorboard", epoch, c["ema_decay"] or None)
              if c["tensorboard"] and ctx.is_root else None)

        for epoch in range(self.state["epoch"], c["epochs"]):
            t0 = time.time()
            order = epoch_rng(c["seed"], epoch).permutation(n)[ctx.shard(n)]
            losses, norms = [], []
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{c['epochs']}", leave=False,
                       disable=not (c["progress"] and ctx.is_root), dynamic_ncols=True)
            for i in range(steps):
                idx = order[i * bs:(i + 1) * bs]
                loss, norm = self._train_step(self._batch(train, idx))
                losses.append((loss, len(idx)))
                norms.append(norm)
                if i % 10 == 0 or i == steps - 1:
                    bar.set_postfix(loss=f"{float(loss):.4g}")
                bar.update(1)
            bar.close()
            train_time = time.time() - t0
            local = sum(float(l) * k for l, k in losses) / sum(k for _, k in losses)
            train_loss = ctx.mean(local)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} in epoch {epoch + 1}")
            val_loss = self.evaluate(val) if val is not None else None
            record = {"epoch": epoch + 1, "loss": train_loss, "val_loss": val_loss,
                      "lr": self.current_lr(), "iterations": int(self.optimizer.iterations.numpy()),
                      "time_s": time.time() - t0,
                      # global norm of the rank-averaged gradient before clipping
                      "grad_norm": float(np.mean([float(g) for g in norms])),
                      "steps_per_s": steps / max(train_time, 1e-9)}
            monitored = val_loss if val_loss is not None else train_loss
            best = self.state["best_val_loss"]
            improved = best is None or monitored < best - c["min_delta"]
            if improved:
                self.state.update(best_val_loss=monitored, best_epoch=epoch + 1, bad_epochs=0)
            else:
                self.state["bad_epochs"] += 1
            record["best"] = improved
            self.history.append(record)
            self.state["epoch"] = epoch + 1
            if c["patience"] is not None and self.state["bad_epochs"] >= c["patience"]:
                self.state["stopped"] = True
            last_epoch = self.state["stopped"] or epoch + 1 == c["epochs"]
            if ctx.is_root:
                if improved:
                    self._save("best")
                if (epoch + 1) % c["checkpoint_every"] == 0 or last_epoch:
                    self._save("last")
                    if tb is not None:
                        tb.write(self.history)
                self._write_history()
            ctx.log(f"epoch {epoch + 1}/{c['epochs']}: loss {train_loss:.5g}"
                    + (f" val_loss {val_loss:.5g}" if val_loss is not None else "")
                    + f" lr {record['lr']:.3g}" + (" *" if improved else "")
                    + f" ({record['time_s']:.1f} s)")
            if on_epoch_end is not None:
                on_epoch_end(self, record)
            if self.state["stopped"]:
                ctx.log(f"[trainer] early stopping: no improvement for {c['patience']} epochs "
                        f"(best epoch {self.state['best_epoch']})")
                break
        if tb is not None:
            tb.close()
        ctx.barrier()
        return self.history

    def _save(self, which: str) -> None:
        state = dict(self.state, history=self.history, steps_per_epoch=self.steps_per_epoch,
                     world_size=self.ctx.size, seed=self.cfg["seed"],
                     iterations=int(self.optimizer.iterations.numpy()), lr=self.current_lr(),
                     config={k: v for k, v in self.cfg.items() if not k.startswith("_")})
        save_checkpoint(self.ckpt_dir / which, self.model, self.optimizer, self.ema_variables,
                        state=state, extra_state=self.extra_state, resume_point=which == "last")

    def _write_history(self) -> None:
        atomic_write_text(self.workdir / "history.json",
                          json.dumps(self.history, indent=1, default=_jsonable))
        buf = io.StringIO()
        fields = ["epoch", "loss", "val_loss", "lr", "iterations", "time_s", "grad_norm",
                  "steps_per_s", "best"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.workdir / "history.csv", buf.getvalue())

    def load_best(self, use_ema: bool | None = None) -> dict:
        """Load ``checkpoints/best`` into the model (EMA weights if ``use_ema``, default
        validation_use_ema) and return its state."""
        use_ema = self.cfg["validation_use_ema"] if use_ema is None else use_ema
        return load_checkpoint(self.ckpt_dir / "best", self.model,
                               use_ema=use_ema and self.ema_variables is not None)


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


__all__ = ["Trainer", "TRAINER_DEFAULTS", "trainer_config", "check_trainer_section",
           "make_lr_schedule", "lr_at", "resolve_jit_compile", "JIT_AUTO"]
