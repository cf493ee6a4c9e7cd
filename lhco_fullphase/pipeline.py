"""End to end: prepare → train jet + particle generators → sample SR (and SB) background →
weak-supervision scan + generation quality → evaluate → figures 4–7 → results.json + results.md.

    python -m lhco_fullphase.pipeline --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--data-dir DIR] [--set training.epochs=2] [--stages prepare,train_jet,...]

Every stage skips work whose outputs exist, so an interrupted run resumes (training from its
last checkpoint). Per-stage wall times (summed over resumed calls) go to ``OUT/results.json``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import time

from shared.config import atomic_write_text

STAGES = ("prepare", "train_jet", "train_particle", "sample_sr", "sample_sb", "scan", "quality",
          "evaluate", "plots")
FIGURES = ("lhco_fig4_jets", "lhco_fig5_particles", "lhco_fig6_sic_roc", "lhco_fig7_scan")
NOTE = ("Simulated stand-in data (Pythia 8 + simple smearing, not Delphes), CPU demo scale ≠ paper: "
        "small nets, few epochs, a few thousand events, large injected S/B. Not comparable "
        "number-for-number with the published values.")


def plots_dir():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plots")


def run_figure(name, run_dir, data_dir):
    """``plots/<name>.py``'s ``main(['--run', run_dir, '--data-dir', data_dir])``."""
    path = os.path.join(plots_dir(), f"{name}.py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: figure script not found (run from a source checkout)")
    spec = importlib.util.spec_from_file_location(f"_lhco_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(["--run", run_dir, "--data-dir", data_dir])


def acceptance(res, cfg):
    """Demo targets (recorded, not enforced)."""
    out = {}
    q = res.get("quality", {}).get("sr")
    if q:
        out["generation-quality AUC (SR, no signal) <= 0.65"] = bool(q["auc_summary"]["median"] <= 0.65)
    inj = max(int(v) for v in cfg["weak_supervision"]["injections"])
    for method, bar in (("idealized", 1.5), ("diffusion", 1.0)):
        s = res.get("scan", {}).get(method, {}).get(str(inj))
        if s:
            out[f"{method} median max SIC at {inj} injected > {bar}"] = bool(s["max_sic_summary"]["median"] > bar)
    return out


def run(cfg, out, data_dir=None, stages=STAGES, progress=True):
    """Run the selected stages; returns the dict written to ``OUT/results.json``."""
    from lhco_fullphase import classify, evaluate, prepare, sample, train

    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    data_dir = prepare.data_dir_for(cfg, out, data_dir)
    atomic_write_text(os.path.join(out, "run_info.json"), json.dumps({"data_dir": data_dir}, indent=1))
    times_path = os.path.join(out, "stage_times.json")
    times = json.load(open(times_path)) if os.path.exists(times_path) else {}

    def timed(name, fn):
        t0 = time.time()
        print(f"[pipeline] stage {name} ...", flush=True)
        value = fn()
        times[name] = times.get(name, 0.0) + (time.time() - t0)
        atomic_write_text(times_path, json.dumps(times, indent=1))
        print(f"[pipeline] stage {name} done in {time.time() - t0:.1f} s", flush=True)
        return value

    steps = {
        "prepare": lambda: prepare.prepare(cfg, data_dir, progress),
        "train_jet": lambda: train.train_generator(cfg, out, "jet", data_dir, progress=progress),
        "train_particle": lambda: train.train_generator(cfg, out, "particle", data_dir, progress=progress),
        "sample_sr": lambda: sample.sample_region(cfg, out, "sr", data_dir, progress),
        "sample_sb": lambda: sample.sample_region(cfg, out, "sb", data_dir, progress),
        "scan": lambda: classify.scan(cfg, out, data_dir, progress),
        "quality": lambda: classify.quality(cfg, out, data_dir, progress),
        "evaluate": lambda: evaluate.evaluate(cfg, out),
        "plots": lambda: [run_figure(f, out, data_dir) for f in FIGURES],
    }
    res = {}
    for name in STAGES:
        if name in stages:
            value = timed(name, steps[name])
            if name == "evaluate":
                res = value
    if not res and os.path.exists(os.path.join(out, "results_eval.json")):
        res = json.load(open(os.path.join(out, "results_eval.json")))
    res = dict(res)
    atomic_write_text(os.path.join(out, "results.md"), evaluate.table(res, NOTE))
    info_path = os.path.join(data_dir, "prepared.json")
    if os.path.exists(info_path):
        info = json.load(open(info_path))
        res["data"] = {"roles": info["roles"], "events": info["events"]}
    res["note"] = NOTE
    res["stage_seconds"] = times
    res["total_seconds"] = float(sum(times.values()))
    res["acceptance"] = acceptance(res, cfg)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(res, indent=1))
    return res


def main(argv=None):
    from lhco_fullphase.prepare import data_dir_for
    from shared.config import add_stages_argument, build_parser, config_from_args
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="raw + processed data (default: data.dir or OUT/data)")
    add_stages_argument(p, STAGES)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    res = run(cfg, args.out, data_dir_for(cfg, args.out, args.data_dir), args.stages)
    print(json.dumps({"stage_seconds": res["stage_seconds"], "acceptance": res["acceptance"]}, indent=1))
    print(f"results: {os.path.join(args.out, 'results.json')} and results.md")


if __name__ == "__main__":
    main()
