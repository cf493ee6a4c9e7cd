"""lhco_fullphase Fig. 6: SIC and background rejection vs signal efficiency at one injection,
median and 68 % band over initialisations, diffusion-generated vs idealized background.
Both curves are left empty where fewer than evaluate.min_background (10) background events pass.

    python plots/lhco_fig6_sic_roc.py --run runs/lhco [--injection N] [--out STEM]
(Single curves per initialisation: python plots/plot_sic.py runs/lhco/predictions/sic_injN.npz --out STEM)
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from lhco_fullphase import figures  # noqa: E402
from lhco_fullphase.evaluate import load_runs  # noqa: E402
from shared import plotting  # noqa: E402

STYLE = {"diffusion": ("#bd1f01", "diffusion background"), "idealized": ("#3f90da", "idealized (true background)")}


def main(argv=None):
    a = figures.parse_args(__doc__, argv)
    res = json.load(open(os.path.join(a.run, "results_eval.json")))
    mb = int(res.get("min_background", 10))
    injections = sorted({int(n) for m in res["scan"].values() for n in m})
    if not injections:
        raise ValueError(f"{a.run}/results_eval.json: field 'scan': no results")
    n = a.injection if a.injection is not None else injections[-1]
    fig, (ax_s, ax_r) = plotting.figure(2)
    grid = np.linspace(0.005, 1.0, 200)
    for method, (color, label) in STYLE.items():
        runs = load_runs(a.run, method, n)
        if not runs:
            continue
        s = res["scan"][method][str(n)]
        for ax, kind in ((ax_s, "sic"), (ax_r, "rejection")):
            med, lo, hi = figures.band_curves(runs, kind, grid, mb)
            ax.plot(grid, med, color=color, label=f"{label} ({len(runs)} inits, AUC "
                                                   f"{s['auc_summary']['median']:.2f})")
            ax.fill_between(grid, lo, hi, color=color, alpha=0.25, lw=0)
    ax_r.plot(grid, 1.0 / grid, color="gray", ls=":", label="random")
    ax_s.axhline(1.0, color="gray", ls=":", lw=1)
    ax_s.set_xlabel(r"Signal efficiency $\epsilon_s$")
    ax_s.set_ylabel(r"SIC = $\epsilon_s/\sqrt{\epsilon_b}$")
    ax_r.set_xlabel(r"Signal efficiency $\epsilon_s$")
    ax_r.set_ylabel(r"Background rejection $1/\epsilon_b$")
    ax_r.set_yscale("log")
    for ax in (ax_s, ax_r):
        ax.set_xlim(0, 1)
        ax.legend(frameon=False, fontsize=10)
    ax_s.set_ylim(bottom=0)
    any_s = res["scan"].get("diffusion", res["scan"].get("idealized"))[str(n)]
    plotting.label_plot(ax_s, f"{n} signal in {any_s['n_data_background']} SR bkg (S/B {any_s['s_over_b']:.2f}); "
                              f"median, 68% band; empty < {mb} bkg")
    plotting.label_plot(ax_r, f"eval: {any_s['n_eval_signal']} sig, {any_s['n_eval_background']} bkg (stand-in data)")
    out = a.out or os.path.join(a.run, "plots", "lhco_fig6_sic_roc")
    return plotting.save(fig, out, announce=True)


if __name__ == "__main__":
    main()
