"""shared.distributed: single-process context, Horovod data parallelism (Slurm scripts: test_slurm.py)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from shared import distributed
from shared.distributed import DistContext, get_context, launched_by_launcher, reset_context

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toy_train.py"


def test_single_context_ops_and_sharding():
    ctx = DistContext()
    assert (ctx.rank, ctx.size, ctx.is_root, ctx.horovod) == (0, 1, True, False)
    np.testing.assert_array_equal(ctx.shard(5), np.arange(5))
    assert ctx.mean(2.5) == 2.5 and ctx.sum(3) == 3.0
    grads = [np.ones(2), None]
    assert ctx.allreduce_grads(grads) == grads
    assert ctx.scale_lr(1e-3, True) == 1e-3


def test_sharding_over_ranks_is_a_partition():
    parts, full = [], []
    for rank in range(3):
        ctx = DistContext()
        ctx.rank, ctx.size = rank, 3
        parts.append(ctx.shard(10))
        full.append(ctx.shard(10, drop_remainder=False))
        assert ctx.scale_lr(1e-3, True) == pytest.approx(3e-3)
    assert {len(p) for p in parts} == {3}  # equal step counts on every rank
    assert sorted(np.concatenate(parts)) == list(range(9))
    assert sorted(np.concatenate(full)) == list(range(10))


def test_launcher_detection_and_switch(monkeypatch):
    for var in ("HOROVOD_RANK", "HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(var, raising=False)
    assert not launched_by_launcher()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert not launched_by_launcher()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_by_launcher()
    monkeypatch.setenv(distributed.ENV_SWITCH, "none")
    reset_context()
    try:
        ctx = get_context()
        assert type(ctx) is DistContext and get_context() is ctx
    finally:
        reset_context()
    monkeypatch.setenv(distributed.ENV_SWITCH, "bogus")
    with pytest.raises(ValueError, match="PAD_DISTRIBUTED"):
        get_context()
    reset_context()


def _toy_config(path, **training):
    cfg = {"data": {"n": 288, "dim": 4, "seed": 1, "n_val": 32}, "model": {"width": 16},
           "training": {"epochs": 3, "batch_size": 16, "learning_rate": 0.01, "ema_decay": 0.9,
                        "clip_norm": 5.0, "patience": 10, "seed": 3, "progress": False,
                        **training},
           "toy": {"grad_check": True, "grad_batch": 8}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _horovod_importable():
    try:
        import horovod.tensorflow  # noqa: F401
        return shutil.which("horovodrun") is not None
    except ImportError:
        return False


@pytest.mark.horovod
@pytest.mark.skipif(not _horovod_importable(),
                    reason="horovod.tensorflow not importable: build it with scripts/install_horovod.sh")
def test_horovod_two_ranks_identical_weights_and_averaged_gradient(tmp_path):
    cfg = _toy_config(tmp_path / "toy.yaml", jit_compile=True)
    out = tmp_path / "hvd"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PAD_DISTRIBUTED="auto")
    cmd = ["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, str(TOY),
           "--config", str(cfg), "--out", str(out)]
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, timeout=240)
    log = res.stdout.decode()[-3000:] + res.stderr.decode()[-3000:]
    assert res.returncode == 0, log
    results = [json.loads((out / f"result_rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["size"], r["horovod"]) for r in results] == [(0, 2, True), (1, 2, True)]
    w0, w1 = (np.load(out / f"weights_rank{r}.npz") for r in (0, 1))
    assert max(float(np.abs(w0[k] - w1[k]).max()) for k in w0.files) == 0.0
    for r in results:
        # allreduce-averaged per-rank gradients == gradient on the concatenated batch
        assert r["grad_max_abs_diff"] < 1e-6
        hist = r["history"]
        assert hist[-1]["loss"] < hist[0]["loss"]
        # 256 training examples / 2 ranks / batch 16 = 8 steps per epoch on each rank
        assert hist[-1]["iterations"] == 3 * 8
    drop_time = [[{k: v for k, v in h.items() if k not in ("time_s", "steps_per_s")} for h in r["history"]]
                 for r in results]
    assert drop_time[0] == drop_time[1]  # metrics are averaged over ranks
    assert results[0]["extra_state"]["run_id"] == results[1]["extra_state"]["run_id"]


def test_toy_script_runs_single_process_without_horovod(tmp_path):
    cfg = _toy_config(tmp_path / "toy.yaml")
    out = tmp_path / "single"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PAD_DISTRIBUTED="none")
    res = subprocess.run([sys.executable, str(TOY), "--config", str(cfg), "--out", str(out)],
                         env=env, cwd=tmp_path, capture_output=True, timeout=240)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    result = json.loads((out / "result_rank0.json").read_text())
    assert (result["size"], result["horovod"]) == (1, False)
    assert result["grad_max_abs_diff"] == 0.0
    assert result["history"][-1]["iterations"] == 3 * 16
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert (out / "history.csv").is_file() and (out / "checkpoints/best/state.json").is_file()


@pytest.mark.horovod
@pytest.mark.skipif(not _horovod_importable(),
                    reason="horovod.tensorflow not importable: build it with scripts/install_horovod.sh")
def test_likelihood_on_two_ranks_equals_one_process(tmp_path):
    """The evaluate stage under horovodrun -np 2 (units spread over the ranks, rank 0 merges)
    gives the single-process log-likelihoods (≤ 1e-3 nats per particle; exactly, by design:
    every unit has its own seed and fixed jets)."""
    from permutation_ad import evaluate, prepare, train
    from permutation_ad.schema import SCHEMA
    from shared.run import Run
    tiny = REPO / "permutation_ad" / "configs" / "tiny.yaml"
    over = ["model.samples=[qcd]", "model.objectives=[standard]", "evaluate.num_jets=8",
            "evaluate.chunk_size=4", "evaluate.permutation.repeats=2"]
    one = Run.from_config(tiny, tmp_path / "one", SCHEMA, overrides=over, progress=False)
    prepare.prepare(one)
    train.train_all(one)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    evaluate.evaluate(one)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PAD_DISTRIBUTED="auto", PYTHONPATH=str(REPO))
    cmd = ["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m",
           "permutation_ad.evaluate", "--config", str(tiny), "--out", str(tmp_path / "two"),
           "--data-dir", str(tmp_path / "one" / "data"), "--set", *over]
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a = np.load(tmp_path / "one" / "eval" / "loglik_qcd_standard.npz")
    b = np.load(tmp_path / "two" / "eval" / "loglik_qcd_standard.npz")
    for t in ("qcd", "top", "zprime"):
        n = a[f"n_{t}"]
        assert len(n) == 8
        assert np.max(np.abs(a[f"logp_{t}"] - b[f"logp_{t}"]) / n) <= 1e-3
