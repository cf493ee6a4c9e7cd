"""Stage 4: weakly supervised classifier scans and the generation-quality classifiers.

    python -m lhco_fullphase.classify --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--what scan|quality|both]

Scan (``weak_supervision``), for every injection n and initialisation i:

* ``diffusion``: label 0 = generated SR background (``generated/sr.h5``), label 1 = data =
  ``data_bkg`` + the first n events of ``inj_pool``;
* ``idealized`` (if ``weak_supervision.idealized``): label 0 = ``idealized_bkg`` (true,
  independent SR background), label 1 = the same data.

The classes are balanced with per-event weights (total weight equal per class). Each training
splits its events ``classifier.train_fraction`` / rest into train / validation (early stopping
on the validation loss, best checkpoint kept) and then scores the evaluation set
(``eval_bkg`` + ``eval_sig``), whose event ids are asserted disjoint from every id it was trained
or validated on. Output per run: ``OUT/classify/<method>/inj<n>/init<i>/scores.npz`` with
``scores``, ``labels`` (1 = signal), ``event_id`` and ``train_event_id`` (true events used).

Generation quality (``generation_quality``): generated vs true without signal, in the SB
(``generated/sb.h5`` vs the ``sb_val`` events at whose mjj it was generated) and in the SR
(``generated/sr.h5`` vs ``idealized_bkg``); split train/val/test, AUC on the test part, written
to ``OUT/classify/quality_<sb|sr>/init<i>/scores.npz`` (``labels`` 1 = true).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from lhco_fullphase import data as ldata
from lhco_fullphase.classifier import build_classifier
from lhco_fullphase.prepare import EVAL_ROLES, Prepared, data_dir_for
from lhco_fullphase.sample import generated_path, read_generated
from shared import metrics
from shared.config import atomic_savez

METHODS = ("diffusion", "idealized")


def run_dir(out, method, injection=None, init=0):
    sub = [method] if injection is None else [method, f"inj{int(injection)}"]
    return os.path.join(out, "classify", *sub, f"init{int(init)}")


def features(pre, arrays):
    """Classifier inputs (network space of ``Prepared.classifier_preprocessor``, a plain
    Preprocessor: the 5 physical jet features, no generator-side extras)."""
    if not pre.is_plain:
        raise ValueError("classifier features need a plain Preprocessor (5 jet features)")
    jx, px, _ = pre.transform(arrays["jets"], arrays["particles"], arrays["mask"], arrays["mjj"])
    return {"jets": jx, "particles": px,
            "mask": np.asarray(arrays["mask"], np.float32)}


def _concat(*dicts):
    return {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0]}


def _balanced_weights(label):
    w = np.ones(len(label), np.float32)
    for c in (0, 1):
        k = label == c
        w[k] = 0.5 * len(label) / max(int(k.sum()), 1)
    return w


def _stratified_split(label, fractions, seed):
    """Index arrays per fraction, each class split in the same proportions."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    for c in (0, 1):
        idx = rng.permutation(np.nonzero(label == c)[0])
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def train_and_score(cfg, workdir, x0, x1, score_sets, seed, fractions=None, progress=True):
    """Train one classifier (label 0: x0, label 1: x1) with early stopping; return its
    predictions on each of ``score_sets`` {name: feature dict} and the split it used.

    ``fractions``: (train, val[, test]) of every class; the optional test part is scored too
    (name ``test``)."""
    import keras

    from shared.training import Trainer

    ccfg = cfg["classifier"]
    if fractions is None:
        f = float(ccfg.get("train_fraction", 0.8))
        fractions = (f, 1.0 - f)
    data = _concat(x0, x1)
    label = np.r_[np.zeros(len(x0["jets"])), np.ones(len(x1["jets"]))].astype(np.float32)
    data.update(label=label, weight=_balanced_weights(label))
    splits = _stratified_split(label, fractions, seed)
    keras.utils.set_random_seed(seed)
    model = build_classifier(ccfg, int(data["particles"].shape[2]))
    tcfg = dict(ccfg.get("training", {}))
    tcfg["seed"] = seed
    tcfg["progress"] = bool(progress and tcfg.get("progress", True))
    trainer = Trainer(model, tcfg, workdir)
    sel = lambda idx: {k: v[idx] for k, v in data.items()}  # noqa: E731
    history = trainer.fit(sel(splits[0]), sel(splits[1]))
    trainer.load_best()
    preds = {name: model.predict_proba(s) for name, s in score_sets.items()}
    if len(splits) > 2:
        preds["test"] = model.predict_proba(sel(splits[2]))
    return preds, splits, label, history




def _eval_set(prep):
    bkg, sig = prep.take("eval_bkg"), prep.take("eval_sig")
    arrays = {k: np.concatenate([bkg[k], sig[k]]) for k in ("jets", "particles", "mask", "mjj", "event_id")}
    labels = np.r_[np.zeros(len(bkg["mjj"])), np.ones(len(sig["mjj"]))].astype(np.int8)
    return arrays, labels


