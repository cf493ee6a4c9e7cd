"""Fig. 3: SIC curves of top and Z′ vs QCD for the QCD-trained densities (score −log p/N).

    python plots/fig3_sic.py --run OUT [--out STEM]

Thin wrapper around ``permutation_ad.figures.fig3_sic``.
"""
from permutation_ad.figures import cli

if __name__ == "__main__":
    cli("fig3_sic")
