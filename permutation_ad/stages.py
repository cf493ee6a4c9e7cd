"""The stages of the permutation_ad pipeline, in order, with their declared outputs.

prepare → train (QCD, top × standard, max. likelihood) → classify (supervised reference) →
evaluate (likelihoods, permutation test) → baselines (the other papers' methods on the same
jets) → report (metrics, results.json, table1.md) → figures (1–6).
"""
from __future__ import annotations

from permutation_ad import artifacts
from permutation_ad.baselines.stage import baselines
from permutation_ad.classify import train_classifier
from permutation_ad.evaluate import evaluate
from permutation_ad.figures import FIGURES, figures
from permutation_ad.prepare import SPLITS, prepare
from permutation_ad.report import report
from permutation_ad.train import train_all
from shared.run import Stage


def _models(run):
    return [artifacts.train_summary_path(artifacts.model_dir(run.out, s, o))
            for s in run.key("model.samples") for o in run.key("model.objectives")]


def _classify(run):
    if {"qcd", "top"} <= set(run.key("model.samples")):
        return train_classifier(run)
    run.log("classify: skipped (needs both qcd and top in model.samples)")
    return None


STAGES = (
    Stage("prepare", prepare, lambda run: [artifacts.processed_path(run.data_dir, s, sp)
                                           for s, sp in SPLITS],
          help="raw jets -> processed splits in the data folder"),
    Stage("train", train_all, _models, ranks="all", help="one density per (sample, objective)"),
    Stage("classify", _classify, lambda run: [artifacts.classifier_predictions_path(run.out)]
          if {"qcd", "top"} <= set(run.key("model.samples")) else [], ranks="all",
          help="supervised top-vs-QCD classifier"),
    Stage("evaluate", evaluate, lambda run: [artifacts.loglik_path(run.out, s, o)
                                             for s in run.key("model.samples")
                                             for o in run.key("model.objectives")],
          ranks="all", help="PF-ODE likelihoods of the test jets (sharded), permutation test"),
    Stage("baselines", baselines, lambda run: [run.out / "baselines" / "results.json"]
          if run.key("baselines.enabled") else [],
          help="the other papers' baselines on the same jets (k-means, GMM, DVAE, INN, Deep Set VAE)"),
    Stage("report", report, lambda run: [artifacts.results_path(run.out), artifacts.table_path(run.out)],
          help="metrics, results.json, table1.md"),
    Stage("figures", figures, lambda run: [artifacts.plots_dir(run.out) / f"{n}.png" for n in FIGURES],
          help="figures 1-6"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
