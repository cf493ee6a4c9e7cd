"""Slurm scripts (scripts/slurm): syntax, the afterok chains `submit.sh --dry-run` prints (and
submits, with a stand-in sbatch), and the job-array shard logic run with a stand-in python."""
import importlib.util
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "scripts" / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sh"))
JOB_SCRIPTS = [p for p in SCRIPTS if p.name not in ("common.sh", "submit.sh")]

PAD_DEPS = {
    "prepare": [],
    "train-qcd-standard": ["prepare"], "train-qcd-likelihood": ["prepare"],
    "train-top-standard": ["prepare"], "train-top-likelihood": ["prepare"],
    "classify": ["prepare"], "baselines": ["prepare"],
    "likelihood": ["train-qcd-standard", "train-qcd-likelihood", "train-top-standard", "train-top-likelihood"],
    "evaluate": ["likelihood", "classify"],
    "figures": ["evaluate", "baselines"],
}
LHCO_DEPS = {
    "prepare": [],
    "train-jet": ["prepare"], "train-particle": ["prepare"], "train-lowdim": ["prepare"],
    "sample-sr": ["train-jet", "train-particle", "train-lowdim"],
    "sample-sb": ["train-jet", "train-particle", "train-lowdim"],
    "classify": ["sample-sr", "sample-sb"],
    "evaluate": ["classify"],
    "figures": ["evaluate"],
}


def _run(args, env=None, check=True):
    e = dict(os.environ)
    for k in [k for k in e if k.startswith("SLURM_")]:
        del e[k]
    e.update(env or {})
    r = subprocess.run(args, capture_output=True, text=True, env=e, cwd=REPO)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _chain(stdout):
    """{job: (sbatch argv, [runs lines])} in submission order."""
    jobs = {}
    last = None
    for line in stdout.splitlines():
        m = re.match(r"^(\S+): sbatch (.*)$", line)
        if m:
            last = m.group(1)
            jobs[last] = (m.group(2).split(), [])
        elif line.startswith("    runs: "):
            jobs[last][1].append(line[len("    runs: "):])
    return jobs


def _deps(argv):
    dep = [a for a in argv if a.startswith("--dependency=")]
    if not dep:
        return []
    assert dep[0].startswith("--dependency=afterok:") and "--kill-on-invalid-dep=yes" in argv
    return dep[0][len("--dependency=afterok:"):].split(":")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", JOB_SCRIPTS, ids=lambda p: p.name)
def test_job_script_headers(script):
    text = script.read_text()
    assert "#SBATCH -C gpu" in text and "#SBATCH --gpus-per-node=4" in text
    assert re.search(r"^#SBATCH --time=\d\d:\d\d:\d\d$", text, re.M)
    assert os.stat(script).st_mode & stat.S_IXUSR
    assert "/global/" not in text and "/home/" not in text                  # no personal paths
    r = _run(["bash", str(script)], env={"LAUNCHER": "print"}, check=False)   # no CONFIG OUT
    assert r.returncode == 2 and "usage:" in r.stderr


@pytest.mark.parametrize("package,deps,prefix", [("permutation_ad", PAD_DEPS, "pad"),
                                                 ("lhco_fullphase", LHCO_DEPS, "lhco")])
