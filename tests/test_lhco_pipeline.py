"""lhco_fullphase end to end on a miniature synthetic run: every artefact written and finite,
the evaluation set disjoint from every training set (by event ids), resumable stages."""
import json
import os

import numpy as np
import pytest

from lhco_synthetic import synthetic_events

PAPER = os.path.join(os.path.dirname(__file__), "..", "lhco_fullphase", "configs", "paper.yaml")

TINY = """
base: {paper}
seed: 3
data: {{source: files, files: {{background: raw.h5, extra_sr_background: null}}, chunksize: 300,
        num_particles: 8, pt_rel_transform: log, jet_pt_fraction: true,
        jet_phi: dijet_frame, jet_centroid: true, jet_mass_fraction: true}}
model:
  gaussian_skip: true
  jet_net: {{width: 8, num_blocks: 1, num_heads: 1, ffn_dim: 8, time_embed_dim: 4}}
  particle_net: {{width: 8, num_blocks: 1, num_heads: 1, ffn_dim: 8, time_embed_dim: 4}}
  mjj_fourier: {{num_frequencies: 2, scale: 1.0}}
training: {{epochs: 2, batch_size: 64, patience: 5, ema_decay: 0.9, progress: false}}
generation: {{num_events: 60, num_sb_events: 40, ddim_steps: 2, batch_size: 100}}
classifier:
  pt_rel_transform: log1m
  width: 8
  particle_blocks: 1
  jet_blocks: 1
  num_heads: 1
  ffn_dim: 8
  merge_width: 8
  head_width: 4
  training: {{epochs: 2, batch_size: 32, patience: 3, progress: false}}
weak_supervision: {{n_background_data: 20, injections: [15], num_inits: 1, idealized: true,
                    n_idealized_background: 20}}
generation_quality: {{regions: [sr], num_inits: 1, fractions: [0.5, 0.25, 0.25]}}
evaluate: {{n_signal: null, n_background: null}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from lhco_fullphase import pipeline
    from shared.config import load_config
    from shared.data.lhco import write_lhco

    root = tmp_path_factory.mktemp("lhco_pipe")
    parts, _ = synthetic_events(500, seed=5, max_particles=80)
    # Signal: a larger mass window only; labels chosen so both classes populate the SR.
    label = np.random.default_rng(1).random(500) < 0.3
    write_lhco(root / "data" / "raw.h5", parts, label.astype(np.int64))
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(TINY.format(paper=os.path.abspath(PAPER)))
    cfg = load_config(cfg_path, out=root / "out")
    out = str(root / "out")
    res = pipeline.run(cfg, out, data_dir=str(root / "data"), progress=False)
    return cfg, out, str(root / "data"), res


def test_every_artefact_written_and_finite(run):
    cfg, out, data_dir, res = run
    for rel in ("results.json", "results.md", "results_eval.json", "generated/sr.h5", "generated/sb.h5",
                "models/jet/train_summary.json", "models/particle/train_summary.json",
                "predictions/sic_inj15.npz"):
        assert os.path.isfile(os.path.join(out, rel)), rel
    for fig in ("lhco_fig4_jets", "lhco_fig5_particles", "lhco_fig6_sic_roc", "lhco_fig7_scan"):
        for ext in ("png", "pdf"):
            assert os.path.getsize(os.path.join(out, "plots", f"{fig}.{ext}")) > 1000, fig
    from lhco_fullphase.sample import read_generated
    g = read_generated(os.path.join(out, "generated", "sr.h5"))
    assert g["jets"].shape == (60, 2, 5) and g["particles"].shape == (60, 2, 8, 3)
    assert np.all(np.isfinite(g["jets"])) and np.all(np.isfinite(g["particles"]))
    np.testing.assert_array_equal(g["jets"][..., 4], g["mask"].sum(-1))
    assert np.all((g["mjj"] >= 3300) & (g["mjj"] < 3700))
    # ordered like the data: leading jet first, particles by pT_rel, padding last
    assert np.all(g["jets"][:, 0, 0] >= g["jets"][:, 1, 0])
    assert np.all(np.diff(np.where(g["mask"], g["particles"][..., 0], -1.0), axis=-1) <= 0)
    saved = json.load(open(os.path.join(out, "results.json")))
    for method in ("diffusion", "idealized"):
        for n in ("15",):
            s = saved["scan"][method][n]
            assert len(s["auc"]) == 1 and all(0.0 <= a <= 1.0 for a in s["auc"])
            assert np.isfinite(s["auc_summary"]["median"])
    for region in ("sr",):
        assert 0.0 <= saved["quality"][region]["auc"][0] <= 1.0
    assert set(saved["stage_seconds"]) >= {"prepare", "train_jet", "train_particle", "scan", "plots"}
    assert "Scale" in open(os.path.join(out, "results.md")).read()


def test_evaluation_disjoint_from_every_training_set(run):
    cfg, out, data_dir, res = run
    from lhco_fullphase.prepare import TRAINING_ROLES, Prepared
    prep = Prepared(data_dir)
    eval_ids = np.concatenate([prep.roles["eval_bkg"], prep.roles["eval_sig"]])
    assert len(eval_ids) > 0 and len(np.unique(eval_ids)) == len(eval_ids)
    for role in TRAINING_ROLES:
        assert np.intersect1d(prep.roles[role], eval_ids).size == 0, role
    # What each classifier really saw (ids saved beside its scores), and what it was scored on.
    import glob
    runs = glob.glob(os.path.join(out, "classify", "*", "inj*", "init*", "scores.npz"))
    assert len(runs) == 2
    for p in runs:
        with np.load(p) as d:
            assert d["train_event_id"].size > 0
            assert np.intersect1d(d["train_event_id"], d["event_id"]).size == 0
            np.testing.assert_array_equal(np.sort(d["event_id"]), np.sort(eval_ids))
    # The generators only saw side-band events.
    sb = np.concatenate([prep.roles["sb_train"], prep.roles["sb_val"]])
    mjj = prep.take(sb)["mjj"]
    assert np.all((mjj < 3300) | (mjj >= 3700))


def test_resume_skips_finished_stages(run):
    cfg, out, data_dir, res = run
    from lhco_fullphase import pipeline
    before = os.path.getmtime(os.path.join(out, "generated", "sr.h5"))
    t0 = json.load(open(os.path.join(out, "stage_times.json")))
    pipeline.run(cfg, out, data_dir=data_dir, stages=("sample_sr", "scan"), progress=False)
    assert os.path.getmtime(os.path.join(out, "generated", "sr.h5")) == before
    t1 = json.load(open(os.path.join(out, "stage_times.json")))
    assert t1["scan"] - t0["scan"] < 5.0


def test_role_overlap_is_detected():
    from lhco_fullphase.prepare import check_roles
    with pytest.raises(ValueError, match="share 1 events"):
        check_roles({"data_bkg": np.array([1, 2, 3]), "eval_bkg": np.array([3, 4])})


def test_prepared_data_with_other_settings_is_refused(run):
    import copy

    from lhco_fullphase.prepare import prepare
    cfg, _, data_dir, _ = run
    assert prepare(cfg, data_dir, progress=False)["preprocessor"]["jet_pt_fraction"] is True
    for key, value in (("jet_pt_fraction", False), ("jet_phi", "raw"), ("jet_mass_fraction", False)):
        other = copy.deepcopy(cfg)
        other["data"][key] = value
        with pytest.raises(ValueError, match=key):
            prepare(other, data_dir, progress=False)
    other = copy.deepcopy(cfg)
    other["data"]["jet_phi"] = "sincos"
    with pytest.raises(ValueError, match="data.jet_phi"):
        prepare(other, data_dir, progress=False)


def test_diagnose_ranks_observables_of_the_generated_events(run):
    from lhco_fullphase.diagnose import diagnose, format_table
    cfg, out, data_dir, _ = run
    res = diagnose(cfg, out, "sb", data_dir)
    assert os.path.isfile(os.path.join(out, "diagnose_sb.json"))
    names = [r["observable"] for r in res["observables"]]
    assert {"dphi_jj", "mjj_jets/mjj", "j0_m_stored/m", "j1_centroid_dphi"} <= set(names)
    gaps = [abs(r["auc"] - 0.5) for r in res["observables"]]
    assert gaps == sorted(gaps, reverse=True) and 0.0 <= res["auc_all"] <= 1.0
    assert "mjj_jets/mjj" in format_table(res)


def test_diagnose_observables_of_true_events():
    from lhco_fullphase import data as D
    from lhco_fullphase.diagnose import observables
    parts, _ = synthetic_events(30, seed=2)
    a, keep = D.cluster_dijets(parts, num_particles=30)
    o = observables(a)
    np.testing.assert_allclose(o["mjj_jets/mjj"], 1.0, rtol=1e-6)  # jets sum to the event's mjj
    assert np.all(o["pt_j1/pt_j0"] <= 1.0) and np.all(o["j0_m_stored/m"] <= 1.0 + 1e-6)
    assert np.all((o["dphi_jj"] >= 0) & (o["dphi_jj"] <= np.pi))
