"""shared.distributed: single-process context, Horovod data parallelism, Slurm scripts."""
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
SLURM = REPO / "scripts" / "slurm"


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
    drop_time = [[{k: v for k, v in h.items() if k != "time_s"} for h in r["history"]]
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


JOBS = {  # script -> (entry point, paper config)
    "pad_train.sh": ("permutation_ad.train", "permutation_ad/configs/paper.yaml"),
    "pad_evaluate.sh": ("permutation_ad.evaluate", "permutation_ad/configs/paper.yaml"),
    "pad_pipeline.sh": ("permutation_ad.pipeline", "permutation_ad/configs/paper.yaml"),
    "lhco_prepare.sh": ("lhco_fullphase.prepare", "lhco_fullphase/configs/paper.yaml"),
    "lhco_train.sh": ("lhco_fullphase.train", "lhco_fullphase/configs/paper.yaml"),
    "lhco_sample.sh": ("lhco_fullphase.sample", "lhco_fullphase/configs/paper.yaml"),
    "lhco_classify.sh": ("lhco_fullphase.classify", "lhco_fullphase/configs/paper.yaml"),
    "lhco_evaluate.sh": ("lhco_fullphase.evaluate", "lhco_fullphase/configs/paper.yaml"),
}


def test_slurm_scripts_parse_and_name_entry_point_and_config():
    scripts = sorted(p.name for p in SLURM.glob("*.sh"))
    assert set(JOBS) <= set(scripts)
    for name in scripts:
        res = subprocess.run(["bash", "-n", str(SLURM / name)], capture_output=True)
        assert res.returncode == 0, f"{name}: {res.stderr.decode()}"
    for name, (module, config) in JOBS.items():
        text = (SLURM / name).read_text()
        assert f"-m {module} " in text and config in text, name
        assert "#SBATCH -C gpu" in text and "#SBATCH --gpus-per-node=4" in text, name
        assert "/global/" not in text and "/home/" not in text, name  # no personal paths
    assert "--model jet" in (SLURM / "lhco_train.sh").read_text()


def test_slurm_script_builds_the_command(tmp_path):
    """Run a job script outside Slurm with an `echo` interpreter: it must launch its entry
    point with the given config, out dir and extra arguments, and create OUT."""
    env = dict(os.environ, LAUNCHER="none", PYTHON="echo", REPO=str(REPO))
    env.pop("SLURM_SUBMIT_DIR", None)
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(SLURM / "lhco_train.sh"), "cfg.yaml", str(out), "--model",
                          "particle"], env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().strip().splitlines()[-1] == (
        f"-m lhco_fullphase.train --config cfg.yaml --out {out} --model particle")
    assert out.is_dir()
    bad = subprocess.run(["bash", str(SLURM / "pad_train.sh")], env=env, capture_output=True)
    assert bad.returncode == 2 and b"usage" in bad.stderr
