"""Paper-scale unit costs measured on this machine, and their projection to 16 A100s.

    nice -n 10 python benchmarks/paper_scale.py [--out benchmarks/paper_scale.json] [--repeats 2]
    python benchmarks/paper_scale.py --project benchmarks/paper_scale.json   # projection only

Every model has the paper size of the package's ``configs/paper.yaml`` (random weights and
random standardised inputs: the cost of a step does not depend on the values) and is built with
the packages' own classes, read-only: ``permutation_ad.train.build_model`` (JetDensityModel, identity Preprocessor,
P = 200, particle net 6 blocks × 128, 2 heads, FFN 512; jet net 256 × 5),
``permutation_ad.classifier.SetClassifier``, ``lhco_fullphase.model.DijetDiffusion`` (P = 279,
both nets 6 × 128, FFN 512; built directly because ``train.build_generator`` needs a fitted
Preprocessor only for the multiplicity dequantisation width) and
``lhco_fullphase.classifier.build_classifier``. Units (one subprocess each, so the peak RSS is
the unit's own):

* ``pad_train``, ``pad_classifier``, ``lhco_train_jet``, ``lhco_train_particle``,
  ``lhco_classifier``: seconds per optimizer step at batch 128 through
  ``shared.training.Trainer.fit`` (the real step: gradients, clipping, Adam, EMA), from the
  epochs after the first (which includes tracing); an epoch also writes two checkpoints.
* ``pad_likelihood``: one probability-flow ODE evaluation (drift + Hutchinson divergence =
  forward + one VJP, the function ``shared.diffusion.likelihood`` hands to ``solve_ivp``) of the
  particle net and of the jet net, per jet; × an assumed NFE gives seconds per likelihood jet.
* ``lhco_generate``: one eps evaluation of each net per event (jet net on the 2 jets, particle
  net on the 2 jets' 279 slots); × (2 × 512 + 1) evaluations (second-order DDIM, 512 steps)
  gives seconds per generated event; cross-checked with ``DijetDiffusion.sample`` at few steps.
* ``lhco_classifier`` also: seconds per predicted event (inference, batch 512).
* ``lhco_cluster``: anti-kT R = 1 clustering of LHCO-layout events
  (``lhco_fullphase.events.cluster_dijets`` on events from tests/official_layout.py), s per event.

The projection (``project``) turns these into wall times of the paper stages on 16 A100s from
the assumptions in ``ASSUMPTIONS`` (all overridable with ``--assume key=value``); docs/scale.md
shows its output and explains every assumption.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("pad_train", "pad_likelihood", "pad_classifier", "lhco_train_jet", "lhco_train_particle",
         "lhco_generate", "lhco_classifier", "lhco_cluster")

# Projection inputs (see docs/scale.md for the reasoning behind each).
ASSUMPTIONS = {
    # reference point (lead's notes): PyTorch stand-in of the paper's particle net (P = 200,
    # 6 blocks, width 128): one PF-ODE evaluation (forward + one VJP) of 1,024 jets in 54 ms on
    # one H200 in TF32
    "h200_seconds_per_1024_jet_evals": 0.054,
    "a100_slowdown_vs_h200": 3.0,         # A100 time / H200 time for this workload
    "clock": "cpu",                       # cpu: process CPU time (robust to other users' load) | wall
    "gpus": 16,
    "horovod_efficiency": 0.85,           # data-parallel training: 16-rank step rate / (16 × 1-rank)
    "shard_efficiency": 0.95,             # embarrassingly parallel shards (load imbalance, start-up)
    "gpu_step_overhead_s": 0.005,         # per optimizer step on the GPU: launches, Adam + EMA, batch copy
    "nfe_particles": 350,                 # PF-ODE evaluations per likelihood jet (reference; demo run: 200–350)
    "nfe_jets": 600,                      # jet-feature ODE (demo run: 200–566; cost negligible)
    "batch_size": 128,                    # per rank (paper Table I)
    # permutation_ad (SPEC §1.1, §2; paper.yaml)
    "pad_train_jets_per_density": 600_000,  # 1.2M train jets, balanced: one class per density
    "pad_densities": 4,                   # {QCD, top} × {standard, max-likelihood}
    "pad_epochs": 300,
    "pad_classifier_train_jets": 1_200_000,
    "pad_classifier_epochs": 100,         # paper.yaml classifier.epochs
    "pad_test_jets_per_sample": 100_000,  # QCD, top, Z′ each (paper.yaml evaluate.num_jets: 50,000)
    "pad_test_samples": 3,
    # lhco_fullphase (SPEC §1.2, §3; paper.yaml)
    "lhco_events_total": 1_100_000 + 600_000,   # R&D file + SR-only QCD file (≈ 0.6M, assumed)
    "lhco_sb_train_events": 500_000,      # ≈ 0.83M SB background × 0.6 (assumed SB fraction)
    "lhco_epochs": 300,
    "lhco_generated_events": 200_000 + 200_000,  # SR background + SB events for the quality check
    "lhco_scan_trainings": 9 * 10 * 2 + 2 * 10,  # injections × inits × (CATHODE, idealized) + quality
    "lhco_classifier_train_events": 240_000,     # 0.8 × (200k generated + 100k data + signal)
    "lhco_classifier_epochs": 300,        # upper bound; early stopping (patience 20) ends sooner
    "lhco_classifier_epochs_early": 50,   # an illustrative early stop (patience 20): not measured
    "lhco_eval_events_per_training": 400_000,    # independent signal + background predicted
}


# ---------------------------------------------------------------- helpers


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _paper_cfg(package):
    from shared.config import load_config
    return load_config(os.path.join(REPO, package, "configs", "paper.yaml"))


def _train_seconds(model, data, tcfg, steps_per_epoch, repeats):
    """Seconds per optimizer step from Trainer.fit: epoch 1 traces, epochs 2.. are timed.

    ``s_per_step`` is wall time, ``cpu_s_per_step`` the process CPU time (all threads) of the
    same epochs (on a shared machine the wall time carries other users' load). Each epoch also
    writes checkpoints (``last``, and ``best`` when the loss improved); one such write is timed
    after the last epoch and subtracted."""
    from pathlib import Path

    from shared.checkpoint import save_checkpoint
    from shared.training import TRAINER_DEFAULTS, Trainer
    cfg = {k: v for k, v in tcfg.items() if k in TRAINER_DEFAULTS}    # sections may hold model keys
    cfg.update(epochs=1 + repeats, patience=None, progress=False, resume="never")
    if "tensorboard" in TRAINER_DEFAULTS:                # per-epoch logging: not part of a step
        cfg["tensorboard"] = False
    marks = [(time.perf_counter(), time.process_time(), False)]
    save = {}

    def mark(trainer, record):
        marks.append((time.perf_counter(), time.process_time(), bool(record.get("best"))))
        if record["epoch"] == cfg["epochs"]:     # after the last interval: not counted in any
            with tempfile.TemporaryDirectory() as d:
                t0, c0 = time.perf_counter(), time.process_time()
                save_checkpoint(Path(d) / "c", trainer.model, trainer.optimizer, trainer.ema_variables)
                save.update(wall=time.perf_counter() - t0, cpu=time.process_time() - c0)

    with tempfile.TemporaryDirectory() as d:
        Trainer(model, cfg, d).fit(data, on_epoch_end=mark)
    wall, cpu = [], []
    for a, b in zip(marks[1:], marks[2:]):
        n_saves = 1 + int(b[2])
        wall.append((b[0] - a[0] - n_saves * save["wall"]) / steps_per_epoch)
        cpu.append((b[1] - a[1] - n_saves * save["cpu"]) / steps_per_epoch)
    return {"s_per_step": statistics.median(wall), "cpu_s_per_step": statistics.median(cpu),
            "s_per_step_all": wall, "cpu_s_per_step_all": cpu, "first_epoch_s": marks[1][0] - marks[0][0],
            "checkpoint_write_s": save["wall"], "checkpoint_write_cpu_s": save["cpu"],
            "steps_per_epoch": steps_per_epoch, "batch_size": int(cfg["batch_size"])}


def _timed_calls(fn, repeats):
    """(median wall s, median process CPU s) of fn() after one untimed call (tracing)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _random_sets(rng, n, p, f, n_min, n_max):
    import numpy as np
    mult = rng.integers(n_min, n_max + 1, n)
    mask = (np.arange(p)[None, :] < mult[:, None]).astype(np.float32)
    x = rng.standard_normal((n, p, f)).astype(np.float32) * mask[..., None]
    return x, mask


def _n_params(model):
    return int(sum(int(w.numpy().size) for w in model.trainable_weights))


# ---------------------------------------------------------------- permutation_ad units


def _pad_model():
    import numpy as np
    from permutation_ad.preprocess import Preprocessor
    from permutation_ad.train import build_model
    cfg = _paper_cfg("permutation_ad")
    nj = len(cfg["data"]["jet_features"])
    pre = Preprocessor(np.zeros(3), np.ones(3), np.zeros(nj), np.ones(nj))   # identity
    return cfg, build_model(cfg, pre, "standard"), nj


def unit_pad_train(a):
    import numpy as np
    cfg, model, nj = _pad_model()
    P, bs = int(cfg["data"]["num_particles"]), int(cfg["training"]["batch_size"])
    rng = np.random.default_rng(0)
    n = bs * a.steps_per_epoch
    x, mask = _random_sets(rng, n, P, 3, 20, 120)
    data = {"constituents": x, "mask": mask, "jets": rng.standard_normal((n, nj)).astype(np.float32)}
    out = _train_seconds(model, data, cfg["training"], a.steps_per_epoch, a.repeats)
    out.update(num_particles=P, params_particle_net=_n_params(model.particle_net),
               params_jet_net=_n_params(model.jet_net))
    return out


def unit_pad_likelihood(a):
    import numpy as np
    import tensorflow as tf
    from shared.diffusion.likelihood import make_ode_fn  # the exact function solve_ivp calls
    cfg, model, nj = _pad_model()
    P, b = int(cfg["data"]["num_particles"]), a.lik_batch
    rng = np.random.default_rng(1)
    x, mask = _random_sets(rng, b, P, 3, 20, 120)
    jets = rng.standard_normal((b, nj)).astype(np.float32)
    part_eps, jet_eps = model.eps_fns()
    t = tf.constant(0.5, tf.float32)
    pf = make_ode_fn(part_eps, model.sde, "hutchinson", vector_input=False)
    jf = make_ode_fn(jet_eps, model.sde, "hutchinson", vector_input=False)
    probe = rng.standard_normal(x.shape).astype(np.float32) * mask[..., None]
    args_p = (tf.constant(x), t, tf.constant(mask), tf.constant(jets), tf.constant(probe))
    jx = jets[:, None, :]
    args_j = (tf.constant(jx), t, tf.constant(np.ones((b, 1), np.float32)), None,
              tf.constant(rng.standard_normal(jx.shape).astype(np.float32)))
    tp, tps = _timed_calls(lambda: [v.numpy() for v in pf(*args_p)], a.repeats)
    tj, tjs = _timed_calls(lambda: [v.numpy() for v in jf(*args_j)], a.repeats)
    return {"batch": b, "num_particles": P,
            "s_per_jet_eval_particles": tp / b, "cpu_s_per_jet_eval_particles": tps / b,
            "s_per_jet_eval_jets": tj / b, "cpu_s_per_jet_eval_jets": tjs / b}


def unit_pad_classifier(a):
    import numpy as np
    from permutation_ad.classifier import SetClassifier
    cfg = _paper_cfg("permutation_ad")
    nj = len(cfg["data"]["jet_features"])
    P = int(cfg["data"]["num_particles"])
    ccfg = cfg["classifier"]
    model = SetClassifier(3, nj, ccfg)
    bs = int(ccfg["batch_size"])
    rng = np.random.default_rng(2)
    n = bs * a.steps_per_epoch
    x, mask = _random_sets(rng, n, P, 3, 20, 120)
    data = {"constituents": x, "mask": mask, "jets": rng.standard_normal((n, nj)).astype(np.float32),
            "label": rng.integers(0, 2, n).astype(np.float32)}
    model([x[:1], mask[:1], data["jets"][:1]])
    out = _train_seconds(model, data, ccfg, a.steps_per_epoch, a.repeats)
    out.update(num_particles=P, params=_n_params(model))
    return out


# ---------------------------------------------------------------- lhco_fullphase units


def _lhco_model(parts):
    import numpy as np
    from lhco_fullphase.model import DijetDiffusion
    cfg = _paper_cfg("lhco_fullphase")
    P = int(cfg["data"]["num_particles"])
    model = DijetDiffusion(cfg["model"], P, n_dequant=0.1, n_feature=4, parts=parts, num_jet_features=5)
    model({"jets": np.zeros((1, 2, 5), np.float32), "mjj": np.zeros(1, np.float32),
           "particles": np.zeros((1, 2, P, 3), np.float32), "mask": np.ones((1, 2, P), np.float32)})
    return cfg, model, P


def _lhco_events(rng, n, P):
    import numpy as np
    x, mask = _random_sets(rng, 2 * n, P, 3, 30, 160)
    return {"jets": rng.standard_normal((n, 2, 5)).astype(np.float32),
            "mjj": rng.uniform(-1, 1, n).astype(np.float32),
            "particles": x.reshape(n, 2, P, 3), "mask": mask.reshape(n, 2, P)}


def _lhco_train(a, part):
    import numpy as np
    cfg, model, P = _lhco_model((part,))
    tcfg = dict(cfg["training"], **dict(cfg.get(f"training_{part}") or {}))
    n = int(tcfg["batch_size"]) * a.steps_per_epoch
    data = _lhco_events(np.random.default_rng(3), n, P)
    if part == "jet":
        data = {k: data[k] for k in ("jets", "mjj")}
    out = _train_seconds(model, data, tcfg, a.steps_per_epoch, a.repeats)
    net = model.jet_net if part == "jet" else model.particle_net
    out.update(num_particles=P, params=_n_params(net))
    return out


def unit_lhco_train_jet(a):
    return _lhco_train(a, "jet")


def unit_lhco_train_particle(a):
    return _lhco_train(a, "particle")


def unit_lhco_generate(a):
    import numpy as np
    import tensorflow as tf
    from shared.diffusion.score import eps_fn_from_model
    cfg, model, P = _lhco_model(("jet", "particle"))
    g, b = cfg["generation"], a.gen_batch
    ev = _lhco_events(np.random.default_rng(4), b, P)
    jet_eps, part_eps = (tf.function(eps_fn_from_model(n), reduce_retracing=True)
                         for n in (model.jet_net, model.particle_net))
    t = tf.fill([b], 0.5)
    jcond = model.mjj_cond(ev["mjj"], "jet")
    fp, fm, pcond = model.particle_inputs(tf.constant(ev["jets"]), tf.constant(ev["particles"]),
                                           tf.constant(ev["mask"]), model.mjj_cond(ev["mjj"], "particle"))
    tj, tjs = _timed_calls(lambda: jet_eps(tf.constant(ev["jets"]), t, tf.ones((b, 2)), jcond).numpy(), a.repeats)
    tp, tps = _timed_calls(lambda: part_eps(fp, tf.repeat(t, 2), fm, pcond).numpy(), a.repeats)
    evals = 2 * int(g["ddim_steps"]) + 1 if g.get("second_order", True) else int(g["ddim_steps"]) + 1
    out = {"batch_events": b, "num_particles": P, "ddim_steps": int(g["ddim_steps"]),
           "evals_per_net": evals, "s_per_event_eval_jet_net": tj / b, "s_per_event_eval_particle_net": tp / b,
           "s_per_event": (tj + tp) / b * evals, "cpu_s_per_event": (tjs + tps) / b * evals}
    # cross-check with the real sampler: the difference between check_steps and 1 DDIM step
    # (each call traces anew, so only the difference measures the steps)
    bx, steps = min(b, 8), a.check_steps
    nfix = np.full((bx, 2), 60)
    cpu = []
    for s in (1, steps):
        c0 = time.process_time()
        model.sample(np.zeros(bx, np.float32), lambda j: nfix, s, second_order=True)
        cpu.append(time.process_time() - c0)
    out.update(check_sample_events=bx, check_sample_steps=steps,
               check_cpu_s_per_event_eval=(cpu[1] - cpu[0]) / (2 * (steps - 1)) / bx,
               cpu_s_per_event_eval=(tjs + tps) / b)
    return out


def unit_lhco_classifier(a):
    import numpy as np
    import tensorflow as tf
    from lhco_fullphase.classifier import build_classifier
    cfg = _paper_cfg("lhco_fullphase")
    P = int(cfg["data"]["num_particles"])
    ccfg = cfg["classifier"]
    model = build_classifier(ccfg, P)
    tcfg = ccfg["training"]
    n = int(tcfg["batch_size"]) * a.steps_per_epoch
    rng = np.random.default_rng(5)
    data = _lhco_events(rng, n, P)
    data = {"jets": data["jets"], "particles": data["particles"], "mask": data["mask"],
            "label": rng.integers(0, 2, n).astype(np.float32)}
    out = _train_seconds(model, data, tcfg, a.steps_per_epoch, a.repeats)
    pb = a.predict_batch
    pred = _lhco_events(rng, pb, P)
    batch = {k: tf.constant(pred[k]) for k in ("jets", "particles", "mask")}
    call = tf.function(lambda d: model(d, training=False))
    tpred, tps = _timed_calls(lambda: call(batch).numpy(), a.repeats)
    out.update(num_particles=P, params=_n_params(model), predict_batch=pb,
               s_per_predicted_event=tpred / pb, cpu_s_per_predicted_event=tps / pb)
    return out


def unit_lhco_cluster(a):
    import numpy as np
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from official_layout import lhco_events
    from lhco_fullphase.events import cluster_dijets
    cfg = _paper_cfg("lhco_fullphase")
    ev = lhco_events(a.cluster_events, "qcd", np.random.default_rng(6))
    t0, c0 = time.perf_counter(), time.process_time()
    cluster_dijets(ev, int(cfg["data"]["num_particles"]), float(cfg["data"]["jet_radius"]))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"events": a.cluster_events, "particles_per_event": float((ev[..., 0] > 0).sum(1).mean()),
            "s_per_event": dt / a.cluster_events, "cpu_s_per_event": dc / a.cluster_events}


