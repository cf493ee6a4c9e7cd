"""``python -m lhco_fullphase.score`` on a miniature run (the tiny config of
test_lhco_pipeline.py with two initialisations; only the stages the idealized scan units need:
prepare + their two classifier trainings): scoring the run's own raw file reproduces the scan's
evaluation scores event by event, the output of a file the run never saw is written with the
run's fingerprint, the printed AUC equals the AUC of the written scores, the ensemble is the mean
of the initialisations, sharded and single-process scoring agree exactly, and bad input is one
line + exit 2."""
import contextlib
import io
import os
import re
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from lhco_synthetic import synthetic_events
from test_lhco_pipeline import PAPER, TINY

INJ = 15          # the tiny config's only injection
N_NEW = 60        # events of the unseen input file (+ 2 that clustering drops)
CHUNK = 25


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run with the two idealized scan units (inj 15, init 0 and 1) trained (with EMA), and an input
    file it never saw: other synthetic events, labels both classes (the first 4 background),
    row 5 empty and row 7 a single particle (fewer than two jets: dropped)."""
    from lhco_fullphase import classify
    from lhco_fullphase.prepare import prepare
    from lhco_fullphase.schema import SCHEMA
    from shared.data.lhco import write_lhco
    from shared.run import Run

    root = tmp_path_factory.mktemp("lhco_score")
    parts, _ = synthetic_events(500, seed=5, max_particles=80)
    write_lhco(root / "data" / "raw.h5", parts,
               (np.random.default_rng(1).random(500) < 0.3).astype(np.int64))
    (root / "tiny.yaml").write_text(TINY.format(paper=os.path.abspath(PAPER)))
    run = Run.from_config(root / "tiny.yaml", root / "run", SCHEMA, data_dir=root / "data",
                          progress=False, overrides=["weak_supervision.num_inits=2",
                                                     # EMA weights: scoring must load them too
                                                     "classifier.training.ema_decay=0.5"])
    prep = prepare(run)
    for i in (0, 1):
        classify.compute_unit(run, ("scan", "idealized", INJ, i), prep)
    new, _ = synthetic_events(N_NEW + 2, seed=21, max_particles=80)
    new[5] = 0.0
    new[7] = 0.0
    new[7, 0] = [400.0, 0.3, -1.0]
    labels = np.random.default_rng(2).integers(0, 2, N_NEW + 2)
    labels[:4] = 0
    labels[10:12] = [0, 1]
    write_lhco(root / "input.h5", new, labels)
    return {"run": run, "root": root, "input": root / "input.h5", "labels": labels, "prep": prep}


def _main(argv):
    """Run the CLI in-process; returns its stdout."""
    from lhco_fullphase import score
    from shared.cli import run_cli
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        run_cli(score.main, argv)
    return buf.getvalue()


def _args(trained, out, *extra, input=None):
    return ["--run", str(trained["run"].out), "--input", str(input or trained["input"]),
            "--out", str(out), "--method", "idealized", "--chunk-size", str(CHUNK),
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def scored(trained):
    """The unseen file scored with init 0 and with the ensemble, both with --labels."""
    base = trained["root"]
    return {"init0": (base / "init0.h5", _main(_args(trained, base / "init0.h5", "--labels"))),
            "ensemble": (base / "ens.h5", _main(_args(trained, base / "ens.h5", "--ensemble",
                                                      "--labels")))}


def test_scoring_the_run_file_reproduces_the_scan_scores(trained, tmp_path):
    """Clustering, precision, preprocessing and checkpoint as in the scan: the run's own raw
    file scored by the command gives each evaluation event the probability the scan gave it."""
    from lhco_fullphase import artifacts
    from lhco_fullphase.classify import unit_dir
    from lhco_fullphase.score import read_scores

    run = trained["run"]
    out = tmp_path / "raw_scores.h5"
    _main(_args(trained, out, "--ensemble", "--chunk-size", "200",
                input=run.data_dir / "raw.h5"))
    arrays, attrs = read_scores(out)
    assert attrs["inits"] == [0, 1] and np.array_equal(arrays["row"], np.arange(500))
    # the events the prepare stage kept (event id = row for the first raw file)
    kept_rows = trained["prep"].arrays["event_id"]
    assert np.array_equal(np.nonzero(arrays["dropped"] == 0)[0], kept_rows)
    np.testing.assert_allclose(arrays["mjj"][kept_rows], trained["prep"].arrays["mjj"], rtol=1e-12)
    for j, i in enumerate(attrs["inits"]):
        scan = artifacts.read_scores(unit_dir(run, ("scan", "idealized", INJ, i)))
        assert len(scan["event_id"]) > 10
        np.testing.assert_allclose(arrays["prob_init"][scan["event_id"], j], scan["scores"],
                                   rtol=0, atol=1e-6, err_msg=f"init{i}")
        np.testing.assert_array_equal(arrays["label"][scan["event_id"]], scan["labels"])


def test_output_written_with_fingerprint(trained, scored):
    from lhco_fullphase.classify import unit_dir
    from lhco_fullphase.score import LAYOUT, read_scores
    from shared.io import read_json
    from shared.run import file_identity
    from shared.scoring import parts_dir

    out, stdout = scored["init0"]
    arrays, attrs = read_scores(out)
    n = N_NEW + 2
    assert set(arrays) == {"row", "dropped", "mjj", "prob", "prob_init", "label"}
    assert np.array_equal(arrays["row"], np.arange(n)) and arrays["prob_init"].shape == (n, 1)
    assert np.array_equal(np.nonzero(arrays["dropped"])[0], [5, 7])
    kept = arrays["dropped"] == 0
    assert np.all(np.isnan(arrays["prob"][~kept])) and np.all(np.isnan(arrays["mjj"][~kept]))
    assert np.all((arrays["prob"][kept] > 0) & (arrays["prob"][kept] < 1))
    assert np.all(arrays["mjj"][kept] > 0)
    assert np.array_equal(arrays["prob"], arrays["prob_init"][:, 0], equal_nan=True)
    assert np.array_equal(arrays["label"], trained["labels"])
    run = trained["run"]
    fp = read_json(unit_dir(run, ("scan", "idealized", INJ, 0)) / "fingerprint.json")
    assert attrs["layout"] == LAYOUT and attrs["classifier_digests"] == {"0": fp["digest"]}
    assert attrs["classifier_fingerprints"]["0"]["recipe"] == fp["recipe"]
    assert attrs["classifier_check"] == "verified"
    assert attrs["method"] == "idealized" and attrs["injection"] == INJ and attrs["inits"] == [0]
    assert attrs["run"] == str(run.out) and attrs["input"] == str(trained["input"])
    assert attrs["input_identity"] == file_identity(trained["input"]) and attrs["n_dropped"] == 2
    s = attrs["settings"]
    assert s["chunk_size"] == CHUNK and s["clustering"]["num_particles"] == 8
    assert s["classifier_preprocessor"]["pt_rel_transform"] == "log1m"     # classifier.pt_rel_transform
    assert s["min_background"] == run.key("evaluate.min_background")
    assert s["signal_region"] == run.key("windows.sr") and s["use_ema"] is True
    assert attrs["config"]["classifier"]["width"] == 8
    assert not parts_dir(out).exists()
    assert "2 without two jets" in stdout


def _printed_auc(stdout, name):
    m = re.search(rf"^\s*{name}\b.*AUC ([0-9.]+)", stdout, re.M)
    assert m, stdout
    return float(m.group(1))


def test_printed_auc_equals_auc_of_written_scores(scored):
    from lhco_fullphase.score import read_scores
    from shared import metrics

    for key, names in (("init0", {"prob": 0}), ("ensemble", {"prob": None, "init0": 0, "init1": 1})):
        out, stdout = scored[key]
        arrays, attrs = read_scores(out)
        kept = arrays["dropped"] == 0
        for name, col in names.items():
            s = arrays["prob"] if col is None else arrays["prob_init"][:, col]
            auc = metrics.auc(arrays["label"][kept], s[kept])
            assert abs(_printed_auc(stdout, name) - auc) < 1e-6, (key, name)
            assert abs(attrs["metrics"][name]["auc"] - auc) < 1e-6
        m = attrs["metrics"]["prob"]
        assert m["n_signal"] + m["n_background"] == int(kept.sum())
        assert m["min_background_events"] == 10


def test_ensemble_is_the_mean_of_the_inits(scored):
    from lhco_fullphase.score import read_scores

    ens, attrs = read_scores(scored["ensemble"][0])
    one = read_scores(scored["init0"][0])[0]
    assert attrs["inits"] == [0, 1] and ens["prob_init"].shape == (N_NEW + 2, 2)
    kept = ens["dropped"] == 0
    np.testing.assert_allclose(ens["prob"][kept], ens["prob_init"][kept].mean(axis=1), rtol=1e-15)
    np.testing.assert_array_equal(ens["prob_init"][:, 0], one["prob"])       # same classifier
    assert not np.allclose(ens["prob_init"][kept, 0], ens["prob_init"][kept, 1])  # two trainings
    for k in ("row", "dropped", "mjj", "label"):
        np.testing.assert_array_equal(ens[k], one[k])


def test_sharded_equals_single_process(trained, scored, monkeypatch):
    from lhco_fullphase import score
    from lhco_fullphase.score import read_scores
    from shared.scoring import parts_dir

    out = trained["root"] / "sharded.h5"
    for k in range(2):
        _main([*_args(trained, out, "--ensemble"), "--shard", f"{k}/2"])
    assert not out.exists() and len(list(parts_dir(out).glob("chunk_*.npz"))) == 3

    def recompute(*_):
        raise AssertionError("the merge recomputed a chunk the shards had done")

    monkeypatch.setattr(score.FileScoring, "compute_unit", recompute)
    _main(_args(trained, out, "--ensemble"))
    sharded, one = read_scores(out)[0], read_scores(scored["ensemble"][0])[0]
    assert sharded.keys() == one.keys()
    for k in one:
        np.testing.assert_array_equal(sharded[k], one[k], err_msg=k)


def _copy_run(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained["run"].out, copy)
    return copy


def _bad(trained, tmp_path, case):
    base = _args(trained, tmp_path / "s.h5")
    with_run = lambda path: ["--run", str(path), *base[2:]]  # noqa: E731
    with_input = lambda path: [*base[:2], "--input", str(path), *base[4:]]  # noqa: E731
    if case == "not_a_run":
        (tmp_path / "empty").mkdir()
        return with_run(tmp_path / "empty"), "config.resolved.yaml"
    if case == "other_package_run":
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "config.resolved.yaml").write_text(
            "data: {num_particles: 30, jet_features: [pt]}\nmodel: {samples: [qcd]}\n")
        return with_run(tmp_path / "other"), "config.resolved.yaml"
    if case == "unknown_method":
        return [*base, "--method", "cathode"], "--method 'cathode'"
    if case == "unknown_injection":
        return [*base, "--injection", "99"], "--injection 99"
    if case == "unknown_init":
        return [*base, "--init", "2"], "--init 2"
    if case == "untrained_method":        # the diffusion units were never trained here
        return [*base, "--method", "diffusion"], "scores.npz"
    if case == "missing_checkpoint":
        copy = _copy_run(trained, tmp_path)
        shutil.rmtree(copy / "classify" / "idealized" / f"inj{INJ}" / "init0" / "checkpoints" / "best")
        return with_run(copy), "best"
    if case == "changed_config":
        copy = _copy_run(trained, tmp_path)
        cfg = copy / "config.resolved.yaml"
        text = cfg.read_text()
        assert "  head_width: 4\n" in text
        cfg.write_text(text.replace("  head_width: 4\n", "  head_width: 5\n", 1))
        return with_run(copy), "classifier.head_width: 4 -> 5"
    if case == "missing_input":
        return with_input(tmp_path / "nope.h5"), "nope.h5"
    if case == "not_hdf5":
        (tmp_path / "text.h5").write_text("not a table\n")
        return with_input(tmp_path / "text.h5"), "text.h5"
    if case == "wrong_layout":            # our dijet cache: HDF5, but no pandas 'df' key
        cache = next((trained["run"].data_dir / "processed").glob("*.h5"))
        return with_input(cache), "key 'df'"
    if case == "labels_one_class":        # the first 4 events are all background
        return [*base, "--labels", "--num-events", "4"], "label"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["not_a_run", "other_package_run", "unknown_method",
                                  "unknown_injection", "unknown_init", "untrained_method",
                                  "missing_checkpoint", "changed_config", "missing_input",
                                  "not_hdf5", "wrong_layout", "labels_one_class"])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, case):
    argv, needle = _bad(trained, tmp_path, case)
    with pytest.raises(SystemExit) as exc:
        _main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "s.h5").exists()
