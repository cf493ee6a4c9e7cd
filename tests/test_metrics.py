"""ROC/AUC/SIC against scikit-learn and the minimum-background rule."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from shared.metrics import auc, inverse_bkg_eff_at, max_sic, roc, sic_curve


@pytest.fixture(params=[0, 1, 2])
def sample(request):
    rng = np.random.default_rng(request.param)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + 0.8 * labels
    if request.param == 2:
        scores = np.round(scores, 1)  # many ties
    return labels, scores


def test_roc_and_auc_match_sklearn(sample):
    labels, scores = sample
    fpr, tpr, thr = roc(labels, scores)
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.all(np.diff(thr) < 0)
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_sic_nan_below_background_threshold():
    labels = np.r_[np.ones(100), np.zeros(1000)].astype(int)
    scores = np.r_[np.linspace(1.0, 2.0, 100), np.linspace(0.0, 1.5, 1000)]
    eff_s, sic = sic_curve(labels, scores, min_background=10)
    _, _, thr = roc(labels, scores)
    n_bkg = np.array([(scores[labels == 0] >= c).sum() for c in thr[1:]])
    assert np.all(np.isnan(sic[n_bkg < 10])) and np.all(np.isfinite(sic[n_bkg >= 10]))
    expected = eff_s[n_bkg >= 10] / np.sqrt(n_bkg[n_bkg >= 10] / 1000)
    np.testing.assert_allclose(sic[n_bkg >= 10], expected)
    assert max_sic(labels, scores, 10) == pytest.approx(np.nanmax(expected))
    # a looser threshold can only admit larger values from the tail
    assert max_sic(labels, scores, 1) >= max_sic(labels, scores, 10)
    assert np.isnan(max_sic(labels, scores, min_background=10_000))


def test_inverse_bkg_eff():
    labels = np.r_[np.ones(4), np.zeros(4)].astype(int)
    scores = np.array([8, 7, 6, 5, 7.5, 4, 3, 2], float)
    # at eff_s = 0.5 (scores >= 7) one of four background events passes
    assert inverse_bkg_eff_at(labels, scores, 0.5) == pytest.approx(4.0)
    assert inverse_bkg_eff_at(labels, scores, 0.6) == pytest.approx(4.0)
    assert inverse_bkg_eff_at(labels, scores, 0.25) == np.inf  # the cut at 8 passes no background
    assert inverse_bkg_eff_at(labels, scores, 1.0) == pytest.approx(4.0)
    perfect = np.r_[np.ones(5) * 2, np.zeros(5)]
    assert inverse_bkg_eff_at(np.r_[np.ones(5), np.zeros(5)].astype(int), perfect, 0.4) == np.inf


def test_bad_input():
    with pytest.raises(ValueError, match="both"):
        auc(np.ones(5), np.arange(5.0))
    with pytest.raises(ValueError, match="NaN"):
        auc(np.r_[1, 0], np.r_[np.nan, 1.0])
