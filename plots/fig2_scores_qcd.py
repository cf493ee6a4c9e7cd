"""Fig. 2: anomaly score −log p(jet)/N of QCD, top and Z′ test jets, QCD-trained densities."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pad_figs as F  # noqa: E402


def main(argv=None):
    a = F.parse(__doc__, "fig2_scores_qcd", argv)
    return F.score_hist(a.run, "qcd", "nll_per_particle", r"Anomaly score $-\log p(x)/N$", a.out,
                        "Trained on QCD jets (stand-in data)")


if __name__ == "__main__":
    print(main())