def test_dry_run_chain(tmp_path, package, deps, prefix):
    out = tmp_path / "run"
    r = _run(["bash", str(SLURM / "submit.sh"), "--dry-run", package, f"{package}/configs/paper.yaml", str(out),
              "--data-dir", "/data/x"], env={"ACCOUNT": "m1234"})
    jobs = _chain(r.stdout)
    assert list(jobs) == list(deps)
    assert not out.exists()                                    # dry run creates nothing
    seen = set()
    for name, (argv, runs) in jobs.items():
        assert [d.strip("<>") for d in _deps(argv)] == deps[name], name
        assert seen.issuperset(deps[name])                     # dependencies submitted first
        seen.add(name)
        assert "--account=m1234" in argv and f"--job-name={prefix}-{name}" in argv
        assert argv[-2:] == ["--data-dir", "/data/x"] and str(out) in argv
        assert runs and all("--data-dir /data/x" in cmd for cmd in runs)
        assert all(f"--config {REPO}/{package}/configs/paper.yaml --out {out}" in cmd for cmd in runs)
    runs = {name: jobs[name][1] for name in jobs}
    modules = {re.search(r"python3 -m (\S+) ", c).group(1) for r in runs.values() for c in r}
    assert all(importlib.util.find_spec(m) is not None for m in modules), modules
    stage = {name: re.search(r"--stages (\S+)", r[0]).group(1) for name, r in runs.items() if "--stages" in r[0]}
    if package == "permutation_ad":
        assert all(runs[f"train-{s}-{o}"] == [f"16 rank(s): python3 -m permutation_ad.train --config "
                                              f"{REPO}/permutation_ad/configs/paper.yaml --out {out} "
                                              f"--sample {s} --objective {o} --data-dir /data/x"]
                   for s in ("qcd", "top") for o in ("standard", "likelihood"))
        assert stage == {"prepare": "prepare", "classify": "classify", "baselines": "baselines",
                         "figures": "figures,report"}
        lik = runs["likelihood"]
        assert "--array=0-3" in jobs["likelihood"][0]
        assert [re.search(r"--shard (\S+)$", c).group(1) for c in lik] == ["0/16", "1/16", "2/16", "3/16"]
        assert all("-m permutation_ad.evaluate " in c for c in lik)
        assert runs["evaluate"][0].startswith("1 rank(s): python3 -m permutation_ad.evaluate ")
        assert "--shard" not in runs["evaluate"][0]
    else:
        assert stage == {"prepare": "prepare", "evaluate": "classify,evaluate", "figures": "figures,report"}
        assert all("-m lhco_fullphase.train " in runs[f"train-{m}"][0] for m in ("jet", "particle"))
        assert all("-m lhco_fullphase.sample " in runs[f"sample-{r}"][0] for r in ("sr", "sb"))
        assert "--model jet" in runs["train-jet"][0] and "--model particle" in runs["train-particle"][0]
        assert runs["train-jet"][0].startswith("16 rank(s)") and runs["sample-sr"][0].startswith("4 rank(s)")
        assert "--region sr" in runs["sample-sr"][0] and "--region sb" in runs["sample-sb"][0]
        assert [re.search(r"--shard (\S+)$", c).group(1) for c in runs["classify"]] == ["0/16", "1/16", "2/16", "3/16"]
        assert all("-m lhco_fullphase.classify " in c for c in runs["classify"])


def test_dry_run_overrides(tmp_path):
    r = _run(["bash", str(SLURM / "submit.sh"), "--dry-run", "pad", "c.yaml", str(tmp_path / "o")],
             env={"SHARD_TASKS": "8", "TRAIN_TIME": "36:00:00", "TRAIN_NODES": "2",
                  "PAD_DENSITIES": "qcd:standard top:standard"})
    jobs = _chain(r.stdout)
    assert list(jobs)[1:3] == ["train-qcd-standard", "train-top-standard"]
    assert "--time=36:00:00" in jobs["train-qcd-standard"][0] and "--nodes=2" in jobs["train-qcd-standard"][0]
    assert jobs["train-qcd-standard"][1][0].startswith("8 rank(s)")
    assert "--array=0-7" in jobs["likelihood"][0]
    assert jobs["likelihood"][1][-1].endswith("--shard 3/32")
    assert _deps(jobs["likelihood"][0]) == ["<train-qcd-standard>", "<train-top-standard>"]
    bad = _run(["bash", str(SLURM / "submit.sh"), "--dry-run", "nope", "c.yaml", "o"], check=False)
    assert bad.returncode == 2 and "PACKAGE" in bad.stderr


