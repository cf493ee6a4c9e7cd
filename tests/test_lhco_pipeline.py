"""lhco_fullphase end to end on a miniature synthetic run with every method (diffusion and
flow-matching generators, idealized, low-dimensional CATHODE and its idealized twin): every
artefact written and finite, the evaluation set disjoint from every training set (by event ids),
resumable stages, outputs that are redone (with a notice naming the key) when a setting they
depend on changes — and only those —, and generation that gives the same events however its
chunks are spread."""
import json
import os
import shutil

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
  generators: [diffusion, flow_matching]
  gaussian_skip: true
  jet_net: {{width: 8, num_blocks: 1, num_heads: 1, ffn_dim: 8, time_embed_dim: 4}}
  particle_net: {{width: 8, num_blocks: 1, num_heads: 1, ffn_dim: 8, time_embed_dim: 4}}
  mjj_fourier: {{num_frequencies: 2, scale: 1.0}}
flow_model:
  steps: 2
  mjj_fourier: {{num_frequencies: 2}}
  jet_net: {{width: 8, num_blocks: 1, time_embed_dim: 4}}
  particle_net: {{local_dim: 8, global_dim: 8, num_layers: 1, time_embed_dim: 4}}
training: {{epochs: 2, batch_size: 64, patience: 5, ema_decay: 0.9, progress: false,
           tensorboard: false}}
training_flow_jet: {{epochs: 2, batch_size: 64, patience: 5}}
training_flow_particle: {{epochs: 2, batch_size: 64, patience: 5, warmup_epochs: 0}}
lowdim:
  enabled: true
  flow: {{num_blocks: 2, hidden_units: [8], training: {{epochs: 2, batch_size: 64, progress: false,
                                                       tensorboard: false}}}}
  num_events: 60
  classifier: {{kind: hgb}}
sample_metrics: {{num_bootstrap: 2, fpd_num_points: 3, fpd_num_batches: 2, kpd_num_batches: 2,
                  progress: false}}
generation: {{num_events: 60, num_sb_events: 40, ddim_steps: 2, batch_size: 25}}
classifier:
  pt_rel_transform: log1m
  width: 8
  particle_blocks: 1
  jet_blocks: 1
  num_heads: 1
  ffn_dim: 8
  merge_width: 8
  head_width: 4
  training: {{epochs: 2, batch_size: 32, patience: 3, progress: false, tensorboard: false}}
weak_supervision: {{n_background_data: 20, injections: [15], num_inits: 1, idealized: true,
                    n_idealized_background: 20}}
