"""shared.diffusion.flow_matching (OT path, masked loss, ODE solvers) and the EPiC-FM dijet
generator lhco_fullphase.flow_model (interface of DijetDiffusion, Trainer, sampling)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lhco_synthetic import synthetic_events
from shared.diffusion import flow_matching as fm


class _FnNet:
    """Duck-typed velocity 'model' for call_score_net (inputs named x, t, mask)."""

    def __init__(self, fn, names=("x", "t", "mask")):
        self.fn, self.name = fn, "fn_net"
        self.inputs = [type("I", (), {"name": n})() for n in names]

    def __call__(self, args, training=False):
        return self.fn(*args)


def test_ot_path_endpoints_and_target_is_the_time_derivative():
    rng = np.random.default_rng(0)
    x, z = (tf.constant(rng.normal(size=(4, 3)), tf.float32) for _ in range(2))
    s = 1e-2
    x0, _ = fm.ot_path(x, z, tf.zeros(4), s)
    x1, _ = fm.ot_path(x, z, tf.ones(4), s)
    np.testing.assert_allclose(x0, x + s * z, atol=1e-6)
    np.testing.assert_allclose(x1, z, atol=1e-6)
    t = tf.constant([0.1, 0.3, 0.6, 0.9])
    h = 1e-3
    xp, u = fm.ot_path(x, z, t + h, s)
    xm, _ = fm.ot_path(x, z, t - h, s)
    np.testing.assert_allclose((xp - xm) / (2 * h), u, atol=2e-3)


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_ode_maps_gaussian_noise_to_the_gaussian_with_the_analytic_field(solver, order):
    """With the exact velocity of N(μ, s²) data, z at t = 1 must land on μ + sqrt(s² + σ²) z,
    with the solver's order of convergence."""
    mu, sd = np.array([0.0, 1.5, -2.0], np.float32), np.array([1.0, 0.5, 2.0], np.float32)
    v = fm.gaussian_velocity(mu, sd)
    z = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32)
    exact = mu + np.sqrt(sd**2 + fm.SIGMA_MIN**2) * z
    err = [np.abs(fm.ode_integrate(v, z, None, None, n, solver) - exact).max() for n in (25, 50)]
    assert err[1] < (0.2 if order == 1 else 2e-3)
    assert 0.8 * 2.0**order < err[0] / err[1] < (2.5 if order == 1 else 10.0)   # error ∝ h^order
    # N(0, 1) is (up to σ_min) a fixed point of the whole map
    x = fm.ode_sample(fm.gaussian_velocity(np.zeros(3), np.ones(3)), (4000, 3), None, None, 20 * (3 - order) ** 2, solver, seed=3)
    np.testing.assert_allclose(x.std(0), 1.0, atol=0.05)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.05)


def test_ode_sample_respects_the_mask_and_rejects_bad_solver():
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    x = fm.ode_sample(fm.gaussian_velocity(np.ones(2), np.ones(2)), (2, 3, 2), mask, None, 4, "heun", seed=0)
    assert np.all(x[mask == 0] == 0) and np.all(x[mask == 1] != 0)
    with pytest.raises(ValueError, match="solver must be one of"):
        fm.ode_integrate(fm.gaussian_velocity(0.0, 1.0), np.zeros((2, 1)), None, None, 3, "rk4")


def test_loss_is_masked_and_minimised_by_the_exact_velocity():
    mu, sd = np.array([1.0, -1.0], np.float32), np.array([0.7, 1.3], np.float32)
    rng = np.random.default_rng(2)
    x = (mu + sd * rng.normal(size=(20000, 4, 2))).astype(np.float32)
    mask = (rng.random((20000, 4)) < 0.6).astype(np.float32)
    exact = fm.gaussian_velocity(mu, sd)
    good = _FnNet(lambda x_, t, m: exact(x_, t) * m[..., None])
    bad = _FnNet(lambda x_, t, m: (exact(x_, t) + 0.3) * m[..., None])
    l_good = float(fm.flow_matching_loss(good, x, mask, None, seed=5))
    l_bad = float(fm.flow_matching_loss(bad, x, mask, None, seed=5))
    assert l_bad - l_good == pytest.approx(0.09, rel=0.05)   # E||v + c − u||² − E||v − u||² = c²
    # padded slots contribute nothing, whatever they hold
    junk = x + (1 - mask)[..., None] * 100.0
    assert float(fm.flow_matching_loss(good, junk, mask, None, seed=5)) == pytest.approx(l_good, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# the dijet generator
# ---------------------------------------------------------------------------------------------
from lhco_fullphase.flow_model import DijetFlowMatching, build_flow_generator  # noqa: E402

CFG = {"steps": 3, "solver": "midpoint", "mjj_fourier": {"num_frequencies": 3},
       "jet_net": {"width": 16, "num_blocks": 1, "time_embed_dim": 8},
       "particle_net": {"local_dim": 12, "global_dim": 10, "num_layers": 2, "time_embed_dim": 8}}
P = 6


def _batch(b=4, seed=0, nj=5):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, P + 1, size=(b, 2))
    mask = (np.arange(P)[None, None] < n[..., None]).astype(np.float32)
    return {"jets": rng.normal(size=(b, 2, nj)).astype(np.float32),
            "particles": (rng.normal(size=(b, 2, P, 3)) * mask[..., None]).astype(np.float32),
            "mask": mask, "mjj": rng.uniform(-1, 1, b).astype(np.float32)}


