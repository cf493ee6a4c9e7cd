"""ROC, AUC and significance-improvement metrics.  Higher score = more signal-like; label 1 = signal."""
from __future__ import annotations

import numpy as np

_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _check(labels, scores):
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"metrics: labels {labels.shape} and scores {scores.shape} differ in length")
    if not np.all(np.isfinite(scores)):
        raise ValueError("metrics: scores contain NaN or inf")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("metrics: need both signal (1) and background (0) labels")
    return labels, scores


def _counts(labels, scores):
    """Cumulative (signal, background) counts passing score >= each distinct threshold."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]   # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp, fp, s[last]


def roc(labels, scores):
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf like scikit-learn."""
    labels, scores = _check(labels, scores)
    tp, fp, thr = _counts(labels, scores)
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    return fpr, tpr, np.r_[np.inf, thr]


def auc(labels, scores):
    """Area under the ROC curve (trapezoidal, ties handled as in scikit-learn)."""
    fpr, tpr, _ = roc(labels, scores)
    return float(_trapezoid(tpr, fpr))


def sic_curve(labels, scores, min_background=10):
    """(eff_s, sic = eff_s / sqrt(eff_b)); NaN where fewer than ``min_background`` background
    events pass the cut (statistically meaningless tail)."""
    labels, scores = _check(labels, scores)
    tp, fp, _ = _counts(labels, scores)
    eff_s = tp / labels.sum()
    eff_b = fp / (~labels).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        sic = eff_s / np.sqrt(eff_b)
    sic[fp < min_background] = np.nan
    return eff_s, sic


def max_sic(labels, scores, min_background=10):
    """Largest SIC over cuts with at least ``min_background`` background events (NaN if none)."""
    _, sic = sic_curve(labels, scores, min_background)
    return float(np.nanmax(sic)) if np.isfinite(sic).any() else float("nan")


def inverse_bkg_eff_at(labels, scores, eff_s):
    """1/ε_b of the tightest cut whose signal efficiency reaches ``eff_s`` (no interpolation);
    inf if no background passes that cut."""
    fpr, tpr, _ = roc(labels, scores)
    idx = int(np.searchsorted(tpr, eff_s - 1e-12, side="left"))
    fb = float(fpr[min(idx, fpr.size - 1)])
    return float("inf") if fb == 0.0 else 1.0 / fb
