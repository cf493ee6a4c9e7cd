"""Stage ``classify``: the weakly supervised classifier scan of every method, the
generation-quality classifiers and the generated-sample metrics, as independent work units.

    python -m lhco_fullphase.classify --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--what scan|quality|metrics|all] [--shard K/N]
    horovodrun -np 4 python -m lhco_fullphase.classify ...   # the units spread over 4 ranks

Scan units (method, injection n, initialisation i) of ``weak_supervision``; label 1 = data =
``data_bkg`` + the first n events of ``inj_pool``, label 0:

* ``diffusion`` / ``flow_matching`` (each generator of ``model.generators``): its generated SR
  background (``generated/<generator>/sr.h5``);
* ``idealized`` (if ``weak_supervision.idealized``): ``idealized_bkg`` (true, independent SR
  background);
* ``lowdim`` (if ``lowdim.enabled``): the MAF's SR samples (``generated/lowdim/sr.npz``), and
  ``lowdim_idealized`` (also with ``weak_supervision.idealized``): ``idealized_bkg`` — both on the
  4 low-dimensional features with the ``lowdim.classifier`` (``lowdim.train_and_score_lowdim``).

The first three use the transformer classifier (``classifier``). The classes are balanced with
per-event weights (total weight equal per class). Each training splits its events
``classifier.train_fraction`` / rest into train / validation (early stopping on the validation
loss, best checkpoint kept) and then scores the evaluation set (``eval_bkg`` + ``eval_sig``),
whose event ids are asserted disjoint from every id it was trained or validated on. Output per
unit: ``OUT/classify/<method>/inj<n>/init<i>/scores.npz`` with ``scores``, ``labels`` (1 =
signal), ``event_id`` and ``train_event_id`` (true events used).

Quality units (generator, region, initialisation) of ``generation_quality``: generated vs true
without signal, in the SB (``generated/<generator>/sb.h5`` vs the ``sb_val`` events at whose mjj
it was generated) and in the SR (``generated/<generator>/sr.h5`` vs ``idealized_bkg``); split
train/val/test, AUC on the test part, written to
``OUT/classify/quality/<generator>/<region>/init<i>/scores.npz`` (``labels`` 1 = true).

Metrics units (generator, region): the generated-sample metrics of ``shared.sample_metrics``
(W1 of jet mass, particle features and EFPs, FPD, KPD, each beside its truth-vs-truth baseline;
settings ``sample_metrics``) on the same event sets, for each view (both jets pooled, leading,
subleading), ``OUT/sample_metrics/<generator>_<region>.json``.

Every unit has a fingerprint (its settings, the roles and generated events it uses) and its own
seed, so the results do not depend on how the units were spread over processes, and a changed
key of one method redoes that method's units only: with ``--shard K/N`` only that share is
computed; without it the units are spread over the Horovod ranks and rank 0 then computes any
unit still missing.
"""
from __future__ import annotations

import time

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.prepare import load_prepared, prepare
from lhco_fullphase.roles import EVAL_ROLES, assert_disjoint
from lhco_fullphase.schema import GENERATORS, LOWDIM_METHODS, METHODS
from lhco_fullphase.train import UNFINGERPRINTED_TRAINING, fingerprinted, generators

QUALITY_KEYS = ("generation_quality.fractions",)
KINDS = ("scan", "quality", "metrics")


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
    """The scan methods of the run, in :data:`schema.METHODS` order."""
    gens = generators(run)
    ideal = bool(run.key("weak_supervision.idealized"))
    low = bool(run.key("lowdim.enabled"))
    keep = {"idealized": ideal, "lowdim": low, "lowdim_idealized": low and ideal}
    return [m for m in METHODS if (m in gens) or keep.get(m, False)]


def units(run, what=KINDS) -> list[tuple]:
    """Every unit in a fixed order: ("scan", method, injection, init), ("quality", generator,
    region, init) and ("metrics", generator, region)."""
    out = []
    regions = run.key("generation_quality.regions")
    if "scan" in what:
        out += [("scan", m, int(n), i) for m in methods(run)
                for n in run.key("weak_supervision.injections")
                for i in range(int(run.key("weak_supervision.num_inits")))]
    if "quality" in what:
        out += [("quality", g, r, i) for g in generators(run) for r in regions
                for i in range(int(run.key("generation_quality.num_inits")))]
    if "metrics" in what:
        out += [("metrics", g, r) for g in generators(run) for r in regions]
    return out


