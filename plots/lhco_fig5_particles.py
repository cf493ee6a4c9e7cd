"""lhco_fullphase Fig. 5: particle features of both jets (real particles only), generated vs
true, SB and SR, with ratio panels.

    python plots/lhco_fig5_particles.py --run runs/lhco [--data-dir DIR] [--out STEM]
"""
from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from lhco_fullphase import figures  # noqa: E402
from shared import plotting  # noqa: E402

PANELS = ((0, r"particle $p_T/p_{T,jet}$", True), (1, r"particle $\Delta\eta$", False),
          (2, r"particle $\Delta\phi$", False))


def main(argv=None):
    a = figures.parse_args(__doc__, argv)
    pairs = figures.generated_vs_true(a.run, a.data_dir)
    if not pairs:
        raise FileNotFoundError(f"{a.run}/generated: no generated events (run the sample stage)")
    fig, axes = figures.grid_figure(len(pairs), len(PANELS) + 1)
    for r, (region, (gen, true)) in enumerate(pairs.items()):
        gm, tm = gen["mask"].astype(bool), true["mask"].astype(bool)
        for c, (f, name, log) in enumerate(PANELS):
            g, t = gen["particles"][..., f][gm], true["particles"][..., f][tm]
            bins = figures.quantile_bins(g, t, n=40)
            figures.hist_ratio(*axes[r][c], g, t, bins, name, log=log)
            axes[r][c][0].set_title(region.upper(), fontsize=11, loc="left")
        # Leading-particle momentum fraction (first slot: the hardest particle of true jets).
        g = gen["particles"][..., 0].max(-1).ravel()
        t = true["particles"][..., 0].max(-1).ravel()
        figures.hist_ratio(*axes[r][-1], g, t, figures.quantile_bins(g, t), r"leading $p_T/p_{T,jet}$")
        axes[r][-1][0].set_title(region.upper(), fontsize=11, loc="left")
    axes[0][0][0].legend(fontsize=9, frameon=False)
    fig.suptitle("Particles: generated vs true (simulated stand-in data, CPU demo scale)", fontsize=13)
    out = a.out or os.path.join(a.run, "plots", "lhco_fig5_particles")
    return plotting.save(fig, out, announce=True)


if __name__ == "__main__":
    main()
