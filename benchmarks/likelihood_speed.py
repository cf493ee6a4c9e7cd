"""Speed of the probability-flow-ODE likelihood: the original-style SciPy path against ours.

    python -m benchmarks.likelihood_speed --out s.json [--checkpoint RUN/models/qcd_standard]

Every path integrates the same ODE for the same jets with the same net and the same fixed
Hutchinson probe per jet:

* ``original``: the structure of the authors' code at the paper's tolerances (RK45, rtol 1e-4,
  atol 1e-5, t_eps 1e-5) — ONE ``solve_ivp`` over the flattened padded batch [x, Δlogp] of all
  jets, a ``tf.function`` drift + divergence called once per evaluation with a NumPy round trip
  (their ``Likelihood``; here with a fixed probe, they redrew it).
* ``ours``: ``shared.diffusion.likelihood.log_likelihood`` (in-graph batched RK with per-jet
  error control, padding trimmed) with the solver ``--ours`` (default RK23, rtol 1e-3,
  atol 1e-4: on the demo density the same error against a tight solve as RK45 at 1e-4, with
  fewer evaluations — docs/core.md).  The headline ``speedup_*`` / ``mean_abs_dnll_*`` keys
  are this path against ``original``: throughput at mean |ΔNLL| per particle.
* ``ours_paper_tol``: the same solver at the paper's tolerances (solver against solver).
* ``scipy`` (optional, ``--paths``): our SciPy reference (real coordinates only).
* ``tight`` (optional): RK45 at rtol 1e-6, atol 1e-7 — the truth proxy; with it, every path also
  reports its error against ``tight``.

Two nets: a demo-size particle net at P = 30 — the trained density of ``--checkpoint`` (a
permutation_ad model folder; config and test jets from its run folder) or, without it, a net of
the demo's size trained for ``--train-seconds`` on embedded Pythia QCD jets — and a randomly
initialised paper-size particle net (6 blocks, width 128, 2 heads, FFN 512) at P = 200 on embedded
QCD jets.  Every path runs in its own process (clean peak memory).  "warm" repeats the solve with
the traced/compiled graph reused; "cold" includes tracing and XLA compilation.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from shared.io import atomic_write_json

PAPER_NET = {"width": 128, "num_blocks": 6, "num_heads": 2, "ffn_dim": 512}
DEMO_NET = {"width": 64, "num_blocks": 2, "num_heads": 2, "ffn_dim": 128}
TOL = {"method": "RK45", "rtol": 1e-4, "atol": 1e-5, "t_eps": 1e-5}   # the paper's
TIGHT = {"method": "RK45", "rtol": 1e-6, "atol": 1e-7, "t_eps": 1e-5}
PATHS = ("original", "ours", "ours_paper_tol", "scipy", "tight")


def parse_solver(text):
    """'RK23:1e-3:1e-4' -> {"method", "rtol", "atol", "t_eps"} (t_eps of the paper)."""
    try:
        method, rtol, atol = text.split(":")
        return {"method": method, "rtol": float(rtol), "atol": float(atol), "t_eps": TOL["t_eps"]}
    except ValueError:
        raise SystemExit(f"solver must be METHOD:RTOL:ATOL (e.g. RK23:1e-3:1e-4), got {text!r}")


# ----------------------------------------------------------------------------- reference path --
def original_style_logp(eps_fn, sde, x, mask, cond, probe, rtol=1e-4, atol=1e-5, t_eps=1e-5,
                        method="RK45"):
    """log p of all sets from ONE solve_ivp over the flattened padded batch (authors' structure).

    x (B,P,F), mask (B,P), cond (B,C), probe (B,P,F). Returns (logp (B,), nfev)."""
    import tensorflow as tf
    from scipy.integrate import solve_ivp

    b = x.shape[0]
    shape = x.shape
    m = tf.constant(mask, tf.float32)
    m3 = m[..., None]
    c = tf.constant(cond, tf.float32)
    v = tf.constant(probe * mask[..., None], tf.float32)

    @tf.function
    def divergence_eval(sample, t):
        sample = tf.reshape(tf.cast(sample, tf.float32), shape)
        t = tf.cast(t, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(sample)
            drift = sde.pf_drift(sample, t, eps_fn(sample * m3, t, m, c) * m3) * m3
        vjp = tape.gradient(drift, sample, v)
        return tf.reshape(drift, [-1]), tf.reduce_sum(tf.reshape(vjp * v, (b, -1)), -1)

    def ode_func(t, y):
        drift, div = divergence_eval(y[:-b], np.ones((b,)) * t)
        return np.concatenate([drift.numpy(), div.numpy()]).astype(np.float64)

    y0 = np.concatenate([(x * mask[..., None]).reshape(-1), np.zeros(b)])
    res = solve_ivp(ode_func, (t_eps, 1.0), y0, rtol=rtol, atol=atol, method=method)
    if not res.success:
        raise RuntimeError(f"original-style solve failed: {res.message}")
    z = res.y[:-b, -1].reshape(shape) * mask[..., None]
    return sde.prior_logp(z, mask) + res.y[-b:, -1], int(res.nfev)


# ----------------------------------------------------------------------------- cases ----------
def _rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds():
    """User + system CPU time of this process (all threads): less sensitive than wall time to
    other processes sharing the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def embedded_qcd(cache_dir, n, num_particles, seed, workers=2):
    """Features of ``n`` embedded Pythia QCD jets at P = ``num_particles`` (generated once)."""
    from permutation_ad.features import jet_features
    from shared.data.embedded import ensure_embedded
    from shared.data.toptag import read_toptag

    path = ensure_embedded("qcd", cache_dir, int(n), int(seed), workers=workers, progress=True)
    p4 = read_toptag(path)["p4"]
    return jet_features(p4[:n], num_particles, "log_pt", ("eta", "mass", "n"))


def load_demo_density(checkpoint, config=None):
    """(model, preprocessor, cfg, run folder) of a trained permutation_ad density folder."""
    from permutation_ad import train as ptrain
    from permutation_ad.schema import validate_config
    from shared.config import load_config

    run = Path(checkpoint).resolve().parents[1]
    cfg_path = Path(config) if config else run / "config.resolved.yaml"
    cfg = validate_config(load_config(cfg_path), cfg_path)
    summary = Path(checkpoint) / "train_summary.json"
    objective = json.loads(summary.read_text())["objective"] if summary.exists() else "standard"
    model, std = ptrain.load_density(cfg, str(checkpoint), objective)
    return model, std, cfg, run


def _train_demo_net(feats, seconds, seed):
    """A demo-size particle net (standard DSM) trained for ``seconds`` on ``feats``."""
    import keras
    import tensorflow as tf
    from permutation_ad.preprocess import Preprocessor
    from shared.diffusion.losses import dsm_loss
    from shared.diffusion.sde import VPSDE
    from shared.layers import build_set_score_net

    keras.utils.set_random_seed(seed)
    std = Preprocessor.fit(feats["constituents"], feats["mask"], feats["jets"],
                           dequantized_columns=(2,))
    c, j = std.transform(feats["constituents"], feats["mask"], feats["jets"])
    m = feats["mask"].astype(np.float32)
    sde = VPSDE()
    net = build_set_score_net(3, 3, gaussian_skip=sde, **DEMO_NET)
    opt = keras.optimizers.Adam(2e-3)

    @tf.function
    def step(x, mk, cond):
        with tf.GradientTape() as tape:
            loss = dsm_loss(net, x, mk, cond, sde, "standard", training=True)
        opt.apply(tape.gradient(loss, net.trainable_variables), net.trainable_variables)
        return loss

    rng = np.random.default_rng(seed)
    start, steps = time.time(), 0
    while time.time() - start < seconds:
        idx = rng.integers(0, len(c), 128)
        step(tf.constant(c[idx]), tf.constant(m[idx]), tf.constant(j[idx]))
        steps += 1
    return net, std, steps


def prepare_cases(args, work):
    """Write the two cases (net.keras, jets.npz, case.json) into ``work``; returns their dirs."""
    import keras
    from shared.diffusion.likelihood import LikelihoodOptions, draw_probes
    from shared.layers import build_set_score_net

    cases = []
    # P = 30: the demo density (or a demo-size net trained here)
    d30 = Path(work) / "p30"
    d30.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        from permutation_ad.prepare import load_split
        model, std, cfg, run = load_demo_density(args.checkpoint, args.config)
        data_dir = args.data_dir or str(run / "data")
        split = load_split(data_dir, "qcd", "test", limit=args.jets_p30)
        c, j = std.transform(split["constituents"], split["mask"], split["jets"])
        m, net = split["mask"].astype(np.float64), model.particle_net
        sde_cfg = model.sde.get_config()
        source = f"trained density {Path(args.checkpoint).resolve()} (QCD test jets of {data_dir})"
    else:
        feats = embedded_qcd(args.cache_dir, args.train_jets + args.jets_p30, 30, args.seed)
        train = {k: v[:args.train_jets] for k, v in feats.items()}
        net, std, steps = _train_demo_net(train, args.train_seconds, args.seed)
        test = {k: v[args.train_jets:] for k, v in feats.items()}
        c, j = std.transform(test["constituents"], test["mask"], test["jets"])
        m, sde_cfg = test["mask"].astype(np.float64), {"name": "vpsde"}
        source = (f"demo-size net trained {args.train_seconds:.0f} s ({steps} steps) on "
                  f"{args.train_jets} embedded Pythia QCD jets (no --checkpoint)")
    cases.append((d30, net, c, m, j, sde_cfg, source))
    if not args.skip_p200:
        d200 = Path(work) / "p200"
        d200.mkdir(parents=True, exist_ok=True)
        from permutation_ad.preprocess import Preprocessor
        feats = embedded_qcd(args.cache_dir, args.jets_p200, 200, args.seed + 1)
        std = Preprocessor.fit(feats["constituents"], feats["mask"], feats["jets"])
        c2, j2 = std.transform(feats["constituents"], feats["mask"], feats["jets"])
        keras.utils.set_random_seed(args.seed)
        net2 = build_set_score_net(3, 3, **PAPER_NET)
        cases.append((d200, net2, c2, feats["mask"].astype(np.float64), j2, {"name": "vpsde"},
                      "randomly initialised paper-size particle net, embedded Pythia QCD jets"))
    out = []
    for d, net, c, m, j, sde_cfg, source in cases:
        net.save(d / "net.keras")
        probes = draw_probes(LikelihoodOptions(probe="gaussian"), c.shape, m, args.seed)   # the paper's
        np.savez(d / "jets.npz", x=c.astype(np.float32), mask=m.astype(np.float32),
                 cond=j.astype(np.float32), probes=probes)
        atomic_write_json(d / "case.json", {
            "sde": sde_cfg, "source": source, "num_particles": int(c.shape[1]),
            "num_jets": int(len(c)), "mean_multiplicity": float(m.sum(1).mean()),
            "net_weights": int(net.count_params())})
        out.append(d)
    return out


# ----------------------------------------------------------------------------- one path ------
def run_path(case_dir, path, repeats=2, ours=None):
    """Run one path on one case in THIS process; returns timings, NFE, memory and logp."""
    import keras

    import shared.layers  # noqa: F401  (registers the layers for load_model)
    from shared.diffusion.likelihood import log_likelihood
    from shared.diffusion.score import eps_fn_from_model
    from shared.diffusion.sde import make_sde

    case_dir = Path(case_dir)
    case = json.loads((case_dir / "case.json").read_text())
    net = keras.models.load_model(case_dir / "net.keras", compile=False)
    eps_fn = eps_fn_from_model(net)
    sde = make_sde(case["sde"])
    d = np.load(case_dir / "jets.npz")
    x, m, cond, probes = d["x"], d["mask"], d["cond"], d["probes"]
    rss0 = _rss_mb()
    runs = []
    for _ in range(repeats if path == "ours" else 1):
        load0 = os.getloadavg()[0]
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        if path == "original":
            logp, nfe = original_style_logp(eps_fn, sde, x, m, cond, probes[:, 0], **TOL)
            nfe_jet = float(nfe)
        else:
            tol = {"ours": ours or TOL, "tight": TIGHT}.get(path, TOL)
            res = log_likelihood(eps_fn, x, m, cond, sde, probes=probes, progress=False,
                                 solver="scipy" if path == "scipy" else "graph", **tol)
            logp = res.logp
            nfe_jet = float(res.nfe if res.nfe_per_set is None else res.nfe_per_set.mean())
        runs.append({"seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - cpu0,
                     "load_avg_1min": load0, "nfe_per_jet": nfe_jet})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"path": path, "runs": runs, "peak_rss_mb": peak, "rss_before_mb": rss0,
            "peak_extra_mb": peak - rss0, "logp": np.asarray(logp).tolist(),
            "num_jets": len(x)}


