"""Fig. 2: anomaly score −log p(jet)/N of QCD, top and Z′ test jets, QCD-trained densities.

    python plots/fig2_scores_qcd.py --run OUT [--out STEM]

Thin wrapper around ``permutation_ad.figures.fig2_scores_qcd``.
"""
from permutation_ad.figures import cli

if __name__ == "__main__":
    cli("fig2_scores_qcd")
