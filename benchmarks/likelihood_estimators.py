"""Divergence estimators of the likelihood: anomaly-detection quality against cost.

    python -m benchmarks.likelihood_estimators --run RUN --out e.json [--jets 300 --exact-jets 60]

``RUN`` is a finished ``permutation_ad`` run (``config.resolved.yaml``, ``models/``, ``data/``).
For each trained QCD density (``--densities``) and each estimator — one Gaussian probe, one
Rademacher probe, the mean of k Rademacher probes, the exact divergence — the full jet
log-likelihood (``JetDensityModel.log_likelihood``, physical units) of the first ``--jets`` QCD,
top and Z′ test jets gives the AUC and max SIC of NLL/N (top vs QCD, Z′ vs QCD) and the cost per
jet.  The exact divergence costs P·F network copies per evaluation, so it runs on the first
``--exact-jets`` jets only; every estimator is also scored on that subset (same jets) for a
like-for-like comparison.  The per-jet estimator std of NLL/N is measured from ``--repeats``
seeds on ``--std-jets`` QCD jets.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from shared.io import atomic_write_json

ESTIMATORS = {
    "gaussian_1": {"divergence": "hutchinson", "probe": "gaussian", "num_probes": 1},
    "rademacher_1": {"divergence": "hutchinson", "probe": "rademacher", "num_probes": 1},
    "rademacher_4": {"divergence": "hutchinson", "probe": "rademacher", "num_probes": 4},
    "exact": {"divergence": "exact"},
}
SAMPLES = ("qcd", "top", "zprime")


def detection_metrics(nll_bkg, nll_sig, min_background):
    from shared import metrics

    labels = np.r_[np.zeros(len(nll_bkg)), np.ones(len(nll_sig))].astype(np.int8)
    scores = np.r_[nll_bkg, nll_sig]
    return {"auc": float(metrics.auc(labels, scores)),
            "max_sic": float(np.nan_to_num(metrics.max_sic(labels, scores, min_background=min_background),
                                           nan=0.0))}


def score_jets(model, std, split, lik, seed):
    """NLL/N (physical units) of the jets of ``split`` and the CPU seconds it took."""
    from benchmarks.likelihood_speed import cpu_seconds
    from shared.diffusion.likelihood import LikelihoodOptions

    c, j = std.transform(split["constituents"], split["mask"], split["jets"])
    t0 = cpu_seconds()
    ll = model.log_likelihood(c, split["mask"], j, preprocessor=std,
                              options=LikelihoodOptions.from_config(lik), seed=seed)
    return -ll["logp"] / np.maximum(ll["n"], 1.0), cpu_seconds() - t0, ll


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", default="likelihood_estimators.json")
    ap.add_argument("--densities", default="qcd_standard", help="comma list of RUN/models/<name>")
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument("--jets", type=int, default=300, help="test jets per sample (Hutchinson estimators)")
    ap.add_argument("--exact-jets", type=int, default=60, help="test jets per sample for 'exact'")
    ap.add_argument("--std-jets", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--min-background", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--solver", default=None,
                    help="METHOD:RTOL:ATOL instead of the run's likelihood solver (e.g. RK23:1e-3:1e-4)")
    args = ap.parse_args(argv)

    from benchmarks.likelihood_speed import load_demo_density, parse_solver
    from permutation_ad.prepare import load_split

    run = Path(args.run).resolve()
    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        ap.error(f"--estimators: unknown {bad}; choose from {list(ESTIMATORS)}")
    out = {"run": str(run), "jets_per_sample": args.jets, "exact_jets_per_sample": args.exact_jets,
           "estimators": {e: ESTIMATORS[e] for e in estimators}, "densities": {}}
    for density in [d.strip() for d in args.densities.split(",") if d.strip()]:
        model, std, cfg, _ = load_demo_density(run / "models" / density)
        fns = model.eps_fns()      # the same functions for every call: compiled solvers are reused
        model.eps_fns = lambda fns=fns: fns
        base = {k: v for k, v in (cfg.get("likelihood") or {}).items()
                if k not in ("divergence", "probe", "num_probes")}
        if args.solver:
            base.update(parse_solver(args.solver))
        out["solver"] = {k: base.get(k) for k in ("method", "rtol", "atol", "t_eps")}
        data_dir = run / "data"
        splits = {s: load_split(data_dir, s, "test", limit=args.jets) for s in SAMPLES}
        res = {}
        for est in estimators:
            lik = dict(base, **ESTIMATORS[est])
            n = args.exact_jets if est == "exact" else args.jets
            nll, secs = {}, {}
            for s in SAMPLES:
                sp = {k: v[:n] for k, v in splits[s].items()}
                nll[s], secs[s], ll = score_jets(model, std, sp, lik, args.seed + 17)
            # the first sample compiles the solvers; the cost per jet is that of the other two
            warm = (secs["top"] + secs["zprime"]) / (2 * n)
            row = {"jets_per_sample": n, "cpu_seconds": secs, "cpu_seconds_per_jet": warm,
                   "nll_per_particle": {s: nll[s].tolist() for s in SAMPLES}}
            for sig in ("top", "zprime"):
                row[f"{sig}_vs_qcd"] = detection_metrics(nll["qcd"], nll[sig], args.min_background)
                m = min(n, args.exact_jets)
                row[f"{sig}_vs_qcd_on_exact_subset"] = detection_metrics(nll["qcd"][:m], nll[sig][:m],
                                                                         args.min_background)
            res[est] = row
            print(f"  {density} {est:13} {1e3 * row['cpu_seconds_per_jet']:8.1f} CPU-ms/jet  "
                  f"AUC top {row['top_vs_qcd']['auc']:.3f} Z' {row['zprime_vs_qcd']['auc']:.3f}  "
                  f"maxSIC top {row['top_vs_qcd']['max_sic']:.2f} Z' {row['zprime_vs_qcd']['max_sic']:.2f}",
                  flush=True)
        if "exact" in res:   # how far each estimator's NLL/N is from the exact one, same jets
            for est, row in res.items():
                d = np.concatenate([np.asarray(row["nll_per_particle"][s][:args.exact_jets])
                                    - np.asarray(res["exact"]["nll_per_particle"][s]) for s in SAMPLES])
                row["rms_vs_exact_per_particle"] = float(np.sqrt(np.mean(d ** 2)))
        # per-jet estimator std (NLL/N) over probe seeds
        qcd = {k: v[:args.std_jets] for k, v in splits["qcd"].items()}
        for est in estimators:
            if est == "exact":
                res[est]["per_jet_std_per_particle"] = 0.0
                continue
            lik = dict(base, **ESTIMATORS[est])
            reps = np.stack([score_jets(model, std, qcd, lik, args.seed + 1000 + r)[0]
                             for r in range(args.repeats)])
            res[est]["per_jet_std_per_particle"] = float(np.mean(reps.std(0, ddof=1)))
            res[est]["per_jet_std_per_particle_max"] = float(np.max(reps.std(0, ddof=1)))
            print(f"  {density} {est:13} per-jet std of NLL/N {res[est]['per_jet_std_per_particle']:.3f}",
                  flush=True)
        for row in res.values():
            row.pop("nll_per_particle")
        out["densities"][density] = res
    atomic_write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
