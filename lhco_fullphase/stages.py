"""The stages of the lhco_fullphase pipeline, in order, with their declared outputs.

prepare (dijet caches, roles, preprocessing, low-dim features) → train (jet + particle part of
every generator, the low-dim flow) → sample (SR and SB background of every generator, low-dim
SR features) → classify (weak-supervision scan of every method, generation-quality classifiers,
sample metrics) → evaluate (metrics) → report (results.json, results.md) → figures (4–7).
"""
from __future__ import annotations

from lhco_fullphase import artifacts
from lhco_fullphase.classify import classify, unit_output, units
from lhco_fullphase.evaluate import evaluate
from lhco_fullphase.figures import FIGURES, figures
from lhco_fullphase.prepare import prepare
from lhco_fullphase.report import report
from lhco_fullphase.sample import outputs as sample_outputs
from lhco_fullphase.sample import sample
from lhco_fullphase.train import train_all, trainings
from shared.run import Stage


def _prepared(run):
    out = [artifacts.prepared_info_path(run.data_dir), artifacts.roles_path(run.data_dir)]
    return out + ([artifacts.lowdim_features_path(run.data_dir)] if run.key("lowdim.enabled") else [])


STAGES = (
    Stage("prepare", prepare, _prepared,
          help="raw events -> dijet caches, event roles, preprocessing, low-dim features (data folder)"),
    Stage("train", train_all, lambda run: [artifacts.train_summary_path(artifacts.model_dir(run.out, g, p))
                                           for g, p in trainings(run)],
          ranks="all", help="jet and particle nets of every generator, the low-dim flow (side bands)"),
    Stage("sample", sample, sample_outputs,
          ranks="all", help="generated background in the SR (KDE mjj) and the SB (sharded chunks)"),
    Stage("classify", classify, lambda run: [unit_output(run, u) for u in units(run)],
          ranks="all", help="scan of every method, generation-quality classifiers, sample metrics (units)"),
    Stage("evaluate", evaluate, lambda run: [artifacts.results_eval_path(run.out)],
          help="AUC, max SIC, bands; SIC prediction files"),
    Stage("report", report, lambda run: [artifacts.results_path(run.out), artifacts.results_md_path(run.out)],
          help="results.json, results.md (ours beside the published values)"),
    Stage("figures", figures, lambda run: [artifacts.plots_dir(run.out) / f"{n}.png" for n in FIGURES],
          help="figures 4-7"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
