"""Fig. 1: NLL of one QCD jet under several permutations of its particles (QCD-trained density),

    python plots/fig1_permutations.py --run OUT [--out STEM]

Thin wrapper around ``permutation_ad.figures.fig1_permutations``.
"""
from permutation_ad.figures import cli

if __name__ == "__main__":
    cli("fig1_permutations")
