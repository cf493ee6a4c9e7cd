"""lhco_fullphase events, preprocess, roles, kde and the dijet cache: clustering, features,
preprocessing round trip, windows, ids, KDE."""
import numpy as np
import pytest

from lhco_fullphase import events as E
from lhco_fullphase import kde as K
from lhco_fullphase import preprocess as P
from lhco_fullphase import roles as R
from lhco_fullphase.artifacts import read_dijet_cache
from lhco_fullphase.prepare import make_dijet_cache
from shared.data.errors import DataFormatError
from shared.data.lhco import write_lhco
from lhco_synthetic import synthetic_events  # tests/ is on sys.path (rootdir-relative import)

WINDOWS = {"sr": [3300.0, 3700.0], "sb": [[2300.0, 3300.0], [3700.0, 5000.0]]}


@pytest.fixture(scope="module")
def clustered():
    parts, label = synthetic_events(40, seed=1)
    arrays, keep = E.cluster_dijets(parts, num_particles=30, radius=1.0)
    return parts, label, arrays, keep


def test_wrap_phi_range_and_values():
    x = np.array([0.0, np.pi - 0.1, np.pi + 0.1, -np.pi - 0.1, 3 * np.pi + 0.2, -7.0])
    w = E.wrap_phi(x)
    assert np.all(w >= -np.pi) and np.all(w < np.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(x), atol=1e-12)
    np.testing.assert_allclose(np.sin(w), np.sin(x), atol=1e-12)
    np.testing.assert_allclose(w[:3], [0.0, np.pi - 0.1, -np.pi + 0.1], atol=1e-12)


def test_clustering_two_jets_pt_ordered(clustered):
    parts, _, a, keep = clustered
    assert keep.all()
    n = len(parts)
    assert a["jets"].shape == (n, 2, 5) and a["particles"].shape == (n, 2, 30, 3)
    jets, p, m = a["jets"], a["particles"], a["mask"]
    assert np.all(jets[:, 0, 0] >= jets[:, 1, 0])          # leading jet first
    # Constituents pT ordered, real ones first, padding exactly zero.
    pt = np.where(m, p[..., 0], -1.0)
    assert np.all(np.diff(pt, axis=-1) <= 1e-12)
    assert np.all(m[..., :-1] >= m[..., 1:])
    assert np.all(p[~m] == 0)
    np.testing.assert_array_equal(jets[..., 4], m.sum(-1))
    assert np.all(jets[..., 3] >= 0)
    assert np.all(np.abs(p[..., 2][m]) <= np.pi) and np.abs(p[..., 2][m]).max() < 1.0 + 1e-9
    # Untruncated jets (< 30 constituents): the constituents' transverse momenta projected on
    # the jet axis add up to pT_jet, perpendicular to it they cancel.
    full = m.sum(-1) < 30
    assert full.any() and (~full).any()
    along = (p[..., 0] * np.cos(p[..., 2]) * m).sum(-1)
    across = (p[..., 0] * np.sin(p[..., 2]) * m).sum(-1)
    np.testing.assert_allclose(along[full], 1.0, atol=1e-9)
    np.testing.assert_allclose(across[full], 0.0, atol=1e-9)
    assert np.all(along[~full] <= 1.0 + 1e-9) and np.any(along[~full] < 0.999)