def unit_seed(run, unit) -> int:
    base = int(run.key("seed")) * 1000
    if unit[0] == "scan":
        return base + 97 * unit[3] + unit[2]
    return base + 31 * unit[3] + (1 if unit[2] == "sr" else 2) + 7 * GENERATORS.index(unit[1])


def _classifier_keys(run):
    c = run.cfg["classifier"]
    return [f"classifier.{k}" for k in c if k != "training"] + \
        [f"classifier.training.{k}" for k in c["training"] if k not in UNFINGERPRINTED_TRAINING]


def _lowdim_classifier(run) -> dict:
    c = dict(run.key("lowdim.classifier"))
    c["training"] = fingerprinted(c["training"])
    return c


def unit_dir(run, unit):
    """The unit's folder (scan, quality) or file (metrics)."""
    if unit[0] == "scan":
        return artifacts.scan_dir(run.out, *unit[1:])
    if unit[0] == "quality":
        return artifacts.quality_dir(run.out, *unit[1:])
    return artifacts.sample_metrics_path(run.out, *unit[1:])


def unit_output(run, unit):
    """The file a finished unit leaves behind."""
    return unit_dir(run, unit) if unit[0] == "metrics" else artifacts.scores_path(unit_dir(run, unit))


def unit_artifact(run, unit, prep=None):
    """The artifact of one unit: its settings, seed, the roles and generated events it trains on
    or scores."""
    from lhco_fullphase.sample import generated_artifact, lowdim_samples_artifact
    prep = prep or load_prepared(run)
    keys, extra, upstream = ["seed"], {"unit": list(unit)}, {}
    if unit[0] == "scan":
        method = unit[1]
        roles = [*EVAL_ROLES, "data_bkg", "inj_pool"]
        if method in LOWDIM_METHODS:
            from lhco_fullphase.prepare import lowdim_features_artifact
            extra["classifier"] = _lowdim_classifier(run)
            upstream["features"] = lowdim_features_artifact(run, prep)
        else:
            # the classifier's inputs are standardised with constants fitted on sb_train
            keys += _classifier_keys(run)
            roles.append("sb_train")
        if method in GENERATORS:
            upstream["generated"] = generated_artifact(run, method, "sr", prep)
        elif method == "lowdim":
            upstream["generated"] = lowdim_samples_artifact(run, prep)
        else:
            roles.append("idealized_bkg")
    else:
        generator, region = unit[1], unit[2]
        roles = ["sb_val" if region == "sb" else "idealized_bkg"]
        upstream["generated"] = generated_artifact(run, generator, region, prep)
        if unit[0] == "quality":
            keys += [*_classifier_keys(run), *QUALITY_KEYS]
            roles.append("sb_train")
        else:
            extra["sample_metrics"] = {k: v for k, v in run.key("sample_metrics").items() if k != "progress"}
    prepared = prep.fingerprint(*roles)
    if unit[0] == "scan" and unit[1] in LOWDIM_METHODS:
        # the 4 features (upstream) hold what the caches decide; no generator preprocessing
        prepared = {"events": prepared["events"]}
    folder = unit[0] != "metrics"
    return run.artifact(unit_dir(run, unit), config=keys, upstream=upstream,
                        extra={**extra, "prepared": prepared},
                        folder=folder, done_marker="scores.npz" if folder else None)


def unit_done(run, unit, prep=None) -> bool:
    """Finished with the current settings (whatever ``--resume`` says: for reading)."""
    art = unit_artifact(run, unit, prep)
    return art.complete() and art.matches()


# ---------------------------------------------------------------------------------------------
# the inputs, loaded once per process
# ---------------------------------------------------------------------------------------------

