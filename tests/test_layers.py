"""Equivariance, padding invariance and serialisation of the shared Keras layers and builders."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from shared.layers import (ContextGain, FourierFeatures, MaskedMeanPool, ResidualDense, SetAttentionBlock,
                           TileCondition, TimeEmbedding, build_set_classifier, build_set_score_net,
                           build_vector_score_net, gaussian_skip_sde)
from shared.diffusion.score import call_score_net
from shared.diffusion.sde import VPSDE

B, P, F, C = 3, 7, 3, 2
TOL = 2e-5


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    mask = np.ones((B, P), np.float32)
    mask[0, 4:] = 0
    mask[1, 2:] = 0
    x = rng.standard_normal((B, P, F)).astype(np.float32) * mask[..., None]
    t = rng.uniform(size=B).astype(np.float32)
    cond = rng.standard_normal((B, C)).astype(np.float32)
    return x, t, mask, cond


def _permute(x, mask, seed=1):
    perm = np.random.default_rng(seed).permutation(P)
    return perm, x[:, perm], mask[:, perm]


@pytest.fixture(scope="module")
def set_net():
    return build_set_score_net(F, C, width=32, num_blocks=2, num_heads=2, ffn_dim=64, time_embed_dim=16)


def test_set_attention_block_equivariant_and_masked(data):
    x, _, mask, _ = data
    layer = SetAttentionBlock(width=F, num_heads=1, ffn_dim=8)
    y = layer(x, mask).numpy()
    perm, xp, mp = _permute(x, mask)
    np.testing.assert_allclose(layer(xp, mp).numpy(), y[:, perm], atol=TOL)
    assert np.all(y[mask == 0] == 0)
    # garbage in padded slots must not reach real ones
    x_noisy = x + 50.0 * (1 - mask[..., None])
    np.testing.assert_allclose(layer(x_noisy, mask).numpy(), y, atol=TOL)


def test_attention_fully_padded_row_is_finite(data):
    x, _, mask, _ = data
    mask = mask.copy()
    mask[2] = 0
    y = SetAttentionBlock(width=F, num_heads=1, ffn_dim=8)(x * mask[..., None], mask).numpy()
    assert np.all(np.isfinite(y)) and np.all(y[2] == 0)


def test_pool_and_tile(data):
    x, _, mask, cond = data
    pooled = MaskedMeanPool()(x, mask).numpy()
    expected = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    _, xp, mp = _permute(x, mask)
    np.testing.assert_allclose(MaskedMeanPool()(xp, mp).numpy(), pooled, atol=1e-6)
    tiled = TileCondition()(cond, x).numpy()
    assert tiled.shape == (B, P, C) and np.all(tiled == cond[:, None, :])


def test_fourier_and_time_embedding(data):
    _, t, _, _ = data
    for kind in ("gaussian", "sinusoidal"):
        ff = FourierFeatures(8, kind=kind)
        out = ff(t).numpy()
        assert out.shape == (B, 16)
        np.testing.assert_allclose(out[:, :8] ** 2 + out[:, 8:] ** 2, 1.0, atol=1e-5)
    assert TimeEmbedding(12)(t).shape == (B, 12)
    with pytest.raises(ValueError, match="kind"):
        FourierFeatures(4, kind="bogus")


def test_residual_dense_with_context():
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    ctx = np.ones((4, 3), np.float32)
    layer = ResidualDense(6)
    assert layer(x, ctx).shape == (4, 6)


def test_set_score_net_equivariant_and_zero_at_padding(set_net, data):
    x, t, mask, cond = data
    y = call_score_net(set_net, x, t, mask, cond).numpy()
    assert y.shape == x.shape and np.all(y[mask == 0] == 0)
    assert np.abs(y[mask == 1]).max() > 0
    for seed in (1, 2, 3):
        perm, xp, mp = _permute(x, mask, seed)
        np.testing.assert_allclose(call_score_net(set_net, xp, t, mp, cond).numpy(), y[:, perm],
                                   atol=TOL)


def test_set_score_net_padding_invariant(set_net, data):
    x, t, mask, cond = data
    y = call_score_net(set_net, x, t, mask, cond).numpy()
    extra = 4
    x_pad = np.concatenate([x, np.zeros((B, extra, F), np.float32)], axis=1)
    m_pad = np.concatenate([mask, np.zeros((B, extra), np.float32)], axis=1)
    y_pad = call_score_net(set_net, x_pad, t, m_pad, cond).numpy()
    np.testing.assert_allclose(y_pad[:, :P], y, atol=TOL)
    assert np.all(y_pad[:, P:] == 0)


def test_set_classifier_invariant(data):
    x, _, mask, cond = data
    clf = build_set_classifier(F, C, width=16, num_blocks=1, ffn_dim=32)
    p = clf([x, mask, cond]).numpy()
    assert p.shape == (B, 1) and np.all((p > 0) & (p < 1))
    _, xp, mp = _permute(x, mask)
    np.testing.assert_allclose(clf([xp, mp, cond]).numpy(), p, atol=TOL)


def test_vector_net_and_no_cond_inputs(data):
    _, t, _, cond = data
    vec = build_vector_score_net(4, C, width=16, num_blocks=2)
    x = np.random.default_rng(3).standard_normal((B, 4)).astype(np.float32)
    assert call_score_net(vec, x, t, None, cond).shape == (B, 4)
    vec0 = build_vector_score_net(4, 0, width=16, num_blocks=1)
    assert [i.name for i in vec0.inputs] == ["x", "t"]
    assert call_score_net(vec0, x, t, None, None).shape == (B, 4)
    set0 = build_set_score_net(F, 0, width=8, num_blocks=1, ffn_dim=8)
    assert [i.name for i in set0.inputs] == ["x", "t", "mask"]
    with pytest.raises(ValueError, match="cond"):
        call_score_net(vec, x, t, None, None)


def test_save_load_roundtrip(set_net, data, tmp_path):
    x, t, mask, cond = data
    path = tmp_path / "net.keras"
    set_net.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(call_score_net(loaded, x, t, mask, cond).numpy(),
                               call_score_net(set_net, x, t, mask, cond).numpy(), atol=1e-6)


def test_log_time_embedding_resolves_small_t_and_round_trips():
    keras.utils.set_random_seed(0)  # Dense inits: seeds 0-11 give spread ratios 16-55
    t = np.array([1e-5, 1e-4, 1e-3], np.float32)
    plain = TimeEmbedding(16, scale=4.0)
    logt = TimeEmbedding(16, scale=4.0, log_time=True)
    e_plain, e_log = plain(t).numpy(), logt(t).numpy()
    # raw-t Fourier features barely move over decades of small t; log-t features do
    spread = lambda e: np.linalg.norm(e[0] - e[-1]) / np.linalg.norm(e).mean()
    assert spread(e_log) > 5 * spread(e_plain)
    clone = TimeEmbedding.from_config(logt.get_config())
    clone.build((None,))
    clone.set_weights(logt.get_weights())
    assert clone.log_time and clone.log_time_scale == logt.log_time_scale
    np.testing.assert_allclose(clone(t).numpy(), e_log, atol=1e-6)
    # configs saved before log_time existed still load (default off)
    old = {k: v for k, v in plain.get_config().items() if not k.startswith("log_time")}
    assert not TimeEmbedding.from_config(old).log_time


def test_context_gain_starts_at_one_and_round_trips():
    ctx = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    gain = ContextGain(3, max_log_gain=2.0)
    np.testing.assert_array_equal(gain(ctx).numpy(), 1.0)
    gain.dense.kernel.assign(100.0 * np.ones((6, 3), np.float32))
    g = gain(ctx).numpy()
    assert np.all(g <= np.exp(2.0) + 1e-4) and np.all(g >= np.exp(-2.0) - 1e-6)
    assert ContextGain.from_config(gain.get_config()).max_log_gain == 2.0


@pytest.mark.parametrize("flags", [dict(log_time=True, output_gain=True),
                                   dict(log_time=False, output_gain=False),
                                   dict(log_time=True, output_gain=True,
                                        gaussian_skip=VPSDE(), data_std=0.8)])
def test_set_score_net_small_t_options_equivariant(data, flags, tmp_path):
    x, t, mask, cond = data
    net = build_set_score_net(F, C, width=16, num_blocks=1, num_heads=2, ffn_dim=16,
                              time_embed_dim=8, **flags)
    assert any(layer.name.endswith("_gain") for layer in net.layers) == flags["output_gain"]
    # a non-trivial gain, so equivariance and padding are checked through it
    for layer in net.layers:
        if isinstance(layer, ContextGain):
            layer.dense.kernel.assign(0.3 * np.ones(layer.dense.kernel.shape, np.float32))
    t_small = t * 1e-3
    y = call_score_net(net, x, t_small, mask, cond).numpy()
    assert np.all(y[mask == 0] == 0) and np.abs(y[mask == 1]).max() > 0
    perm, xp, mp = _permute(x, mask, 5)
    np.testing.assert_allclose(call_score_net(net, xp, t_small, mp, cond).numpy(), y[:, perm],
                               atol=TOL)
    path = tmp_path / "net.keras"
    net.save(path)
    np.testing.assert_allclose(call_score_net(keras.models.load_model(path), x, t_small, mask,
                                              cond).numpy(), y, atol=1e-6)
    vec = build_vector_score_net(4, C, width=8, num_blocks=1, **flags)
    assert call_score_net(vec, x[:, 0, :].repeat(2, -1)[:, :4], t_small, None, cond).shape == (B, 4)


def test_gaussian_skip_config_switch():
    sde = VPSDE()
    assert gaussian_skip_sde(False, sde) is None
    assert gaussian_skip_sde(True, sde) is sde
    with pytest.raises(ValueError, match="model.gaussian_skip"):
        gaussian_skip_sde("yes", sde)