def scan(cfg, out, data_dir=None, progress=True):
    """All (method, injection, init) trainings of the weak-supervision scan; skips finished runs."""
    ws = cfg["weak_supervision"]
    prep = Prepared(data_dir_for(cfg, out, data_dir))
    pre = prep.classifier_preprocessor(cfg)
    eval_arrays, eval_labels = _eval_set(prep)
    eval_x = features(pre, eval_arrays)
    data_bkg, inj_pool = prep.take("data_bkg"), prep.take("inj_pool")
    methods = ["diffusion"] + (["idealized"] if ws.get("idealized", True) else [])
    backgrounds = {}
    if "diffusion" in methods:
        backgrounds["diffusion"] = (features(pre, read_generated(generated_path(out, "sr"))), np.zeros(0, np.int64))
    if "idealized" in methods:
        ideal = prep.take("idealized_bkg")
        backgrounds["idealized"] = (features(pre, ideal), ideal["event_id"])
    done = []
    for method in methods:
        x0, ids0 = backgrounds[method]
        for n in [int(v) for v in ws["injections"]]:
            data = {k: np.concatenate([data_bkg[k], inj_pool[k][:n]]) for k in data_bkg}
            x1 = features(pre, data)
            used = np.concatenate([ids0, data["event_id"]])
            ldata.assert_disjoint(used, eval_arrays["event_id"], f"{method} inj{n} training", "evaluation")
            for i in range(int(ws.get("num_inits", 1))):
                wd = run_dir(out, method, n, i)
                path = os.path.join(wd, "scores.npz")
                if not os.path.isfile(path):
                    seed = int(cfg.get("seed", 0)) * 1000 + 97 * i + n
                    t0 = time.time()
                    preds, _, _, hist = train_and_score(cfg, wd, x0, x1, {"eval": eval_x}, seed,
                                                        progress=progress)
                    atomic_savez(path, scores=preds["eval"], labels=eval_labels,
                                event_id=eval_arrays["event_id"], train_event_id=used,
                                n_signal_injected=n, n_data_background=len(data_bkg["mjj"]),
                                n_label0=len(x0["jets"]), epochs=len(hist), wall_s=time.time() - t0)
                done.append(path)
    return done


def quality_events(prep, out, region):
    """(generated, true) events of the generation-quality check: SB = ``generated/sb.h5`` and
    the ``sb_val`` events it was generated at; SR = ``generated/sr.h5`` and ``idealized_bkg``."""
    gen = read_generated(generated_path(out, region))
    true = prep.take(np.asarray(gen["sb_event_id"], np.int64)) if region == "sb" else prep.take("idealized_bkg")
    return gen, true


def quality(cfg, out, data_dir=None, progress=True):
    """Generated-vs-true classifiers in the SB and SR (no signal); returns the result paths."""
    q = cfg.get("generation_quality", {})
    prep = Prepared(data_dir_for(cfg, out, data_dir))
    pre = prep.classifier_preprocessor(cfg)
    eval_ids = np.concatenate([prep.roles[r] for r in EVAL_ROLES])
    fractions = tuple(q.get("fractions", (0.5, 0.25, 0.25)))
    paths = []
    for region in q.get("regions", ["sb", "sr"]):
        gen, true = quality_events(prep, out, region)
        ldata.assert_disjoint(true["event_id"], eval_ids, f"quality_{region}", "evaluation")
        for i in range(int(q.get("num_inits", 1))):
            wd = run_dir(out, f"quality_{region}", None, i)
            path = os.path.join(wd, "scores.npz")
            if not os.path.isfile(path):
                seed = int(cfg.get("seed", 0)) * 1000 + 31 * i + (1 if region == "sr" else 2)
                t0 = time.time()
                preds, splits, label, hist = train_and_score(
                    cfg, wd, features(pre, gen), features(pre, true), {}, seed,
                    fractions=fractions, progress=progress)
                test_labels = label[splits[2]].astype(np.int8)
                atomic_savez(path, scores=preds["test"], labels=test_labels,
                            auc=metrics.auc(test_labels, preds["test"]), epochs=len(hist),
                            wall_s=time.time() - t0, n_generated=len(gen["mjj"]), n_true=len(true["mjj"]))
            paths.append(path)
    return paths


def main(argv=None):
    from shared.config import build_parser, config_from_args
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--what", default="both", choices=("scan", "quality", "both"))
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    paths = []
    if args.what in ("scan", "both"):
        paths += scan(cfg, args.out, args.data_dir)
    if args.what in ("quality", "both"):
        paths += quality(cfg, args.out, args.data_dir)
    print(json.dumps(paths, indent=1))


if __name__ == "__main__":
    main()