def generated(run, generator, region, prep):
    """A generator's events of a region; an error if missing or made with other settings."""
    from lhco_fullphase.sample import generated_artifact
    from shared.errors import UsageError
    art = generated_artifact(run, generator, region, prep)
    if not (art.complete() and art.matches()):
        raise UsageError(f"{art.path}: generated events {art.stale_reason() or 'missing'}; "
                         f"run the sample stage (python -m lhco_fullphase.sample --generator {generator})")
    return run.cached(f"generated/{art.digest}", lambda: artifacts.read_generated(art.path))


def quality_events(run, generator, region, prep=None):
    """(generated, true) events of the generation-quality check: SB = ``generated/<generator>/sb.h5``
    and the ``sb_val`` events it was generated at; SR = ``generated/<generator>/sr.h5`` and
    ``idealized_bkg``."""
    prep = prep or load_prepared(run)
    gen = generated(run, generator, region, prep)
    true = prep.take(np.asarray(gen["sb_event_id"], np.int64)) if region == "sb" else \
        prep.take("idealized_bkg")
    return gen, true


def _inputs(run, prep):
    """Classifier features of everything the full-phase-space scan uses (once per process)."""
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
    """Features and true-event ids of the full-phase-space scan's label-0 class."""
    if method in GENERATORS:
        return features(pre, generated(run, method, "sr", prep)), np.zeros(0, np.int64)
    ideal = prep.take("idealized_bkg")
    return features(pre, ideal), ideal["event_id"]


def _data_ids(prep, n):
    """Event ids of the data class at injection ``n``: data_bkg + the first n of inj_pool."""
    return np.concatenate([prep.roles["data_bkg"], prep.roles["inj_pool"][:n]])


# ---------------------------------------------------------------------------------------------
# the units
# ---------------------------------------------------------------------------------------------

def _scan_full(run, art, unit, prep, t0) -> None:
    _, method, n, _ = unit
    inp = _inputs(run, prep)
    pre = inp["pre"]
    x0, ids0 = _label0(run, method, prep, pre)
    data = {k: np.concatenate([inp["data_bkg"][k], inp["inj_pool"][k][:n]]) for k in inp["data_bkg"]}
    used = np.concatenate([ids0, data["event_id"]])
    assert_disjoint(used, inp["eval_ids"], f"{method} inj{n} training", "evaluation")
    preds, _, _, hist = train_and_score(run.cfg["classifier"], art.path, x0, features(pre, data),
                                        {"eval": inp["eval_x"]}, unit_seed(run, unit), progress=run.progress)
    artifacts.write_scores(art.path, scores=preds["eval"], labels=inp["eval_labels"],
                           event_id=inp["eval_ids"], train_event_id=used, n_signal_injected=n,
                           n_data_background=len(inp["data_bkg"]["mjj"]), n_label0=len(x0["jets"]),
                           epochs=len(hist), wall_s=time.time() - t0)


def _scan_lowdim(run, art, unit, prep, t0) -> None:
    from lhco_fullphase.lowdim import train_and_score_lowdim
    from lhco_fullphase.prepare import load_lowdim_features
    from lhco_fullphase.sample import read_lowdim_samples
    _, method, n, _ = unit
    feats = load_lowdim_features(run, prep)
    if method == "lowdim":
        x0, ids0 = read_lowdim_samples(run, prep)["features"], np.zeros(0, np.int64)
    else:
        ids0 = prep.roles["idealized_bkg"]
        x0 = feats.take(ids0)
    data_ids = _data_ids(prep, n)
    eval_ids = np.concatenate([prep.roles[r] for r in EVAL_ROLES])
    used = np.concatenate([ids0, data_ids])
    assert_disjoint(used, eval_ids, f"{method} inj{n} training", "evaluation")
    res = train_and_score_lowdim(run.cfg, x0, feats.take(data_ids), feats.take(eval_ids),
                                 unit_seed(run, unit), workdir=art.path, progress=run.progress)
    labels = np.r_[np.zeros(len(prep.roles["eval_bkg"])), np.ones(len(prep.roles["eval_sig"]))]
    artifacts.write_scores(art.path, scores=res["eval"], labels=labels.astype(np.int8), event_id=eval_ids,
                           train_event_id=used, n_signal_injected=n,
                           n_data_background=len(prep.roles["data_bkg"]), n_label0=len(x0),
                           epochs=res["epochs"], wall_s=time.time() - t0)