generation_quality: {{regions: [sr], num_inits: 1, fractions: [0.5, 0.25, 0.25]}}
evaluate: {{n_signal: null, n_background: null}}
"""


def _run(root, overrides=(), out="out", **kw):
    from lhco_fullphase.schema import SCHEMA
    from shared.run import Run
    return Run.from_config(root / "tiny.yaml", root / out, SCHEMA, overrides=list(overrides),
                           data_dir=root / "data", progress=False, **kw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from lhco_fullphase import pipeline
    from shared.data.lhco import write_lhco

    root = tmp_path_factory.mktemp("lhco_pipe")
    parts, _ = synthetic_events(500, seed=5, max_particles=80)
    # Signal: a larger mass window only; labels chosen so both classes populate the SR.
    label = np.random.default_rng(1).random(500) < 0.3
    write_lhco(root / "data" / "raw.h5", parts, label.astype(np.int64))
    (root / "tiny.yaml").write_text(TINY.format(paper=os.path.abspath(PAPER)))
    r = _run(root)
    res = pipeline.run_pipeline(r)
    return r, root, res


GENERATORS = ("diffusion", "flow_matching")
METHODS = ("diffusion", "flow_matching", "idealized", "lowdim", "lowdim_idealized")


def test_every_artefact_written_and_finite(run):
    r, root, res = run
    out = str(r.out)
    for rel in ("results.json", "results.md", "results_eval.json", "generated/lowdim/sr.npz",
                "models/lowdim/flow/train_summary.json", "predictions/sic_inj15.npz", "run_info.json",
                *[f"generated/{g}/{region}.h5" for g in GENERATORS for region in ("sr", "sb")],
                *[f"models/{g}/{p}/train_summary.json" for g in GENERATORS for p in ("jet", "particle")],
                *[f"sample_metrics/{g}_sr.json" for g in GENERATORS]):
        assert os.path.isfile(os.path.join(out, rel)), rel
    assert os.path.isfile(root / "data" / "prepared" / "lowdim_features.npz")
    for fig in ("lhco_fig4_jets", "lhco_fig5_particles", "lhco_fig6_sic_roc", "lhco_fig7_scan"):
        for ext in ("png", "pdf"):
            assert os.path.getsize(os.path.join(out, "plots", f"{fig}.{ext}")) > 1000, fig
    from lhco_fullphase.artifacts import read_generated
    for gen in GENERATORS:
        g = read_generated(os.path.join(out, "generated", gen, "sr.h5"))
        assert g["attrs"]["generator"] == gen
        assert g["jets"].shape == (60, 2, 5) and g["particles"].shape == (60, 2, 8, 3)
        assert np.all(np.isfinite(g["jets"])) and np.all(np.isfinite(g["particles"]))
        np.testing.assert_array_equal(g["jets"][..., 4], g["mask"].sum(-1))
        assert np.all((g["mjj"] >= 3300) & (g["mjj"] < 3700))
        # ordered like the data: leading jet first, particles by pT_rel, padding last
        assert np.all(g["jets"][:, 0, 0] >= g["jets"][:, 1, 0])
        assert np.all(np.diff(np.where(g["mask"], g["particles"][..., 0], -1.0), axis=-1) <= 0)
        assert not os.path.exists(os.path.join(out, "generated", gen, "sr_units"))   # merged, removed
    # both generators at the same (KDE) mjj values; the flow matching one with its own solver
    a, b = (read_generated(os.path.join(out, "generated", gen, "sr.h5")) for gen in GENERATORS)
    np.testing.assert_array_equal(a["mjj"], b["mjj"])
    assert b["attrs"]["solver"] == "midpoint" and b["attrs"]["steps"] == 2
    with np.load(os.path.join(out, "generated", "lowdim", "sr.npz")) as low:
        assert low["features"].shape == (60, 4) and np.all(np.isfinite(low["features"]))
        assert np.all((low["mjj"] >= 3300) & (low["mjj"] < 3700))
    saved = json.load(open(os.path.join(out, "results.json")))
    assert saved["methods"] == list(METHODS)
    for method in METHODS:
        for n in ("15",):
            s = saved["scan"][method][n]
            assert len(s["auc"]) == 1 and all(0.0 <= a <= 1.0 for a in s["auc"])
            assert np.isfinite(s["auc_summary"]["median"])
    assert saved["scan"]["lowdim"]["15"]["n_label0"] == 60
    for gen in GENERATORS:
        for region in ("sr",):
            assert 0.0 <= saved["quality"][gen][region]["auc"][0] <= 1.0
            m = saved["sample_metrics"][gen][region]["pooled"]
            for key in ("w1_mass", "w1_efp", "fpd", "kpd"):
                assert np.isfinite(m[key]["value"]) and np.isfinite(m[key]["baseline"]), key
    assert set(saved["stage_seconds"]) >= {"prepare", "train", "sample", "classify", "evaluate",
                                           "report", "figures"}
    assert saved["missing_units"] == []
    md = open(os.path.join(out, "results.md")).read()
    assert "Scale" in md and "all SR signal not injected" in md
    assert "| paper | 2000 | 0.02 | ≈ 40 |" in md          # Fig. 7 as a table, both scales
    assert "| ours | 15 |" in md
    for label in ("| 15 | 0.750 | diffusion |", "| flow matching |", "| low-dim CATHODE |",
                  "| low-dim idealized |", "| flow matching | SR |", "0.53 ± 0.01",
                  "**flow matching, SR, jets pooled**", "| FPD |"):
        assert label in md, label


def test_evaluation_disjoint_from_every_training_set(run):
    r, root, res = run
    from lhco_fullphase.prepare import load_prepared
    from lhco_fullphase.roles import TRAINING_ROLES
    prep = load_prepared(r)
    eval_ids = np.concatenate([prep.roles["eval_bkg"], prep.roles["eval_sig"]])
    assert len(eval_ids) > 0 and len(np.unique(eval_ids)) == len(eval_ids)
    for role in TRAINING_ROLES:
        assert np.intersect1d(prep.roles[role], eval_ids).size == 0, role
    # n_signal: null = every SR signal event that is not injected
    sig = prep.take(prep.roles["eval_sig"])
    all_ids, mjj = prep.arrays["event_id"], prep.arrays["mjj"]
    sr_sig = all_ids[(prep.arrays["label"] == 1) & (mjj >= 3300) & (mjj < 3700)]
    np.testing.assert_array_equal(np.sort(np.concatenate([prep.roles["inj_pool"], sig["event_id"]])),
                                  np.sort(sr_sig))
    # What each classifier really saw (ids saved beside its scores), and what it was scored on.
    import glob
    runs = glob.glob(os.path.join(r.out, "classify", "*", "inj*", "init*", "scores.npz"))
    assert len(runs) == len(METHODS)
    for p in runs:
        with np.load(p) as d:
            assert d["train_event_id"].size > 0
            assert np.intersect1d(d["train_event_id"], d["event_id"]).size == 0
            np.testing.assert_array_equal(np.sort(d["event_id"]), np.sort(eval_ids))
    # The generators only saw side-band events.
    sb = np.concatenate([prep.roles["sb_train"], prep.roles["sb_val"]])
    mjj = prep.take(sb)["mjj"]
    assert np.all((mjj < 3300) | (mjj >= 3700))


def test_resume_skips_finished_stages(run, capsys):
    r, root, res = run
    from lhco_fullphase import pipeline
    before = os.path.getmtime(os.path.join(r.out, "generated", "diffusion", "sr.h5"))
    t0 = json.load(open(os.path.join(r.out, "stage_times.json")))
    again = _run(root)                       # a new process would see exactly this
    pipeline.run_pipeline(again, ("prepare", "train", "sample", "classify"))
    assert os.path.getmtime(os.path.join(r.out, "generated", "diffusion", "sr.h5")) == before
    t1 = json.load(open(os.path.join(r.out, "stage_times.json")))
    assert t1["classify"] - t0["classify"] < 5.0 and t1["train"] - t0["train"] < 5.0
    log = capsys.readouterr().out
    assert "models/diffusion/jet: up to date" in log and "generated/diffusion/sr.h5: up to date" in log
    for name in ("models/flow_matching/particle", "models/lowdim/flow", "generated/flow_matching/sb.h5",
                 "generated/lowdim/sr.npz", "low-dim CATHODE features lowdim_features.npz"):
        assert f"{name}: up to date" in log, name


def test_a_changed_setting_redoes_what_depends_on_it(run, capsys):
    """Fingerprints name the changed key; a classifier setting touches only the classifier
    units, a generation setting the generated events and everything after them."""
    r, root, _ = run
    from lhco_fullphase.classify import unit_artifact, units
    from lhco_fullphase.sample import generated_artifact
    from lhco_fullphase.train import generator_artifact
    other = _run(root, ["classifier.training.epochs=3"], save_config_as=None)
    u = units(other)[0]
    assert unit_artifact(r, u).matches() and not unit_artifact(other, u).matches()
    assert "classifier.training.epochs: 2 -> 3" in unit_artifact(other, u).stale_reason()
    assert generator_artifact(other, "diffusion", "jet").matches()
    assert generated_artifact(other, "diffusion", "sr").matches()
    for low in ("lowdim", "lowdim_idealized"):     # their classifier is lowdim.classifier
        assert unit_artifact(other, ("scan", low, 15, 0)).matches()
    steps = _run(root, ["generation.ddim_steps=3"], save_config_as=None)
    assert generator_artifact(steps, "diffusion", "particle").matches()
    assert "generation.ddim_steps: 2 -> 3" in generated_artifact(steps, "diffusion", "sr").stale_reason()
    assert "upstream generated" in unit_artifact(steps, ("scan", "diffusion", 15, 0)).stale_reason()
    assert unit_artifact(steps, ("scan", "idealized", 15, 0)).matches()
    assert generated_artifact(steps, "flow_matching", "sr").matches()
    assert unit_artifact(steps, ("scan", "flow_matching", 15, 0)).matches()
    # a new injection changes the signal pool (roles): not the generators or generated events
    inj = _run(root, ["weak_supervision.injections=[10]"], save_config_as=None)
    from lhco_fullphase.prepare import prepared_artifact
    assert "weak_supervision.injections" in prepared_artifact(inj).stale_reason()


def _fresh(run_, *, generators=GENERATORS):
    """{name: fresh?} of every artifact of the miniature run."""
    from lhco_fullphase.classify import unit_artifact, units
    from lhco_fullphase.sample import generated_artifact, lowdim_samples_artifact
    from lhco_fullphase.train import generator_artifact, lowdim_flow_artifact
    out = {f"model {g}/{p}": generator_artifact(run_, g, p).matches()
           for g in generators for p in ("jet", "particle")}
    out.update({f"generated {g}/{region}": generated_artifact(run_, g, region).matches()
                for g in generators for region in ("sr", "sb")})
    out.update({"/".join(map(str, u)): unit_artifact(run_, u).matches() for u in units(run_)})
    out.update({"lowdim flow": lowdim_flow_artifact(run_).matches(),
                "lowdim samples": lowdim_samples_artifact(run_).matches()})
    return out


def test_a_changed_flow_model_key_redoes_only_the_flow_matching_outputs(run):
    """Every output of the run is fresh; a flow_model sampling key makes exactly the flow-matching
    events and the units made from them stale, a particle-net key also its particle model (not its
    jet model); the diffusion generator, its scan, the idealized and low-dim methods stay."""
    r, root, _ = run
    assert all(_fresh(r).values()), [k for k, v in _fresh(r).items() if not v]
    for change, model_stale in (("flow_model.steps=3", set()),
                                ("flow_model.particle_net.local_dim=9", {"model flow_matching/particle"})):
        fresh = _fresh(_run(root, [change], save_config_as=None))
        stale = {k for k, v in fresh.items() if not v}
        assert stale == model_stale | {"generated flow_matching/sr", "generated flow_matching/sb",
                                       "scan/flow_matching/15/0", "quality/flow_matching/sr/0",
                                       "metrics/flow_matching/sr"}, (change, stale)
    # a low-dim key touches the low-dim methods only
    stale = {k for k, v in _fresh(_run(root, ["lowdim.classifier.hgb.max_iter=5"], save_config_as=None)).items()
             if not v}
    assert stale == {"scan/lowdim/15/0", "scan/lowdim_idealized/15/0"}
    stale = {k for k, v in _fresh(_run(root, ["lowdim.flow.num_blocks=3"], save_config_as=None)).items()
             if not v}
    assert stale == {"lowdim flow", "lowdim samples", "scan/lowdim/15/0"}
    # a generator left out of the list leaves the other's outputs as they are
    only = _run(root, ["model.generators=[flow_matching]"], save_config_as=None)
    assert all(_fresh(only, generators=("flow_matching",)).values())


def test_a_changed_window_or_preprocessing_redoes_prepare(run, tmp_path, capsys):
    """Another window or preprocessing key: prepared/ is made again with a one-line notice
    naming the key; the dijet cache (made from the raw file alone) is reused."""
    r, root, _ = run
    from lhco_fullphase.prepare import prepare
    shutil.copy(root / "tiny.yaml", tmp_path / "tiny.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(root / "data" / "raw.h5", tmp_path / "data" / "raw.h5")
    base = prepare(_run(tmp_path))
    assert base.pre.jet_phi == "dijet_frame"
    capsys.readouterr()
    changes = []
    for key, value in (("data.jet_phi", "raw"), ("windows.sr", "[3300.0, 3650.0]")):
        changes.append(f"{key}={value}")
        prep = prepare(_run(tmp_path, changes, save_config_as=None))
        log = capsys.readouterr().out
        assert f"prepared data: {key}:" in log and "making it again" in log, log
        assert "dijet cache background_raw_P8.h5: up to date" in log
        assert prep.pre.jet_phi == "raw"
    assert prep.info["events"]["sr"] < base.info["events"]["sr"]          # a narrower SR
    # an unknown value is a config error naming the key, before any work
    from shared.errors import ConfigError
    with pytest.raises(ConfigError, match="data.jet_phi"):
        _run(tmp_path, ["data.jet_phi=sincos"], save_config_as=None)


def test_sample_in_two_shards_equals_one_process(run):
    """Chunks generated by two shards and merged = the single-process pipeline's file."""
    r, root, _ = run
    from lhco_fullphase import artifacts
    from lhco_fullphase.sample import sample
    out2 = root / "out_shards"
    shutil.copytree(r.out / "models", out2 / "models")
    for k in (0, 1):
        assert sample(_run(root, out="out_shards", shard=(k, 2)), which=["diffusion"]) is None
    assert sorted(p.name for p in artifacts.generated_units_dir(out2, "diffusion", "sr").iterdir()
                  if p.suffix == ".npz") == ["00000.npz", "00001.npz", "00002.npz"]
    # nothing left to generate: merges
    merged = sample(_run(root, out="out_shards"), which=["diffusion"])
    for region in ("sr", "sb"):
        a = artifacts.read_generated(artifacts.generated_path(r.out, "diffusion", region))
        b = artifacts.read_generated(merged[("diffusion", region)])
        assert set(a) == set(b)
        for key in a:
            if key != "attrs":
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{region}/{key}")
        assert a["attrs"]["n_clipped"] == b["attrs"]["n_clipped"]


