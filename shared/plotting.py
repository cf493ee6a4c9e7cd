"""Plot style and saving shared by both packages (mplhep style, PNG + PDF side by side), the
prediction-file format (npz of labels + scores per method) and the SIC curves drawn from it
(``plot_sic``, also ``python plots/plot_sic.py``)."""
from __future__ import annotations

import os

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared.io import atomic_path, atomic_savez  # noqa: E402

COLORS = {"qcd": "#3f90da", "top": "#bd1f01", "zprime": "#94a4a2", "standard": "#3f90da",
          "likelihood": "#ffa90e", "density_ratio": "#832db6", "classifier": "#a96b59"}
LABELS = {"qcd": "QCD", "top": "Top quark", "zprime": "Z'", "standard": r"$\lambda=\sigma^2$",
          "likelihood": r"$\lambda=g^2$ (max. likelihood)"}


def set_style():
    """Apply the mplhep style once (falls back to matplotlib defaults if mplhep is missing)."""
    try:
        import mplhep as hep
        plt.style.use(hep.style.CMS)
    except Exception:  # mplhep is optional for plotting correctness
        pass
    plt.rcParams.update({"font.size": 16, "legend.fontsize": 13, "figure.figsize": (8, 6.5)})


def figure(ncols=1, **kw):
    """New styled figure; returns (fig, axes)."""
    set_style()
    return plt.subplots(1, ncols, figsize=(8 * ncols, 6.5), **kw)


def label_plot(ax, text="Simulation (stand-in data)"):
    """Small caption in the upper-left corner, stating what the data are."""
    ax.text(0.02, 1.01, text, transform=ax.transAxes, fontsize=12, va="bottom", ha="left")


def save(fig, path_stem, announce=False):
    """Save ``path_stem``.png and .pdf (folders created, atomic replace); returns both paths,
    printing them when ``announce``."""
    out = []
    for ext in ("png", "pdf"):
        final = f"{path_stem}.{ext}"
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=110 if ext == "png" else None)
        out.append(final)
        if announce:
            print(final)
    plt.close(fig)
    return out


# Prediction files (.npz) read by plots/plot_sic.py: for every method M, 1-D arrays
# `scores_M` (higher = more signal-like) and `labels_M` (1 = signal, 0 = background); optional
# 0-d string `title`.

def load_predictions(path):
    """{method: (labels, scores)} from one prediction file; one clear error on bad input, or
    when the file has a fingerprint (``shared.run``) and something it was made from was made
    again since."""
    from shared.errors import DataFormatError
    from shared.io import read_npz
    from shared.run import require_current
    require_current(path, "prediction file", "make it again with the stage that writes it")
    d = read_npz(path, "prediction file")
    names = sorted(k[len("scores_"):] for k in d if k.startswith("scores_"))
    if not names:
        raise DataFormatError(path, "scores_*", "no arrays named scores_<method>")
    out = {}
    for n in names:
        if f"labels_{n}" not in d:
            raise DataFormatError(path, f"labels_{n}", f"missing (needed for scores_{n})")
        lab, sc = np.asarray(d[f"labels_{n}"]), np.asarray(d[f"scores_{n}"])
        if lab.shape != sc.shape or lab.ndim != 1:
            raise DataFormatError(path, f"labels_{n}", f"shape {lab.shape} != scores {sc.shape}")
        out[n] = (lab, sc)
    return out


def plot_sic(files, out_stem=None, min_background=10, labels=None, ax=None, styles=None):
    """SIC curves (ε_s/√ε_b vs ε_s) of every method of every prediction file; SIC left empty
    where fewer than ``min_background`` background events pass. Draws into ``ax`` if given,
    else saves ``out_stem``.png/.pdf and returns the paths."""
    from shared import metrics
    own = ax is None
    if own:
        fig, ax = figure()
    for i, f in enumerate(files):
        prefix = (labels[i] + ": ") if labels else ""
        for n, (lab, sc) in load_predictions(f).items():
            eff_s, sic = metrics.sic_curve(lab, sc, min_background=min_background)
            kw = dict((styles or {}).get(n, {}))
            ax.plot(eff_s, sic, label=kw.pop("label", prefix + n.replace("_", " ")), **kw)
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel(r"Signal efficiency $\epsilon_s$")
    ax.set_ylabel(r"SIC = $\epsilon_s\,/\,\epsilon_b^{1/2}$")
    ax.set_xlim(0, 1)
    ax.relim()  # several calls may draw into one axes: rescale to everything drawn so far
    ax.autoscale(enable=True, axis="y")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    label_plot(ax, f"SIC empty where < {min_background} background events pass")
    return save(fig, out_stem) if own else None


def save_predictions(path, curves, title=None):
    """Write ``{method: (labels, scores)}`` in the format above (atomic)."""
    arrays = {}
    for n, (lab, sc) in curves.items():
        arrays[f"labels_{n}"] = np.asarray(lab)
        arrays[f"scores_{n}"] = np.asarray(sc, np.float64)
    if title is not None:
        arrays["title"] = np.asarray(title)
    atomic_savez(path, **arrays)


def figure_cli(fn, name, package, argv=None, options=()):
    """Command line of one figure function ``fn(run, out, **kw)`` (plots/<name>.py): ``--run``,
    ``--out`` and ``options``, a list of argparse ``(flags, kwargs)`` whose values are passed to
    ``fn`` by their dest names. Bad input is one line and exit 2 (``shared.cli.run_cli``)."""
    import argparse
    from pathlib import Path

    from shared.cli import run_cli

    def main(args=None):
        p = argparse.ArgumentParser(description=fn.__doc__.split("\n")[0])
        p.add_argument("--run", required=True, help=f"pipeline output folder ({package})")
        p.add_argument("--out", default=None, help=f"output path stem (default RUN/plots/{name})")
        dests = [p.add_argument(*flags, **kw).dest for flags, kw in options]
        a = p.parse_args(args)
        for path in fn(Path(a.run).resolve(), a.out, **{d: getattr(a, d) for d in dests}):
            print(path)

    run_cli(main, argv)