def test_submit_with_stand_in_sbatch(tmp_path):
    """Real mode: job ids returned by sbatch --parsable become the afterok dependencies."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    fake = bindir / "sbatch"
    fake.write_text("#!/bin/bash\n"
                    f'n=$(( $(wc -l < "{log}" 2>/dev/null || echo 0) + 100 ))\n'
                    f'echo "$n $*" >> "{log}"\n'
                    'echo "$n;perlmutter"\n')
    fake.chmod(0o755)
    out = tmp_path / "run"
    r = _run(["bash", str(SLURM / "submit.sh"), "lhco", "c.yaml", str(out)],
             env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert (out / "logs").is_dir()
    ids = {}
    for line in log.read_text().splitlines():
        jid, rest = line.split(" ", 1)
        name = re.search(r"--job-name=lhco-(\S+)", rest).group(1)
        dep = re.search(r"--dependency=afterok:(\S+)", rest)
        got = [int(d) for d in dep.group(1).split(":")] if dep else []
        assert got == [ids[d] for d in LHCO_DEPS[name]], name
        ids[name] = int(jid)
    assert list(ids) == list(LHCO_DEPS)
    assert f"classify: job {ids['classify']}" in r.stdout


def _fake_python(tmp_path, fail_shard=None):
    py = tmp_path / "python"
    py.write_text("#!/bin/bash\n"
                  'echo "GPU=${CUDA_VISIBLE_DEVICES:-} DIST=${PAD_DISTRIBUTED:-} ARGS=$*"\n'
                  + (f'[[ "$*" == *"--shard {fail_shard}"* ]] && {{ echo boom >&2; exit 3; }}\n' if fail_shard else "")
                  + "exit 0\n")
    py.chmod(0o755)
    return py


def test_array_task_runs_its_shards(tmp_path):
    env = {"PYTHON": str(_fake_python(tmp_path)), "LAUNCHER": "none", "REPO": str(REPO), "SHARDS_PER_TASK": "2",
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2",
           "SLURM_ARRAY_TASK_COUNT": "3"}
    r = _run(["bash", str(SLURM / "pad_likelihood.sh"), "c.yaml", str(tmp_path / "o"), "--set", "a=1"], env=env)
    lines = sorted(line for line in r.stdout.splitlines() if "ARGS=" in line)
    assert lines == [f"[shard {k}/6] GPU={k - 2} DIST=none ARGS=-m permutation_ad.evaluate --config c.yaml "
                     f"--out {tmp_path / 'o'} --set a=1 --shard {k}/6" for k in (2, 3)]
    # more shards than GPUs share them round robin
    r = _run(["bash", str(SLURM / "pad_likelihood.sh"), "c.yaml", "o"],
             env={**env, "LAUNCHER": "print", "SHARDS_PER_TASK": "6", "GPUS_PER_NODE": "4"})
    assert [re.match(r"shard (\d+)/18 on GPU (\d)", ln).groups() for ln in r.stdout.splitlines()] == \
        [(str(6 + j), str(j % 4)) for j in range(6)]
    # a failing shard fails the task, after the other shard has run to its end
    env["PYTHON"] = str(_fake_python(tmp_path, fail_shard="2/6"))
    r = _run(["bash", str(SLURM / "lhco_classify.sh"), "c.yaml", str(tmp_path / "o")], env=env, check=False)
    assert r.returncode != 0 and "shard failed" in r.stderr
    assert "--shard 3/6" in r.stdout and "boom" in r.stdout
    # not an array task, or an array not numbered from 0: refused
    for bad in ({"SLURM_ARRAY_TASK_ID": ""}, {"SLURM_ARRAY_TASK_MIN": "1"}, {"SLURM_ARRAY_TASK_COUNT": "2"}):
        r = _run(["bash", str(SLURM / "pad_likelihood.sh"), "c.yaml", "o"], env={**env, **bad}, check=False)
        assert r.returncode == 2 and "array" in r.stderr


def test_stage_job_runs_the_pipeline_stage(tmp_path):
    env = {"PYTHON": str(_fake_python(tmp_path)), "LAUNCHER": "none", "REPO": str(REPO)}
    r = _run(["bash", str(SLURM / "lhco_sample.sh"), "c.yaml", str(tmp_path / "o"), "--region", "sb"], env=env)
    assert (f"DIST=none ARGS=-m lhco_fullphase.sample --config c.yaml --out {tmp_path / 'o'} "
            "--region sb") in r.stdout
    assert (tmp_path / "o").is_dir()
