"""The paper's figures 1–6 from a finished run folder (importable; ``plots/fig*.py`` are thin
command-line wrappers: ``python plots/fig2_scores_qcd.py --run OUT``).

Each function takes the run folder and an output path stem (default ``OUT/plots/<name>``) and
returns the saved PNG + PDF paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from permutation_ad import artifacts
from permutation_ad.evaluate import read_permutation
from permutation_ad.report import anomaly_scores_of
from permutation_ad.schema import TEST_SAMPLES
from shared import metrics, plotting
from shared.errors import DataFormatError
from shared.io import read_json

OBJ_STYLE = {"standard": "-", "likelihood": "--"}


def _stem(run, name, out):
    return str(out) if out else str(artifacts.plots_dir(run) / name)


def _current(path, what):
    """``path``, checked not to be made from outputs that were made again since (e.g. the
    likelihoods of a density that was retrained afterwards)."""
    from shared.run import require_current
    require_current(path, what, "run the evaluate and report stages again "
                                "(python -m permutation_ad.pipeline --stages evaluate,report)")
    return path


def score_hist(run, sample, key, xlabel, title, ax):
    """Histogram of score ``key`` of the QCD/top/Z′ test jets under the ``sample``-trained
    densities (both objectives) into ``ax``."""
    lls = {o: artifacts.read_merged_loglik(run, sample, o, TEST_SAMPLES) for o in OBJ_STYLE}
    for o in lls:
        _current(artifacts.loglik_path(run, sample, o), "log-likelihood file")
    lls = {o: ll for o, ll in lls.items() if ll is not None}
    if not lls:
        raise DataFormatError(Path(run) / "eval", f"loglik_{sample}_*.npz", "missing (run the evaluate stage)")
    v = np.concatenate([anomaly_scores_of(ll, t)[key] for ll in lls.values() for t in TEST_SAMPLES])
    lo, hi = np.percentile(v[np.isfinite(v)], [0.5, 99.5])
    bins = np.linspace(lo, hi, 40)
    for o, ll in lls.items():
        for t in TEST_SAMPLES:
            ax.hist(anomaly_scores_of(ll, t)[key], bins=bins, density=True, histtype="step", lw=2,
                    ls=OBJ_STYLE[o], color=plotting.COLORS[t],
                    label=f"{plotting.LABELS[t]}, {plotting.LABELS[o]}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Normalised entries")
    ax.legend(frameon=False, fontsize=11)
    plotting.label_plot(ax, title)


def fig1_permutations(run, out=None):
    """NLL of one QCD jet under several permutations of its particles (QCD-trained density),
    mean ± std of repeated Hutchinson estimates."""
    r = read_permutation(run)
    _current(artifacts.permutation_path(run), "permutation test")
    if r is None:
        raise DataFormatError(artifacts.permutation_path(run), "file", "missing (run the evaluate stage)")
    mean, std = np.asarray(r["mean"]), np.asarray(r["std"])
    fig, ax = plotting.figure()
    x = np.arange(1, len(mean) + 1)
    ax.errorbar(x, mean, yerr=std, fmt="o", color=plotting.COLORS["qcd"], capsize=5, ms=8,
                label=f"QCD jet #{r['jet_index']} ({r['num_particles']} particles): mean ± std of "
                      f"{len(r['nll'][0])} estimates (grey)")
    for row, xi in zip(np.asarray(r["nll"]), x):
        ax.plot(np.full(len(row), xi) + 0.15, row, ".", color="gray", alpha=0.5)
    ax.axhline(mean.mean(), color="gray", ls=":", lw=1)
    span = max(np.abs(np.asarray(r["nll"]) - mean.mean()).max() * 1.4, 1e-3)
    ax.set_ylim(mean.mean() - span, mean.mean() + span)
    ax.set_xticks(x)
    ax.set_xticklabels(["original"] + [f"perm. {i}" for i in x[1:] - 1])
    ax.set_ylabel(r"$-\log p(x)$ (physical units)")
    ax.legend(frameon=False, fontsize=11)
    plotting.label_plot(ax, f"Max pairwise deviation {r['max_pairwise_deviation_sigma']:.2f}$\\sigma$")
    return plotting.save(fig, _stem(run, "fig1_permutations", out))


def fig2_scores_qcd(run, out=None):
    """Anomaly score −log p(jet)/N of QCD, top and Z′ test jets, QCD-trained densities."""
    fig, ax = plotting.figure()
    score_hist(run, "qcd", "nll_per_particle", r"Anomaly score $-\log p(x)/N$",
               "Trained on QCD jets", ax)
    return plotting.save(fig, _stem(run, "fig2_scores_qcd", out))


def fig3_sic(run, out=None):
    """SIC curves of top and Z′ vs QCD for the QCD-trained densities (score −log p/N)."""
    mb = 10
    res = artifacts.results_path(run)
    if res.is_file():   # the same minimum-background rule as results.json
        for by_objective in read_json(res, "results").get("unsupervised", {}).get("top", {}).values():
            mb = by_objective["nll_per_particle"]["min_background_events"]
    fig, ax = plotting.figure()
    for sig in ("top", "zprime"):
        styles = {o: {"color": plotting.COLORS[sig], "ls": OBJ_STYLE[o],
                      "label": f"{plotting.LABELS[sig]}, {plotting.LABELS[o]}"} for o in OBJ_STYLE}
        plotting.plot_sic([artifacts.predictions_path(run, f"sic_{sig}")], min_background=mb,
                          ax=ax, styles=styles)
    return plotting.save(fig, _stem(run, "fig3_sic", out))


def fig4_scores_top(run, out=None):
    """Anomaly score −log p(jet)/N of QCD, top and Z′ test jets, top-trained densities."""
    fig, ax = plotting.figure()
    score_hist(run, "top", "nll_per_particle", r"Anomaly score $-\log p(x)/N$",
               "Trained on top jets", ax)
    return plotting.save(fig, _stem(run, "fig4_scores_top", out))


def fig5_roc(run, out=None):
    """ROC of top vs QCD — unsupervised (left); density ratio log p_top − log p_QCD and the
    supervised classifier (right)."""
    curves = plotting.load_predictions(artifacts.predictions_path(run, "roc_top"))
    fig, axes = plotting.figure(ncols=2)
    panels = [("unsupervised", axes[0], "Unsupervised (QCD-trained, $-\\log p/N$)"),
              ("density_ratio", axes[1], "Density ratio vs classifier")]
    for prefix, ax, title in panels:
        for name, (lab, sc) in curves.items():
            if not (name.startswith(prefix) or (prefix == "density_ratio" and name == "classifier")):
                continue
            fpr, tpr, _ = metrics.roc(lab, sc)
            obj = name.split("_")[-1]
            color = plotting.COLORS["classifier"] if name == "classifier" else plotting.COLORS[obj]
            ax.plot(tpr, fpr, color=color, ls=OBJ_STYLE.get(obj, "-"),
                    label=f"{name.replace('_', ' ')} (AUC {metrics.auc(lab, sc):.3f})")
        ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
        ax.set_xlabel(r"True positive rate $\epsilon_s$ (top)")
        ax.set_ylabel(r"False positive rate $\epsilon_b$ (QCD)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(frameon=False, fontsize=11, loc="upper left")
        plotting.label_plot(ax, title)
    return plotting.save(fig, _stem(run, "fig5_roc", out))


def fig6_nll(run, out=None):
    """Raw −log p(jet) of QCD, top and Z′ jets; QCD-trained (left), top-trained (right)."""
    fig, axes = plotting.figure(ncols=2)
    for ax, sample in zip(axes, ("qcd", "top")):
        score_hist(run, sample, "nll", r"$-\log p(x)$ (physical units)",
                   f"Trained on {plotting.LABELS[sample]} jets", ax)
    return plotting.save(fig, _stem(run, "fig6_nll", out))


FIGURES = {f.__name__: f for f in (fig1_permutations, fig2_scores_qcd, fig3_sic, fig4_scores_top,
                                   fig5_roc, fig6_nll)}


def figures(run) -> list[str]:
    """Stage ``figures``: every figure of the run (``Run`` or run folder)."""
    out = getattr(run, "out", run)
    return [p for fn in FIGURES.values() for p in fn(out)]


def cli(name, argv=None):
    """Command line of one figure (used by plots/<name>.py)."""
    plotting.figure_cli(FIGURES[name], name, "permutation_ad", argv)
