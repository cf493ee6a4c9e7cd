"""shared.training / shared.checkpoint: LR schedule, EMA, patience, seeds, kill-and-resume."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PAD_DISTRIBUTED", "none")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from shared.checkpoint import (CheckpointError, find_checkpoint, load_checkpoint,  # noqa: E402
                               save_checkpoint)
from shared.distributed import DistContext  # noqa: E402
from shared.training import Trainer, lr_at, make_lr_schedule  # noqa: E402

TOY = Path(__file__).with_name("toy_train.py")
REPO = TOY.parents[1]
spec = importlib.util.spec_from_file_location("toy_train", TOY)
toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy)

BASE = {"epochs": 3, "batch_size": 16, "learning_rate": 0.01, "ema_decay": 0.9, "patience": 5,
        "progress": False, "seed": 4}


def toy_setup(n=96, seed=4):
    data = toy.make_data(n, 3, 1)
    model = toy.build_model(3, 8, seed)
    return model, data


def test_lr_schedule_matches_reference():
    sched = make_lr_schedule(1e-2, 1e-4, 5, 40)
    for step in range(0, 45):
        assert float(sched(step)) == pytest.approx(lr_at(step, 1e-2, 1e-4, 5, 40), rel=1e-5)
    assert float(sched(4)) == pytest.approx(1e-2) and float(sched(40)) == pytest.approx(1e-4)


def test_lr_stepped_once_per_optimizer_step(tmp_path):
    model, data = toy_setup(n=100)
    cfg = dict(BASE, epochs=3, warmup_epochs=1, min_learning_rate=1e-4)
    trainer = Trainer(model, cfg, tmp_path, ctx=DistContext())
    history = trainer.fit(data)
    spe = 7  # ceil(100 / 16)
    assert trainer.steps_per_epoch == spe
    for epoch, rec in enumerate(history, start=1):
        assert rec["iterations"] == epoch * spe
        assert rec["lr"] == pytest.approx(lr_at(epoch * spe, 0.01, 1e-4, spe, 3 * spe), rel=1e-5)
    assert int(trainer.optimizer.iterations.numpy()) == 3 * spe
    assert trainer.current_lr() == pytest.approx(1e-4, rel=1e-5)  # cosine floor at the end


def test_ema_starts_as_copy_and_follows_formula(tmp_path):
    model, data = toy_setup(n=16)
    before = [v.numpy().copy() for v in model.trainable_variables]
    trainer = Trainer(model, dict(BASE, epochs=1, ema_decay=0.5), tmp_path, ctx=DistContext())
    trainer._ensure_built(data)
    ema = trainer._make_ema()
    for e, w in zip(ema, before):
        np.testing.assert_array_equal(e.numpy(), w)
    trainer.fit(data)  # exactly one optimizer step (16 examples, batch 16)
    after = [v.numpy() for v in model.trainable_variables]
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(after, before))
    for e, w0, w1 in zip(trainer.ema_weights(), before, after):
        np.testing.assert_allclose(e, 0.5 * w0 + 0.5 * w1, rtol=1e-6, atol=1e-7)
    # evaluation with EMA swaps weights in and back out
    with trainer.ema_scope():
        np.testing.assert_allclose(model.trainable_variables[0].numpy(),
                                   trainer.ema_weights()[0])
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), after[0])


class Worsening(keras.Model):
    """Training pushes v up; validation loss is v, so it gets worse every epoch."""

    def __init__(self):
        super().__init__()
        self.v = self.add_weight(shape=(), initializer="zeros", name="v")

    def compute_batch_loss(self, batch, training):
        scale = tf.reduce_mean(batch["x"]) * 0.0 + 1.0
        return -self.v * scale if training else self.v * scale


def test_patience_honoured_and_finished_run_not_extended(tmp_path):
    data = {"x": np.ones((8, 1), "float32")}
    cfg = dict(BASE, epochs=20, patience=3, batch_size=8, ema_decay=None, learning_rate=0.1)
    trainer = Trainer(Worsening(), cfg, tmp_path, ctx=DistContext())
    history = trainer.fit(data, data)
    assert len(history) == 1 + 3  # best at epoch 1, then 3 epochs without improvement
    assert [h["best"] for h in history] == [True, False, False, False]
    assert trainer.state["stopped"] and trainer.state["best_epoch"] == 1
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in saved] == [1, 2, 3, 4]
    # resuming a stopped run does not train further
    again = Trainer(Worsening(), cfg, tmp_path, ctx=DistContext())
    assert len(again.fit(data, data)) == 4 and again.resumed_from
    best = load_checkpoint(tmp_path / "checkpoints/best")
    assert best["epoch"] == 1


def test_same_seed_same_first_epoch_loss(tmp_path):
    losses = []
    for run, seed in enumerate([4, 4, 5]):
        model, data = toy_setup(seed=seed)
        hist = Trainer(model, dict(BASE, epochs=1, seed=seed), tmp_path / str(run),
                       ctx=DistContext()).fit(data)
        losses.append(hist[0]["loss"])
    assert losses[0] == losses[1]
    assert losses[2] != losses[0]  # the seed matters, so the equality above is meaningful


def test_checkpoint_atomic_fallback_and_mismatch(tmp_path):
    model, data = toy_setup()
    save_checkpoint(tmp_path / "last", model, state={"epoch": 1}, extra_state={"mean": [1.0]})
    save_checkpoint(tmp_path / "last", model, state={"epoch": 2}, extra_state={"mean": [2.0]})
    assert not (tmp_path / "last.prev").exists()
    # a crash between the two renames leaves only .prev: it is found
    os.replace(tmp_path / "last", tmp_path / "last.prev")
    found = find_checkpoint(tmp_path / "last")
    assert found == tmp_path / "last.prev"
    state = load_checkpoint(tmp_path / "last", model)
    assert state["epoch"] == 2 and state["extra_state"] == {"mean": [2.0]}
    other = toy.build_model(3, 5, 0)
    with pytest.raises(CheckpointError, match="weights.npz"):
        load_checkpoint(tmp_path / "last", other)


def test_bad_data_named(tmp_path):
    model, data = toy_setup()
    bad = {"x": data["x"], "y": data["y"][:-1]}
    with pytest.raises(ValueError, match=r"train\['y'\]"):
        Trainer(model, BASE, tmp_path, ctx=DistContext()).fit(bad)


def _read_scalars(logdir) -> dict:
    """tag -> [(step, value)] from every event file in ``logdir`` (TensorFlow's own reader)."""
    out = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                value = tf.make_ndarray(v.tensor) if v.HasField("tensor") else v.simple_value
                out.setdefault(v.tag, []).append((event.step, float(value)))
    return out


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """2 epochs, then the same run resumed to 4 epochs (val data, EMA, clipping on)."""
    workdir = tmp_path_factory.mktemp("tb")
    data = toy.make_data(96, 3, 1)
    val = toy.make_data(32, 3, 2)
    cfg = dict(BASE, clip_norm=0.5)
    Trainer(toy.build_model(3, 8, 4), dict(cfg, epochs=2), workdir, ctx=DistContext()).fit(data, val)
    first = _read_scalars(workdir / "tensorboard")
    trainer = Trainer(toy.build_model(3, 8, 4), dict(cfg, epochs=4), workdir, ctx=DistContext())
    history = trainer.fit(data, val)
    assert trainer.resumed_from
    return workdir, first, history


def test_tensorboard_scalars_and_resume(tensorboard_run):
    workdir, first, history = tensorboard_run
    assert [s for s, _ in first["loss"]] == [1, 2]
    scalars = _read_scalars(workdir / "tensorboard")
    assert len(list((workdir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    for tag in ("loss", "val_loss", "lr", "ema_decay", "grad_norm", "steps_per_s"):
        # the resumed run appends epochs 3, 4: every step once, in order
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4], tag
    for tag in ("loss", "val_loss", "lr", "grad_norm"):
        np.testing.assert_allclose([v for _, v in scalars[tag]], [h[tag] for h in history],
                                   rtol=1e-6, err_msg=tag)
    assert all(v == pytest.approx(BASE["ema_decay"]) for _, v in scalars["ema_decay"])
    assert all(v > 0 for _, v in scalars["steps_per_s"] + scalars["grad_norm"])


def test_tensorboard_fresh_start_replaces_old_events(tmp_path):
    model, data = toy_setup()
    Trainer(model, dict(BASE, epochs=2), tmp_path, ctx=DistContext()).fit(data)
    Trainer(toy.build_model(3, 8, 4), dict(BASE, epochs=1), tmp_path, ctx=DistContext(),
            resume="never").fit(data)
    assert [s for s, _ in _read_scalars(tmp_path / "tensorboard")["loss"]] == [1]


def test_tensorboard_event_accumulator_finds_scalars(tensorboard_run):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="tensorboard is not installed (dev extra)")
    workdir, _, history = tensorboard_run
    acc = ea_mod.EventAccumulator(str(workdir / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["tensors"]  # tf.summary (TF 2) stores scalars as tensor summaries
    for tag in ("loss", "val_loss", "lr"):
        assert tag in tags
        events = acc.Tensors(tag)
        assert [e.step for e in events] == [1, 2, 3, 4]
        np.testing.assert_allclose([float(tf.make_ndarray(e.tensor_proto)) for e in events],
                                   [h[tag] for h in history], rtol=1e-6)


def test_tensorboard_off_and_not_on_other_ranks(tmp_path):
    model, data = toy_setup()
    Trainer(model, dict(BASE, epochs=1, tensorboard=False), tmp_path / "off",
            ctx=DistContext()).fit(data)
    assert (tmp_path / "off" / "history.json").exists()
    assert not (tmp_path / "off" / "tensorboard").exists()
    ctx = DistContext()
    ctx.rank, ctx.size = 1, 2  # a non-root rank (collectives are the identity here)
    Trainer(toy.build_model(3, 8, 4), dict(BASE, epochs=1), tmp_path / "rank1", ctx=ctx).fit(data)
    assert not (tmp_path / "rank1" / "tensorboard").exists()
    with pytest.raises(ValueError, match="tensorboard"):
        Trainer(model, dict(BASE, tensorboard="yes"), tmp_path, ctx=DistContext())


def _write_cfg(path, epochs, sleep):
    cfg = {"data": {"n": 256, "dim": 4, "seed": 1, "n_val": 64}, "model": {"width": 16},
           "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.01,
                        "warmup_epochs": 1, "ema_decay": 0.9, "patience": 50, "seed": 2,
                        "progress": False},
           "toy": {"sleep_per_epoch": sleep}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _toy_cmd(cfg, out, *extra):
    return [sys.executable, str(TOY), "--config", str(cfg), "--out", str(out), *extra]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = dict(os.environ, PAD_DISTRIBUTED="none", TF_CPP_MIN_LOG_LEVEL="2")
    epochs = 6
    cfg = _write_cfg(tmp_path / "toy.yaml", epochs, sleep=0.0)
    slow_cfg = _write_cfg(tmp_path / "toy_slow.yaml", epochs, sleep=1.0)
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref = subprocess.Popen(_toy_cmd(cfg, ref_out), env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    victim = subprocess.Popen(_toy_cmd(slow_cfg, out), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = out / "checkpoints/last/state.json"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and victim.poll() is None:
        if state_file.exists():
            try:
                epoch = json.loads(state_file.read_text())["epoch"]
            except (ValueError, OSError):
                epoch = 0
            if epoch >= 2:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed_at = epoch
                break
        time.sleep(0.05)
    assert killed_at is not None and killed_at < epochs, "could not kill mid-run"
    saved = json.loads(state_file.read_text())
    assert not (out / "result_rank0.json").exists()  # it really died before finishing
    ref_log = ref.communicate(timeout=180)[0].decode()
    assert ref.returncode == 0, ref_log
    reference = json.loads((ref_out / "result_rank0.json").read_text())
    # resume (auto: from OUT/checkpoints/last), without sleeping
    res = subprocess.run(_toy_cmd(cfg, out), env=env, cwd=tmp_path, capture_output=True,
                         timeout=180)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    resumed = json.loads((out / "result_rank0.json").read_text())
    assert resumed["resumed_from"] == str(out / "checkpoints/last")
    # continued from the last saved epoch (at most the epoch in progress was lost)
    hist = resumed["history"]
    assert [h["epoch"] for h in hist] == list(range(1, epochs + 1))
    assert saved["epoch"] >= killed_at
    # normalisation constants of the killed run, not recomputed
    assert resumed["extra_state"] == saved["extra_state"]
    assert resumed["extra_state"]["run_id"] != reference["extra_state"]["run_id"]
    # LR schedule position at the resumed epoch equals the uninterrupted run's
    k = saved["epoch"]
    assert saved["iterations"] == reference["history"][k - 1]["iterations"]
    assert saved["lr"] == pytest.approx(reference["history"][k - 1]["lr"], rel=1e-6)
    assert [h["iterations"] for h in hist] == [h["iterations"] for h in reference["history"]]
    np.testing.assert_allclose([h["lr"] for h in hist], [h["lr"] for h in reference["history"]],
                               rtol=1e-6)
    # same shuffling and restored optimizer/EMA state: the whole trajectory matches
    np.testing.assert_allclose([h["loss"] for h in hist],
                               [h["loss"] for h in reference["history"]], rtol=1e-4)
    np.testing.assert_allclose([h["val_loss"] for h in hist],
                               [h["val_loss"] for h in reference["history"]], rtol=1e-4)
    assert hist[-1]["loss"] < hist[0]["loss"]
    # TensorBoard: the killed and the resumed process append to one curve, no step twice (an
    # epoch killed between its checkpoint and its event write would be missing, not repeated)
    steps = [s for s, _ in _read_scalars(out / "tensorboard")["loss"]]
    assert steps == sorted(set(steps)) and set(range(saved["epoch"] + 1, epochs + 1)) <= set(steps)
    assert set(steps) <= set(range(1, epochs + 1))