def _child(case_dir, path, result, repeats, ours):
    res = run_path(case_dir, path, repeats, parse_solver(ours))
    atomic_write_json(result, res)


def summarise(case, results, references=("original", "tight")):
    """Per-path jets/s (cold = first run, warm = last), NFE/jet, memory and |ΔNLL| per particle
    against each reference path that ran."""
    m = np.load(Path(case) / "jets.npz")["mask"]
    n_real = m.sum(1)
    rows = {}
    for path, r in results.items():
        n = r["num_jets"]
        errors = {}
        for ref in references:
            if ref in results:
                dnll = np.abs(np.asarray(r["logp"]) - np.asarray(results[ref]["logp"])) / n_real
                errors[f"mean_abs_dnll_per_particle_vs_{ref}"] = float(dnll.mean())
                errors[f"max_abs_dnll_per_particle_vs_{ref}"] = float(dnll.max())
        rows[path] = {"jets_per_s_cold": n / r["runs"][0]["seconds"],
                      "jets_per_s_warm": n / r["runs"][-1]["seconds"],
                      "jets_per_cpu_s_cold": n / r["runs"][0]["cpu_seconds"],
                      "jets_per_cpu_s_warm": n / r["runs"][-1]["cpu_seconds"],
                      "seconds_cold": r["runs"][0]["seconds"], "seconds_warm": r["runs"][-1]["seconds"],
                      "cpu_seconds_cold": r["runs"][0]["cpu_seconds"],
                      "cpu_seconds_warm": r["runs"][-1]["cpu_seconds"],
                      "nfe_per_jet": r["runs"][-1]["nfe_per_jet"],
                      "peak_rss_mb": r["peak_rss_mb"], "peak_extra_mb": r["peak_extra_mb"],
                      "load_avg_1min": [x["load_avg_1min"] for x in r["runs"]], **errors}
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="likelihood_speed.json")
    ap.add_argument("--checkpoint", default=None,
                    help="trained permutation_ad density folder (RUN/models/<sample>_<objective>)")
    ap.add_argument("--config", default=None, help="config of the checkpoint (default RUN/config.resolved.yaml)")
    ap.add_argument("--data-dir", default=None, help="processed data of the checkpoint (default RUN/data)")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "likelihood_speed_data"),
                    help="where embedded Pythia jets are generated/cached")
    ap.add_argument("--jets-p30", type=int, default=256)
    ap.add_argument("--jets-p200", type=int, default=16)
    ap.add_argument("--train-jets", type=int, default=1500, help="without --checkpoint")
    ap.add_argument("--train-seconds", type=float, default=120.0, help="without --checkpoint")
    ap.add_argument("--paths", default="original,ours,ours_paper_tol",
                    help=f"comma list of {', '.join(PATHS)} (original and ours required)")
    ap.add_argument("--ours", default="RK23:1e-3:1e-4",
                    help="solver of the 'ours' path, METHOD:RTOL:ATOL (default: accuracy-matched)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of ours (first = cold)")
    ap.add_argument("--skip-p200", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep the prepared cases here")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the cases and per-path results already in --workdir")
    ap.add_argument("--child", nargs=3, metavar=("CASE", "PATH", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(*args.child, args.repeats, args.ours)

    ours = parse_solver(args.ours)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in PATHS]
    if bad or "original" not in paths or "ours" not in paths:
        ap.error(f"--paths must include original and ours (optional: {', '.join(PATHS[2:])}), "
                 f"got {args.paths!r}")
    t_start = time.time()
    work = args.workdir or tempfile.mkdtemp(prefix="likelihood_speed_")
    names = ["p30"] + ([] if args.skip_p200 else ["p200"])
    if args.reuse and all((Path(work) / n / "case.json").exists() for n in names):
        cases = [Path(work) / n for n in names]
    else:
        cases = prepare_cases(args, work)
    out = {"command": " ".join(sys.argv), "tolerances": TOL, "ours_solver": ours, "cases": {},
           "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()}
    for case in cases:
        results = {}
        for path in paths:
            result = Path(case) / f"result_{path}.json"
            if args.reuse and result.exists():
                results[path] = json.loads(result.read_text())
                continue
            print(f"[likelihood_speed] {case.name}: {path} ...", flush=True)
            subprocess.run([sys.executable, "-m", "benchmarks.likelihood_speed", "--child", str(case),
                            path, str(result), "--repeats", str(args.repeats), "--ours", args.ours],
                           check=True,
                           cwd=str(Path(__file__).resolve().parents[1]))
            results[path] = json.loads(result.read_text())
        info = json.loads((Path(case) / "case.json").read_text())
        rows = summarise(case, results)
        info["paths"] = rows
        key = case.name
        # CPU-time throughput: the cores are shared, wall time depends on everyone else's load
        info["speedup"] = rows["ours"]["jets_per_cpu_s_warm"] / rows["original"]["jets_per_cpu_s_warm"]
        info["speedup_cold"] = rows["ours"]["jets_per_cpu_s_cold"] / rows["original"]["jets_per_cpu_s_cold"]
        info["speedup_wall"] = rows["ours"]["jets_per_s_warm"] / rows["original"]["jets_per_s_warm"]
        out["cases"][key] = info
        out[f"speedup_{key}"] = info["speedup"]
        out[f"speedup_{key}_cold"] = info["speedup_cold"]
        out[f"speedup_{key}_wall"] = info["speedup_wall"]
        out[f"mean_abs_dnll_per_particle_{key}"] = rows["ours"]["mean_abs_dnll_per_particle_vs_original"]
        out[f"max_abs_dnll_per_particle_{key}"] = rows["ours"]["max_abs_dnll_per_particle_vs_original"]
        if "ours_paper_tol" in rows:
            same = rows["ours_paper_tol"]
            info["speedup_paper_tol"] = same["jets_per_cpu_s_warm"] / rows["original"]["jets_per_cpu_s_warm"]
            out[f"speedup_{key}_paper_tol"] = info["speedup_paper_tol"]
            out[f"mean_abs_dnll_per_particle_{key}_paper_tol"] = same["mean_abs_dnll_per_particle_vs_original"]
    out["seconds_total"] = time.time() - t_start
    out["load_avg_end"] = os.getloadavg()
    atomic_write_json(args.out, out)
    print_table(out)
    return out


def print_table(out):
    print(f"\nlikelihood speed (original: {out['tolerances']}; ours: {out['ours_solver']}; "
          f"load avg start {out['load_avg_start'][0]:.1f})")
    print(f"{'case':6} {'path':15} {'jets/cpu-s':>10} {'jets/s warm':>11} {'jets/s cold':>11} {'NFE/jet':>8} "
          f"{'peak MB':>8} {'mean|dNLL|/N':>13} {'max|dNLL|/N':>12} {'vs tight':>9}")
    for key, info in out["cases"].items():
        for path, r in info["paths"].items():
            tight = r.get("mean_abs_dnll_per_particle_vs_tight")
            print(f"{key:6} {path:15} {r['jets_per_cpu_s_warm']:10.2f} {r['jets_per_s_warm']:11.2f} {r['jets_per_s_cold']:11.2f} "
                  f"{r['nfe_per_jet']:8.1f} {r['peak_extra_mb']:8.0f} "
                  f"{r['mean_abs_dnll_per_particle_vs_original']:13.4f} "
                  f"{r['max_abs_dnll_per_particle_vs_original']:12.4f} "
                  f"{'' if tight is None else f'{tight:9.4f}'}")
        same = (f", at the paper's tolerances {info['speedup_paper_tol']:.2f}x"
                if "speedup_paper_tol" in info else "")
        print(f"{key:6} speedup ours/original (CPU time): {info['speedup']:.2f}x warm, "
              f"{info['speedup_cold']:.2f}x cold, wall {info['speedup_wall']:.2f}x{same}"
              f"  ({info['source']}; P={info['num_particles']}, {info['num_jets']} jets, "
              f"mean N {info['mean_multiplicity']:.1f})")


if __name__ == "__main__":
    main()
