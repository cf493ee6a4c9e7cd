"""How each baseline type is fitted on QCD jets and scores jet sets (one runner per type).

``run_method(name, mcfg, train, tests, workdir, seed, features)`` returns
``{"scores": {set: {score_id: (N,)}}, "labels": {score_id: display name}, "info": {...},
"train_time_s", "score_time_s" (wall), "cpu_time_s" (fit + score, all threads)}``; every score
is oriented "higher = more anomalous", except the single observables, which are raw (their sign
is chosen in the report).
"""
from __future__ import annotations

import json
import time

import numpy as np

from .efp import Whitener, prime_efps
from .fit import build_seeded, predict_batched, train
from .images import image_features
from .jetset import n_jets
from .observables import OBSERVABLES, observables


class FeatureCache:
    """Images / EFPs per (feature config, jet set name), computed once per stage run; the
    seconds spent are kept per feature config (``seconds``)."""

    def __init__(self, sets):
        self.sets, self._store, self.seconds = sets, {}, {}

    def _get(self, kind, cfg, set_name, fn):
        key = (kind, json.dumps(cfg, sort_keys=True), set_name)
        if key not in self._store:
            t0 = time.perf_counter()
            self._store[key] = fn(self.sets[set_name])
            tag = f"{kind} {json.dumps(cfg, sort_keys=True)}"
            self.seconds[tag] = self.seconds.get(tag, 0.0) + time.perf_counter() - t0
        return self._store[key]

    def images(self, cfg, set_name):
        return self._get("image", cfg, set_name, lambda js: image_features(js, cfg))

    def efps(self, cfg, set_name):
        return self._get("efp", cfg, set_name, lambda js: prime_efps(js, cfg["beta"]))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _score_sets(tests, fn):
    """{set: fn(set)} and the seconds spent."""
    t0 = time.perf_counter()
    out = {s: fn(s) for s in tests}
    return out, time.perf_counter() - t0


def _run_kmeans(name, m, train_set, tests, workdir, seed, feats):
    from .kmeans import KMeansScorer

    scorer = KMeansScorer(m["k"], m["n_init"], m["max_iter"], m["init"], m["knc"], m["dim_scale"], seed)
    _, t_fit = _timed(lambda: scorer.fit(feats.images(m["image"], train_set)))
    scores, t_score = _score_sets(tests, lambda s: scorer.scores(feats.images(m["image"], s)))
    labels = {"mind": "k-means MinD", f"knc{m['knc']}": f"k-means KNC{m['knc']}",
              "mlled": "k-means MLLED", "mll1d": "k-means MLL1D", "mlln": "k-means MLLN"}
    return scores, labels, scorer.info(), t_fit, t_score


def _run_gmm(name, m, train_set, tests, workdir, seed, feats):
    from .kmeans import GMMScorer

    scorer = GMMScorer(m["n_components"], m["max_iter"], m["tol"], m["init_params"], m["reg_start"],
                       m["reg_ratio"], m["max_refits"], seed)
    _, t_fit = _timed(lambda: scorer.fit(feats.images(m["image"], train_set)))
    scores, t_score = _score_sets(tests, lambda s: scorer.scores(feats.images(m["image"], s)))
    return scores, {"nll": "GMM NLL"}, scorer.info(), t_fit, t_score


