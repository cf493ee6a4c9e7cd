"""The dark-jet stand-in samples (semi-visible, two-prong, their QCD): selection window, labels,
settings in the metadata, invisible dark mesons, and seed streams of the older samples."""
import numpy as np
import pytest

from shared.data import jets as J
from shared.data import pythia_samples as ps
from shared.data import read_metadata, read_toptag
from shared.data.embedded import KINDS, embedded_key
from shared.data.generate import generate, task_seeds

pytest.importorskip("pythia8mc")


@pytest.mark.parametrize("command", ["semivisible", "twoprong"])
def test_dark_jets_in_their_window(tmp_path, command):
    path = tmp_path / f"{command}.h5"
    meta = generate(command, 4, seed=3, out=path, chunk_size=4, progress=False)
    d = read_toptag(path)
    assert np.bincount(d["label"]).tolist() == [2, 2]
    mask = d["p4"][..., 0] > 0
    k = J.jet_kinematics(d["p4"], mask)
    assert np.all((k["pt"] > 150) & (k["pt"] < 300) & (np.abs(k["eta"]) < 2)), k
    stored = read_metadata(path)
    assert stored["selection"]["pt_min"] == 150.0 and stored["selection"]["pt_max"] == 300.0
    assert meta["counts"] == {"darkqcd": 2, command: 2}
    assert "PartonLevel:MPI = on" in stored["pythia_settings"][command]
    assert "Beams:eCM = 13000.0" in stored["pythia_settings"]["darkqcd"]


def test_semivisible_dark_mesons_are_mostly_invisible():
    """r_inv: fraction of the dark mesons that stay stable (hence invisible to the detector)."""
    import awkward as ak

    from shared.data.detector import visible
    from shared.data.generate import make_pythia

    batch = make_pythia("semivisible", 5).nextBatch(20)
    ids = np.abs(ak.to_numpy(ak.flatten(batch.prt.id)))
    status = ak.to_numpy(ak.flatten(batch.prt.status))
    mesons = np.isin(ids, [4900111, 4900113, 4900211, 4900213])
    stable = mesons & (status > 0)
    r_inv = stable.sum() / mesons.sum()
    assert 0.65 < r_inv < 0.85, r_inv
    assert not visible(ids[stable]).any()                     # the detector drops them
    assert np.all(ids[mesons & (status < 0)] == 4900113)      # only the diagonal dark rho decays


def test_older_samples_keep_their_seed_streams():
    # the seed stream of each older sample is its index in the sorted list of the five samples
    # that existed before the dark-jet samples were added
    old = sorted(["lhco_qcd", "lhco_wprime", "qcd", "top", "zprime"])
    for i, name in enumerate(old):
        np.testing.assert_array_equal(task_seeds(1, name, 0), np.random.SeedSequence([1, i, 0]).generate_state(2)
                                      % np.array([900_000_000, 2**32]) + np.array([1, 0]))
    assert len({task_seeds(1, s, 0) for s in ps.SAMPLES}) == len(ps.SAMPLES)
    assert ps.command_selection("toptag") == ps.SELECTIONS["toptag"]
    keys = {embedded_key(k, 10, 1) for k in KINDS}
    assert len(keys) == len(KINDS)
    assert ps.command_selection("twoprong", {"pt_max": 280.0})["pt_max"] == 280.0


def test_cli_rejects_an_empty_dark_window_at_once(tmp_path, capsys):
    from shared.data.generate import main

    with pytest.raises(SystemExit) as exc:
        main(["twoprong", "--n", "2", "--seed", "1", "--out", str(tmp_path / "x.h5"), "--pt-min", "400"])
    assert exc.value.code == 2 and "[400.0, 300.0]" in capsys.readouterr().err
