"""The paper configurations as users run them (issue 15): paper_smoke.yaml differs from
paper.yaml only in sizes, both read the official file names, and (slow) the smoke configs run
end to end under horovodrun -np 2 on official-layout files written independently of our code."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _validated(package, name):
    import importlib

    from shared.config import load_config
    schema = importlib.import_module(f"{package}.schema")
    return schema.validate_config(load_config(REPO / package / "configs" / f"{name}.yaml"))


def _pick(cfg, keys):
    out = {}
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def test_permutation_ad_smoke_changes_only_sizes():
    paper, smoke = _validated("permutation_ad", "paper"), _validated("permutation_ad", "paper_smoke")
    assert smoke["model"] == paper["model"]
    arch = ["width", "num_blocks", "num_heads", "ffn_dim", "dense"]
    assert _pick(smoke["classifier"], arch) == _pick(paper["classifier"], arch)
    prep = ["data.source", "data.num_particles", "data.particle_pt_feature", "data.jet_features",
            "data.files"]
    assert _pick(smoke, prep) == _pick(paper, prep)
    assert {k for k in smoke["likelihood"] if smoke["likelihood"][k] != paper["likelihood"][k]} \
        <= {"batch_size"}
    assert paper["data"]["files"] == {"train": "train.h5", "val": "val.h5", "test": "test.h5",
                                      "zprime": "zprime_test.h5"}


def test_lhco_smoke_changes_only_sizes():
    from lhco_fullphase.schema import PREPROCESSING_KEYS
    paper, smoke = _validated("lhco_fullphase", "paper"), _validated("lhco_fullphase", "paper_smoke")
    assert smoke["model"] == paper["model"]
    arch = [k for k in paper["classifier"] if k not in ("training", "train_fraction")]
    assert _pick(smoke["classifier"], arch) == _pick(paper["classifier"], arch)
    keys = [*PREPROCESSING_KEYS, "data.num_particles", "data.jet_radius", "data.files", "windows", "kde"]
    assert _pick(smoke, keys) == _pick(paper, keys)
    assert paper["data"]["files"] == {"background": "events_anomalydetection_v2.h5",
                                      "extra_sr_background": "events_anomalydetection_qcd_extra_inneronly.h5"}
    assert paper["evaluate"]["n_signal"] is None   # all signal not injected (100k minus injections)


def _horovod_or_skip():
    if shutil.which("horovodrun") is None:
        pytest.skip("horovodrun not installed (scripts/install_horovod.sh)")


@pytest.mark.slow
@pytest.mark.horovod
@pytest.mark.parametrize("package", ["permutation_ad", "lhco_fullphase"])
def test_paper_smoke_under_horovodrun(tmp_path, package):
    """The paper architecture end to end on official-layout files, 2 ranks (≤ 15 min each on
    2 cores, measured: docs/scale.md)."""
    import json

    import official_layout
    _horovod_or_skip()
    data = tmp_path / "data"
    if package == "permutation_ad":
        official_layout.write_toptag_set(data)
        expected = ["results.json", "table1.md", "plots/fig1_permutations.png", "plots/fig5_roc.png"]
    else:
        official_layout.write_lhco_set(data)
        expected = ["results.json", "results.md", "plots/lhco_fig7_scan.png", "plots/lhco_fig4_jets.png"]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.time()
    res = subprocess.run(["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", sys.executable,
                          "-m", f"{package}.pipeline", "--config",
                          str(REPO / package / "configs" / "paper_smoke.yaml"),
                          "--data-dir", str(data), "--out", str(tmp_path / "out")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    wall = time.time() - t0
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    for rel in expected:
        assert (tmp_path / "out" / rel).is_file(), rel
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    print(f"{package} paper smoke: {wall:.0f} s wall; stages {results.get('stage_seconds')}")
