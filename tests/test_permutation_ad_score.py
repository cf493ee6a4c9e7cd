"""``python -m permutation_ad.score`` on a tiny trained run (tiny.yaml, QCD density with the
standard objective only): the scores equal the evaluate stage's likelihoods for the same jets,
the output is written with the run's fingerprint, the printed AUC equals the AUC of the written
scores, sharded and single-process scoring agree exactly, and bad input is one line + exit 2."""
import contextlib
import io
import os
import re
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "permutation_ad", "configs", "tiny.yaml")
N_PER_CLASS = 20
CHUNK = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with one finished density (qcd/standard) and a labelled input file that the
    run never saw (1-prong background, 2-prong signal, other seeds than the run's data)."""
    from permutation_ad import pipeline
    from permutation_ad.prepare import synthetic_p4
    from permutation_ad.schema import SCHEMA
    from shared.data.toptag import write_toptag
    from shared.run import Run

    base = tmp_path_factory.mktemp("score")
    run = Run.from_config(TINY, base / "run", SCHEMA, progress=False,
                          overrides=["model.samples=[qcd]", "model.objectives=[standard]"])
    pipeline.run_pipeline(run, ("prepare", "train"))
    p4 = np.concatenate([synthetic_p4(N_PER_CLASS, 200, 1, 101), synthetic_p4(N_PER_CLASS, 200, 2, 102)])
    labels = np.r_[np.zeros(N_PER_CLASS), np.ones(N_PER_CLASS)].astype(int)
    write_toptag(base / "input.h5", p4, labels)
    return {"run": run, "base": base, "input": base / "input.h5", "labels": labels}


def _main(argv):
    """Run the CLI in-process; returns its stdout."""
    from permutation_ad import score
    from shared.cli import run_cli
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        run_cli(score.main, argv)
    return buf.getvalue()


def _args(trained, out, *extra):
    return ["--run", str(trained["run"].out), "--input", str(trained["input"]), "--out", str(out),
            "--chunk-size", str(CHUNK), "--no-progress", *extra]


@pytest.fixture(scope="module")
def scored(trained):
    out = trained["base"] / "scores.h5"
    return {"out": out, "stdout": _main(_args(trained, out, "--labels"))}


def test_score_p4_equals_evaluate_unit(trained):
    """Same jets, same seed → the evaluate stage's likelihood unit, from raw four-momenta."""
    from permutation_ad import artifacts, evaluate
    from permutation_ad.prepare import _seed, load_split, synthetic_p4
    from permutation_ad.score import score_p4
    from permutation_ad.train import load_density
    from shared.diffusion.likelihood import LikelihoodOptions

    run = trained["run"]
    n = 24
    unit = ("loglik", "qcd", "standard", "qcd", 0, 0, n)
    evaluate.compute_unit(run, unit)
    ref = artifacts.read_loglik(evaluate.unit_artifact(run, unit).path)
    p4 = synthetic_p4(int(run.key("data.n_test")), 200, 1, _seed(run, "qcd", "test"))[:n]
    model, pre = load_density(run.cfg, artifacts.model_dir(run.out, "qcd", "standard"), "standard")
    res = score_p4(model, pre, p4, run.cfg["data"], LikelihoodOptions.from_config(run.cfg["likelihood"]),
                   evaluate.unit_seed(run.key("seed"), *unit[:5]))
    assert np.array_equal(load_split(run, "qcd", "test", limit=n)["mask"].sum(1), res["n"])
    for k in artifacts.LOGLIK_KEYS:
        np.testing.assert_allclose(res[k], ref[k], rtol=1e-9, atol=1e-9, err_msg=k)
    np.testing.assert_allclose(res["nll_per_particle"], -ref["logp"] / ref["n"], rtol=1e-12)


def test_output_written_with_fingerprint(trained, scored):
    from permutation_ad.score import LAYOUT, parts_dir, read_scores
    from shared.io import read_json
    from shared.run import file_identity

    arrays, attrs = read_scores(scored["out"])
    n = 2 * N_PER_CLASS
    for k in ("logp", "logp_jet", "logp_particles", "n", "nll_per_particle", "nll_code_variant", "nll"):
        assert arrays[k].shape == (n,) and np.all(np.isfinite(arrays[k])), k
    np.testing.assert_allclose(arrays["logp"], arrays["logp_jet"] + arrays["logp_particles"], rtol=1e-12)
    np.testing.assert_allclose(arrays["nll_per_particle"], -arrays["logp"] / arrays["n"], rtol=1e-12)
    assert np.array_equal(arrays["label"], trained["labels"])
    assert arrays["n"].max() <= trained["run"].key("data.num_particles") and arrays["n"].min() >= 1
    fp = read_json(trained["run"].out / "models" / "qcd_standard" / "fingerprint.json")
    assert attrs["layout"] == LAYOUT and attrs["density_digest"] == fp["digest"]
    assert attrs["density_fingerprint"]["recipe"] == fp["recipe"] and attrs["density_check"] == "verified"
    assert attrs["run"] == str(trained["run"].out) and attrs["input"] == str(trained["input"])
    assert attrs["input_identity"] == file_identity(trained["input"])
    assert attrs["settings"]["chunk_size"] == CHUNK
    assert attrs["settings"]["likelihood"]["rtol"] == trained["run"].key("likelihood.rtol")
    assert not parts_dir(scored["out"]).exists()


def test_printed_auc_equals_auc_of_written_scores(trained, scored):
    from permutation_ad.score import SCORE_KEYS, read_scores
    from shared import metrics

    arrays, attrs = read_scores(scored["out"])
    for name in SCORE_KEYS:
        m = re.search(rf"^\s*{name}\b.*AUC ([0-9.]+)", scored["stdout"], re.M)
        assert m, scored["stdout"]
        assert abs(float(m.group(1)) - metrics.auc(arrays["label"], arrays[name])) < 1e-6
        assert attrs["metrics"][name]["auc"] == pytest.approx(float(m.group(1)), abs=1e-6)


def test_sharded_equals_single_process(trained, scored, monkeypatch):
    from permutation_ad import score
    from permutation_ad.score import parts_dir, read_scores

    out = trained["base"] / "sharded.h5"
    for k in range(2):
        _main([*_args(trained, out), "--shard", f"{k}/2"])
    assert not out.exists() and len(list(parts_dir(out).glob("chunk_*.npz"))) == 2

    def recompute(*_):
        raise AssertionError("the merge recomputed a chunk the shards had done")

    monkeypatch.setattr(score.FileScoring, "compute_unit", recompute)
    _main(_args(trained, out))
    sharded, one = read_scores(out)[0], read_scores(scored["out"])[0]
    assert sharded.keys() == one.keys()
    for k in one:
        assert np.array_equal(sharded[k], one[k]), k


def _bad(trained, tmp_path, case):
    run = str(trained["run"].out)
    base = _args(trained, tmp_path / "s.h5")
    if case == "not_a_run":
        (tmp_path / "empty").mkdir()
        return ["--run", str(tmp_path / "empty"), *base[2:]], "config.resolved.yaml"
    if case == "missing_model":
        return [*base, "--sample", "top"], "top_standard"
    if case == "changed_config":
        copy = tmp_path / "copy"
        shutil.copytree(run, copy)
        cfg = copy / "config.resolved.yaml"
        cfg.write_text(cfg.read_text().replace("epochs: 1\n", "epochs: 2\n", 1))
        return ["--run", str(copy), *base[2:]], "training.epochs: 1 -> 2"
    if case == "bad_config_key":
        copy = tmp_path / "copy"
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("data", "models"))
        (copy / "config.resolved.yaml").write_text((copy / "config.resolved.yaml").read_text() + "bogus: 1\n")
        return ["--run", str(copy), *base[2:]], "bogus"
    if case == "missing_input":
        return [*base[:2], "--input", str(tmp_path / "nope.h5"), *base[4:]], "nope.h5"
    if case == "not_hdf5":
        (tmp_path / "text.h5").write_text("not a table\n")
        return [*base[:2], "--input", str(tmp_path / "text.h5"), *base[4:]], "text.h5"
    if case == "wrong_layout":  # our processed layout: no pandas 'table' key
        proc = trained["run"].data_dir / "processed" / "qcd_test.h5"
        return [*base[:2], "--input", str(proc), *base[4:]], "key 'table'"
    if case == "labels_one_class":  # the first jets of the input are all background
        return [*base, "--labels", "--num-jets", "4"], "is_signal_new"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["not_a_run", "missing_model", "changed_config", "bad_config_key",
                                  "missing_input", "not_hdf5", "wrong_layout", "labels_one_class"])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, case):
    argv, needle = _bad(trained, tmp_path, case)
    with pytest.raises(SystemExit) as exc:
        _main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "s.h5").exists()
