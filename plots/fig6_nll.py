"""Fig. 6 (appendix A): raw −log p(jet) of QCD, top and Z′ jets; QCD-trained (left), top-trained (right)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pad_figs as F  # noqa: E402
from shared import plotting  # noqa: E402


def main(argv=None):
    a = F.parse(__doc__, "fig6_nll", argv)
    fig, axes = plotting.figure(ncols=2)
    for ax, sample in zip(axes, ("qcd", "top")):
        F.score_hist(a.run, sample, "nll", r"$-\log p(x)$ (physical units)", None,
                     f"Trained on {plotting.LABELS[sample]} jets (stand-in data)", ax=ax)
    return plotting.save(fig, a.out)


if __name__ == "__main__":
    print(main())