def test_role_overlap_is_detected():
    from lhco_fullphase.roles import check_roles
    with pytest.raises(ValueError, match="share 1 events"):
        check_roles({"data_bkg": np.array([1, 2, 3]), "eval_bkg": np.array([3, 4])})


def test_too_few_events_for_a_role_names_the_key():
    from lhco_fullphase.roles import assign_roles
    from shared.errors import ConfigError
    rng = np.random.default_rng(0)
    n = 400
    arrays = {"event_id": np.arange(n), "label": (rng.random(n) < 0.3).astype(int),
              "mjj": rng.uniform(3300, 3700, n)}
    cfg = {"windows": {"sr": [3300, 3700], "sb": [[2300, 3300]], "sb_train_fraction": 0.6,
                       "split_seed": 0},
           "weak_supervision": {"n_background_data": 50, "injections": [10, 20],
                                "n_idealized_background": 50},
           "evaluate": {"n_signal": None, "n_background": None}}
    roles = assign_roles(arrays, cfg, has_extra=False, source="x.yaml")
    n_sig = int(arrays["label"].sum())
    assert len(roles["inj_pool"]) == 20 and len(roles["eval_sig"]) == n_sig - 20
    cfg["evaluate"]["n_signal"] = n_sig      # + the injected signal: more than there is
    with pytest.raises(ConfigError, match="x.yaml: key 'evaluate.n_signal'"):
        assign_roles(arrays, cfg, has_extra=False, source="x.yaml")


