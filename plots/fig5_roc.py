"""Fig. 5: ROC of top vs QCD — unsupervised (left); density ratio log p_top − log p_QCD and the

    python plots/fig5_roc.py --run OUT [--out STEM]

Thin wrapper around ``permutation_ad.figures.fig5_roc``.
"""
from permutation_ad.figures import cli

if __name__ == "__main__":
    cli("fig5_roc")
