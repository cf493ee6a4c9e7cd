"""lhco_fullphase Fig. 6: SIC and background rejection vs signal efficiency at one injection,
median and 68 % band over initialisations, every method of the run (diffusion, flow matching,
low-dim CATHODE, idealized, low-dim idealized).

    python plots/lhco_fig6_sic_roc.py --run OUT [--injection N] [--out STEM]

Thin wrapper around ``lhco_fullphase.figures.lhco_fig6_sic_roc``.
"""
from lhco_fullphase.figures import cli

if __name__ == "__main__":
    cli("lhco_fig6_sic_roc")
