"""Every lhco_fullphase entry point answers bad input with one line and exit code 2 (no
traceback), before any data or TensorFlow work: a missing config file, a typo'd key."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PAPER = os.path.join(ROOT, "lhco_fullphase", "configs", "paper.yaml")
ENTRY_POINTS = ("prepare", "train", "sample", "classify", "evaluate", "diagnose", "pipeline")


def _run_all(argvs, tmp_path):
    """Start every command at once (they are independent), then collect them."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]
    return [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]


def _one_line_error(rc, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, (rc, err)
    assert lines[0].startswith("error: ") and all(n in lines[0] for n in needles), lines[0]


def test_missing_config_is_one_line_exit_2(tmp_path):
    results = _run_all([["-m", f"lhco_fullphase.{m}", "--config", "missing.yaml", "--out", "o"]
                        for m in ENTRY_POINTS], tmp_path)
    for module, (rc, out, err) in zip(ENTRY_POINTS, results):
        _one_line_error(rc, err, "missing.yaml", "not found")


@pytest.mark.parametrize("override, key", [("data.n_trian=1", "data.n_trian"),
                                           ("training.epochs=abc", "training.epochs"),
                                           ("flow_model.particle_net.width=3", "flow_model.particle_net.width"),
                                           ("lowdim.flow.blocks=3", "lowdim.flow.blocks"),
                                           ("model.generators=[diffusion, gan]", "model.generators[1]"),
                                           ("train.epochs=3", "train"),
                                           ("generation.chunk_size=1500", "generation.chunk_size")])
def test_typo_or_wrong_type_names_the_key(tmp_path, override, key):
    modules = ENTRY_POINTS if override == "data.n_trian=1" else ("pipeline",)
    results = _run_all([["-m", f"lhco_fullphase.{m}", "--config", PAPER, "--out", "o",
                         "--set", override] for m in modules], tmp_path)
    for module, (rc, out, err) in zip(modules, results):
        _one_line_error(rc, err, PAPER, f"'{key}'")
    assert not (tmp_path / "o" / "data").exists()       # nothing started


def test_figure_wrapper_without_a_run_is_one_line_exit_2(tmp_path):
    (rc, out, err), = _run_all([[os.path.join(ROOT, "plots", "lhco_fig7_scan.py"), "--run",
                                 str(tmp_path / "none")]], tmp_path)
    _one_line_error(rc, err, "results_eval.json")


def test_every_paper_key_is_in_the_schema():
    """paper.yaml and demo.yaml validate; the resolved paper config keeps its values."""
    from lhco_fullphase.schema import validate_config
    from shared.config import load_config
    paper, cfg = (validate_config(load_config(os.path.join(ROOT, "lhco_fullphase", "configs", f"{name}.yaml")))
                  for name in ("paper", "demo"))
    assert paper["evaluate"]["n_signal"] is None            # all signal that is not injected
    assert cfg["evaluate"]["n_signal"] == 1000
    assert cfg["model"]["generators"] == ["diffusion", "flow_matching"] and cfg["lowdim"]["enabled"]
    assert cfg["training_jet"] == {"epochs": 200, "patience": 40}      # demo: only its overrides
    assert paper["flow_model"]["steps"] == 250 and cfg["flow_model"]["steps"] == 50
    assert paper["lowdim"]["flow"]["num_blocks"] == 15 and cfg["lowdim"]["classifier"]["kind"] == "hgb"
    assert cfg["model"]["jet_net"]["mjj_fourier"] == {"scale": 1.0, "include_input": True}


def test_every_key_of_the_new_sections_is_validated():
    """Unknown keys and bad values in flow_model, training_flow_*, lowdim, sample_metrics and
    model.generators are a ConfigError naming the dotted key."""
    from lhco_fullphase.schema import FM_SOLVERS, validate_config
    from shared.config import load_config
    from shared.diffusion.flow_matching import SOLVERS
    from shared.errors import ConfigError
    assert set(FM_SOLVERS) == set(SOLVERS)
    base = load_config(PAPER)
    bad = {"flow_model": {"solver": "rk45"}, "training_flow_particle": {"epoch": 1},
           "lowdim": {"classifier": {"hgb": {"max_depth": 3}}}, "sample_metrics": {"max_jet": 3},
           "model": {"generators": ["diffusion", "diffusion"]}}
    keys = {"flow_model": "flow_model.solver", "training_flow_particle": "training_flow_particle.epoch",
            "lowdim": "lowdim.classifier.hgb.max_depth", "sample_metrics": "sample_metrics.max_jet",
            "model": "model.generators"}
    for section, value in bad.items():
        cfg = dict(base)
        cfg[section] = {**dict(base.get(section) or {}), **value}
        with pytest.raises(ConfigError, match=f"'{keys[section]}'"):
            validate_config(cfg, source="x.yaml")
