"""Fig. 1: NLL of one QCD jet under several permutations of its particles (QCD-trained density),
mean ± std of repeated Hutchinson estimates."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pad_figs as F  # noqa: E402
from shared import plotting  # noqa: E402


def main(argv=None):
    a = F.parse(__doc__, "fig1_permutations", argv)
    path = os.path.join(a.run, "eval", "permutation.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: missing (run the evaluate stage)")
    with open(path) as fh:
        r = json.load(fh)
    mean, std = np.asarray(r["mean"]), np.asarray(r["std"])
    fig, ax = plotting.figure()
    x = np.arange(1, len(mean) + 1)
    ax.errorbar(x, mean, yerr=std, fmt="o", color=plotting.COLORS["qcd"], capsize=5, ms=8,
                label=f"QCD jet #{r['jet_index']} ({r['num_particles']} particles): mean ± std of "
                      f"{len(r['nll'][0])} estimates (grey)")
    for row, xi in zip(np.asarray(r["nll"]), x):
        ax.plot(np.full(len(row), xi) + 0.15, row, ".", color="gray", alpha=0.5)
    ax.axhline(mean.mean(), color="gray", ls=":", lw=1)
    allv = np.asarray(r["nll"])
    span = max(np.abs(allv - mean.mean()).max() * 1.4, 1e-3)
    ax.set_ylim(mean.mean() - span, mean.mean() + span)
    ax.set_xticks(x)
    ax.set_xticklabels(["original"] + [f"perm. {i}" for i in x[1:] - 1])
    ax.set_ylabel(r"$-\log p(x)$ (physical units)")
    ax.legend(frameon=False, fontsize=11)
    plotting.label_plot(ax, f"Max pairwise deviation {r['max_pairwise_deviation_sigma']:.2f}$\\sigma$")
    return plotting.save(fig, a.out)


if __name__ == "__main__":
    print(main())
