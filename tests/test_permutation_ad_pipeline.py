"""Miniature permutation_ad pipeline (tiny.yaml: synthetic jets, tiny nets, 1 epoch): every
artefact is written and finite, and a second call resumes without retraining."""
import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "permutation_ad", "configs", "tiny.yaml")


def _numbers(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _numbers(v)
    elif isinstance(node, list):
        for v in node:
            yield from _numbers(v)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield node


def test_tiny_pipeline_end_to_end(tmp_path):
    from permutation_ad import figures, pipeline
    from permutation_ad.schema import SCHEMA
    from shared.run import Run

    out = str(tmp_path / "run")
    run = Run.from_config(TINY, out, SCHEMA, progress=False)
    res = pipeline.run_pipeline(run)

    for f in ("results.json", "table1.md", "stage_times.json", "config.resolved.yaml",
              "predictions/sic_top.npz", "predictions/sic_zprime.npz", "predictions/roc_top.npz",
              "eval/permutation.json", "classifier/predictions.npz"):
        assert os.path.isfile(os.path.join(out, f)), f
    for fig in figures.FIGURES:
        for ext in ("png", "pdf"):
            path = os.path.join(out, "plots", f"{fig}.{ext}")
            assert os.path.getsize(path) > 1000, path
    for s in ("qcd", "top"):
        for o in ("standard", "likelihood"):
            d = os.path.join(out, "models", f"{s}_{o}")
            assert os.path.isfile(os.path.join(d, "preprocessor.json"))
            with np.load(os.path.join(out, "eval", f"loglik_{s}_{o}.npz")) as ll:
                for t in ("qcd", "top", "zprime"):
                    assert len(ll[f"logp_{t}"]) == 24 and np.all(np.isfinite(ll[f"logp_{t}"]))
                    assert ll[f"nfe_{t}"].min() > 0

    with open(os.path.join(out, "results.json")) as fh:
        disk = json.load(fh)
    assert all(math.isfinite(x) for x in _numbers(disk))
    for sig in ("top", "zprime"):
        for o in ("standard", "likelihood"):
            m = disk["unsupervised"][sig][o]["nll_per_particle"]
            assert 0.0 <= m["auc"] <= 1.0
    assert 0.0 <= disk["density_ratio"]["standard"]["auc"] <= 1.0
    assert 0.0 <= disk["supervised"]["same_jets_as_likelihood"]["auc"] <= 1.0
    perm = disk["permutation_test"]
    assert np.asarray(perm["nll"]).shape == (3, 3) and isinstance(perm["all_within_3sigma"], bool)
    noise = disk["likelihood_estimator"]
    assert noise["repeats"] == 3 and noise["divergence"] == "hutchinson"
    assert noise["per_jet_std_nats"] > 0
    assert noise["per_jet_std_nats_per_particle"] == pytest.approx(
        noise["per_jet_std_nats"] / perm["num_particles"])
    assert set(disk["stage_seconds"]) >= {"prepare", "train", "classify", "evaluate", "report", "figures"}
    table = open(os.path.join(out, "table1.md")).read()
    assert "simulated stand-in data" in table.lower() and "0.852" in table and "| Top | ours |" in table
    assert "| Top | paper revision | 1.77 (1.71)" in table
    assert res["acceptance"] == disk["acceptance"]

    # resume: nothing retrained, metrics identical
    summary = os.path.join(out, "models", "qcd_standard", "train_summary.json")
    before = os.path.getmtime(summary)
    again = pipeline.run_pipeline(run, ("prepare", "train", "classify", "evaluate", "report"))
    assert os.path.getmtime(summary) == before
    assert again["unsupervised"] == disk["unsupervised"]


def test_tiny_pipeline_baselines_stage(tmp_path):
    """The baselines stage on a run's own jets, the diffusion NLL/N beside them in the table."""
    from permutation_ad import pipeline
    from permutation_ad.schema import SCHEMA
    from shared.run import Run

    over = ["model.samples=[qcd]", "model.objectives=[standard]", "baselines.enabled=true",
            "baselines.run=[kmeans, observables]", "baselines.kmeans.k=4",
            "baselines.dark_jets.enabled=false", "baselines.figures=false"]
    run = Run.from_config(TINY, tmp_path / "run", SCHEMA, overrides=over, progress=False)
    res = pipeline.run_pipeline(run, ("prepare", "train", "evaluate", "baselines", "report"))
    table = (tmp_path / "run" / "baselines" / "baselines.md").read_text()
    assert "MinD" in table and "NLL/N" in table and "jet mass" in table
    assert "baselines" in res and res["baselines"]
