"""Fig. 6 (appendix A): raw −log p(jet) of QCD, top and Z′ jets; QCD-trained (left), top-trained (right).

    python plots/fig6_nll.py --run OUT [--out STEM]

Thin wrapper around ``permutation_ad.figures.fig6_nll``.
"""
from permutation_ad.figures import cli

if __name__ == "__main__":
    cli("fig6_nll")
