"""Fig. 3: SIC curves of top and Z′ vs QCD for the QCD-trained densities (score −log p/N)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pad_figs as F  # noqa: E402
from plot_sic import plot_sic  # noqa: E402
from shared import plotting  # noqa: E402


def main(argv=None):
    a = F.parse(__doc__, "fig3_sic", argv)
    import json
    mb = 10
    res = os.path.join(a.run, "results_eval.json")
    if os.path.exists(res):  # same minimum-background rule as results.json
        with open(res) as fh:
            mb = json.load(fh)["unsupervised"]["top"]["standard"]["nll_per_particle"]["min_background_events"]
    fig, ax = plotting.figure()
    styles = {}
    for sig in ("top", "zprime"):
        path = os.path.join(a.run, "predictions", f"sic_{sig}.npz")
        for o in ("standard", "likelihood"):
            styles[o] = {"color": plotting.COLORS[sig], "ls": F.OBJ_STYLE[o],
                         "label": f"{plotting.LABELS[sig]}, {plotting.LABELS[o]}"}
        plot_sic([path], None, min_background=mb, ax=ax, styles={k: dict(v) for k, v in styles.items()})
    return plotting.save(fig, a.out)


if __name__ == "__main__":
    print(main())
