"""Stage ``classify``: the weakly supervised classifier scan and the generation-quality
classifiers, as independent work units.

    python -m lhco_fullphase.classify --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--what scan|quality|both] [--shard K/N]
    horovodrun -np 4 python -m lhco_fullphase.classify ...   # the units spread over 4 ranks

Scan units (method, injection n, initialisation i) of ``weak_supervision``:

* ``diffusion``: label 0 = generated SR background (``generated/sr.h5``), label 1 = data =
  ``data_bkg`` + the first n events of ``inj_pool``;
* ``idealized`` (if ``weak_supervision.idealized``): label 0 = ``idealized_bkg`` (true,
  independent SR background), label 1 = the same data.

The classes are balanced with per-event weights (total weight equal per class). Each training
splits its events ``classifier.train_fraction`` / rest into train / validation (early stopping
on the validation loss, best checkpoint kept) and then scores the evaluation set
(``eval_bkg`` + ``eval_sig``), whose event ids are asserted disjoint from every id it was trained
or validated on. Output per unit: ``OUT/classify/<method>/inj<n>/init<i>/scores.npz`` with
``scores``, ``labels`` (1 = signal), ``event_id`` and ``train_event_id`` (true events used).

Quality units (region, initialisation) of ``generation_quality``: generated vs true without
signal, in the SB (``generated/sb.h5`` vs the ``sb_val`` events at whose mjj it was generated)
and in the SR (``generated/sr.h5`` vs ``idealized_bkg``); split train/val/test, AUC on the test
part, written to ``OUT/classify/quality_<sb|sr>/init<i>/scores.npz`` (``labels`` 1 = true).

Every unit is a folder with a fingerprint (its settings, the roles and generated events it
uses) and its own seed, so the results do not depend on how the units were spread over
processes: with ``--shard K/N`` only that share is trained; without it the units are spread over
the Horovod ranks and rank 0 then trains any unit still missing.
"""
from __future__ import annotations

import time

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.prepare import load_prepared, prepare
from lhco_fullphase.roles import EVAL_ROLES, assert_disjoint
from lhco_fullphase.schema import METHODS
from lhco_fullphase.train import UNFINGERPRINTED_TRAINING

QUALITY_KEYS = ("generation_quality.fractions",)


def features(pre, arrays):
    """Classifier inputs (network space of ``Prepared.classifier_preprocessor``, a plain
    Preprocessor: the 5 physical jet features, no generator-side extras)."""
    if not pre.is_plain:
        raise ValueError("classifier features need a plain Preprocessor (5 jet features)")
    jx, px, _ = pre.transform(arrays["jets"], arrays["particles"], arrays["mask"], arrays["mjj"])
    return {"jets": jx, "particles": px, "mask": np.asarray(arrays["mask"], np.float32)}


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


def train_and_score(ccfg, workdir, x0, x1, score_sets, seed, fractions=None, progress=True):
    """Train one classifier (``classifier`` config ``ccfg``; label 0: x0, label 1: x1) with early
    stopping, single-process; return its predictions on each of ``score_sets`` {name: feature
    dict}, the split it used, the labels and the history.

    ``fractions``: (train, val[, test]) of every class; the optional test part is scored too
    (name ``test``)."""
    import keras

    from lhco_fullphase.classifier import build_classifier
    from shared.distributed import DistContext
    from shared.training import Trainer

    if fractions is None:
        f = float(ccfg["train_fraction"])
        fractions = (f, 1.0 - f)
    data = _concat(x0, x1)
    label = np.r_[np.zeros(len(x0["jets"])), np.ones(len(x1["jets"]))].astype(np.float32)
    data.update(label=label, weight=_balanced_weights(label))
    splits = _stratified_split(label, fractions, seed)
    keras.utils.set_random_seed(seed)
    model = build_classifier(ccfg, int(data["particles"].shape[2]))
    tcfg = dict(ccfg["training"], seed=seed, progress=bool(progress and ccfg["training"]["progress"]))
    # one unit = one independent training: no gradient averaging with other ranks' units
    trainer = Trainer(model, tcfg, workdir, ctx=DistContext(), resume="auto")
    sel = lambda idx: {k: v[idx] for k, v in data.items()}  # noqa: E731
    history = trainer.fit(sel(splits[0]), sel(splits[1]))
    trainer.load_best()
    preds = {name: model.predict_proba(s) for name, s in score_sets.items()}
    if len(splits) > 2:
        preds["test"] = model.predict_proba(sel(splits[2]))
    return preds, splits, label, history


