"""Plot style and saving shared by both packages (mplhep style, PNG + PDF side by side) and the
prediction-file format (npz of labels + scores per method) that plots/plot_sic.py draws."""
from __future__ import annotations

import os

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared.config import atomic_savez  # noqa: E402

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
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)) or ".", exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        final = f"{path_stem}.{ext}"
        tmp = f"{path_stem}.tmp.{ext}"
        fig.savefig(tmp, bbox_inches="tight", dpi=110 if ext == "png" else None)
        os.replace(tmp, final)
        out.append(final)
        if announce:
            print(final)
    plt.close(fig)
    return out


# Prediction files (.npz) read by plots/plot_sic.py: for every method M, 1-D arrays
# `scores_M` (higher = more signal-like) and `labels_M` (1 = signal, 0 = background); optional
# 0-d string `title`.

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
    atomic_savez(path, **arrays)