@pytest.mark.parametrize("kind", ["dense", "epic"])
def test_generator_loss_gradients_shapes_and_jet_symmetry(kind):
    keras.utils.set_random_seed(0)
    m = DijetFlowMatching({**CFG, "jet_net": {**CFG["jet_net"], "kind": kind}}, num_particles=P, n_dequant=0.1)
    b = _batch()
    with tf.GradientTape() as tape:
        loss = m.compute_batch_loss({k: tf.constant(v) for k, v in b.items()})
    grads = tape.gradient(loss, m.trainable_variables)
    assert np.isfinite(float(loss)) and all(g is not None for g in grads)
    vj, vp = m(b)
    assert vj.shape == (4, 2, 5) and vp.shape == (8, P, 3)
    assert np.all(vp.numpy().reshape(4, 2, P, 3)[b["mask"] == 0] == 0)
    # the particle net treats each jet alike: swapping the jets swaps its outputs
    sw = {k: (v[:, ::-1].copy() if k != "mjj" else v) for k, v in b.items()}
    vj2, vp2 = m(sw)
    np.testing.assert_allclose(vp2.numpy().reshape(4, 2, P, 3), vp.numpy().reshape(4, 2, P, 3)[:, ::-1], atol=1e-5)
    if kind == "epic":   # the set jet net is jet-permutation equivariant too
        np.testing.assert_allclose(vj2.numpy(), vj.numpy()[:, ::-1], atol=1e-5)


def test_generator_sampling_and_single_parts():
    keras.utils.set_random_seed(1)
    m = DijetFlowMatching(CFG, num_particles=P, num_jet_features=6)
    out = m.sample(np.array([0.0, 0.5, -0.3], np.float32),
                   n_from_jets=lambda j: np.array([[1, 3], [6, 9], [2, 0]]), steps=2, seed=4)
    assert out["jets"].shape == (3, 2, 6) and out["particles"].shape == (3, 2, P, 3)
    np.testing.assert_array_equal(out["mask"].sum(-1), [[1, 3], [6, 6], [2, 1]])
    assert np.all(out["particles"][~out["mask"]] == 0) and np.all(np.isfinite(out["particles"]))
    again = m.sample(np.array([0.0, 0.5, -0.3], np.float32),
                     n_from_jets=lambda j: np.array([[1, 3], [6, 9], [2, 0]]), steps=2, seed=4)
    np.testing.assert_array_equal(again["particles"], out["particles"])   # seeded
    b = {k: tf.constant(v) for k, v in _batch(nj=6).items()}
    for part, net in (("jet", "jet_net"), ("particle", "particle_net")):
        single = DijetFlowMatching(CFG, num_particles=P, parts=(part,), num_jet_features=6)
        single(b)
        other = "particle_net" if net == "jet_net" else "jet_net"
        assert getattr(single, other) is None
        assert {id(v) for v in single.trainable_variables} == {id(v) for v in getattr(single, net).trainable_variables}
    with pytest.raises(ValueError, match="'flow_model.solver': must be one of"):
        DijetFlowMatching({**CFG, "solver": "rk45"}, num_particles=P)
    with pytest.raises(ValueError, match="'flow_model.particle_net.width': unknown key"):
        DijetFlowMatching({**CFG, "particle_net": {"width": 3}}, num_particles=P)


def test_generator_trains_with_the_trainer_and_generates_physical_events(tmp_path):
    """Tiny end-to-end: synthetic events -> Preprocessor -> Trainer (resumable) -> generate."""
    from lhco_fullphase import events as ldata
    from lhco_fullphase.preprocess import Preprocessor
    from lhco_fullphase.sample import generate_events
    from lhco_fullphase.train import network_arrays
    from shared.training import Trainer

    parts, _ = synthetic_events(96, seed=3, max_particles=80)
    arrays, _ = ldata.cluster_dijets(parts, P)
    pre = Preprocessor(pt_rel_transform="log").fit(arrays["jets"], arrays["particles"], arrays["mask"], arrays["mjj"])
    batch = network_arrays(pre, arrays)
    tcfg = {"epochs": 2, "batch_size": 32, "ema_decay": 0.9, "progress": False, "learning_rate": 3e-3}
    keras.utils.set_random_seed(2)
    model = build_flow_generator(CFG, P, pre)
    hist = Trainer(model, tcfg, tmp_path / "m").fit(batch, batch)
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert hist[-1]["loss"] < hist[0]["loss"] * 1.5
    # resumes: asking for 3 epochs runs exactly one more
    model2 = build_flow_generator(CFG, P, pre)
    hist2 = Trainer(model2, {**tcfg, "epochs": 3}, tmp_path / "m").fit(batch, batch)
    assert [h["epoch"] for h in hist2] == [1, 2, 3]
    mjj = np.full(10, 3500.0)
    gen, n_clipped = generate_events(model2, pre, mjj, steps=2, second_order=True, batch_size=10, seed=0,
                                     progress=False)
    assert gen["jets"].shape == (10, 2, 5) and gen["particles"].shape == (10, 2, P, 3)
    assert np.all(np.isfinite(gen["jets"])) and n_clipped == 0
    np.testing.assert_array_equal(gen["jets"][..., 4], gen["mask"].sum(-1))