# ---------------------------------------------------------------------------------------------
# units and their fingerprints
# ---------------------------------------------------------------------------------------------

def methods(run) -> list[str]:
    return [m for m in METHODS if m == "diffusion" or run.key("weak_supervision.idealized")]


def units(run, what=("scan", "quality")) -> list[tuple]:
    """Every unit in a fixed order: ("scan", method, injection, init) and
    ("quality", region, init)."""
    out = []
    if "scan" in what:
        out += [("scan", m, int(n), i) for m in methods(run)
                for n in run.key("weak_supervision.injections")
                for i in range(int(run.key("weak_supervision.num_inits")))]
    if "quality" in what:
        out += [("quality", r, i) for r in run.key("generation_quality.regions")
                for i in range(int(run.key("generation_quality.num_inits")))]
    return out


def unit_seed(run, unit) -> int:
    base = int(run.key("seed")) * 1000
    if unit[0] == "scan":
        return base + 97 * unit[3] + unit[2]
    return base + 31 * unit[2] + (1 if unit[1] == "sr" else 2)


def _classifier_keys(run):
    c = run.cfg["classifier"]
    return [f"classifier.{k}" for k in c if k != "training"] + \
        [f"classifier.training.{k}" for k in c["training"] if k not in UNFINGERPRINTED_TRAINING]


def unit_dir(run, unit):
    return artifacts.scan_dir(run.out, *unit[1:]) if unit[0] == "scan" else \
        artifacts.quality_dir(run.out, *unit[1:])


def unit_artifact(run, unit, prep=None):
    """The folder artifact of one unit: classifier settings, seed, the roles and generated
    events it trains on or scores."""
    from lhco_fullphase.sample import generated_artifact
    prep = prep or load_prepared(run)
    keys = ["seed", *_classifier_keys(run)]
    # the classifier's inputs are standardised with constants fitted on sb_train
    if unit[0] == "scan":
        _, method, _, _ = unit
        roles = ["sb_train", *EVAL_ROLES, "data_bkg", "inj_pool"]
        upstream = {}
        if method == "diffusion":
            upstream["generated"] = generated_artifact(run, "sr", prep)
        else:
            roles.append("idealized_bkg")
    else:
        _, region, _ = unit
        keys += QUALITY_KEYS
        roles = ["sb_train", "sb_val" if region == "sb" else "idealized_bkg"]
        upstream = {"generated": generated_artifact(run, region, prep)}
    return run.artifact(unit_dir(run, unit), config=keys, upstream=upstream,
                        extra={"unit": list(unit), "prepared": prep.fingerprint(*roles)},
                        folder=True, done_marker="scores.npz")


def unit_done(run, unit, prep=None) -> bool:
    """Finished with the current settings (whatever ``--resume`` says: for reading)."""
    art = unit_artifact(run, unit, prep)
    return art.complete() and art.matches()


# ---------------------------------------------------------------------------------------------
# the inputs, loaded once per process
# ---------------------------------------------------------------------------------------------

def generated(run, region, prep):
    """A region's generated events; an error if missing or made with other settings."""
    from lhco_fullphase.sample import generated_artifact
    from shared.errors import UsageError
    art = generated_artifact(run, region, prep)
    if not (art.complete() and art.matches()):
        raise UsageError(f"{art.path}: generated events {art.stale_reason() or 'missing'}; "
                         "run the sample stage (python -m lhco_fullphase.sample)")
    return run.cached(f"generated/{art.digest}", lambda: artifacts.read_generated(art.path))


def quality_events(run, region, prep=None):
    """(generated, true) events of the generation-quality check: SB = ``generated/sb.h5`` and
    the ``sb_val`` events it was generated at; SR = ``generated/sr.h5`` and ``idealized_bkg``."""
    prep = prep or load_prepared(run)
    gen = generated(run, region, prep)
    true = prep.take(np.asarray(gen["sb_event_id"], np.int64)) if region == "sb" else \
        prep.take("idealized_bkg")
    return gen, true


