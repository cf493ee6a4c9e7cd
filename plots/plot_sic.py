"""SIC plots for both packages, as users of either original expect.

Two modes, chosen by what you give it:

* prediction files (``.npz``, any package): SIC curves ε_s/√ε_b vs ε_s, one curve per method in
  each file (format: arrays ``scores_<M>`` and ``labels_<M>``, see ``shared.plotting``)::

      python plots/plot_sic.py runs/demo/predictions/sic_top.npz --out sic

* an lhco_fullphase run folder (as LHCO_diffusion's ``plot_sic.py``): median max SIC and AUC
  against the injected signal with 68 % bands over the initialisations (Fig. 7)::

      python plots/plot_sic.py runs/lhco [--out STEM]

SIC is left empty where fewer than ``--min-background`` background events pass.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None):
    from shared.cli import run_cli
    from shared.errors import UsageError

    def _main(args):
        p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("inputs", nargs="+", help="prediction .npz files, or ONE lhco_fullphase run folder")
        p.add_argument("--out", default=None, help="output path stem; writes .png and .pdf "
                       "(default for a run folder: RUN/plots/lhco_fig7_scan)")
        p.add_argument("--labels", nargs="*", help="one legend prefix per prediction file")
        p.add_argument("--min-background", type=int, default=10)
        a = p.parse_args(args)
        folders = [Path(x) for x in a.inputs if Path(x).is_dir()]
        if folders:
            if len(a.inputs) != 1:
                raise UsageError("give either prediction files or one lhco_fullphase run folder")
            from lhco_fullphase.figures import lhco_fig7_scan
            paths = lhco_fig7_scan(folders[0].resolve(), a.out)
        else:
            if a.out is None:
                raise UsageError("--out is required with prediction files")
            if a.labels and len(a.labels) != len(a.inputs):
                raise UsageError("--labels needs one entry per file")
            from shared.plotting import plot_sic
            paths = plot_sic(a.inputs, a.out, a.min_background, a.labels)
        for path in paths:
            print(path)

    run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