def test_diagnose_ranks_observables_of_the_generated_events(run):
    from lhco_fullphase.artifacts import diagnose_path, sample_metrics_path
    from lhco_fullphase.diagnose import diagnose, format_table
    r, _, _ = run
    res = diagnose(r, "sb", generator="flow_matching")
    assert os.path.isfile(diagnose_path(r.out, "flow_matching", "sb"))
    # the SB sample metrics were not made by the classify stage (regions: sr): made here, kept
    assert os.path.isfile(sample_metrics_path(r.out, "flow_matching", "sb"))
    assert set(res["sample_metrics"]) == {"pooled", "j0", "j1"}
    names = [x["observable"] for x in res["observables"]]
    assert {"dphi_jj", "mjj_jets/mjj", "j0_m_stored/m", "j1_centroid_dphi"} <= set(names)
    gaps = [abs(x["auc"] - 0.5) for x in res["observables"]]
    assert gaps == sorted(gaps, reverse=True) and 0.0 <= res["auc_all"] <= 1.0
    assert "mjj_jets/mjj" in format_table(res) and "| FPD |" in format_table(res)


def test_diagnose_observables_of_true_events():
    from lhco_fullphase.diagnose import observables
    from lhco_fullphase.events import cluster_dijets
    parts, _ = synthetic_events(30, seed=2)
    a, keep = cluster_dijets(parts, num_particles=30)
    o = observables(a)
    np.testing.assert_allclose(o["mjj_jets/mjj"], 1.0, rtol=1e-6)  # jets sum to the event's mjj
    assert np.all(o["pt_j1/pt_j0"] <= 1.0) and np.all(o["j0_m_stored/m"] <= 1.0 + 1e-6)
    assert np.all((o["dphi_jj"] >= 0) & (o["dphi_jj"] <= np.pi))


def test_plot_sic_draws_curves_from_files_and_the_scan_from_a_run_folder(run, tmp_path):
    """plots/plot_sic.py: prediction files -> SIC curves; an lhco run folder -> Fig. 7."""
    import subprocess
    import sys
    r, _, _ = run
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3")
    script = os.path.join(repo, "plots", "plot_sic.py")
    files = subprocess.run([sys.executable, script, str(r.out / "predictions" / "sic_inj15.npz"),
                            "--out", str(tmp_path / "sic")], env=env, capture_output=True, text=True)
    assert files.returncode == 0, files.stderr[-2000:]
    assert os.path.getsize(tmp_path / "sic.png") > 1000
    scan = subprocess.run([sys.executable, script, str(r.out), "--out", str(tmp_path / "scan")],
                          env=env, capture_output=True, text=True)
    assert scan.returncode == 0, scan.stderr[-2000:]
    assert os.path.getsize(tmp_path / "scan.pdf") > 1000
    bad = subprocess.run([sys.executable, script, str(r.out), str(tmp_path / "sic.png")],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
