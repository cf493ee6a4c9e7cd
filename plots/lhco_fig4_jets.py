"""lhco_fullphase Fig. 4: jet kinematics (both jets) and mjj, generated vs true, SB and SR,
with ratio panels. True SR = the independent true SR background (no signal).

    python plots/lhco_fig4_jets.py --run runs/lhco [--data-dir DIR] [--out STEM]
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from lhco_fullphase import figures  # noqa: E402
from shared import plotting  # noqa: E402

PANELS = ((0, r"jet $p_T$ [GeV]"), (1, r"jet $\eta$"), (3, r"jet mass [GeV]"), (4, "jet constituents N"))


def main(argv=None):
    a = figures.parse_args(__doc__, argv)
    pairs = figures.generated_vs_true(a.run, a.data_dir)
    if not pairs:
        raise FileNotFoundError(f"{a.run}/generated: no generated events (run the sample stage)")
    fig, axes = figures.grid_figure(len(pairs), len(PANELS) + 1)
    for r, (region, (gen, true)) in enumerate(pairs.items()):
        for c, (f, name) in enumerate(PANELS):
            g, t = gen["jets"][..., f].ravel(), true["jets"][..., f].ravel()
            if f == 4:
                hi = max(g.max(), t.max()) + 1.5
                bins = np.arange(0.5, hi, max(1, int(hi // 30)))
            else:
                bins = figures.quantile_bins(g, t)
            figures.hist_ratio(*axes[r][c], g, t, bins, name)
            axes[r][c][0].set_title(f"{region.upper()}", fontsize=11, loc="left")
        figures.hist_ratio(*axes[r][-1], gen["mjj"], true["mjj"], figures.quantile_bins(gen["mjj"], true["mjj"]),
                           r"$m_{jj}$ [GeV]")
        axes[r][-1][0].set_title(f"{region.upper()}", fontsize=11, loc="left")
    axes[0][0][0].legend(fontsize=9, frameon=False)
    fig.suptitle("Jets: generated vs true (simulated stand-in data, CPU demo scale)", fontsize=13)
    out = a.out or os.path.join(a.run, "plots", "lhco_fig4_jets")
    return plotting.save(fig, out, announce=True)


if __name__ == "__main__":
    main()
