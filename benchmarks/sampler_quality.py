"""Generation quality against network evaluations (NFE) for the samplers of the lhco generators.

    python -m benchmarks.sampler_quality --run RUN --out q.json \
        [--samplers ddim_heun:512,ddim:512,ddim:128,dpm_solver_2m:64] [--num-events 1600] [--inits 3]

``RUN`` is a finished ``lhco_fullphase`` run folder (its ``config.resolved.yaml``, ``models/`` and
``data/``).  For every ``method:steps`` the trained generators (EMA weights) produce the same SR
events as the pipeline's ``sample`` stage (same mjj values from the KDE, same seed, hence the same
initial noise for every sampler), and the generation-quality classifier of the pipeline
(``lhco_fullphase.classify.train_and_score``, generated vs true SR background, ``--inits``
initialisations with the same seeds for every sampler) gives the test AUC (0.5 = perfect).
NFE is per event and per net (jet and particle net both run ``steps`` steps).

Each sampler is passed to the package's own generation (``generate_events(..., solver=method)``,
the ``generation.sampler`` setting).  Results are cached per sampler in ``--workdir``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from shared.io import atomic_write_json

DEFAULT_SAMPLERS = ("ddim_heun:512,ddim:512,ddim:128,ddim:64,ddim_heun:64,ddim_heun:32,"
                    "dpm_solver_2m:128,dpm_solver_2m:64,dpm_solver_2m:32,dpm_solver_2m:16")


def parse_samplers(text):
    """'method:steps,...' -> [(method, steps)] (validated)."""
    from shared.diffusion.sampler import METHODS
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        method, _, steps = item.partition(":")
        if method not in METHODS or not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"--samplers: {item!r} is not METHOD:STEPS with METHOD in {METHODS}")
        out.append((method, int(steps)))
    return out


def generate_with(run, model, prep, mjj, method, steps, seed):
    """SR events from ``lhco_fullphase.sample.generate_events`` with ``method`` as the sampler."""
    from lhco_fullphase.sample import generate_events

    g = run.cfg["generation"]
    return generate_events(model, prep.pre, mjj, steps, True, int(g["batch_size"]), seed,
                           float(g["clip"]), False, bool(g["enforce_mjj"]), solver=method)


def quality_aucs(run, cpre, gen, true, inits, seed, workdir):
    """Test AUCs of ``inits`` generated-vs-true classifiers (the pipeline's quality check)."""
    from lhco_fullphase.classify import features, train_and_score
    from shared import metrics

    aucs = []
    for i in range(inits):
        preds, splits, label, _ = train_and_score(
            run.cfg["classifier"], os.path.join(workdir, f"init{i}"), features(cpre, gen),
            features(cpre, true), {}, seed + 31 * i,
            fractions=tuple(run.key("generation_quality.fractions")), progress=False)
        aucs.append(float(metrics.auc(label[splits[2]].astype(np.int8), preds["test"])))
    return aucs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="finished lhco_fullphase run folder")
    ap.add_argument("--data-dir", default=None, help="the run's data folder (default RUN/data)")
    ap.add_argument("--out", default="sampler_quality.json")
    ap.add_argument("--workdir", default=None, help="per-sampler cache (default RUN/sampler_quality)")
    ap.add_argument("--samplers", default=DEFAULT_SAMPLERS)
    ap.add_argument("--num-events", type=int, default=None, help="default generation.num_events")
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from lhco_fullphase.prepare import load_prepared
    from lhco_fullphase.sample import region_mjj, region_seed
    from lhco_fullphase.schema import SCHEMA
    from lhco_fullphase.train import load_generator
    from shared.diffusion.sampler import sampler_nfe
    from shared.run import Run

    run_dir = Path(args.run).resolve()
    run = Run.from_config(run_dir / "config.resolved.yaml", run_dir, SCHEMA,
                          data_dir=args.data_dir or run_dir / "data", progress=False,
                          save_config_as=None)
    samplers = parse_samplers(args.samplers)
    workdir = Path(args.workdir or run_dir / "sampler_quality")
    workdir.mkdir(parents=True, exist_ok=True)
    prep = load_prepared(run)
    cpre = prep.classifier_preprocessor(run.cfg)   # as the pipeline's quality units
    mjj = region_mjj(run, "sr", prep)["mjj"]
    if args.num_events:
        mjj = mjj[:args.num_events]
    n = len(mjj)
    seed = region_seed(run, "sr") + args.seed
    true = prep.take("idealized_bkg")
    model = load_generator(run, "diffusion", prep)
    rows = []
    for method, steps in samplers:
        cache = workdir / f"{method}_{steps}.json"
        if cache.exists():
            row = json.loads(cache.read_text())
        else:
            print(f"[sampler_quality] {method} {steps} steps ...", flush=True)
            t0 = time.time()
            gen, n_clipped = generate_with(run, model, prep, mjj, method, steps, seed)
            t_gen = time.time() - t0
            aucs = quality_aucs(run, cpre, gen, true, args.inits, 1000 * args.seed + 7,
                                str(workdir / f"{method}_{steps}"))
            row = {"method": method, "steps": steps, "nfe": sampler_nfe(method, steps),
                   "aucs": aucs, "auc_mean": float(np.mean(aucs)),
                   "auc_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None,
                   "generation_seconds": t_gen, "n_clipped": int(n_clipped),
                   "num_events": n, "load_avg_1min": os.getloadavg()[0]}
            atomic_write_json(cache, row)
        rows.append(row)
        print(f"  {method:14} steps {steps:4d}  NFE {row['nfe']:5d}  AUC {row['auc_mean']:.3f} "
              f"± {row['auc_std'] or 0:.3f}  ({row['generation_seconds']:.0f} s)", flush=True)
    ref = rows[0]
    for r in rows:   # paired differences: same events' noise, same classifier seeds
        d = np.asarray(r["aucs"]) - np.asarray(ref["aucs"])
        r["delta_auc_vs_reference"] = float(d.mean())
        r["delta_auc_std"] = float(d.std(ddof=1)) if len(d) > 1 else None
    scatter = ref["auc_std"] or 0.0
    ok = [r for r in rows if abs(r["auc_mean"] - ref["auc_mean"]) <= scatter]
    best = min(ok, key=lambda r: r["nfe"]) if ok else None
    out = {"run": str(run_dir), "reference": f"{ref['method']}:{ref['steps']}", "num_events": n,
           "inits": args.inits, "reference_scatter": scatter, "rows": rows,
           "fewest_nfe_within_scatter": None if best is None else f"{best['method']}:{best['steps']}",
           "fewest_nfe": None if best is None else best["nfe"]}
    atomic_write_json(args.out, out)
    print(f"\nreference {out['reference']} AUC {ref['auc_mean']:.3f} ± {scatter:.3f}; fewest NFE "
          f"within that scatter: {out['fewest_nfe_within_scatter']} (NFE {out['fewest_nfe']})")
    return out


if __name__ == "__main__":
    main()
