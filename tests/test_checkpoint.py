"""shared.checkpoint: the rotation survives a crash at every step, stale temporaries are cleaned,
a corrupt checkpoint falls back to .prev (and the Trainer to best), files honour the umask."""
import importlib.util
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PAD_DISTRIBUTED", "none")

from shared import checkpoint  # noqa: E402
from shared.checkpoint import (ArchitectureMismatch, CheckpointError, find_checkpoint,  # noqa: E402
                               load_checkpoint, save_checkpoint)

TOY = Path(__file__).with_name("toy_train.py")
spec = importlib.util.spec_from_file_location("toy_train", TOY)
toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy)

STEPS = ("written", "prev_removed", "moved_to_prev", "moved_in")


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (BaseException: no cleanup handler catches it
    as an ordinary error)."""


def _kill_at(monkeypatch, step):
    def point(name):
        if name == step:
            raise Killed(name)
    monkeypatch.setattr(checkpoint, "_fault_point", point)


def _epoch_of(path, model):
    return load_checkpoint(path, model)["epoch"]


def _save_killed_at(monkeypatch, step, *args, **kw):
    """save_checkpoint with a kill at ``step``; returns whether the kill happened (a step the
    rotation does not pass through in that state is not reached)."""
    _kill_at(monkeypatch, step)
    try:
        save_checkpoint(*args, **kw)
        return False
    except Killed:
        return True
    finally:
        monkeypatch.setattr(checkpoint, "_fault_point", lambda name: None)


def test_rotation_survives_a_kill_at_every_step_twice(tmp_path, monkeypatch):
    model = toy.build_model(3, 4, 0)
    killed_at = set()
    for first in STEPS:
        for second in STEPS:
            root = tmp_path / f"{first}-{second}"
            last = root / "last"
            save_checkpoint(last, model, state={"epoch": 1})
            save_checkpoint(last, model, state={"epoch": 2})
            # a kill at `first` while writing epoch 3, then at `second` while writing epoch 4
            # (a kill right after a kill used to delete the only complete copy)
            for step, epoch in ((first, 3), (second, 4)):
                if _save_killed_at(monkeypatch, step, last, model, state={"epoch": epoch}):
                    killed_at.add(step)
                assert find_checkpoint(last) is not None, f"no checkpoint after kills at {first}, {second}"
                assert _epoch_of(last, model) in (2, 3, 4)
            # a real kill also leaves the half-written temporary folder behind
            stale = root / ".last.tmp-killed"
            stale.mkdir()
            (stale / "weights.npz").write_bytes(b"half")
            # the next undisturbed save cleans up and leaves exactly one complete checkpoint
            save_checkpoint(last, model, state={"epoch": 5})
            assert _epoch_of(last, model) == 5
            assert not (root / "last.prev").exists()
            assert not list(root.glob(".last.tmp-*")), "stale temporary folders were not removed"
    assert killed_at == set(STEPS)   # every step of the rotation was interrupted at least once


def test_corrupt_last_falls_back_to_prev_and_mismatch_is_an_error(tmp_path):
    model = toy.build_model(3, 4, 0)
    last = tmp_path / "last"
    save_checkpoint(last, model, state={"epoch": 1})
    os.replace(last, tmp_path / "last.prev")           # as after a crash mid-rotation
    save_checkpoint(tmp_path / "tmpcopy", model, state={"epoch": 2})
    os.replace(tmp_path / "tmpcopy", last)
    (last / "weights.npz").write_bytes(b"truncated")   # a damaged newest checkpoint
    with pytest.warns(UserWarning, match="last.prev"):
        assert load_checkpoint(last, model)["epoch"] == 1
    (last / checkpoint.STATE_FILE).write_text("{not json")
    (tmp_path / "last.prev" / "weights.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError):
        load_checkpoint(last, model)
    other = toy.build_model(3, 5, 0)
    save_checkpoint(tmp_path / "good", model, state={"epoch": 3})
    with pytest.raises(ArchitectureMismatch, match="weights.npz"):
        load_checkpoint(tmp_path / "good", other)


def test_trainer_resumes_from_best_when_last_is_corrupt(tmp_path):
    from shared.training import Trainer
    data = toy.make_data(96, 3, 1)
    cfg = {"epochs": 2, "batch_size": 16, "learning_rate": 0.01, "progress": False, "seed": 1}
    Trainer(toy.build_model(3, 4, 0), cfg, tmp_path).fit(data, data)
    for name in ("weights.npz", "optimizer.npz"):
        (tmp_path / "checkpoints" / "last" / name).write_bytes(b"damaged")
    t = Trainer(toy.build_model(3, 4, 0), dict(cfg, epochs=3), tmp_path)
    t.fit(data, data)
    assert t.resumed_from.endswith("best")
    assert t.state["epoch"] == 3


def test_outputs_honour_the_umask(tmp_path):
    from shared.io import atomic_savez, atomic_write_json
    old = os.umask(0o022)
    try:
        model = toy.build_model(3, 4, 0)
        save_checkpoint(tmp_path / "ck" / "last", model, state={"epoch": 1})
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        atomic_savez(tmp_path / "a.npz", x=np.zeros(2))
    finally:
        os.umask(old)
    for path in (tmp_path / "r.json", tmp_path / "a.npz", tmp_path / "ck/last/weights.npz",
                 tmp_path / "ck/last/state.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "ck/last").stat().st_mode) == 0o755
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
