"""Never a silently wrong result (issue 14): every entry point answers bad input with one line and
exit code 2, typos in configs are errors, and outputs made from other settings or inputs are
never reused."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PAD_DISTRIBUTED", "none")

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "permutation_ad" / "configs" / "tiny.yaml"
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", PAD_DISTRIBUTED="none")


def entry_points(kind="config"):
    """``python -m`` modules of both packages (those with a ``__main__`` block) that take
    ``--config`` (stages, pipelines), or with ``kind="run"`` the scorers (``--run``)."""
    mods = []
    for pkg in ("permutation_ad", "lhco_fullphase"):
        for path in sorted((REPO / pkg).glob("*.py")):
            text = path.read_text()
            scorer = '"--run"' in text or "scoring.parser(" in text   # shared.scoring's --run
            if '__name__ == "__main__"' in text and scorer == (kind == "run"):
                mods.append(f"{pkg}.{path.stem}")
    return mods


def _uses_run_cli(module):
    path = REPO / (module.replace(".", "/") + ".py")
    return "run_cli" in path.read_text()


@pytest.mark.parametrize("module", entry_points())
def test_missing_config_is_one_line_exit_2(tmp_path, module):
    res = subprocess.run([sys.executable, "-m", module, "--config", str(tmp_path / "missing.yaml"),
                          "--out", str(tmp_path / "o")], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert err and "missing.yaml" in err[-1] and "not found" in err[-1]


@pytest.mark.parametrize("module", entry_points("run"))
def test_scorer_given_no_run_is_one_line_exit_2(tmp_path, module):
    res = subprocess.run([sys.executable, "-m", module, "--run", str(tmp_path / "norun"),
                          "--input", str(tmp_path / "x.h5"), "--out", str(tmp_path / "s.h5")],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "norun" in res.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("module", [m for m in entry_points() if m.startswith("permutation_ad")])
@pytest.mark.parametrize("override, key", [("data.n_trian=10", "data.n_trian"),
                                           ("train.epochs=abc", "train"),
                                           ("training.epochs=abc", "training.epochs")])
def test_typos_and_bad_types_are_errors_naming_the_key(tmp_path, capsys, module, override, key):
    import importlib

    from shared.cli import run_cli
    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        run_cli(mod.main, ["--config", str(TINY), "--out", str(tmp_path / "o"), "--set", override])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{key}'" in err[0] and str(TINY) in err[0]


def test_out_under_a_file_or_unwritable_is_an_error(tmp_path, capsys):
    from permutation_ad import prepare
    from shared.cli import run_cli
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(SystemExit) as exit_:
            run_cli(prepare.main, ["--config", str(TINY), "--out", str(out)])
        assert exit_.value.code == 2
        assert "--out" in capsys.readouterr().err


def _write_files(folder, seed, n=40):
    from permutation_ad.prepare import synthetic_p4
    from shared.data import write_toptag
    for split in ("train", "val", "test"):
        p4 = np.concatenate([synthetic_p4(n, 200, 1, seed), synthetic_p4(n, 200, 3, seed + 1)])
        write_toptag(folder / f"{split}_{seed}.h5", p4, np.r_[np.zeros(n), np.ones(n)].astype(int))
    write_toptag(folder / f"zprime_{seed}.h5", synthetic_p4(n, 200, 2, seed + 2), np.ones(n, int))


def _files_run(tmp_path, out, data, train="train_1.h5", **over):
    from permutation_ad.schema import SCHEMA
    from shared.run import Run
    sets = [f"data.source=files", f"data.files.train={data / train}",
            f"data.files.val={data / 'val_1.h5'}", f"data.files.test={data / 'test_1.h5'}",
            f"data.files.zprime={data / 'zprime_1.h5'}", "data.n_train=30", "data.n_val=20",
            "data.n_test=20", "data.n_zprime=20", *[f"{k}={v}" for k, v in over.items()]]
    return Run.from_config(TINY, out, SCHEMA, overrides=sets, data_dir=tmp_path / "d", progress=False)


def test_processed_data_follow_the_raw_file(tmp_path, capsys):
    """Switching data.files.train to another file with the same data folder remakes the split
    (it used to keep the old one)."""
    from permutation_ad.prepare import prepare
    data = tmp_path / "raw"
    data.mkdir()
    _write_files(data, 1)
    _write_files(data, 2)
    arts = prepare(_files_run(tmp_path, tmp_path / "o", data))
    first = arts[("qcd", "train")].path.read_bytes()
    again = prepare(_files_run(tmp_path, tmp_path / "o", data))
    assert again[("qcd", "train")].path.read_bytes() == first          # unchanged: reused
    capsys.readouterr()
    other = prepare(_files_run(tmp_path, tmp_path / "o", data, train="train_2.h5"))
    assert other[("qcd", "train")].path.read_bytes() != first
    assert "data.files.train" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all", "truncate"])
def test_pipeline_with_a_broken_train_file_exits_2_naming_it(tmp_path, content):
    data = tmp_path / "raw"
    data.mkdir()
    _write_files(data, 1)
    bad = data / "bad.h5"
    if content == "truncate":
        raw = (data / "train_1.h5").read_bytes()
        bad.write_bytes(raw[: len(raw) // 2])
    else:
        bad.write_bytes(content)
    sets = ["data.source=files", f"data.files.train={bad}", f"data.files.val={data / 'val_1.h5'}",
            f"data.files.test={data / 'test_1.h5'}", f"data.files.zprime={data / 'zprime_1.h5'}",
            "data.n_train=30", "data.n_val=20", "data.n_test=20", "data.n_zprime=20"]
    res = subprocess.run([sys.executable, "-m", "permutation_ad.pipeline", "--config", str(TINY),
                          "--out", str(tmp_path / "o"), "--set", *sets], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and str(bad) in res.stderr.strip().splitlines()[-1]


def test_retraining_after_a_setting_changed_and_evaluate_follows(tmp_path, capsys):
    """A finished 1-epoch model is retrained for 2 epochs when training.epochs changes (naming
    the key), and the likelihoods are recomputed for the new model."""
    from permutation_ad import evaluate, prepare, train
    from permutation_ad.schema import SCHEMA
    from shared.run import Run

    def run(*over):
        r = Run.from_config(TINY, tmp_path / "o", SCHEMA, progress=False,
                            overrides=["model.samples=[qcd]", "model.objectives=[standard]",
                                       "evaluate.num_jets=8", *over])
        prepare.prepare(r)
        return r

    r1 = run()
    train.train_all(r1)
    evaluate.evaluate(r1)
    loglik = Path(tmp_path / "o/eval/loglik_qcd_standard.npz")
    unit = tmp_path / "o/eval/loglik/qcd_standard/qcd_0000.npz"
    unit_before = json.loads(Path(f"{unit}.fingerprint.json").read_text())
    summary = tmp_path / "o/models/qcd_standard/train_summary.json"
    assert len(json.loads(summary.read_text())["history"]) == 1
    capsys.readouterr()
    r2 = run("training.epochs=2")
    train.train_all(r2)
    assert "training.epochs: 1 -> 2" in capsys.readouterr().out
    assert len(json.loads(summary.read_text())["history"]) == 2
    evaluate.evaluate(r2)
    # the likelihood units were made again from the retrained model (the values themselves may
    # coincide: same seed, and the best epoch of both trainings can be the first)
    unit_after = json.loads(Path(f"{unit}.fingerprint.json").read_text())
    assert unit_after["digest"] != unit_before["digest"]
    assert unit_after["recipe"]["upstream"]["density"] != unit_before["recipe"]["upstream"]["density"]
    # unchanged settings: nothing is recomputed
    mtime = loglik.stat().st_mtime_ns
    train.train_all(r2)
    evaluate.evaluate(r2)
    assert loglik.stat().st_mtime_ns == mtime


def test_generator_rejects_impossible_requests_at_once(tmp_path):
    import time
    for extra in (["--pt-min", "700", "--pt-max", "600"], ["--max-batch", "0"], ["--n", "0"]):
        t0 = time.time()
        args = ["--n", "5", "--seed", "1", "--out", str(tmp_path / "x.h5"), *extra]
        res = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_data.py"), "toptag",
                              *args], env=ENV, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert time.time() - t0 < 60 and not (tmp_path / "x.h5").exists()


def test_readers_reject_bad_ranges_and_impossible_values(tmp_path):
    import pandas as pd

    from shared.data import DataFormatError, read_lhco, read_toptag, write_lhco, write_toptag
    from shared.data.toptag import COLUMNS
    p4 = np.zeros((3, 200, 4), np.float32)
    p4[:, 0] = [500.0, 300.0, 0.0, 400.0]
    write_toptag(tmp_path / "t.h5", p4, np.array([0, 1, 0]))
    with pytest.raises(DataFormatError, match="'stop'"):
        read_toptag(tmp_path / "t.h5", stop=-3)
    bad = p4.copy()
    bad[1, 4] = [-7e32, 1.0, 1.0, 1.0]
    write_toptag(tmp_path / "neg.h5", bad, np.array([0, 1, 0]))
    with pytest.raises(DataFormatError, match=r"'E_4'.*1 row"):
        read_toptag(tmp_path / "neg.h5")
    far = p4.copy()
    far[2, 1] = [1e7, 1.0, 0.0, 1e7]   # |eta| ~ 17
    write_toptag(tmp_path / "far.h5", far, np.array([0, 1, 0]))
    with pytest.raises(DataFormatError, match="'PZ_1'.*eta"):
        read_toptag(tmp_path / "far.h5")
    # a column of strings in an official-looking table file
    df = pd.DataFrame(np.zeros((2, len(COLUMNS)), np.float32), columns=COLUMNS)
    df["ttv"] = df["ttv"].astype(np.int64)
    df["is_signal_new"] = df["is_signal_new"].astype(np.int64)
    df["E_3"] = ["1.0", "abc"]
    df.to_hdf(tmp_path / "s.h5", key="table", format="table")
    with pytest.raises(DataFormatError, match="'E_3'.*abc"):
        read_toptag(tmp_path / "s.h5")
    parts = np.zeros((2, 700, 3))
    parts[:, 0] = [100.0, 0.1, 0.2]
    write_lhco(tmp_path / "l.h5", parts, np.array([0, 1]))
    with pytest.raises(DataFormatError, match="'start'"):
        read_lhco(tmp_path / "l.h5", start=-5)

    def official_lhco(path, parts):   # pandas directly: our writer refuses such values itself
        df = pd.DataFrame(np.c_[parts.reshape(len(parts), -1), [0.0, 1.0]])
        df.to_hdf(path, key="df", format="fixed")
    parts[1, 3] = [-5.0, 0.0, 0.0]
    official_lhco(tmp_path / "lneg.h5", parts)
    with pytest.raises(DataFormatError, match="pT.*negative"):
        read_lhco(tmp_path / "lneg.h5")
    parts[1, 3] = [5.0, 1e6, 0.0]
    official_lhco(tmp_path / "leta.h5", parts)
    with pytest.raises(DataFormatError, match="eta"):
        read_lhco(tmp_path / "leta.h5")


def test_sigint_is_one_line_naming_the_last_checkpoint(tmp_path):
    import signal
    import time
    import yaml
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"n": 256, "dim": 3, "seed": 1},
                                   "training": {"epochs": 200, "batch_size": 16, "progress": False},
                                   "toy": {"sleep_per_epoch": 0.3}}))
    code = ("import sys; sys.argv[0] = 'toy'; from shared.cli import run_cli; "
            "import importlib.util as u; s = u.spec_from_file_location('toy', %r); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); run_cli(m.main, sys.argv[1:])"
            % str(REPO / "tests" / "toy_train.py"))
    # a shell's background job (`pytest &`) inherits SIGINT ignored, and Python then keeps it
    # ignored: restore the default so the child sees Ctrl-C as a user would
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(cfg), "--out",
                             str(tmp_path / "o")], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and not (tmp_path / "o/checkpoints/last/state.json").exists():
        time.sleep(0.5)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "interrupted; last checkpoint:" in err and "checkpoints/last" in err


# -- found by the fault sweep (benchmarks/fault_sweep.py) and the remaining reproductions --

def _run_all(argvs, cwd, timeout=600):
    """Start every command at once (they are independent), then collect (rc, stderr)."""
    procs = [subprocess.Popen([sys.executable, *map(str, argv)], cwd=cwd, env=ENV, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for argv in argvs]
    return [(p.communicate(timeout=timeout)[1], p.returncode)[::-1] for p in procs]


def _one_line(rc, err, *needles):
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, (rc, err[-3000:])
    assert err.strip().splitlines()[-1] == lines[0]            # nothing after the error line
    assert all(n in lines[0] for n in needles), (needles, lines[0])


def test_bad_values_and_files_of_the_config_are_one_line(tmp_path):
    """Issue 14 reproductions: wrong types, impossible sizes, a config without ``data:``, a
    config that is not YAML, an unknown ODE method; every one exit 2 naming the key before any
    work (the ODE method used to fail with a traceback at the evaluate stage)."""
    (tmp_path / "nodata.yaml").write_text("seed: 1\n")
    (tmp_path / "broken.yaml").write_text("data: {num_particles: [1, 2\n")
    cases = [(TINY, ["data.num_particles=abc"], ["'data.num_particles'"]),
             (TINY, ["data.n_train=-5"], ["'data.n_train'"]),
             (TINY, ["data.n_val=0"], ["'data.n_val'"]),
             (TINY, ["likelihood.method=foo"], ["'likelihood.method'"]),
             (tmp_path / "nodata.yaml", [], ["nodata.yaml", "'data.num_particles'"]),
             (tmp_path / "broken.yaml", [], ["broken.yaml", "line 2"])]
    argvs = [["-m", "permutation_ad.pipeline", "--config", cfg, "--out", tmp_path / f"o{i}",
              *(["--set", *sets] if sets else [])] for i, (cfg, sets, _) in enumerate(cases)]
    for (cfg, sets, needles), (rc, err) in zip(cases, _run_all(argvs, tmp_path, timeout=300)):
        _one_line(rc, err, *needles)
    assert not any((tmp_path / f"o{i}" / "data").exists() for i in range(len(cases)))


def test_unwritable_out_is_one_line_before_any_work(tmp_path):
    """--out in a folder nobody may write in (root: /sys/fs; others: a 0555 folder), for the
    pipeline and for the generator (which used to fail only after the whole generation)."""
    if os.geteuid() == 0:
        locked = Path("/sys/fs")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    argvs = [["-m", "permutation_ad.pipeline", "--config", TINY, "--out", locked / "o"],
             [REPO / "scripts" / "generate_data.py", "toptag", "--n", "400", "--seed", "1",
              "--no-progress", "--out", locked / "x.h5"]]
    import time
    t0 = time.time()
    for rc, err in _run_all(argvs, tmp_path, timeout=300):
        _one_line(rc, err, "--out", str(locked))
    assert time.time() - t0 < 120


def test_a_non_hdf5_file_is_one_line_naming_it(tmp_path):
    """The HDF5 libraries put a multi-line back trace into their messages; the error keeps one
    line (the innermost reason)."""
    from shared.data import DataFormatError, read_processed, read_toptag
    bad = tmp_path / "jets.h5"
    bad.write_text("E_0,PX_0\n1,2\n")
    for reader in (read_toptag, read_processed):
        with pytest.raises(DataFormatError) as err:
            reader(bad)
        assert "\n" not in str(err.value) and str(bad) in str(err.value)
        assert "signature" in str(err.value)     # the reason, not "HDF5 error back trace"


def test_a_corrupt_embedded_cache_is_made_again(tmp_path, monkeypatch):
    """The cached stand-in file is checked, not only found: a truncated one is generated again
    (it used to be returned every time). Pythia is replaced by a stub writer."""
    from shared.data import embedded, read_toptag, write_toptag
    calls = []

    def fake_generate(command, n, seed, path, **kw):
        calls.append(path)
        p4 = np.zeros((n, 200, 4), np.float32)
        p4[:, :3] = [[500.0, 300.0, 400.0, 0.0], [100.0, 60.0, 80.0, 0.0], [50.0, 30.0, 40.0, 0.0]]
        write_toptag(path, p4, np.zeros(n, int))
        Path(str(path) + ".json").write_text("{}")

    monkeypatch.setattr(embedded, "generate", fake_generate)
    path = embedded.ensure_embedded("qcd", tmp_path, n=4, seed=3)
    assert embedded.ensure_embedded("qcd", tmp_path, n=4, seed=3) == path and len(calls) == 1
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: len(raw) // 3])
    assert embedded.ensure_embedded("qcd", tmp_path, n=4, seed=3) == path and len(calls) == 2
    assert len(read_toptag(path)["p4"]) == 4


def test_outputs_changed_after_they_were_made_are_not_reused(tmp_path):
    """An output file damaged or replaced after its fingerprint was written is made again (it
    used to be reused whenever its fingerprint matched), and a reader can tell that an output
    it uses was made from one that was made again since."""
    from shared.errors import UsageError
    from shared.run import Run, outdated_inputs, require_current
    run = Run({"seed": 1}, tmp_path / "o")
    up = run.artifact(run.out / "model.json", config=["seed"])
    up.path.write_text('{"weights": 1}')
    up.record()
    down = run.artifact(run.out / "scores.json", upstream={"model": up})
    down.path.write_text('{"scores": [1, 2, 3]}')
    down.record()
    assert up.fresh() and down.fresh() and outdated_inputs(down.path) is None
    down.path.write_text('{"scores": [1, 2')                       # damaged
    assert not down.fresh() and "changed or damaged" in down.stale_reason()
    down.path.write_text('{"scores": [1, 2, 3]}')
    assert down.fresh()
    other = Run({"seed": 2}, tmp_path / "o").artifact(run.out / "model.json", config=["seed"])
    other.path.write_text('{"weights": 2}')                        # the model made again
    other.record()
    assert "model.json" in outdated_inputs(down.path)
    with pytest.raises(UsageError, match="scores.json.*model.json.*run the stage"):
        require_current(down.path, "scores", "run the stage")


def test_likelihoods_report_and_figures_follow_the_density(tmp_path, capsys):
    """evaluate recomputes after ``evaluate.num_jets`` changes; with a training setting changed
    but not yet trained it refuses (its likelihoods would be recorded as made from a density
    that does not exist); after a retrain, the report and the figures refuse the likelihoods of
    the old density instead of using them."""
    from permutation_ad import evaluate, figures, prepare, report, train
    from permutation_ad.schema import SCHEMA
    from shared.errors import UsageError
    from shared.run import Run

    def run(*over):
        r = Run.from_config(TINY, tmp_path / "o", SCHEMA, progress=False,
                            overrides=["model.samples=[qcd]", "model.objectives=[standard]",
                                       "evaluate.permutation.num_permutations=2",
                                       "evaluate.permutation.repeats=2", *over])
        prepare.prepare(r)
        return r

    r1 = run("evaluate.num_jets=4")
    train.train_all(r1)
    evaluate.evaluate(r1)
    loglik = tmp_path / "o" / "eval" / "loglik_qcd_standard.npz"
    r2 = run("evaluate.num_jets=6")
    evaluate.evaluate(r2)
    with np.load(loglik) as d:
        assert len(d["logp_qcd"]) == 6
    report.report(r2)
    r3 = run("evaluate.num_jets=6", "training.epochs=2")
    with pytest.raises(UsageError, match=r"qcd_standard.*training\.epochs: 1 -> 2.*train"):
        evaluate.evaluate(r3)
    with pytest.raises(UsageError, match=r"loglik_qcd_standard\.npz.*evaluate"):
        report.report(r3)
    train.train_all(r3)
    with pytest.raises(UsageError, match=r"loglik_qcd_standard\.npz.*models/qcd_standard"):
        figures.fig2_scores_qcd(r3.out, tmp_path / "fig2")
    evaluate.evaluate(r3)
    report.report(r3)
    assert figures.fig2_scores_qcd(r3.out, tmp_path / "fig2")


def test_a_rank_stopped_by_another_ranks_failure_says_so_in_one_line(capsys):
    """Under Horovod a failure on one rank shuts Horovod down on the others, which used to end
    in a second, misleading traceback (verified with horovodrun -np 2 --gloo)."""
    from shared.cli import run_cli

    def main(argv):
        raise RuntimeError("[Op:HorovodAllreduce] Horovod has been shut down. This was caused by "
                           "an exception on one of the ranks")

    with pytest.raises(SystemExit) as exit_:
        run_cli(main, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(err) == 1 and "another rank failed" in err[0]
