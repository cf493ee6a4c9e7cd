"""Fig. 4: anomaly score −log p(jet)/N of QCD, top and Z′ test jets, top-trained densities.

    python plots/fig4_scores_top.py --run OUT [--out STEM]

Thin wrapper around ``permutation_ad.figures.fig4_scores_top``.
"""
from permutation_ad.figures import cli

if __name__ == "__main__":
    cli("fig4_scores_top")
