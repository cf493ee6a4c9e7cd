"""Helpers shared by the permutation_ad figure scripts (fig1–fig6): argument parsing, loading
a run's cached log-likelihoods, score histograms."""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from shared import plotting  # noqa: E402

OBJ_STYLE = {"standard": "-", "likelihood": "--"}
TESTS = ("qcd", "top", "zprime")


def parse(doc, name, argv):
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--run", required=True, help="pipeline output folder (permutation_ad)")
    p.add_argument("--out", default=None, help=f"output stem (default RUN/plots/{name})")
    a = p.parse_args(argv)
    a.out = a.out or os.path.join(a.run, "plots", name)
    return a


def loglik(run, sample, objective):
    """Cached log-likelihood dict of one density, or None if it was not evaluated."""
    path = os.path.join(run, "eval", f"loglik_{sample}_{objective}.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def scores(ll, test):
    from permutation_ad.model import anomaly_scores
    return anomaly_scores({k: ll[f"{k}_{test}"] for k in ("logp", "logp_jet", "logp_particles", "n")})


def score_hist(run, sample, key, xlabel, out, title, ax=None):
    """Histogram of score ``key`` of QCD/top/Z′ test jets under the ``sample``-trained densities;
    saves to ``out`` (PNG + PDF) unless an ``ax`` to draw into is given."""
    own = ax is None
    if own:
        fig, ax = plotting.figure()
    found = False
    all_vals = []
    for o in ("standard", "likelihood"):
        ll = loglik(run, sample, o)
        if ll is not None:
            all_vals += [scores(ll, t)[key] for t in TESTS]
    if not all_vals:
        raise FileNotFoundError(f"{run}/eval: no loglik_{sample}_*.npz (run the evaluate stage)")
    v = np.concatenate(all_vals)
    lo, hi = np.percentile(v[np.isfinite(v)], [0.5, 99.5])
    bins = np.linspace(lo, hi, 40)
    for o in ("standard", "likelihood"):
        ll = loglik(run, sample, o)
        if ll is None:
            continue
        found = True
        for t in TESTS:
            ax.hist(scores(ll, t)[key], bins=bins, density=True, histtype="step", lw=2,
                    ls=OBJ_STYLE[o], color=plotting.COLORS[t],
                    label=f"{plotting.LABELS[t]}, {plotting.LABELS[o]}")
    assert found
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Normalised entries")
    ax.legend(frameon=False, fontsize=11)
    plotting.label_plot(ax, title)
    return plotting.save(fig, out) if own else None