def test_jet_kinematics_match_constituent_sum():
    # Two massless particles per jet: jet 4-vector and mjj are known in closed form.
    ev = np.zeros((1, 700, 3))
    ev[0, :4] = [[1000.0, 0.1, 3.1], [500.0, 0.0, -3.1], [900.0, -0.2, 0.0], [300.0, -0.1, 0.05]]
    a, keep = E.cluster_dijets(ev, num_particles=5)
    assert keep.all()
    from shared.data.jets import p4_from_ptetaphim, ptetaphim_from_p4
    p4 = p4_from_ptetaphim(ev[0, :4, 0], ev[0, :4, 1], ev[0, :4, 2])
    j1, j2 = ptetaphim_from_p4(p4[:2].sum(0)), ptetaphim_from_p4(p4[2:].sum(0))
    np.testing.assert_allclose(a["jets"][0, 0, :4], j1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a["jets"][0, 1, :4], j2, rtol=1e-9, atol=1e-9)
    tot = p4.sum(0)
    np.testing.assert_allclose(a["mjj"][0], np.sqrt(tot[0] ** 2 - (tot[1:] ** 2).sum()), rtol=1e-9)
    # Jet 1 straddles phi = +-pi: its particles' dphi are small, not ~2 pi (wrapping).
    dphi = a["particles"][0, 0, :2, 2]
    assert np.all(np.abs(dphi) < 0.2)
    np.testing.assert_allclose(a["particles"][0, 0, :2, 0].sum(), (1000 + 500) / j1[0], rtol=1e-6)


def test_events_with_fewer_than_two_jets_are_dropped():
    ev = np.zeros((2, 700, 3))
    ev[0, 0] = [1500.0, 0.0, 0.0]                                   # one jet only
    ev[1, :2] = [[1500.0, 0.0, 0.0], [1400.0, 0.3, 3.0]]
    a, keep = E.cluster_dijets(ev, num_particles=4)
    np.testing.assert_array_equal(keep, [False, True])
    assert len(a["mjj"]) == 1


