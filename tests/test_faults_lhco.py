"""Never a silently wrong result, lhco_fullphase (issue 14): events without particles, a raw file
changed under a finished prepare, a file without any dijet event, and figures of events from a
generator that was retrained since. No training: the generator folders are only fingerprinted."""
import os

import numpy as np
import pytest

from lhco_synthetic import synthetic_events
from test_lhco_pipeline import PAPER, TINY

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PAD_DISTRIBUTED", "none")


def _raw(path, seed, n=300, one_particle=False):
    from shared.data.lhco import write_lhco
    parts, _ = synthetic_events(n, seed=seed, max_particles=80)
    if one_particle:                       # one particle per event: never two jets
        parts[:, 1:] = 0.0
    label = (np.random.default_rng(seed).random(n) < 0.3).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_lhco(path, parts, label)


def _run(root, overrides=()):
    from lhco_fullphase.schema import SCHEMA
    from shared.run import Run
    (root / "tiny.yaml").write_text(TINY.format(paper=os.path.abspath(PAPER)))
    return Run.from_config(root / "tiny.yaml", root / "out", SCHEMA, overrides=list(overrides),
                           data_dir=root / "data", progress=False, save_config_as=None)


def test_events_without_particles_are_dropped_like_events_without_two_jets():
    """A chunk in which no event keeps two jets (here: all empty) used to end in an awkward
    IndexError; mixed chunks drop the empty events."""
    from lhco_fullphase.events import cluster_dijets
    parts, _ = synthetic_events(6, seed=1, max_particles=80)
    parts[[2, 4]] = 0.0
    arrays, keep = cluster_dijets(parts, 8)
    assert keep.tolist() == [True, True, False, True, False, True]
    assert arrays["jets"].shape == (4, 2, 5)
    arrays, keep = cluster_dijets(np.zeros_like(parts), 8)
    assert not keep.any()
    assert {k: v.shape[0] for k, v in arrays.items()} == {"jets": 0, "particles": 0, "mask": 0, "mjj": 0}


def test_prepare_follows_the_raw_file(tmp_path, capsys):
    """Another file under the same name: the dijet cache and the prepared data are made again
    with a notice naming the input (prepare used to compare only preprocessing keys)."""
    from lhco_fullphase import artifacts
    from lhco_fullphase.prepare import prepare
    _raw(tmp_path / "data" / "raw.h5", seed=5)
    first = prepare(_run(tmp_path)).arrays["mjj"].copy()
    capsys.readouterr()
    prepare(_run(tmp_path))
    assert "dijet cache background_raw_P8.h5: up to date" in capsys.readouterr().out
    _raw(tmp_path / "data" / "raw.h5", seed=6)
    prep = prepare(_run(tmp_path))
    log = capsys.readouterr().out
    assert "dijet cache background_raw_P8.h5: input" in log and "raw.h5" in log, log
    assert "making it again" in log
    assert not np.array_equal(prep.arrays["mjj"], first)
    cache = artifacts.read_dijet_cache(artifacts.dijet_cache_path(tmp_path / "data", "background",
                                                                  "raw.h5", 8))
    np.testing.assert_array_equal(np.sort(cache["mjj"]), np.sort(prep.arrays["mjj"]))


def test_a_file_without_any_dijet_event_is_one_error_naming_it(tmp_path):
    from lhco_fullphase.prepare import prepare
    from shared.errors import DataFormatError
    _raw(tmp_path / "data" / "raw.h5", seed=5, n=50, one_particle=True)
    with pytest.raises(DataFormatError, match=r"raw\.h5: field 'events': no event has two jets"):
        prepare(_run(tmp_path))


def test_figures_refuse_events_of_a_generator_trained_again(tmp_path):
    """generated/diffusion/sr.h5 records the generator it came from; once the jet net is made again
    with another setting, the figures stop with one error naming both, instead of drawing the
    old generator's events."""
    from lhco_fullphase import artifacts
    from lhco_fullphase.figures import lhco_fig4_jets
    from lhco_fullphase.prepare import prepare
    from lhco_fullphase.sample import generated_artifact
    from lhco_fullphase.schema import PARTS
    from lhco_fullphase.train import generator_artifact
    from shared.errors import UsageError
    from shared.run import outdated_inputs
    _raw(tmp_path / "data" / "raw.h5", seed=5)
    run = _run(tmp_path)
    prepare(run)
    for part in PARTS:                      # "trained": fingerprinted and finished
        art = generator_artifact(run, "diffusion", part)
        run.start(art)
        artifacts.train_summary_path(art.path).write_text("{}")
    gen = generated_artifact(run, "diffusion", "sr")
    n, p = 4, 8
    artifacts.write_generated(gen.path, {"jets": np.ones((n, 2, 5), np.float32),
                                         "particles": np.zeros((n, 2, p, 3), np.float32),
                                         "mask": np.ones((n, 2, p), bool),
                                         "mjj": np.full(n, 3500.0)}, {"region": "sr"})
    gen.record()
    assert outdated_inputs(gen.path) is None
    again = _run(tmp_path, ["training_jet.epochs=5"])
    assert not again.start(generator_artifact(again, "diffusion", "jet"))   # stale: removed, fingerprinted anew
    with pytest.raises(UsageError, match=r"generated/diffusion/sr\.h5.*models/diffusion/jet.*sample stage"):
        lhco_fig4_jets(run.out, tmp_path / "fig4", tmp_path / "data")
