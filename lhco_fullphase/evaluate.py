"""Stage ``evaluate``: ROC / AUC / SIC of every classifier unit on the independent evaluation
set, the generation-quality AUCs and the generated-sample metrics.

    python -m lhco_fullphase.evaluate --config lhco_fullphase/configs/demo.yaml --out runs/lhco
    (also writes the report: results.json, results.md)

Per method and injection: AUC and max SIC of each initialisation (SIC only where at least
``evaluate.min_background`` background events pass), their median and central
``evaluate.band`` (68 %) interval over initialisations (``scan.<method>.<n>``). Generation
quality: test AUC per generator and region (``quality.<generator>.<region>``); sample metrics
(``sample_metrics.<generator>.<region>``: the views of ``shared.sample_metrics.dijet_sample_metrics``).
Only units finished with the current settings are read (``classify.unit_done``); a missing one
is left out and counted (``missing_units``). Writes ``OUT/results_eval.json`` and
``OUT/predictions/sic_inj<n>.npz`` in the ``plots/plot_sic.py`` format (one curve per method and
initialisation, named ``<method>_init<i>``).
"""
from __future__ import annotations

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.classify import methods, unit_dir, unit_done, units
from lhco_fullphase.prepare import load_prepared
from lhco_fullphase.train import generators


def summarize(values, band=0.68):
    """Median and central ``band`` interval of finite values (NaN if none)."""
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"median": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    q = 100 * (0.5 - band / 2), 100 * (0.5 + band / 2)
    return {"median": float(np.median(v)), "lo": float(np.percentile(v, q[0])),
            "hi": float(np.percentile(v, q[1])), "n": int(v.size)}


def finished_units(run) -> tuple[dict, list]:
    """({unit: scores (or sample metrics)} of every unit finished with the current settings,
    [missing units])."""
    from shared.io import read_json
    prep = load_prepared(run)
    done, missing = {}, []
    for u in units(run):
        if unit_done(run, u, prep):
            done[u] = read_json(unit_dir(run, u), "sample metrics") if u[0] == "metrics" else \
                artifacts.read_scores(unit_dir(run, u))
        else:
            missing.append(u)
    return done, missing


def _record(run, paths, done) -> None:
    """Fingerprints of the evaluation outputs: made from exactly the finished units ``done``
    (so a figure can tell when one of them, or what it was made from, was made again)."""
    from lhco_fullphase.classify import unit_artifact
    prep = load_prepared(run)
    used = {"/".join(map(str, u)): unit_artifact(run, u, prep) for u in done}
    for path in paths:
        run.artifact(path, upstream=used).record()


def scan_metrics(runs, n, mb, band) -> dict:
    """Metrics of the initialisations ``runs`` (score dicts) of one (method, injection)."""
    from shared import metrics
    aucs = [metrics.auc(r["labels"], r["scores"]) for r in runs]
    sics = [metrics.max_sic(r["labels"], r["scores"], mb) for r in runs]
    r0 = runs[0]
    return {"n_signal_injected": n, "n_data_background": int(r0["n_data_background"]),
            "s_over_b": n / max(int(r0["n_data_background"]), 1), "n_label0": int(r0["n_label0"]),
            "n_eval_signal": int(r0["labels"].sum()),
            "n_eval_background": int((r0["labels"] == 0).sum()),
            "auc": aucs, "max_sic": sics, "auc_summary": summarize(aucs, band),
            "max_sic_summary": summarize(sics, band),
            "epochs": [int(r["epochs"]) for r in runs], "wall_s": [float(r["wall_s"]) for r in runs]}


def evaluate(run) -> dict:
    """Metrics of the finished units → ``results_eval.json`` and the SIC prediction files."""
    from shared.io import atomic_write_json
    from shared.plotting import save_predictions
    mb, band = int(run.key("evaluate.min_background")), float(run.key("evaluate.band"))
    done, missing = finished_units(run)
    written = [artifacts.results_eval_path(run.out)]
    if missing:
        run.log(f"evaluate: {len(missing)} classifier unit(s) not finished with the current "
                f"settings, left out (e.g. {'/'.join(map(str, missing[0]))}); run the classify stage")
    res = {"min_background": mb, "band": band, "methods": methods(run), "generators": generators(run),
           "scan": {}, "quality": {}, "sample_metrics": {},
           "missing_units": ["/".join(map(str, u)) for u in missing]}
    injections = [int(n) for n in run.key("weak_supervision.injections")]
    for method in methods(run):
        res["scan"][method] = {}
        for n in injections:
            runs = [s for u, s in done.items() if u[:3] == ("scan", method, n)]
            if runs:
                res["scan"][method][str(n)] = scan_metrics(runs, n, mb, band)
    for n in injections:
        curves = {f"{u[1]}_init{u[3]}": (s["labels"], s["scores"]) for u, s in done.items()
                  if u[0] == "scan" and u[2] == n}
        if curves:
            written.append(artifacts.predictions_path(run.out, f"sic_inj{n}"))
            save_predictions(written[-1], curves, title=f"lhco_fullphase, {n} injected signal events")
    for generator in generators(run):
        res["quality"][generator], res["sample_metrics"][generator] = {}, {}
        for region in run.key("generation_quality.regions"):
            runs = [s for u, s in done.items() if u[:3] == ("quality", generator, region)]
            if runs:
                aucs = [float(r["auc"]) for r in runs]
                res["quality"][generator][region] = {
                    "auc": aucs, "auc_summary": summarize(aucs, band), "n_test": int(len(runs[0]["labels"])),
                    "n_generated": int(runs[0]["n_generated"]), "n_true": int(runs[0]["n_true"])}
            m = done.get(("metrics", generator, region))
            if m:
                res["sample_metrics"][generator][region] = m["views"]
    atomic_write_json(artifacts.results_eval_path(run.out), res)
    _record(run, written, done)
    return res


def main(argv=None):
    from lhco_fullphase.report import report
    from lhco_fullphase.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    run = Run.from_args(parser(__doc__.split("\n")[0]).parse_args(argv), SCHEMA)
    evaluate(run)
    report(run)
    run.log(f"results: {artifacts.results_path(run.out)} and {artifacts.results_md_path(run.out)}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
