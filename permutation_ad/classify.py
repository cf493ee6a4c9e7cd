"""Stage ``classify``: the supervised top-vs-QCD classifier (paper Fig. 5 reference) trained on
the QCD and top training samples, early-stopped on their validation samples, and its
probabilities on the test jets (``artifacts.classifier_predictions_path``).

    python -m permutation_ad.classify --config permutation_ad/configs/demo.yaml --out runs/demo
"""
from __future__ import annotations

import numpy as np

from permutation_ad import artifacts
from permutation_ad.prepare import load_split, prepare, processed_artifact
from permutation_ad.preprocess import Preprocessor
from shared.training import TRAINER_DEFAULTS


def classifier_artifact(run):
    return run.artifact(artifacts.classifier_dir(run.out),
                        config=["seed", "data.jet_features"] +
                        [f"classifier.{k}" for k in run.cfg["classifier"] if k != "progress"],
                        upstream={f"{s}_{split}": processed_artifact(run, s, split)
                                  for s in ("qcd", "top") for split in ("train", "val", "test")},
                        folder=True, done_marker="predictions.npz")


def train_classifier(run):
    """Train (every rank under Horovod), predict the test jets, write the predictions (rank 0);
    returns the artifact."""
    from permutation_ad.classifier import SetClassifier
    from shared.checkpoint import find_checkpoint
    from shared.io import atomic_savez
    from shared.seeding import set_seeds
    from shared.training import Trainer

    art = classifier_artifact(run)
    if run.start(art, "classifier"):
        run.log("classifier: up to date")
        return art
    ccfg = run.cfg["classifier"]
    seed = int(run.key("seed", 0))
    set_seeds(seed + 4242)

    def both(split):
        q, t = load_split(run, "qcd", split), load_split(run, "top", split)
        return {k: np.concatenate([q[k], t[k]]) for k in q}

    train, val = both("train"), both("val")
    pre = Preprocessor.fit(train["constituents"], train["mask"], train["jets"])
    model = SetClassifier(train["constituents"].shape[-1], train["jets"].shape[-1], ccfg)
    p = train["constituents"].shape[1]
    model([np.zeros((1, p, 3), np.float32), np.ones((1, p), np.float32),
           np.zeros((1, train["jets"].shape[-1]), np.float32)])
    tcfg = {k: v for k, v in ccfg.items() if k in TRAINER_DEFAULTS}
    tcfg.update(seed=seed, progress=run.progress and tcfg["progress"])
    trainer = Trainer(model, tcfg, art.path, ctx=run.ctx,
                      extra_state={"preprocessor": pre.to_dict()})
    trainer.fit(pre.transform_split(train), pre.transform_split(val))
    use_ema = bool(tcfg.get("ema_decay")) and find_checkpoint(art.path / "checkpoints" / "best") is not None
    trainer.load_best(use_ema=use_ema)
    if run.ctx.is_root:
        probs = {}
        for s in ("qcd", "top"):
            d = pre.transform_split(load_split(run, s, "test"))
            probs[f"prob_{s}"] = model.predict_proba(d["constituents"], d["mask"], d["jets"])
        pre.save_json(artifacts.preprocessor_path(art.path))
        atomic_savez(artifacts.classifier_predictions_path(run.out),
                     num_weights=np.asarray(model.net.count_params()), **probs)
    run.ctx.barrier()
    return art


def main(argv=None):
    from permutation_ad.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    run = Run.from_args(parser(__doc__.split("\n")[0]).parse_args(argv), SCHEMA)
    run.root_only(prepare)
    print(train_classifier(run).path)


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
