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

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from shared import metrics, plotting  # noqa: E402


def load_predictions(path):
    """{method: (labels, scores)} from one prediction file; one clear error on bad input."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: prediction file does not exist")
    with np.load(path, allow_pickle=False) as d:
        names = sorted(k[len("scores_"):] for k in d.files if k.startswith("scores_"))
        if not names:
            raise ValueError(f"{path}: field 'scores_*': no arrays named scores_<method>")
        out = {}
        for n in names:
            if f"labels_{n}" not in d.files:
                raise ValueError(f"{path}: field 'labels_{n}': missing (needed for scores_{n})")
            lab, sc = np.asarray(d[f"labels_{n}"]), np.asarray(d[f"scores_{n}"])
            if lab.shape != sc.shape or lab.ndim != 1:
                raise ValueError(f"{path}: field 'labels_{n}': shape {lab.shape} != scores {sc.shape}")
            out[n] = (lab, sc)
    return out


def save_predictions(path, curves, title=None):
    """Write ``{method: (labels, scores)}`` in the format above (atomic)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {}
    for n, (lab, sc) in curves.items():
        arrays[f"labels_{n}"] = np.asarray(lab)
        arrays[f"scores_{n}"] = np.asarray(sc, np.float64)
    if title is not None:
        arrays["title"] = np.asarray(title)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


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
    ax.set_ylabel(r"SIC = $\epsilon_s/\sqrt{\epsilon_b}$")
    ax.set_xlim(0, 1)
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
