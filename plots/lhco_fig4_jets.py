"""lhco_fullphase Fig. 4: jet kinematics (both jets) and mjj, every generator over the truth, SB
and SR, with ratio panels.

    python plots/lhco_fig4_jets.py --run OUT [--data-dir DIR] [--out STEM]

Thin wrapper around ``lhco_fullphase.figures.lhco_fig4_jets``.
"""
from lhco_fullphase.figures import cli

if __name__ == "__main__":
    cli("lhco_fig4_jets")