def _quality(run, art, unit, prep, t0) -> None:
    from shared import metrics
    _, generator, region, _ = unit
    pre = _inputs(run, prep)["pre"]
    gen, true = quality_events(run, generator, region, prep)
    eval_ids = np.concatenate([prep.roles[r] for r in EVAL_ROLES])
    assert_disjoint(true["event_id"], eval_ids, f"quality {generator}/{region}", "evaluation")
    preds, splits, label, hist = train_and_score(
        run.cfg["classifier"], art.path, features(pre, gen), features(pre, true), {}, unit_seed(run, unit),
        fractions=tuple(run.key("generation_quality.fractions")), progress=run.progress)
    test_labels = label[splits[2]].astype(np.int8)
    artifacts.write_scores(art.path, scores=preds["test"], labels=test_labels,
                           auc=metrics.auc(test_labels, preds["test"]), epochs=len(hist),
                           wall_s=time.time() - t0, n_generated=len(gen["mjj"]), n_true=len(true["mjj"]))


def sample_metrics_of(run, generator, region, prep=None) -> dict:
    """The generated-sample metrics of ``generator`` in ``region`` (``OUT/sample_metrics/``):
    read when made with the current settings, else computed and written."""
    from shared.io import read_json
    prep = prep or load_prepared(run)
    unit = ("metrics", generator, region)
    art = unit_artifact(run, unit, prep)
    if not (art.complete() and art.matches()):
        compute_unit(run, unit, prep)
    return read_json(art.path, "sample metrics")


def _metrics(run, art, unit, prep, t0) -> None:
    from shared.io import atomic_write_json
    from shared.sample_metrics import dijet_sample_metrics
    _, generator, region = unit
    gen, true = quality_events(run, generator, region, prep)
    c = dict(run.key("sample_metrics"), progress=bool(run.progress and run.key("sample_metrics.progress")))
    res = dijet_sample_metrics(gen, true, c)
    atomic_write_json(art.path, {"generator": generator, "region": region, "views": res,
                                 "wall_s": time.time() - t0})


COMPUTE = {"scan": _scan_full, "quality": _quality, "metrics": _metrics}


def compute_unit(run, unit, prep) -> None:
    """Make one unit's output (fingerprint of a folder first: an interrupted training with the
    same settings continues from its checkpoint; a file's after it is written)."""
    art = unit_artifact(run, unit, prep)
    if art.prepare(log=run.log, what="/".join(str(x) for x in unit)):
        return
    if art.folder:
        art.begin()
    fn = _scan_lowdim if unit[0] == "scan" and unit[1] in LOWDIM_METHODS else COMPUTE[unit[0]]
    fn(run, art, unit, prep, time.time())
    if not art.folder:
        art.record()


def classify(run, what=KINDS, only_methods=None) -> list | None:
    """This process's share of the units (skipping finished ones); without ``--shard``, rank 0
    then computes any unit still missing. ``only_methods``: scan units of these methods only.
    Returns the unit outputs (rank 0)."""
    from shared.run import run_units
    prep = load_prepared(run)
    all_units = [u for u in units(run, what) if only_methods is None or u[0] != "scan" or u[1] in only_methods]
    run_units(run, all_units, lambda u: unit_artifact(run, u, prep),
              lambda u: compute_unit(run, u, prep), "classify units")
    if run.shard is not None:
        return None
    run.ctx.barrier()
    return [unit_output(run, u) for u in all_units] if run.is_root else None


def main(argv=None):
    from lhco_fullphase.schema import SCHEMA
    from shared.cli import add_shard_argument, parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--what", default="all", choices=(*KINDS, "all"),
                   help="scan units, quality classifiers, sample metrics, or all (default)")
    add_shard_argument(p)
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    run.root_only(prepare)
    done = classify(run, KINDS if args.what == "all" else (args.what,))
    for path in done or []:
        run.log(str(path))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
