"""End to end: prepare data → train densities (QCD & top × standard & max-likelihood) →
supervised classifier → evaluate → figures 1–6 → results.json + table1.md.

    python -m permutation_ad.pipeline --config permutation_ad/configs/demo.yaml --out runs/demo
        [--data-dir DIR] [--set training.epochs=2] [--stages prepare,train,...]

Each stage skips work whose outputs already exist, so an interrupted run resumes. Per-stage wall
times (summed over resumed calls) go to ``OUT/results.json``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import time

from permutation_ad import data as pdata
from permutation_ad import train as ptrain

STAGES = ("prepare", "train", "classifier", "evaluate", "plots", "table")
FIGURES = ("fig1_permutations", "fig2_scores_qcd", "fig3_sic", "fig4_scores_top", "fig5_roc", "fig6_nll")
NOTE = ("Simulated stand-in data (Pythia 8 + simple smearing, or synthetic for tests), CPU demo "
        "scale ≠ paper: small nets, few epochs, few thousand jets. Not comparable number-for-number.")


def plots_dir():
    """The repository's ``plots/`` folder (figure scripts live beside the package)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plots")


def run_figure(name, run_dir):
    """Run ``plots/<name>.py``'s ``main(['--run', run_dir])``; returns the saved paths."""
    path = os.path.join(plots_dir(), f"{name}.py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: figure script not found (run from a source checkout)")
    spec = importlib.util.spec_from_file_location(f"_pad_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(["--run", run_dir])


def acceptance(res):
    """Checks of the demo targets (recorded, not enforced)."""
    u = res.get("unsupervised", {})
    dr = res.get("density_ratio", {})
    sup = res.get("supervised", {}).get("same_jets_as_likelihood", {}).get("auc")
    out = {}
    for o in ("standard", "likelihood"):
        ua_top = u.get("top", {}).get(o, {}).get("nll_per_particle", {}).get("auc")
        ua_z = u.get("zprime", {}).get(o, {}).get("nll_per_particle", {}).get("auc")
        d = dr.get(o, {}).get("auc")
        if ua_top is not None:
            out[f"{o}: unsupervised AUC top vs QCD > 0.5"] = bool(ua_top > 0.5)
        if ua_z is not None:
            out[f"{o}: unsupervised AUC Z' vs QCD > 0.5"] = bool(ua_z > 0.5)
        if d is not None and ua_top is not None:
            out[f"{o}: density-ratio AUC > unsupervised AUC (top)"] = bool(d > ua_top)
        if d is not None and sup is not None:
            out[f"{o}: supervised AUC >= density-ratio AUC - 0.02"] = bool(sup >= d - 0.02)
    perm = res.get("permutation_test")
    if perm:
        out["permutation means within 3 sigma"] = perm["all_within_3sigma"]
        out["permutation means within 3 standard errors (stricter)"] = perm["all_within_3_stderr"]
    return out


def run(cfg, out, data_dir=None, stages=STAGES, progress=True):
    """Run the selected stages; returns the results dict written to OUT/results.json."""
    from permutation_ad import classifier as pclf
    from permutation_ad import evaluate as peval

    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    data_dir = data_dir or os.path.join(out, "data")
    times_path = os.path.join(out, "stage_times.json")
    times = json.load(open(times_path)) if os.path.exists(times_path) else {}
    res = {}

    def timed(name, fn):
        t0 = time.time()
        print(f"[pipeline] stage {name} ...", flush=True)
        value = fn()
        times[name] = times.get(name, 0.0) + (time.time() - t0)
        pdata.atomic_write_text(times_path, json.dumps(times, indent=1))
        print(f"[pipeline] stage {name} done in {time.time() - t0:.1f} s", flush=True)
        return value

    samples = list(cfg["model"].get("samples", ptrain.SAMPLES))
    objectives = list(cfg["model"].get("objectives", ptrain.OBJECTIVES))
    if "prepare" in stages:
        timed("prepare", lambda: pdata.prepare(cfg, data_dir, source_desc=getattr(cfg, "source", "<config>"),
                                               progress=progress))
    if "train" in stages:
        for s in samples:
            for o in objectives:
                timed(f"train_{s}_{o}", lambda s=s, o=o: ptrain.train_density(cfg, out, s, o, data_dir, progress=progress))
    if "classifier" in stages and {"qcd", "top"} <= set(samples):
        timed("classifier", lambda: pclf.train_classifier(cfg, out, data_dir))
    if "evaluate" in stages:
        res = timed("evaluate", lambda: peval.evaluate(cfg, out, data_dir, progress=progress))
    elif os.path.exists(os.path.join(out, "results_eval.json")):
        res = json.load(open(os.path.join(out, "results_eval.json")))
    if "plots" in stages:
        timed("plots", lambda: [run_figure(f, out) for f in FIGURES])
    if "table" in stages:
        timed("table", lambda: pdata.atomic_write_text(os.path.join(out, "table1.md"), peval.table1(res, NOTE)))
    res = dict(res)
    res["note"] = NOTE
    res["stage_seconds"] = times
    res["total_seconds"] = float(sum(times.values()))
    res["acceptance"] = acceptance(res)
    pdata.atomic_write_text(os.path.join(out, "results.json"), json.dumps(res, indent=1))
    return res


def main(argv=None):
    from shared.config import add_stages_argument, build_parser, config_from_args
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="raw + processed data cache (default OUT/data)")
    add_stages_argument(p, STAGES)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    res = run(cfg, args.out, ptrain._data_dir(cfg, args), args.stages)
    print(json.dumps({"stage_seconds": res["stage_seconds"], "acceptance": res["acceptance"]}, indent=1))
    print(f"results: {os.path.join(args.out, 'results.json')}")


def cli(argv=None):
    """``main`` with bad-input errors reported as one line (exit code 2)."""
    from shared.config import run_cli
    run_cli(main, argv, (pdata.DataError,))


if __name__ == "__main__":
    cli()