def _inputs(run, prep):
    """Classifier features of everything the scan uses (once per process)."""
    def make():
        pre = prep.classifier_preprocessor(run.cfg)
        bkg, sig = prep.take("eval_bkg"), prep.take("eval_sig")
        eval_ids = np.concatenate([bkg["event_id"], sig["event_id"]])
        labels = np.r_[np.zeros(len(bkg["mjj"])), np.ones(len(sig["mjj"]))].astype(np.int8)
        return {"pre": pre, "eval_x": features(pre, _concat(bkg, sig)), "eval_ids": eval_ids,
                "eval_labels": labels, "data_bkg": prep.take("data_bkg"),
                "inj_pool": prep.take("inj_pool")}
    return run.cached(f"classify_inputs/{prep.info['preprocessor_digest']}/"
                      f"{run.key('classifier.pt_rel_transform')}", make)


def _label0(run, method, prep, pre):
    """Features and true-event ids of the scan's label-0 class."""
    if method == "diffusion":
        return features(pre, generated(run, "sr", prep)), np.zeros(0, np.int64)
    ideal = prep.take("idealized_bkg")
    return features(pre, ideal), ideal["event_id"]


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------

def compute_unit(run, unit, prep) -> None:
    """Train one unit's classifier and write its scores (fingerprint first: an interrupted
    training with the same settings continues from its checkpoint)."""
    art = unit_artifact(run, unit, prep)
    if art.prepare(log=run.log, what="/".join(art.path.parts[-3:])):
        return
    art.begin()
    inp = _inputs(run, prep)
    pre, ccfg, seed, t0 = inp["pre"], run.cfg["classifier"], unit_seed(run, unit), time.time()
    if unit[0] == "scan":
        _, method, n, _ = unit
        x0, ids0 = _label0(run, method, prep, pre)
        data = {k: np.concatenate([inp["data_bkg"][k], inp["inj_pool"][k][:n]])
                for k in inp["data_bkg"]}
        used = np.concatenate([ids0, data["event_id"]])
        assert_disjoint(used, inp["eval_ids"], f"{method} inj{n} training", "evaluation")
        preds, _, _, hist = train_and_score(ccfg, art.path, x0, features(pre, data),
                                            {"eval": inp["eval_x"]}, seed, progress=run.progress)
        artifacts.write_scores(art.path, scores=preds["eval"], labels=inp["eval_labels"],
                               event_id=inp["eval_ids"], train_event_id=used,
                               n_signal_injected=n, n_data_background=len(inp["data_bkg"]["mjj"]),
                               n_label0=len(x0["jets"]), epochs=len(hist), wall_s=time.time() - t0)
        return
    from shared import metrics
    _, region, _ = unit
    gen, true = quality_events(run, region, prep)
    eval_ids = np.concatenate([prep.roles[r] for r in EVAL_ROLES])
    assert_disjoint(true["event_id"], eval_ids, f"quality_{region}", "evaluation")
    preds, splits, label, hist = train_and_score(
        ccfg, art.path, features(pre, gen), features(pre, true), {}, seed,
        fractions=tuple(run.key("generation_quality.fractions")), progress=run.progress)
    test_labels = label[splits[2]].astype(np.int8)
    artifacts.write_scores(art.path, scores=preds["test"], labels=test_labels,
                           auc=metrics.auc(test_labels, preds["test"]), epochs=len(hist),
                           wall_s=time.time() - t0, n_generated=len(gen["mjj"]),
                           n_true=len(true["mjj"]))


def classify(run, what=("scan", "quality")) -> list | None:
    """This process's share of the units (skipping finished ones); without ``--shard``, rank 0
    then trains any unit still missing. Returns the unit folders (rank 0)."""
    from shared.run import run_units
    prep = load_prepared(run)
    all_units = units(run, what)
    run_units(run, all_units, lambda u: unit_artifact(run, u, prep),
              lambda u: compute_unit(run, u, prep), "classifier units")
    if run.shard is not None:
        return None
    run.ctx.barrier()
    return [unit_dir(run, u) for u in all_units] if run.is_root else None


def main(argv=None):
    from lhco_fullphase.schema import SCHEMA
    from shared.cli import add_shard_argument, parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--what", default="both", choices=("scan", "quality", "both"))
    add_shard_argument(p)
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    run.root_only(prepare)
    done = classify(run, ("scan", "quality") if args.what == "both" else (args.what,))
    for path in done or []:
        run.log(str(path))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