@pytest.mark.parametrize("transform", P.PT_REL_TRANSFORMS)
def test_preprocessing_round_trip(clustered, transform):
    _, _, a, _ = clustered
    jets, parts, mask, mjj = a["jets"].copy(), a["particles"], a["mask"], a["mjj"]
    jets[0, 1, 3] = 0.0                          # a massless jet exercises the m = 0 sentinel
    pre = P.Preprocessor(mjj_range=(2300.0, 5000.0), pt_rel_transform=transform).fit(
        jets, parts, mask, mjj)
    jx, px, mx = pre.transform(jets, parts, mask, mjj)
    assert jx.dtype == np.float32 and np.all(px[~mask] == 0)
    # Standardised with masked statistics: zero mean, unit std over the real particles.
    np.testing.assert_allclose(px[mask].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(px[mask].std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(jx.reshape(-1, 5).mean(0), 0.0, atol=1e-4)
    j2, p2, m2 = pre.inverse(jx, px, mask, mx)
    np.testing.assert_allclose(m2, mjj, rtol=1e-5)
    np.testing.assert_allclose(j2, jets, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(p2, parts, rtol=1e-4, atol=1e-5)
    assert j2[0, 1, 3] == 0.0
    # Float64 path is exact to rounding, and the constants survive JSON.
    pre2 = P.Preprocessor.from_dict(pre.to_dict())
    assert pre2.pt_rel_transform == transform
    np.testing.assert_allclose(pre2.inverse(jx, px, mask, mx)[1], p2, rtol=1e-12)
    np.testing.assert_allclose(pre2.unscale_mjj(pre2.scale_mjj(mjj)), mjj, rtol=1e-12)
    np.testing.assert_allclose(pre2.scale_mjj([2300.0, 5000.0]), [-1.0, 1.0], atol=1e-12)


def test_jet_pt_fraction_feature_round_trips_and_fixes_generated_sums(clustered):
    _, _, a, _ = clustered
    jets, parts, mask, mjj = a["jets"], a["particles"], a["mask"], a["mjj"]
    pre = P.Preprocessor(pt_rel_transform="log", jet_pt_fraction=True).fit(jets, parts, mask, mjj)
    assert pre.n_jet_features == 6
    jx, px, mx = pre.transform(jets, parts, mask, mjj)
    assert jx.shape == jets.shape[:2] + (6,)
    j2, p2, _ = pre.inverse(jx, px, mask, mx)
    assert j2.shape == jets.shape                         # physical jets keep 5 features
    np.testing.assert_allclose(p2, parts, rtol=1e-4, atol=1e-6)
    # a "generated" jet whose particles sum to the wrong fraction is rescaled to the 6th feature
    wrong = px.astype(np.float64).copy()
    wrong[..., 0] += 0.5 * mask                           # every pT_rel × e^{0.5·std}
    _, p3, _ = pre.inverse(jx, wrong, mask, mx)
    np.testing.assert_allclose((p3[..., 0] * mask).sum(-1), (parts[..., 0] * mask).sum(-1),
                               rtol=1e-4)
    # no particles (the multiplicity-only call of the sampler): finite, nothing rescaled
    none = np.zeros(mask.shape, bool)
    assert np.isfinite(pre.inverse(jx, np.zeros_like(px), none, mx)[1]).all()
    pre2 = P.Preprocessor.from_dict(pre.to_dict())
    assert pre2.jet_pt_fraction and pre2.n_jet_features == 6


def test_dijet_frame_phi_keeps_everything_but_the_event_azimuth(clustered):
    _, _, a, _ = clustered
    jets, parts, mask, mjj = a["jets"], a["particles"], a["mask"], a["mjj"]
    pre = P.Preprocessor(jet_phi="dijet_frame").fit(jets, parts, mask, mjj)
    assert pre.network_jet_features == ("log_pt", "eta", "cos_phi", "sin_phi", "log_mass", "n")
    assert pre.n_index == 5 and not pre.is_plain
    jx, px, mx = pre.transform(jets, parts, mask, mjj)
    # In the frame the jets sit at ±π/2 (sin φ' = ±1) and share cos φ' = −sin(a/2).
    phi_f = E.dijet_frame_phi(jets[..., 2])
    a_dev = E.wrap_phi(jets[:, 0, 2] - jets[:, 1, 2] - np.pi)
    np.testing.assert_allclose(np.cos(phi_f), -np.sin(a_dev / 2)[:, None].repeat(2, 1), atol=1e-9)
    np.testing.assert_allclose(np.sin(phi_f[:, 0]), np.cos(a_dev / 2), atol=1e-9)
    dphi = lambda j: E.wrap_phi(j[:, 0, 2] - j[:, 1, 2])  # noqa: E731
    for rng in (None, np.random.default_rng(3)):
        j2, p2, _ = pre.inverse(jx, px, mask, mx, rng=rng)
        np.testing.assert_allclose(E.wrap_phi(dphi(j2) - dphi(jets)), 0.0, atol=1e-5)
        np.testing.assert_allclose(j2[..., [0, 3]], jets[..., [0, 3]], rtol=1e-5)
        np.testing.assert_allclose(j2[..., [1, 4]], jets[..., [1, 4]], atol=1e-5)
        np.testing.assert_allclose(E.dijet_mass(j2), mjj, rtol=1e-5)
        np.testing.assert_allclose(p2, parts, rtol=1e-4, atol=1e-6)
    # the event azimuth is redrawn uniformly: one of the jets, over many events, covers the circle
    many = np.repeat(jx[:1], 4000, 0)
    j3, _, _ = pre.inverse(many, np.zeros(many.shape[:2] + px.shape[2:]),
                           np.zeros(many.shape[:2] + mask.shape[2:], bool), np.repeat(mx[:1], 4000),
                           rng=np.random.default_rng(0))
    hist = np.histogram(j3[:, 0, 2], bins=8, range=(-np.pi, np.pi))[0]
    assert hist.min() > 0.8 * 500 and hist.max() < 1.2 * 500
    with pytest.raises(ValueError, match="jet_phi"):
        P.Preprocessor(jet_phi="sincos")


def test_stored_mass_fraction_is_one_for_untruncated_jets_and_frame_free(clustered):
    _, _, a, _ = clustered
    jets, parts, mask = a["jets"], a["particles"], a["mask"]
    r = E.stored_mass_fraction(parts, mask, jets[..., 3] / jets[..., 0])
    full = mask.sum(-1) < 30
    np.testing.assert_allclose(r[full & (jets[..., 3] > 0)], 1.0, rtol=1e-6)
    assert np.all(r <= 1.0 + 1e-6) and np.any(r[~full] < 0.99)
    # only differences of η and φ enter: shifting all particles of a jet changes nothing
    shifted = parts.copy()
    shifted[..., 1] += 0.7 * mask
    shifted[..., 2] = E.wrap_phi(shifted[..., 2] + 1.1) * mask
    np.testing.assert_allclose(E.stored_mass_fraction(shifted, mask, jets[..., 3] / jets[..., 0]), r, rtol=1e-9)


def test_set_level_jet_features_are_enforced_on_generated_particles(clustered):
    _, _, a, _ = clustered
    jets, parts, mask, mjj = a["jets"], a["particles"], a["mask"], a["mjj"]
    pre = P.Preprocessor(pt_rel_transform="log", jet_pt_fraction=True, jet_centroid=True,
                         jet_mass_fraction=True).fit(jets, parts, mask, mjj)
    assert pre.network_jet_features[-4:] == ("pt_fraction", "centroid_deta", "centroid_dphi", "mass_fraction")
    jx, px, mx = pre.transform(jets, parts, mask, mjj)
    j2, p2, _ = pre.inverse(jx, px, mask, mx)
    np.testing.assert_allclose(j2, jets, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p2, parts, rtol=1e-3, atol=1e-4)
    # "generated" particles: too hard, shifted and 30 % too wide -> pulled back to the jet's targets
    wrong = px.astype(np.float64).copy()
    wrong[..., 0] += 0.4 * mask
    wrong[..., 1:] = (1.3 * wrong[..., 1:] + 0.5) * mask[..., None]
    _, p3, _ = pre.inverse(jx, wrong, mask, mx)
    f = lambda p: (p[..., 0] * mask).sum(-1)  # noqa: E731
    np.testing.assert_allclose(f(p3), np.minimum(f(parts), 1.05), rtol=1e-5)
    for got, want in zip(E.particle_centroid(p3, mask), E.particle_centroid(parts, mask)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    m_over_pt = jets[..., 3] / jets[..., 0]
    np.testing.assert_allclose(E.stored_mass_fraction(p3, mask, m_over_pt),
                               E.stored_mass_fraction(parts, mask, m_over_pt), rtol=1e-3)
    assert np.all(p3[~mask] == 0)
    # the sampler's multiplicity-only call (no particles) stays finite
    none = np.zeros(mask.shape, bool)
    assert np.isfinite(pre.inverse(jx, np.zeros_like(px), none, mx)[1]).all()
    assert P.Preprocessor.from_dict(pre.to_dict()).network_jet_features == pre.network_jet_features


def test_sort_by_pt_orders_jets_and_particles_like_the_data():
    rng = np.random.default_rng(0)
    jets = rng.uniform(1, 2, (5, 2, 5))
    parts = rng.uniform(0, 1, (5, 2, 6, 3))
    mask = rng.uniform(size=(5, 2, 6)) < 0.6
    parts *= mask[..., None]
    j, p, m = E.sort_by_pt(jets, parts, mask)
    assert np.all(j[:, 0, 0] >= j[:, 1, 0])
    assert np.all(m[..., :-1] >= m[..., 1:]) and np.array_equal(m.sum(-1), np.take_along_axis(
        mask.sum(-1), np.argsort(-jets[..., 0], axis=1), 1))
    key = np.where(m, p[..., 0], -1.0)
    assert np.all(np.diff(key, axis=-1) <= 0)
    np.testing.assert_allclose(np.sort(p[..., 0].ravel()), np.sort(parts[..., 0].ravel()))


def test_preprocessing_particle_pt_rel_feature():
    pre = P.Preprocessor(pt_rel_eps=1e-6)
    mask = np.array([[[True, True, False]] * 2])
    p = np.zeros((1, 2, 3, 3))
    p[0, :, 0, 0], p[0, :, 1, 0] = 0.75, 0.25
    out = pre._particle_forward(p, mask)
    np.testing.assert_allclose(out[0, 0, :2, 0], np.log([0.25, 0.75]))
    assert out[0, 0, 2, 0] == 0.0
    p1 = np.zeros((1, 2, 3, 3))
    p1[0, :, 0, 0] = 1.0                                             # one-particle jet
    assert np.isfinite(pre._particle_forward(p1, mask)).all()
    log = P.Preprocessor(pt_rel_transform="log")._particle_forward(p, mask)
    np.testing.assert_allclose(log[0, 0, :2, 0], np.log([0.75, 0.25]))
    with pytest.raises(ValueError, match="pt_rel_transform"):
        P.Preprocessor(pt_rel_transform="sqrt")


def test_region_masks():
    mjj = np.array([2299.0, 2300.0, 3299.9, 3300.0, 3500.0, 3699.9, 3700.0, 4999.0, 5000.0, 6000.0])
    sr, sb = R.region_masks(mjj, WINDOWS)
    np.testing.assert_array_equal(sr, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(sb, [0, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    assert not np.any(sr & sb)
    with pytest.raises(ValueError, match="overlaps"):
        R.region_masks(mjj, {"sr": [3300, 3700], "sb": [[2300, 3400]]})


def test_split_and_event_id_disjointness():
    tr, va = R.split_indices(1000, 0.6, seed=3)
    assert len(tr) == 600 and len(va) == 400
    assert len(np.union1d(tr, va)) == 1000
    ids_a = R.make_event_ids(np.arange(10), 0)
    ids_b = R.make_event_ids(np.arange(10), 1)               # same rows, other file
    R.assert_disjoint(ids_a, ids_b, "train", "eval")
    with pytest.raises(ValueError, match="share 2 events"):
        R.assert_disjoint(ids_a, np.concatenate([ids_b, ids_a[3:5]]), "train", "eval")


def test_dijet_cache(tmp_path):
    parts, label = synthetic_events(24, seed=2)
    raw = tmp_path / "raw" / "events.h5"
    raw.parent.mkdir()
    write_lhco(raw, parts, label)
    out = tmp_path / "cache" / "dijets.h5"
    n = make_dijet_cache(raw, out, num_particles=20, source_index=3, start=2, chunksize=7, progress=False)
    assert n == 22
    c = read_dijet_cache(out)
    assert c["particles"].shape == (22, 2, 20, 3) and c["mask"].dtype == bool
    np.testing.assert_array_equal(c["event_id"], R.make_event_ids(np.arange(2, 24), 3))
    np.testing.assert_array_equal(c["label"], label[2:])
    ref, _ = E.cluster_dijets(parts[2:], 20)
    np.testing.assert_allclose(c["jets"], ref["jets"], rtol=1e-5)
    assert c["attrs"]["n_dropped"] == 0 and c["attrs"]["source_index"] == 3
    assert [f.name for f in out.parent.iterdir()] == ["dijets.h5"]     # no temporary left
    with pytest.raises(DataFormatError):
        read_dijet_cache(raw)


def test_mjj_kde_samples_inside_sr():
    rng = np.random.default_rng(0)
    mjj = rng.uniform(3300, 3700, 500)
    pre = P.Preprocessor()
    kde = K.MjjKDE(pre, bandwidth=0.01, sr=WINDOWS["sr"]).fit(mjj)
    s = kde.sample_sr_mjj(2000, seed=1)
    assert s.shape == (2000,) and s.min() >= 3300 and s.max() < 3700
    np.testing.assert_array_equal(s, kde.sample_sr_mjj(2000, seed=1))
    # Smoothing, not resampling: draws differ from the fitted values.
    assert np.min(np.abs(s[:, None] - mjj[None, :]), axis=1).mean() > 0.1
    # A KDE fitted far outside the SR cannot fill it: clear error instead of a hang.
    far = K.MjjKDE(pre, bandwidth=0.001, sr=WINDOWS["sr"]).fit(rng.uniform(2300, 2400, 50))
    with pytest.raises(RuntimeError, match="no mass in the SR"):
        far.sample_sr_mjj(10, seed=0, max_rounds=5)
