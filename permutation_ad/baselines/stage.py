"""The ``baselines`` pipeline stage: fit every configured baseline on QCD, score the test jets,
write one comparison table per signal (with the diffusion density's scores when given), ROC and
SIC figures, and the per-method scores. Resumable per method.

Outputs under ``out_dir``::

    <benchmark>/methods/<name>.npz   scores: arrays "<set>__<score id>" (set = background or a signal)
    <benchmark>/methods/<name>.json  resume key, score labels, train/score seconds, fit info
    <benchmark>/work/<name>-<key>/   Trainer checkpoints and train.log of the NN methods
    predictions/<benchmark>_<signal>.npz   labels_/scores_<row id> (shared.plotting format)
    figures/<benchmark>_<signal>_{roc,sic}.{png,pdf}
    results.json, baselines.md

A method is skipped when its .json exists with the same resume key (hash of the method's
resolved config, the seed, the validation fraction and the content of every jet set of the
benchmark); both files are written atomically, the .json last.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time

import numpy as np

from shared.errors import DataFormatError, UsageError
from shared.io import atomic_savez, atomic_write_json, atomic_write_text

from .benchmarks import check_benchmark, darkjet_benchmark
from .config import baselines_config, check_baselines_section, method_config
from .jetset import fingerprint, n_jets
from .methods import FeatureCache, run_method, score_note
from .report import (SIGNAL_TITLES, draw_figures, markdown_table, orient_reference,
                     published_rows, score_metrics)

STAGE_VERSION = 1   # bump when a change alters the scores of an unchanged config


def _key(name, mcfg, seed, val_fraction, fps):
    blob = json.dumps({"name": name, "cfg": mcfg, "seed": int(seed), "val": val_fraction,
                       "data": fps, "version": STAGE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_cached(npz_path, json_path, key):
    if not (os.path.isfile(npz_path) and os.path.isfile(json_path)):
        return None
    try:
        with open(json_path) as fh:
            meta = json.load(fh)
        if meta.get("key") != key:
            return None
        with np.load(npz_path) as d:
            scores = {}
            for k in d.files:
                s, sid = k.split("__", 1)
                scores.setdefault(s, {})[sid] = np.asarray(d[k])
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return dict(meta, scores=scores)


def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "score"


def _method_results(bname, bench, cfg, out_dir, seed, progress, resume=True):
    """{method name: result} for one benchmark, from cache or by running each method."""
    from tqdm.auto import tqdm

    sets = {"train": bench["train"], "background": bench["background"], **bench["signals"]}
    fps = {s: fingerprint(js) for s, js in sets.items()}
    feats = FeatureCache(sets)
    tests = ["background", *bench["signals"]]
    mdir = os.path.join(out_dir, bname, "methods")
    os.makedirs(mdir, exist_ok=True)
    results = {}
    for name in tqdm(cfg["run"], desc=f"baselines {bname}", disable=not progress):
        mcfg = method_config(cfg, name)
        key = _key(name, mcfg, seed, cfg["val_fraction"], fps)
        npz, js = os.path.join(mdir, f"{name}.npz"), os.path.join(mdir, f"{name}.json")
        cached = _load_cached(npz, js, key) if resume else None
        if cached is not None:
            results[name] = dict(cached, cached=True)
            continue
        workdir = os.path.join(out_dir, bname, "work", f"{name}-{key[:12]}")
        if not resume and os.path.isdir(workdir):
            shutil.rmtree(workdir)      # --resume never: the Trainer starts afresh too
        r = run_method(name, mcfg, "train", tests, workdir, seed, feats, cfg["val_fraction"])
        atomic_savez(npz, **{f"{s}__{sid}": v for s, per in r["scores"].items() for sid, v in per.items()})
        meta = {"key": key, "data": fps, "seed": int(seed), "name": name, "type": mcfg["type"], "labels": r["labels"],
                "train_time_s": r["train_time_s"], "score_time_s": r["score_time_s"],
                "cpu_time_s": r["cpu_time_s"],
                "info": r["info"], "config": mcfg}
        atomic_write_json(js, meta)
        results[name] = dict(meta, scores=r["scores"], cached=False)
    return results, feats.seconds


def _rows_for_signal(bname, signal, methods, extra, extra_times, bench, mcfg_metrics):
    """(rows, curves) for one signal: diffusion (given), baselines, references, published."""
    n_b, n_s = n_jets(bench["background"]), n_jets(bench["signals"][signal])
    labels = np.r_[np.zeros(n_b), np.ones(n_s)]
    mb, es = mcfg_metrics["min_background"], mcfg_metrics["eff_s"]
    rows, curves = [], {}

    def add(rid, label, kind, sc_b, sc_s, train_time, note=""):
        sc = np.r_[np.asarray(sc_b, np.float64), np.asarray(sc_s, np.float64)]
        if kind.startswith("reference"):
            sign, sc = orient_reference(labels, sc)
            label = f"{label} ({'+' if sign > 0 else '−'})"
            note = (note + " " if note else "") + "sign chosen on test labels"
        m = score_metrics(labels, sc, mb, es)
        if m.get("non_finite"):
            note = (note + " " if note else "") + f"{m['non_finite']} non-finite scores set to the extremes"
        rows.append({"id": rid, "label": label, "kind": kind, **m, "train_time_s": train_time, "note": note})
        curves[rid] = (labels, sc)

    for i, (ename, per_bench) in enumerate((extra or {}).items()):
        sc = (per_bench or {}).get(bname)
        if sc is None:
            continue
        for key in ("background", signal):
            if key not in sc:
                raise DataFormatError(f"extra_scores['{ename}']['{bname}']", key, "missing")
            want = n_b if key == "background" else n_s
            if len(sc[key]) != want:
                raise DataFormatError(f"extra_scores['{ename}']['{bname}']", key,
                                      f"{len(sc[key])} scores for {want} jets (score the same test "
                                      "jets as the baselines)")
        add(f"extra{i}_{_slug(ename)}", ename, "diffusion (given)", sc["background"], sc[signal],
            (extra_times or {}).get(ename))
    for name, r in methods.items():
        is_ref = r["type"] == "observables"
        for sid, lab in r["labels"].items():
            add(f"{name}_{sid}", lab, "reference (single observable)" if is_ref else "baseline",
                r["scores"]["background"][sid], r["scores"][signal][sid],
                None if is_ref else r["train_time_s"], score_note(r["type"], sid))
    rows += published_rows(signal)
    return rows, curves


def run_baselines(cfg_baselines, benchmarks, out_dir, seed, extra_scores=None, extra_train_times=None,
                  data_dir=None, progress=True, resume=True):
    """Run the baselines stage; returns the results dict (also written to results.json).

    Args:
        cfg_baselines: the ``baselines:`` config mapping (defaults: ``config.DEFAULTS``).
        benchmarks: ``{name: {"train": jetset, "background": jetset, "signals": {name: jetset}}}``
            (``benchmarks.toptag_benchmark`` builds the permutation_ad one); jet sets as in
            ``jetset``. The dark-jet benchmark is added as ``darkjets`` when
            ``dark_jets.enabled`` and it is not given (needs ``data_dir``).
        out_dir: output folder (see the module docstring).
        seed: seeds every method (and is part of the resume key).
        extra_scores: precomputed scores shown beside the baselines, e.g. the diffusion NLL/N:
            ``{display name: {benchmark: {"background": (N_b,), <signal>: (N_s,), ...}}}``, on
            the same jets, in the same order, higher = more anomalous.
        extra_train_times: ``{display name: seconds}`` for the table (optional).
        data_dir: cache folder of generated data; dark jets go to ``<data_dir>/raw``.
        resume: False recomputes every method (``--resume never``); generated data are reused.
    """
    cfg = baselines_config(cfg_baselines)
    os.makedirs(out_dir, exist_ok=True)
    t_stage = time.perf_counter()
    benchmarks = dict(benchmarks or {})
    gen_info = None
    if cfg["dark_jets"]["enabled"] and "darkjets" not in benchmarks:
        if data_dir is None:
            raise UsageError("baselines.dark_jets.enabled needs data_dir (where generated jets are cached)")
        benchmarks["darkjets"], gen_info = darkjet_benchmark(cfg["dark_jets"], os.path.join(data_dir, "raw"),
                                                             progress)
    if not benchmarks:
        raise UsageError("run_baselines: no benchmarks given and baselines.dark_jets.enabled is false")
    results = {"benchmarks": {}, "config": cfg, "seed": int(seed), "dark_jet_generation": gen_info}
    md = ["# Baselines beside the diffusion density\n\n",
          "Every method is trained on QCD jets only and scored on the same test jets. Simulated "
          "Pythia 8 stand-in data: not comparable number-for-number with the papers. Single "
          "observables are references whose sign was chosen on the test labels. Max SIC over cuts "
          f"keeping ≥ {cfg['metrics']['min_background']} background jets.\n"]
    for bname, bench in benchmarks.items():
        bench = check_benchmark(bench, bname)
        methods, feat_seconds = _method_results(bname, bench, cfg, out_dir, seed, progress, resume)
        bres = {"n_train": n_jets(bench["train"]), "n_background": n_jets(bench["background"]),
                "n_signal": {s: n_jets(js) for s, js in bench["signals"].items()},
                "feature_seconds": feat_seconds,
                "methods": {n: {k: r.get(k) for k in ("type", "train_time_s", "score_time_s", "cpu_time_s",
                                                      "info", "cached")}
                            for n, r in methods.items()},
                "signals": {}}
        for signal in bench["signals"]:
            rows, curves = _rows_for_signal(bname, signal, methods, extra_scores, extra_train_times,
                                            bench, cfg["metrics"])
            bres["signals"][signal] = rows
            title = SIGNAL_TITLES.get(signal, signal)
            md.append(f"\n## {bname}: {title}\n\n{bres['n_train']} QCD training jets; "
                      f"{bres['n_background']} QCD and {bres['n_signal'][signal]} signal test jets.\n\n")
            md.append(markdown_table(rows, cfg["metrics"]["eff_s"]))
            from shared.plotting import save_predictions
            save_predictions(os.path.join(out_dir, "predictions", f"{bname}_{signal}.npz"), curves,
                             title=f"{bname}: {title}")
            if cfg["figures"]:
                draw_figures(curves, rows, os.path.join(out_dir, "figures", f"{bname}_{signal}"), title,
                             cfg["metrics"]["min_background"])
        results["benchmarks"][bname] = bres
    results["stage_seconds"] = time.perf_counter() - t_stage
    atomic_write_json(os.path.join(out_dir, "results.json"), results)
    atomic_write_text(os.path.join(out_dir, "baselines.md"), "".join(md))
    return results


# ---------------------------------------------------------------------------- command line

DIFFUSION_LABELS = {"standard": "diffusion NLL/N (λ=σ²)", "likelihood": "diffusion NLL/N (λ=g²)"}


def diffusion_scores(run_dir, signals=("top", "zprime"), benchmark="toptag"):
    """(extra_scores, extra_train_times) of a permutation_ad run folder: NLL/N (the paper's score,
    ``permutation_ad.model.anomaly_scores``) of its QCD-trained densities on the QCD and signal
    test jets it evaluated, and the training seconds of those densities."""
    from permutation_ad import artifacts
    from permutation_ad.report import anomaly_scores_of
    from shared.io import read_json

    extra, times = {}, {}
    for obj, name in DIFFUSION_LABELS.items():
        ll = artifacts.read_merged_loglik(run_dir, "qcd", obj, ("qcd", *signals))
        if ll is None:
            continue
        extra[name] = {benchmark: {"background": anomaly_scores_of(ll, "qcd")["nll_per_particle"],
                                   **{s: anomaly_scores_of(ll, s)["nll_per_particle"] for s in signals}}}
        summary = artifacts.train_summary_path(artifacts.model_dir(run_dir, "qcd", obj))
        if os.path.isfile(summary):
            times[name] = float(read_json(summary, "training summary")["seconds"])
    if not extra:
        raise UsageError(f"--diffusion-run {run_dir}: no evaluated QCD-trained density there "
                         "(run the permutation_ad evaluate stage first)")
    return extra, times


def baselines(run) -> dict | None:
    """Pipeline stage ``baselines`` (after ``evaluate``): every configured baseline on the
    run's own QCD training and test jets (and the dark-jet benchmark), the run's diffusion
    NLL/N beside them; writes ``OUT/baselines/``. Skipped unless ``baselines.enabled``."""
    from .benchmarks import toptag_benchmark
    bcfg = run.cfg["baselines"]
    if not bcfg["enabled"]:
        run.log("baselines: skipped (baselines.enabled is false)")
        return None
    dcfg = run.cfg["data"]
    bench = {"toptag": toptag_benchmark(str(run.data_dir), dcfg["particle_pt_feature"],
                                        dcfg["jet_features"], n_test=run.key("evaluate.num_jets"))}
    try:
        extra, times = diffusion_scores(str(run.out))
    except UsageError:   # no evaluated density in this run: the baselines alone
        extra, times = {}, {}
    return run_baselines(bcfg, bench, str(run.out / "baselines"), int(run.key("seed", 0)), extra,
                         times, str(run.data_dir), progress=run.progress,
                         resume=run.resume != "never")


def main(argv=None):
    """``python -m permutation_ad.baselines.stage --config CFG --out OUT [--data-dir D]
    [--diffusion-run RUN]``: the stage on the permutation_ad processed splits in D (default
    ``data.dir`` of CFG, else OUT/data; made by the pipeline's prepare stage) plus the dark-jet
    benchmark; writes OUT/baselines/. ``--diffusion-run`` adds that run's NLL/N to the tables."""
    from shared.cli import flatten_overrides, parser
    from shared.config import load_config

    p = parser(main.__doc__)
    p.add_argument("--diffusion-run", default=None, metavar="DIR",
                   help="permutation_ad run folder whose QCD-trained NLL/N join the tables")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    cfg = load_config(args.config, flatten_overrides(args.overrides), out=out)
    bcfg = check_baselines_section(cfg.get("baselines"), "baselines", cfg.source)
    dcfg = cfg.get("data") or {}
    data_dir = args.data_dir or dcfg.get("dir") or os.path.join(out, "data")
    from .benchmarks import toptag_benchmark
    bench = {"toptag": toptag_benchmark(data_dir, dcfg.get("particle_pt_feature", "log_pt"),
                                        dcfg.get("jet_features", ["eta", "mass", "n"]),
                                        n_test=(cfg.get("evaluate") or {}).get("num_jets"))}
    extra, times = diffusion_scores(args.diffusion_run) if args.diffusion_run else ({}, {})
    res = run_baselines(bcfg, bench, os.path.join(out, "baselines"), int(cfg.get("seed", 0)), extra, times,
                        data_dir, progress=not args.no_progress, resume=args.resume != "never")
    print(os.path.join(out, "baselines", "baselines.md"))
    return res


if __name__ == "__main__":
    from shared.cli import run_cli

    run_cli(main)
