"""Draw SIC curves (ε_s/√ε_b vs ε_s) from saved prediction files of EITHER package.

Prediction file format (``.npz``): for every method ``M`` two 1-D arrays of equal length,
``scores_M`` (higher = more signal-like) and ``labels_M`` (1 = signal, 0 = background).
Optional 0-d string array ``title``. Each method becomes one curve. SIC is left empty where
fewer than ``--min-background`` background events pass the cut (default 10).

    python plots/plot_sic.py runs/demo/predictions/sic_top.npz --out runs/demo/plots/sic
"""
from __future__ import annotations

import argparse
import os
import sys


sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from shared import metrics, plotting  # noqa: E402
from shared.plotting import load_predictions, save_predictions  # noqa: E402,F401


def plot_sic(files, out_stem, min_background=10, labels=None, ax=None, styles=None):
    """Draw every method of every file; returns the saved paths (or None when ``ax`` given)."""
    own = ax is None
    if own:
        fig, ax = plotting.figure()
    for i, f in enumerate(files):
        prefix = (labels[i] + ": ") if labels else ""
        for n, (lab, sc) in load_predictions(f).items():
            eff_s, sic = metrics.sic_curve(lab, sc, min_background=min_background)
            kw = (styles or {}).get(n, {})
            ax.plot(eff_s, sic, label=kw.pop("label", prefix + n.replace("_", " ")), **kw)
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel(r"Signal efficiency $\epsilon_s$")
    ax.set_ylabel(r"SIC = $\epsilon_s\,/\,\epsilon_b^{1/2}$")
    ax.set_xlim(0, 1)
    ax.relim()  # several calls may draw into one axes: rescale to everything drawn so far
    ax.autoscale(enable=True, axis="y")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    plotting.label_plot(ax, f"SIC empty where < {min_background} background events pass")
    return plotting.save(fig, out_stem) if own else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", help="prediction .npz files (format in the module doc)")
    p.add_argument("--out", required=True, help="output path stem; writes .png and .pdf")
    p.add_argument("--labels", nargs="*", help="one legend prefix per file")
    p.add_argument("--min-background", type=int, default=10)
    a = p.parse_args(argv)
    if a.labels and len(a.labels) != len(a.files):
        p.error("--labels needs one entry per file")
    for path in plot_sic(a.files, a.out, a.min_background, a.labels):
        print(path)


if __name__ == "__main__":
    main()
