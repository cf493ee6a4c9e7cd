"""lhco_fullphase.model: generator losses, symmetries, sampling shapes (tiny nets, no training)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lhco_fullphase.model import DijetDiffusion

CFG = {"sde": {"name": "vpsde"}, "prediction": "eps",
       "jet_net": {"width": 16, "num_blocks": 1, "num_heads": 2, "ffn_dim": 32, "time_embed_dim": 8},
       "particle_net": {"width": 16, "num_blocks": 1, "num_heads": 2, "ffn_dim": 32, "time_embed_dim": 8},
       "mjj_fourier": {"num_frequencies": 4, "scale": 1.0}}
P = 6


def _batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, P + 1, size=(b, 2))
    mask = (np.arange(P)[None, None] < n[..., None]).astype(np.float32)
    return {"jets": rng.normal(size=(b, 2, 5)).astype(np.float32),
            "particles": (rng.normal(size=(b, 2, P, 3)) * mask[..., None]).astype(np.float32),
            "mask": mask, "mjj": rng.uniform(-1, 1, b).astype(np.float32)}


def test_loss_gradients_and_equivariance():
    keras.utils.set_random_seed(0)
    m = DijetDiffusion(CFG, num_particles=P, n_dequant=0.1)
    b = _batch()
    with tf.GradientTape() as tape:
        loss = m.compute_batch_loss({k: tf.constant(v) for k, v in b.items()})
    grads = tape.gradient(loss, m.trainable_variables)
    assert np.isfinite(float(loss)) and all(g is not None for g in grads)
    ej, ep = m(b)
    assert ej.shape == (4, 2, 5) and ep.shape == (8, P, 3)
    assert np.all(ep.numpy().reshape(4, 2, P, 3)[b["mask"] == 0] == 0)
    # Swapping the jets swaps the jet-model outputs and the per-jet particle outputs.
    sw = {k: (v[:, ::-1].copy() if k != "mjj" else v) for k, v in b.items()}
    ej2, ep2 = m(sw)
    np.testing.assert_allclose(ej2.numpy(), ej.numpy()[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(ep2.numpy().reshape(4, 2, P, 3), ep.numpy().reshape(4, 2, P, 3)[:, ::-1],
                               atol=1e-5)


@pytest.mark.parametrize("num_jet_features", [5, 6])
def test_sampling_shapes_and_mask_from_multiplicity(num_jet_features):
    keras.utils.set_random_seed(1)
    m = DijetDiffusion({**CFG, "gaussian_skip": num_jet_features == 6}, num_particles=P,
                       num_jet_features=num_jet_features)
    out = m.sample(np.array([0.0, 0.5, -0.3], np.float32),
                   n_from_jets=lambda j: np.array([[1, 3], [6, 9], [2, 0]]), steps=3, second_order=True)
    assert out["jets"].shape == (3, 2, num_jet_features) and out["particles"].shape == (3, 2, P, 3)
    np.testing.assert_array_equal(out["mask"].sum(-1), [[1, 3], [6, 6], [2, 1]])
    assert np.all(out["particles"][~out["mask"]] == 0)
    assert np.all(np.isfinite(out["particles"]))


def test_sampler_choice_reaches_the_shared_samplers():
    keras.utils.set_random_seed(1)
    m = DijetDiffusion(CFG, num_particles=P, num_jet_features=5)
    mjj = np.array([0.0, 0.5], np.float32)

    def n_fn(j):
        return np.array([[2, 3], [4, 1]])

    heun = m.sample(mjj, n_fn, steps=3, second_order=True, seed=4)
    same = m.sample(mjj, n_fn, steps=3, seed=4, solver="ddim_heun")
    np.testing.assert_array_equal(heun["jets"], same["jets"])      # None = DDIM + Heun
    for solver in ("ddim", "dpm_solver_2m"):
        other = m.sample(mjj, n_fn, steps=3, seed=4, solver=solver)
        assert np.all(np.isfinite(other["jets"])) and not np.allclose(other["jets"], heun["jets"])


def test_single_part_trains_only_its_net():
    keras.utils.set_random_seed(2)
    b = {k: tf.constant(v) for k, v in _batch().items()}
    for part, net in (("jet", "jet_net"), ("particle", "particle_net")):
        m = DijetDiffusion(CFG, num_particles=P, n_dequant=0.1, parts=(part,))
        m(b)
        own = {id(v) for v in getattr(m, net).trainable_variables}
        assert own and {id(v) for v in m.trainable_variables} == own
        other = "particle_net" if net == "jet_net" else "jet_net"
        assert getattr(m, other) is None            # not even built: not in the part's checkpoint
        wider = {**CFG, other[:-4] + "_net": {**CFG[other], "width": 24}}
        m2 = DijetDiffusion(wider, num_particles=P, n_dequant=0.1, parts=(part,))
        m2(b)
        assert [tuple(v.shape) for v in m2.weights] == [tuple(v.shape) for v in m.weights]
        with tf.GradientTape() as tape:
            loss = m.compute_batch_loss(b)
        grads = tape.gradient(loss, m.trainable_variables)
        assert np.isfinite(float(loss)) and all(g is not None for g in grads)
    # The jet-only loss never reads the particles.
    m = DijetDiffusion(CFG, num_particles=P, parts=("jet",))
    tf.random.set_seed(5)
    l1 = float(m.compute_batch_loss({"jets": b["jets"], "mjj": b["mjj"]}))
    assert np.isfinite(l1)


def test_generated_events_ordered_and_mjj_enforced():
    """generate_events on a stand-in generator that returns real events with the leading jet's
    pT off by 30 % (network space): output pT-ordered, mjj restored only with enforce_mjj."""
    from lhco_fullphase.events import cluster_dijets, dijet_mass
    from lhco_fullphase.preprocess import Preprocessor
    from lhco_fullphase.sample import generate_events
    from lhco_synthetic import synthetic_events
    parts, _ = synthetic_events(40, seed=4)
    a, _ = cluster_dijets(parts, num_particles=P)
    pre = Preprocessor(pt_rel_transform="log", jet_phi="dijet_frame", jet_pt_fraction=True,
                         jet_centroid=True, jet_mass_fraction=True).fit(a["jets"], a["particles"], a["mask"], a["mjj"])
    jx, px, _ = pre.transform(a["jets"], a["particles"], a["mask"], a["mjj"])
    jx[:, 0, 0] += np.log(1.3) / pre.jet_std[0]
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(P)                            # generated sets come unordered

    class StandIn:
        num_particles = P

        def sample(self, mx, n_from_jets, steps, second_order=True, seed=0, solver=None):
            i = np.arange(len(mx)) + self.offset
            self.offset += len(mx)
            return {"jets": jx[i][:, ::-1], "particles": px[i][:, :, shuffled], "mask": a["mask"][i][:, :, shuffled]}

    for enforce in (False, True):
        gen = StandIn()
        gen.offset = 0
        g, n_clipped = generate_events(gen, pre, a["mjj"], steps=1, second_order=False, batch_size=16,
                                       seed=1, progress=False, enforce_mjj=enforce)
        assert n_clipped == 0 and np.all(np.isfinite(g["jets"]))
        assert np.all(g["jets"][:, 0, 0] >= g["jets"][:, 1, 0])
        key = np.where(g["mask"], g["particles"][..., 0], -1.0)
        assert np.all(np.diff(key, axis=-1) <= 0) and np.all(g["mask"][..., :-1] >= g["mask"][..., 1:])
        ratio = dijet_mass(g["jets"]) / a["mjj"]
        if enforce:
            np.testing.assert_allclose(ratio, 1.0, rtol=1e-5)
        else:
            assert np.all(ratio > 1.02)                      # the 30 % harder jet raised mjj


def test_per_net_mjj_conditioning():
    """<net>.mjj_fourier overrides model.mjj_fourier for that net only; include_input appends
    the scaled mjj itself (a smooth handle for interpolating into the signal region)."""
    cfg = {**CFG, "jet_net": {**CFG["jet_net"], "mjj_fourier": {"scale": 0.5, "include_input": True}}}
    m = DijetDiffusion(cfg, num_particles=P)
    mjj = np.array([-0.5, 0.1], np.float32)
    cj, cp = m.mjj_cond(mjj, "jet"), m.mjj_cond(mjj, "particle")
    assert cj.shape == (2, 2 * 4 + 1) and cp.shape == (2, 2 * 4)
    np.testing.assert_allclose(cj.numpy()[:, -1], mjj)
    assert float(m.jet_mjj_fourier.scale) == 0.5 and float(m.particle_mjj_fourier.scale) == 1.0
    b = {k: tf.constant(v) for k, v in _batch().items()}
    ej, ep = m(b)
    assert ej.shape == b["jets"].shape