def _train_keras(model, data, training, workdir, seed, val_fraction, on_epoch_end=None):
    trainer, t_fit = _timed(lambda: train(model, data, training, workdir, seed, val_fraction,
                                          on_epoch_end))
    hist = trainer.history
    info = {"epochs_run": len(hist), "final_loss": hist[-1]["loss"] if hist else None,
            "best_val_loss": trainer.state.get("best_val_loss"), "best_epoch": trainer.state.get("best_epoch"),
            "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables))}
    return info, t_fit


def _run_dvae(name, m, train_set, tests, workdir, seed, feats, val_fraction):
    from .dvae import DirichletVAE

    if m["type"] == "dvae_image":
        get, output = (lambda s: feats.images(m["image"], s)), "softmax"
    else:
        whiten = Whitener.fit(feats.efps(m["efp"], train_set))
        get, output = (lambda s: whiten.transform(feats.efps(m["efp"], s)).astype(np.float32)), "linear"
    x = get(train_set)
    model = build_seeded(lambda: DirichletVAE(x.shape[1], m["latent_dim"], m["hidden"], m["alpha"],
                                              m["kl_weight"], output, seed), seed)
    info, t_fit = _train_keras(model, {"x": x}, m["training"], workdir, seed, val_fraction)
    scores, t_score = _score_sets(tests, lambda s: {"recon": predict_batched(model.score, {"x": get(s)})})
    what = "image" if output == "softmax" else "EFP"
    return scores, {"recon": f"DVAE ({what})"}, info, t_fit, t_score


def _run_inn(name, m, train_set, tests, workdir, seed, feats, val_fraction):
    from .inn import CouplingINN, noise_schedule, reweighted_nll

    whiten = Whitener.fit(feats.efps(m["efp"], train_set))
    u = whiten.transform(feats.efps(m["efp"], train_set)).astype(np.float32)
    training = dict(m["training"])
    training.setdefault("min_learning_rate", training["learning_rate"] * m["lr_decay"] ** training["epochs"])
    model = build_seeded(lambda: CouplingINN(u.shape[1], m["blocks"], m["hidden"], m["clamp"],
                                             m["noise"], seed), seed)
    info, t_fit = _train_keras(model, {"x": u}, training, workdir, seed, val_fraction,
                               on_epoch_end=noise_schedule(model, m["noise"], m["noise_decay"]))

    def score(s):
        x = feats.efps(m["efp"], s)
        data = {"x": whiten.transform(x).astype(np.float32)}
        nll_u = predict_batched(model.batch_nll, data)
        out = {_power_id(p): reweighted_nll(nll_u, whiten.log_det, x, p) for p in m["powers"]}
        out["latent"] = predict_batched(model.latent_norm, data)
        return out

    scores, t_score = _score_sets(tests, score)
    labels = {_power_id(p): f"INN NLL ({_power_label(p)})" for p in m["powers"]}
    labels["latent"] = "INN latent ‖z‖"
    info["min_learning_rate"] = training["min_learning_rate"]
    return scores, labels, info, t_fit, t_score


def _power_id(p):
    if p == 0:
        return "log"
    if abs(p - 1 / 3) < 1e-6:
        return "n1_3"
    return "n" + f"{p:g}".replace(".", "p")


def score_note(method_type, score_id):
    """A fixed caveat printed beside a score in the tables ("" for most scores)."""
    if method_type == "inn" and score_id == "log":
        return ("reweighting meant for signals with less structure than QCD (paper Sec. 5, "
                "Fig. 13); it favours low-EFP jets, so AUC < 0.5 is expected on jets with more structure")
    return ""


def _power_label(p):
    if p == 0:
        return "log x"
    if abs(p - 1 / 3) < 1e-6:
        return "x^1/3"
    return f"x^{p:g}"


def _run_deepset(name, m, train_set, tests, workdir, seed, feats, val_fraction):
    from .deepset_vae import DeepSetVAE, SetStandardizer

    sets = feats.sets
    std = SetStandardizer.fit(sets[train_set])
    x = std.transform(sets[train_set])
    mask = sets[train_set]["mask"].astype(np.float32)
    n_out = m.get("num_outputs") or x.shape[1]
    decoder = {k: m[k] for k in ("decoder_width", "decoder_depth") if k in m}   # deepset_chamfer only
    model = build_seeded(lambda: DeepSetVAE(3, m["width"], m["depth"], m["latent_dim"], m["fspool_pieces"],
                                            m["beta"], num_outputs=n_out, seed=seed, **decoder), seed)
    info, t_fit = _train_keras(model, {"x": x, "mask": mask}, m["training"], workdir, seed, val_fraction)
    scores, t_score = _score_sets(tests, lambda s: {"score": predict_batched(
        model.score, {"x": std.transform(sets[s]), "mask": sets[s]["mask"].astype(np.float32)})})
    label = (f"Deep Set VAE KL (β={m['beta']:g})" if m["type"] == "deepset_kl"
             else f"Deep Set VAE Chamfer (β={m['beta']:g})")
    return scores, {"score": label}, info, t_fit, t_score


def _run_observables(name, m, train_set, tests, workdir, seed, feats):
    sets = feats.sets
    scores, t_score = _score_sets(tests, lambda s: observables(sets[s], m["names"], m["R0"]))
    return scores, {n: OBSERVABLES[n] for n in m["names"]}, {}, 0.0, t_score


_RUNNERS = {"kmeans": _run_kmeans, "gmm": _run_gmm, "dvae_image": _run_dvae, "dvae_efp": _run_dvae,
            "inn": _run_inn, "deepset_kl": _run_deepset, "deepset_chamfer": _run_deepset,
            "observables": _run_observables}
_NEEDS_VAL = ("dvae_image", "dvae_efp", "inn", "deepset_kl", "deepset_chamfer")


def run_method(name, mcfg, train_set, tests, workdir, seed, features, val_fraction=0.1):
    """Fit method instance ``name`` (resolved config ``mcfg``) on ``features.sets[train_set]``
    and score every set named in ``tests``. See the module docstring for the result."""
    runner = _RUNNERS[mcfg["type"]]
    args = (name, mcfg, train_set, list(tests), workdir, seed, features)
    if mcfg["type"] in _NEEDS_VAL:
        args += (val_fraction,)
    c0 = time.process_time()
    scores, labels, info, t_fit, t_score = runner(*args)
    cpu = time.process_time() - c0
    for s, per in scores.items():
        for k, v in per.items():
            per[k] = np.asarray(v, np.float64).reshape(-1)
            if per[k].shape != (n_jets(features.sets[s]),):
                raise RuntimeError(f"{name}: score {k} on {s} has shape {per[k].shape}")
    return {"scores": scores, "labels": labels, "info": info, "train_time_s": t_fit,
            "score_time_s": t_score, "cpu_time_s": cpu}
