"""lhco_fullphase Fig. 7: max SIC and AUC vs the number of injected signal events, median and
68 % band over initialisations, diffusion-generated vs idealized background.

    python plots/lhco_fig7_scan.py --run runs/lhco [--out STEM]
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from lhco_fullphase import figures  # noqa: E402
from shared import plotting  # noqa: E402

STYLE = {"diffusion": ("#bd1f01", "o", "diffusion background"),
         "idealized": ("#3f90da", "s", "idealized (true background)")}


def main(argv=None):
    a = figures.parse_args(__doc__, argv)
    res = json.load(open(os.path.join(a.run, "results_eval.json")))
    fig, (ax_s, ax_a) = plotting.figure(2)
    for method, (color, marker, label) in STYLE.items():
        scan = res["scan"].get(method, {})
        if not scan:
            continue
        ns = sorted(int(n) for n in scan)
        for ax, key in ((ax_s, "max_sic_summary"), (ax_a, "auc_summary")):
            med = np.array([scan[str(n)][key]["median"] for n in ns])
            lo = np.array([scan[str(n)][key]["lo"] for n in ns])
            hi = np.array([scan[str(n)][key]["hi"] for n in ns])
            ax.plot(ns, med, marker=marker, color=color, label=label)
            ax.fill_between(ns, lo, hi, color=color, alpha=0.25, lw=0)
    ax_s.axhline(1.0, color="gray", ls=":", lw=1)
    ax_a.axhline(0.5, color="gray", ls=":", lw=1)
    for ax, name in ((ax_s, "max SIC"), (ax_a, "AUC")):
        ax.set_xlabel("injected signal events in the SR data")
        ax.set_ylabel(name)
        ax.legend(frameon=False, fontsize=11)
    any_m = next(iter(v for v in res["scan"].values() if v))
    nb = next(iter(any_m.values()))["n_data_background"]
    plotting.label_plot(ax_s, f"{nb} SR background in data; median, 68% band over inits; stand-in data")
    plotting.label_plot(ax_a, f"SIC needs >= {res.get('min_background', 10)} background events; CPU demo scale")
    out = a.out or os.path.join(a.run, "plots", "lhco_fig7_scan")
    return plotting.save(fig, out, announce=True)


if __name__ == "__main__":
    main()
