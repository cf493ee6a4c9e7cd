"""The stages of the lhco_fullphase pipeline, in order, with their declared outputs.

prepare (dijet caches, roles, preprocessing) → train (jet + particle generators) → sample (SR
and SB background) → classify (weak-supervision scan + generation-quality classifiers) →
evaluate (metrics) → report (results.json, results.md) → figures (4–7).
"""
from __future__ import annotations

from lhco_fullphase import artifacts
from lhco_fullphase.classify import classify, unit_dir, units
from lhco_fullphase.evaluate import evaluate
from lhco_fullphase.figures import FIGURES, figures
from lhco_fullphase.prepare import prepare
from lhco_fullphase.report import report
from lhco_fullphase.sample import sample
from lhco_fullphase.schema import PARTS, REGIONS
from lhco_fullphase.train import train_all
from shared.run import Stage

STAGES = (
    Stage("prepare", prepare, lambda run: [artifacts.prepared_info_path(run.data_dir),
                                           artifacts.roles_path(run.data_dir)],
          help="raw events -> dijet caches, event roles, preprocessing (data folder)"),
    Stage("train", train_all, lambda run: [artifacts.train_summary_path(artifacts.model_dir(run.out, p))
                                           for p in PARTS],
          ranks="all", help="jet and particle diffusion generators on side-band events"),
    Stage("sample", sample, lambda run: [artifacts.generated_path(run.out, r) for r in REGIONS],
          ranks="all", help="generated background in the SR (KDE mjj) and the SB (sharded chunks)"),
    Stage("classify", classify, lambda run: [artifacts.scores_path(unit_dir(run, u)) for u in units(run)],
          ranks="all", help="weak-supervision scan and generation-quality classifiers (units)"),
    Stage("evaluate", evaluate, lambda run: [artifacts.results_eval_path(run.out)],
          help="AUC, max SIC, bands; SIC prediction files"),
    Stage("report", report, lambda run: [artifacts.results_path(run.out), artifacts.results_md_path(run.out)],
          help="results.json, results.md (ours beside the published values)"),
    Stage("figures", figures, lambda run: [artifacts.plots_dir(run.out) / f"{n}.png" for n in FIGURES],
          help="figures 4-7"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
