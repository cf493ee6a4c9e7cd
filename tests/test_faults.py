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
            if '__name__ == "__main__"' in text and (('"--run"' in text) == (kind == "run")):
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
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(cfg), "--out",
                             str(tmp_path / "o")], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (tmp_path / "o/checkpoints/last/state.json").exists():
        time.sleep(0.5)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "interrupted; last checkpoint:" in err and "checkpoints/last" in err
