"""Figure helpers for plots/lhco_fig{4,5,6,7}_*.py: inputs of a finished run, histograms with
ratio panels, median + band curves over initialisations."""
from __future__ import annotations

import json
import os

import numpy as np

from shared import metrics


def default_data_dir(run):
    info = os.path.join(run, "run_info.json")
    if os.path.isfile(info):
        return json.load(open(info))["data_dir"]
    return os.path.join(run, "data")


def parse_args(doc, argv):
    import argparse
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--run", required=True, help="pipeline output folder (OUT)")
    p.add_argument("--data-dir", default=None, help="prepared data (default: from OUT/run_info.json)")
    p.add_argument("--out", default=None, help="output path stem (default OUT/plots/<figure>)")
    p.add_argument("--injection", type=int, default=None, help="fig 6: injection (default: largest)")
    a = p.parse_args(argv)
    a.run = os.path.abspath(a.run)
    a.data_dir = a.data_dir or default_data_dir(a.run)
    return a


def generated_vs_true(run, data_dir):
    """{region: (generated, true)} physical arrays: SB (the sb_val events whose mjj was used)
    and SR (true = the independent idealized background, no signal)."""
    from lhco_fullphase.prepare import Prepared
    from lhco_fullphase.sample import generated_path, read_generated
    prep = Prepared(data_dir)
    out = {}
    for region in ("sb", "sr"):
        path = generated_path(run, region)
        if not os.path.isfile(path):
            continue
        g = read_generated(path)
        true = prep.take(g["sb_event_id"]) if region == "sb" else prep.take("idealized_bkg")
        out[region] = (g, true)
    return out


def hist_ratio(ax, ax_r, gen, true, bins, xlabel, log=False):
    """Normalised histograms of true (filled) and generated (line) + ratio generated/true with
    Poisson errors of both."""
    gen, true = np.asarray(gen, float), np.asarray(true, float)
    gen, true = gen[np.isfinite(gen)], true[np.isfinite(true)]
    ht, _ = np.histogram(true, bins)
    hg, _ = np.histogram(gen, bins)
    wt, wg = 1.0 / max(ht.sum(), 1) / np.diff(bins), 1.0 / max(hg.sum(), 1) / np.diff(bins)
    ax.stairs(ht * wt, bins, fill=True, alpha=0.35, color="#3f90da", label=f"true ({len(true)})")
    ax.stairs(hg * wg, bins, color="#bd1f01", lw=1.8, label=f"generated ({len(gen)})")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("density", fontsize=11)
    ax.tick_params(labelbottom=False, labelsize=9)
    centers = 0.5 * (bins[1:] + bins[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (hg * wg) / (ht * wt)
        err = r * np.sqrt(1.0 / np.maximum(hg, 1) + 1.0 / np.maximum(ht, 1))
    ok = (ht > 0) & (hg > 0)
    ax_r.errorbar(centers[ok], r[ok], yerr=err[ok], fmt="o", ms=3, color="#bd1f01")
    ax_r.axhline(1.0, color="gray", lw=1)
    ax_r.set_ylim(0.0, 2.0)
    ax_r.set_ylabel("gen/true", fontsize=10)
    ax_r.set_xlabel(xlabel, fontsize=11)
    ax_r.tick_params(labelsize=9)


def grid_figure(nrows, ncols, panel=(3.6, 3.4)):
    """Figure with ``nrows`` × ``ncols`` (main, ratio) panel pairs; returns fig, axes[r][c] = (main, ratio)."""
    from shared import plotting
    import matplotlib.pyplot as plt
    plotting.set_style()
    fig = plt.figure(figsize=(panel[0] * ncols, (panel[1] + 0.8) * nrows))
    # (main, ratio, spacer) rows per region: room for the x label and the next row's title
    gs = fig.add_gridspec(3 * nrows, ncols, height_ratios=[3, 1, 0.9] * nrows, hspace=0.08, wspace=0.35)
    axes = []
    for r in range(nrows):
        row = []
        for c in range(ncols):
            a = fig.add_subplot(gs[3 * r, c])
            b = fig.add_subplot(gs[3 * r + 1, c], sharex=a)
            row.append((a, b))
        axes.append(row)
    return fig, axes


def quantile_bins(*arrays, n=30, q=(0.005, 0.995)):
    v = np.concatenate([np.asarray(a, float).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    lo, hi = np.quantile(v, q) if v.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n + 1)


def band_curves(runs, kind, grid, min_background=10):
    """Median and central 68 % band over initialisations, on ``grid`` of signal efficiency:
    ``kind`` = "sic" (ε_s/√ε_b, NaN below min_background) or "rejection" (1/ε_b)."""
    ys = []
    for r in runs:
        lab, sc = r["labels"], r["scores"]
        if kind == "sic":
            eff_s, y = metrics.sic_curve(lab, sc, min_background)
        else:
            fpr, tpr, _ = metrics.roc(lab, sc)
            eff_s = tpr
            with np.errstate(divide="ignore"):
                y = np.where(fpr > 0, 1.0 / np.maximum(fpr, 1e-300), np.nan)
            n_b = int((np.asarray(lab) == 0).sum())
            y[fpr * n_b < min_background] = np.nan
        order = np.argsort(eff_s, kind="stable")
        ys.append(np.interp(grid, eff_s[order], y[order], left=np.nan, right=np.nan))
    ys = np.array(ys)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (np.nanmedian(ys, 0), np.nanpercentile(ys, 16, 0), np.nanpercentile(ys, 84, 0))
