"""lhco_fullphase Fig. 5: particle features of both jets (real particles only), every
generator over the truth, SB and SR, with ratio panels.

    python plots/lhco_fig5_particles.py --run OUT [--data-dir DIR] [--out STEM]

Thin wrapper around ``lhco_fullphase.figures.lhco_fig5_particles``.
"""
from lhco_fullphase.figures import cli

if __name__ == "__main__":
    cli("lhco_fig5_particles")
