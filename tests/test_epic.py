"""shared.epic: EPiC layers are permutation equivariant, ignore padding, serialise."""
import keras
import numpy as np
import pytest

from shared.epic import EPiCLayer, EPiCPooling, build_epic_net


def _set(b=3, p=7, f=3, seed=0):
    rng = np.random.default_rng(seed)
    n = np.array([7, 4, 1])[:b]
    mask = (np.arange(p)[None] < n[:, None]).astype(np.float32)
    x = (rng.normal(size=(b, p, f)) * mask[..., None]).astype(np.float32)
    return x, mask, rng


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    return build_epic_net(3, cond_dim=4, local_dim=16, global_dim=12, num_layers=3, time_embed_dim=8)


def _call(net, x, t, mask, cond):
    return net([x, t, mask, cond]).numpy()


def test_permutation_equivariance(net):
    x, mask, rng = _set()
    t = np.array([0.1, 0.5, 0.9], np.float32)
    cond = rng.normal(size=(3, 4)).astype(np.float32)
    out = _call(net, x, t, mask, cond)
    assert np.abs(out[mask > 0]).min() > 0          # a real, non-trivial output
    perm = rng.permutation(7)
    out_p = _call(net, x[:, perm], t, mask[:, perm], cond)
    np.testing.assert_allclose(out_p, out[:, perm], atol=1e-5)


def test_padding_never_contributes(net):
    x, mask, rng = _set()
    t = np.array([0.2, 0.4, 0.6], np.float32)
    cond = rng.normal(size=(3, 4)).astype(np.float32)
    out = _call(net, x, t, mask, cond)
    assert np.all(out[mask == 0] == 0)
    # garbage in padded slots changes nothing
    junk = x + (1 - mask)[..., None] * rng.normal(0, 50, x.shape).astype(np.float32)
    np.testing.assert_allclose(_call(net, junk, t, mask, cond), out, atol=1e-5)
    # extra padded slots change nothing
    wide_x = np.concatenate([x, rng.normal(size=(3, 5, 3)).astype(np.float32)], 1)
    wide_m = np.concatenate([mask, np.zeros((3, 5), np.float32)], 1)
    np.testing.assert_allclose(_call(net, wide_x, t, wide_m, cond)[:, :7], out, atol=1e-5)
    # the set's other real elements do matter (the global context is used)
    y = x.copy()
    y[0, 1] += 1.0
    assert np.abs(_call(net, y, t, mask, cond)[0, 0] - out[0, 0]).max() > 1e-4


def test_pooling_mean_plus_scaled_sum():
    x, mask, _ = _set(f=2)
    pooled = EPiCPooling(0.01)(x, mask).numpy()
    for i in range(3):
        real = x[i][mask[i] > 0]
        np.testing.assert_allclose(pooled[i], np.r_[real.mean(0), 0.01 * real.sum(0)], rtol=1e-5, atol=1e-6)
    assert np.all(EPiCPooling()(x, np.zeros_like(mask)).numpy() == 0)   # empty set: 0, not NaN


def test_layer_config_roundtrip_and_width_check():
    layer = EPiCLayer(8, 6, hidden_dim=10, sum_scale=0.05, name="e")
    clone = EPiCLayer.from_config(layer.get_config())
    assert (clone.local_dim, clone.global_dim, clone.hidden_dim, clone.sum_scale) == (8, 6, 10, 0.05)
    x, mask, rng = _set(f=8)
    g = rng.normal(size=(3, 6)).astype(np.float32)
    xo, go = layer(x, g, mask)
    assert xo.shape == (3, 7, 8) and go.shape == (3, 6)
    with pytest.raises(ValueError, match="expected 8 and 6"):
        EPiCLayer(8, 6)(x, rng.normal(size=(3, 5)).astype(np.float32), mask)


def test_saved_model_roundtrip(tmp_path, net):
    x, mask, rng = _set()
    t = np.array([0.3, 0.3, 0.3], np.float32)
    cond = rng.normal(size=(3, 4)).astype(np.float32)
    path = tmp_path / "epic.keras"
    net.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(_call(again, x, t, mask, cond), _call(net, x, t, mask, cond), atol=1e-6)
