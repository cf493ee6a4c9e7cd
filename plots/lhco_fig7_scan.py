"""lhco_fullphase Fig. 7: max SIC and AUC vs the number of injected signal events, median and
68 % band over initialisations, every method of the run (diffusion, flow matching, low-dim
CATHODE, idealized, low-dim idealized).

    python plots/lhco_fig7_scan.py --run OUT [--out STEM]

Thin wrapper around ``lhco_fullphase.figures.lhco_fig7_scan``.
"""
from lhco_fullphase.figures import cli

if __name__ == "__main__":
    cli("lhco_fig7_scan")