# ---------------------------------------------------------------- projection


def _hours(s):
    return s / 3600.0


def project(units, assume):
    """Wall-time projection of the paper stages on ``assume['gpus']`` A100s.

    Returns dict(cpu_over_h200, cpu_over_a100, assumptions, rows); a row is one stage with
    package, stage, hours (wall, on the GPUs it uses), gpus, work, note, and ``total``: whether
    it counts in the package total (stages one after another on the 16 GPUs)."""
    A = assume
    if A["clock"] not in ("cpu", "wall"):
        raise ValueError(f"assumption clock must be 'cpu' or 'wall', got {A['clock']!r}")
    pre = "cpu_" if A["clock"] == "cpu" else ""

    def cost(unit, key):
        return units[unit][pre + key]

    h200_per_jet_eval = A["h200_seconds_per_1024_jet_evals"] / 1024
    cpu_over_h200 = cost("pad_likelihood", "s_per_jet_eval_particles") / h200_per_jet_eval
    speedup = cpu_over_h200 / A["a100_slowdown_vs_h200"]          # CPU time / A100 time
    G, eff, sh, bs = A["gpus"], A["horovod_efficiency"], A["shard_efficiency"], A["batch_size"]
    over = A["gpu_step_overhead_s"]

    def step(unit):   # one optimizer step of `bs` examples on one A100
        return cost(unit, "s_per_step") / speedup + over

    def train(unit, examples, epochs):   # data parallel over G ranks
        steps = -(-examples // (bs * G)) * epochs
        return steps, steps * step(unit) / eff

    rows = []

    def row(package, stage, seconds, gpus, work, note="", total=True):
        rows.append({"package": package, "stage": stage, "hours": _hours(seconds), "gpus": gpus,
                     "work": work, "note": note, "total": total})

    pad = "permutation_ad"
    s, w = train("pad_train", A["pad_train_jets_per_density"], A["pad_epochs"])
    row(pad, "train, one density", w, G, f"{s:,} steps of {bs} × {G} ranks",
        f"{step('pad_train') * 1e3:.0f} ms per step", total=False)
    row(pad, f"train, {A['pad_densities']} densities", A["pad_densities"] * w, G,
        f"{A['pad_densities'] * s:,} steps", "one after another on 16 GPUs (side by side on 64: ÷ 4)")
    s, w = train("pad_classifier", A["pad_classifier_train_jets"], A["pad_classifier_epochs"])
    row(pad, "classify (supervised classifier)", w, G, f"{s:,} steps of {bs} × {G} ranks",
        f"{step('pad_classifier') * 1e3:.0f} ms per step")
    jets = A["pad_densities"] * A["pad_test_samples"] * A["pad_test_jets_per_sample"]
    per_jet = (cost("pad_likelihood", "s_per_jet_eval_particles") * A["nfe_particles"]
               + cost("pad_likelihood", "s_per_jet_eval_jets") * A["nfe_jets"]) / speedup
    row(pad, "likelihood (16 shards)", jets * per_jet / G / sh, G,
        f"{jets:,} jets × {A['nfe_particles']} evaluations",
        f"{per_jet * 1e3:.1f} ms per jet on one A100 ({1 / per_jet:.0f} jets/s)")

    lh = "lhco_fullphase"
    cl = units["lhco_cluster"]["cpu_s_per_event"]                # one core, FastJet
    row(lh, "prepare (FastJet clustering, 1 core)", A["lhco_events_total"] * cl, 0,
        f"{A['lhco_events_total']:,} events", f"{cl * 1e3:.2f} ms per event; reading the files not included")
    for part in ("jet", "particle"):
        s, w = train(f"lhco_train_{part}", A["lhco_sb_train_events"], A["lhco_epochs"])
        row(lh, f"train, {part} net", w, G, f"{s:,} steps of {bs} × {G} ranks",
            f"{step(f'lhco_train_{part}') * 1e3:.0f} ms per step")
    gen = cost("lhco_generate", "s_per_event") / speedup
    row(lh, "sample (SR + SB events)", A["lhco_generated_events"] * gen / G / sh, G,
        f"{A['lhco_generated_events']:,} events × {units['lhco_generate']['evals_per_net']} evaluations of both nets",
        f"{gen * 1e3:.0f} ms per event on one A100")
    n_tr, steps_ep = A["lhco_scan_trainings"], -(-A["lhco_classifier_train_events"] // bs)
    per_epoch = steps_ep * step("lhco_classifier")
    for ep, total in ((A["lhco_classifier_epochs"], True), (A["lhco_classifier_epochs_early"], False)):
        row(lh, f"classify scan, {ep} epochs each", n_tr * per_epoch * ep / G / sh, G,
            f"{n_tr} trainings × {steps_ep:,} steps/epoch, one GPU each",
            f"{per_epoch * ep / 3600:.2f} h per training", total=total)
    pred = n_tr * A["lhco_eval_events_per_training"] * cost("lhco_classifier", "s_per_predicted_event") / speedup
    row(lh, "evaluate (merge job, one GPU)", pred, 1,
        f"{n_tr} × {A['lhco_eval_events_per_training']:,} events predicted",
        "÷ 16 if the scan shards predict their own trainings")
    for package in (pad, lh):
        row(package, "total (stages in turn on 16 GPUs)",
            sum(r["hours"] for r in rows if r["package"] == package and r["total"]) * 3600, G, "", "", total=False)
    return {"cpu_over_h200": cpu_over_h200, "cpu_over_a100": speedup, "assumptions": dict(A), "rows": rows}


# ---------------------------------------------------------------- CLI


def _print_units(units):
    def f(x):
        return f"{x:.4g}"
    print("\nunit costs measured here (median; seconds)")
    for name, u in units.items():
        if "error" in u:
            print(f"  {name:22s} FAILED: {u['error'][-300:]}")
            continue
        keys = [k for k in ("s_per_step", "cpu_s_per_step", "s_per_jet_eval_particles",
                            "cpu_s_per_jet_eval_particles", "s_per_jet_eval_jets", "cpu_s_per_jet_eval_jets",
                            "s_per_event", "cpu_s_per_event", "s_per_predicted_event",
                            "cpu_s_per_predicted_event", "params", "params_particle_net", "params_jet_net")
                if k in u]
        print(f"  {name:22s} " + "  ".join(f"{k}={f(u[k])}" for k in keys)
              + f"  peak_rss_mb={u['peak_rss_mb']:.0f}  wall_s={u['wall_s']:.0f}")


def _print_projection(p):
    print(f"\nCPU→H200 factor (particle-net PF-ODE evaluation): {p['cpu_over_h200']:.0f}×;"
          f" CPU→A100: {p['cpu_over_a100']:.0f}×")
    print(f"{'package':15s} {'stage':36s} {'GPUs':>4s} {'hours':>7s}  work; note")
    for r in p["rows"]:
        print(f"{r['package']:15s} {r['stage']:36s} {r['gpus']:4d} {r['hours']:7.2f}  {r['work']}"
              + (f"; {r['note']}" if r["note"] else ""))


def _run_unit_child(name, a):
    t0 = time.time()
    out = globals()[f"unit_{name}"](a)
    out.update(peak_rss_mb=_rss_mb(), wall_s=time.time() - t0)
    print("@@RESULT@@" + json.dumps(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "paper_scale.json"))
    ap.add_argument("--units", default=",".join(UNITS), help=f"comma list of {UNITS}")
    ap.add_argument("--repeats", type=int, default=2, help="timed repetitions (after one untimed)")
    ap.add_argument("--steps-per-epoch", type=int, default=1, help="training units: steps per timed epoch")
    ap.add_argument("--lik-batch", type=int, default=128, help="jets per PF-ODE evaluation")
    ap.add_argument("--gen-batch", type=int, default=32, help="events per eps evaluation")
    ap.add_argument("--check-steps", type=int, default=3, help="DDIM steps of the sampler cross-check (>= 2)")
    ap.add_argument("--predict-batch", type=int, default=256, help="events per classifier prediction")
    ap.add_argument("--cluster-events", type=int, default=500)
    ap.add_argument("--assume", nargs="*", default=[], metavar="KEY=VALUE", help="override ASSUMPTIONS")
    ap.add_argument("--project", metavar="JSON", help="only project the units of an earlier run")
    ap.add_argument("--child", metavar="UNIT", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _run_unit_child(a.child, a)
        return 0
    assume = dict(ASSUMPTIONS)
    for kv in a.assume:
        k, _, v = kv.partition("=")
        if k not in assume:
            ap.error(f"--assume: unknown key {k!r} (known: {sorted(assume)})")
        assume[k] = v if isinstance(assume[k], str) else type(assume[k])(float(v))
    if a.project:
        with open(a.project) as fh:
            res = json.load(fh)
        units = res["units"]
    else:
        names = [u for u in a.units.split(",") if u]
        bad = [u for u in names if u not in UNITS]
        if bad:
            ap.error(f"--units: unknown {bad}; choose from {UNITS}")
        units = {}
        passthrough = [f"--repeats={a.repeats}", f"--steps-per-epoch={a.steps_per_epoch}",
                       f"--lik-batch={a.lik_batch}", f"--gen-batch={a.gen_batch}",
                       f"--check-steps={a.check_steps}", f"--predict-batch={a.predict_batch}",
                       f"--cluster-events={a.cluster_events}"]
        start = time.time()
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   TF_CPP_MIN_LOG_LEVEL="2", PAD_DISTRIBUTED="none")
        for name in names:
            t0 = time.time()
            print(f"[paper_scale] {name} ...", flush=True)
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name] + passthrough,
                               capture_output=True, text=True, env=env)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("@@RESULT@@")]
            if r.returncode != 0 or not lines:
                units[name] = {"error": r.stderr[-3000:] or r.stdout[-3000:]}
                print(f"[paper_scale] {name} FAILED ({time.time() - t0:.0f} s)", flush=True)
                continue
            units[name] = json.loads(lines[-1][len("@@RESULT@@"):])
            print(f"[paper_scale] {name} done ({time.time() - t0:.0f} s)", flush=True)
        res = {"runtime_s": time.time() - start,
               "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(),
                           "python": sys.version.split()[0]},
               "settings": vars(a), "units": units}
    _print_units(units)
    if all(u in units and "error" not in units[u] for u in UNITS):
        res["projection"] = project(units, assume)
        _print_projection(res["projection"])
    else:
        print("\n(projection needs every unit)")
    if not a.project:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
