"""Score any LHCO R&D-layout file with a trained weak-supervision classifier of a run.

    python -m lhco_fullphase.score --run runs/lhco --input events.h5 --out scores.h5 \
        [--method diffusion|flow_matching|idealized] [--injection N] [--init I | --ensemble] [--labels]
        [--chunk-size N] [--num-events N]
    python -m lhco_fullphase.score ... --shard 3/16        # one Slurm array task
    horovodrun -np 4 python -m lhco_fullphase.score ...    # the chunks spread over 4 ranks

The run's own settings (``RUN/config.resolved.yaml``) decide everything: the clustering
(anti-kT, ``data.jet_radius``, the leading ``data.num_particles`` particles per jet, as the
prepare stage), the classifier inputs (``Prepared.classifier_preprocessor``: the run's fitted
preprocessing, read from its data folder) and the classifier: the best checkpoint of the scan
unit ``classify/<method>/inj<n>/init<i>/`` (EMA weights if it validated with them), or with
``--ensemble`` the mean probability of all ``weak_supervision.num_inits`` initialisations.

The input is read in chunks of ``--chunk-size`` events (default: the run's ``data.chunksize``);
each chunk is a work unit with its part file in ``<out>.parts/`` (``shared.scoring``), so the
result does not depend on how the chunks were spread over processes, and an interrupted scoring
continues. Without ``--shard`` the last process merges the parts into ``--out`` (HDF5, layout in
:func:`read_scores`) and removes them; with ``--labels`` it prints the AUC and max SIC against
the file's label column for the events with two jets (SIC only for cuts keeping at least
``evaluate.min_background`` background events).
"""
from __future__ import annotations

import time

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.schema import FULL_METHODS, LOWDIM_METHODS, SCHEMA
from shared import scoring
from shared.errors import CheckpointError, DataFormatError, InputError, UsageError
from shared.io import read_json

LAYOUT = "lhco_fullphase-scores-v1"
# the run settings a part file depends on (besides the classifiers and the input chunk)
SETTING_KEYS = ("data.num_particles", "data.jet_radius")
# the dijet cache stores these in single precision (artifacts.write_dijet_cache): the scan's
# classifiers were trained and evaluated on the rounded values
SINGLE_PRECISION = ("jets", "particles")


# ---------------------------------------------------------------------------------------------
# the run and its classifiers
# ---------------------------------------------------------------------------------------------

def load_run(run_dir, *, data_dir=None, shard=None, progress=True):
    """The finished lhco_fullphase run in ``run_dir`` as a :class:`shared.run.Run` (config
    validated against ``lhco_fullphase.schema.SCHEMA``; nothing is written). Data folder:
    ``data_dir``, else the one the run recorded (``run_info.json``), else the config's."""
    from pathlib import Path
    if data_dir is None:
        info = artifacts.run_info_path(Path(run_dir).expanduser().resolve())
        data_dir = read_json(info, "run info")["data_dir"] if info.is_file() else None
    return scoring.load_finished_run(run_dir, SCHEMA, "lhco_fullphase", data_dir=data_dir,
                                     shard=shard, progress=progress)


def classifier_units(run, method="diffusion", injection=None, init=0, ensemble=False) -> list[tuple]:
    """The scan units ("scan", method, n, i) to score with: ``init`` or, with ``ensemble``,
    every initialisation. ``injection`` None: the run's only one. Unknown values are a
    :class:`UsageError` naming the choices."""
    from lhco_fullphase.classify import methods
    known = [m for m in methods(run) if m in FULL_METHODS]
    if method not in known:
        why = "" if method not in FULL_METHODS else \
            " (not in this run: model.generators, weak_supervision.idealized)"
        if method in LOWDIM_METHODS:
            why = " (the low-dimensional CATHODE classifiers see 4 features, not the events' particles)"
        raise UsageError(f"--method {method!r}: choose from {known}{why}")
    injections = [int(n) for n in run.key("weak_supervision.injections")]
    if injection is None:
        if len(injections) > 1:
            raise UsageError(f"--injection: the run has several, choose from {injections}")
        injection = injections[0]
    if int(injection) not in injections:
        raise UsageError(f"--injection {injection}: choose from {injections} "
                         "(weak_supervision.injections of the run)")
    n_inits = int(run.key("weak_supervision.num_inits"))
    if not ensemble and not 0 <= int(init) < n_inits:
        raise UsageError(f"--init {init}: choose from 0..{n_inits - 1} "
                         f"(weak_supervision.num_inits = {n_inits})")
    inits = range(n_inits) if ensemble else [int(init)]
    return [("scan", method, int(injection), i) for i in inits]


def _preprocessing(prepared_fp) -> dict:
    """The part of a unit's recorded ``<prepared>`` fingerprint that decides its classifier
    inputs: the generators' preprocessing, the dijet caches and the ``sb_train`` events (a
    classifier preprocessor of its own is fitted on them)."""
    return {"preprocessor": prepared_fp.get("preprocessor"), "caches": prepared_fp.get("caches"),
            "sb_train": prepared_fp.get("events", {}).get("sb_train")}


def check_classifier(run, unit, prep) -> dict:
    """The recorded fingerprint of a finished scan unit, with ``check``: "verified" when it
    equals the one the run's settings and data give now, else why not. Refused (one line): an
    unfinished unit, no best checkpoint, other classifier settings than the run's config, or
    prepared data whose preprocessing differs from the one it was trained with."""
    from lhco_fullphase.classify import unit_artifact, unit_dir
    from shared.checkpoint import find_checkpoint
    from shared.run import explain_change
    workdir = unit_dir(run, unit)
    name = "/".join(map(str, unit[1:]))
    done = artifacts.scores_path(workdir)
    if not done.is_file():
        raise DataFormatError(workdir, done.name, f"missing: classifier {name} was not trained to "
                              "the end in this run (run the classify stage)")
    best = workdir / "checkpoints" / "best"
    if find_checkpoint(best) is None:
        raise CheckpointError(best, "state.json", f"missing: no best checkpoint of classifier {name}")
    rec = read_json(workdir / "fingerprint.json", "classifier fingerprint")
    rec_prep = rec.get("recipe", {}).get("config", {}).get("<prepared>", {})
    scoring.check_recorded_config(run, rec, workdir, {"<unit>": list(unit), "<prepared>": rec_prep},
                                  "re-run its classify stage")
    now = _preprocessing(prep.fingerprint("sb_train"))
    if _preprocessing(rec_prep) != now:
        raise UsageError(f"{workdir}: trained on other prepared data than {run.data_dir} "
                         f"({explain_change({'config': _preprocessing(rec_prep)}, {'config': now})}): "
                         "its inputs would be preprocessed differently; re-run the classify stage "
                         "or pass the run's --data-dir")
    try:
        art = unit_artifact(run, unit, prep)
        check = "verified" if art.digest == rec.get("digest") else \
            f"inputs changed since training ({explain_change(rec['recipe'], art.recipe)})"
    except (InputError, KeyError) as exc:
        check = f"training inputs not verifiable here ({exc})"
    return {**rec, "check": check}


def use_ema(run) -> bool:
    """Whether the scan loaded EMA weights from its best checkpoint (``Trainer.load_best``)."""
    from shared.training import trainer_config
    t = trainer_config(run.cfg["classifier"]["training"])
    return bool(t["validation_use_ema"] and t["ema_decay"])


def load_classifier(run, unit):
    """The classifier of a scan unit with the weights of its best checkpoint (as the scan
    scored its evaluation set)."""
    from lhco_fullphase.classifier import build_classifier
    from lhco_fullphase.classify import unit_dir
    from shared.checkpoint import load_checkpoint
    model = build_classifier(run.cfg["classifier"], int(run.key("data.num_particles")))
    load_checkpoint(unit_dir(run, unit) / "checkpoints" / "best", model, use_ema=use_ema(run))
    return model


# ---------------------------------------------------------------------------------------------
# the reusable part: events -> classifier probabilities
# ---------------------------------------------------------------------------------------------

def cluster_events(particles, num_particles, radius) -> tuple[dict, np.ndarray]:
    """Cluster events (N, M, 3) [pT, η, φ] as the prepare stage does (``events.cluster_dijets``,
    values rounded as in the dijet cache). Returns (physical arrays of the events with two
    jets, keep (N,) bool)."""
    from lhco_fullphase.events import cluster_dijets
    arrays, keep = cluster_dijets(np.asarray(particles, np.float64), int(num_particles), float(radius))
    return {k: v.astype(np.float32) if k in SINGLE_PRECISION else v for k, v in arrays.items()}, keep


def classifier_probs(models, pre, arrays) -> np.ndarray:
    """(N, len(models)) probability of the data class of each classifier for physical arrays
    (``cluster_events``), inputs built with ``pre`` (``Prepared.classifier_preprocessor``)."""
    from lhco_fullphase.classify import features
    if len(arrays["mjj"]) == 0:
        return np.zeros((0, len(models)))
    x = features(pre, arrays)
    return np.stack([m.predict_proba(x) for m in models], axis=-1)


# ---------------------------------------------------------------------------------------------
# scoring a file
# ---------------------------------------------------------------------------------------------

class FileScoring(scoring.ChunkedScoring):
    """Scoring one LHCO R&D-layout file with one scan classifier (or the ensemble of its
    initialisations) of a run, cut into chunks (work units)."""

    layout = LAYOUT
    rows = "events"
    empty_field = "df"
    setting_keys = SETTING_KEYS

    def __init__(self, run, input_path, out, method="diffusion", injection=None, init=0,
                 ensemble=False, chunk_size=None, num_events=None):
        from lhco_fullphase.prepare import Prepared
        self.units_used = classifier_units(run, method, injection, init, ensemble)
        self.method, self.injection = method, self.units_used[0][2]
        self.inits = [u[3] for u in self.units_used]
        self.ensemble = bool(ensemble)
        super().__init__(run, input_path, out, chunk_size=chunk_size, num_rows=num_events,
                         default_chunk_size=run.key("data.chunksize"))
        self.prep = run.cached("score/prepared", lambda: Prepared.load(run.data_dir))
        self.classifiers = {u[3]: check_classifier(run, u, self.prep) for u in self.units_used}
        for i, c in self.classifiers.items():
            if c["check"] != "verified":
                run.log(f"note: classifier {method}/inj{self.injection}/init{i}: {c['check']}")

    def count_rows(self) -> int:
        from shared.data.lhco import count_lhco
        return count_lhco(self.input)

    def check_input(self) -> None:
        from shared.data.lhco import iter_lhco
        next(iter_lhco(self.input, 0, 1, 1))

    def unit_key(self) -> tuple:
        """Units are ("score", method, injection, "ensemble" | "init<i>", chunk, lo, hi)."""
        return ("score", self.method, self.injection,
                "ensemble" if self.ensemble else f"init{self.inits[0]}")

    def fingerprint(self) -> dict:
        return {"classifiers": {str(i): c["digest"] for i, c in self.classifiers.items()}}

    def preprocessor(self):
        return self.prep.classifier_preprocessor(self.run.cfg)

    def models(self) -> list:
        return [self.run.cached(f"classifier/{'/'.join(map(str, u))}",
                                lambda u=u: load_classifier(self.run, u)) for u in self.units_used]

    def score_chunk(self, unit, lo, hi) -> dict:
        from shared.data.lhco import iter_lhco
        t0 = time.time()
        chunk = next(iter_lhco(self.input, lo, hi, hi - lo, dtype=np.float64))
        arrays, keep = cluster_events(chunk["particles"], self.run.key("data.num_particles"),
                                      self.run.key("data.jet_radius"))
        probs = np.full((hi - lo, len(self.inits)), np.nan)
        probs[keep] = classifier_probs(self.models(), self.preprocessor(), arrays)
        mjj = np.full(hi - lo, np.nan)
        mjj[keep] = arrays["mjj"]
        return {"row": np.arange(lo, hi, dtype=np.int64), "dropped": (~keep).astype(np.int8),
                "mjj": mjj, "prob_init": probs, "label": chunk["label"].astype(np.int8),
                "seconds": time.time() - t0}

    def combine(self, parts) -> tuple[dict, dict]:
        a = {k: np.concatenate([p[k] for p in parts])
             for k in ("row", "dropped", "mjj", "prob_init", "label")}
        out = {"prob": a["prob_init"].mean(axis=1), **a}
        return out, {"injection": self.injection, "n_dropped": int(a["dropped"].sum()),
                     "seconds": float(sum(float(p["seconds"]) for p in parts))}

    def metric_scores(self, arrays) -> tuple[np.ndarray, dict]:
        """(labels, {name: scores}) of the events with two jets: ``prob`` and, for an ensemble,
        each initialisation (``init<i>``)."""
        kept = arrays["dropped"] == 0
        scores = {"prob": arrays["prob"][kept]}
        if self.ensemble:
            scores.update({f"init{i}": arrays["prob_init"][kept, j] for j, i in enumerate(self.inits)})
        return arrays["label"][kept], scores

    def metrics(self, arrays) -> dict:
        mb = int(self.run.key("evaluate.min_background"))
        labels, scores = self.metric_scores(arrays)
        return scoring.label_metrics(labels, scores, lambda y, s: scoring.curve_summary(y, s, mb),
                                     self.input, "label (column 2100)", "events")

    def settings(self) -> dict:
        return {"clustering": {"algorithm": "antikt", "radius": float(self.run.key("data.jet_radius")),
                               "num_particles": int(self.run.key("data.num_particles")),
                               "dropped": "events with fewer than two jets"},
                "classifier_preprocessor": self.preprocessor().to_dict(),
                "use_ema": use_ema(self.run), "chunk_size": self.chunk_size,
                "num_events": self.num_rows, "method": self.method, "injection": self.injection,
                "inits": self.inits, "ensemble": self.ensemble,
                "signal_region": self.run.key("windows.sr"),
                "min_background": int(self.run.key("evaluate.min_background"))}

    def attrs(self, summary) -> dict:
        from lhco_fullphase.classify import unit_dir
        from shared.run import digest
        checks = [c["check"] for c in self.classifiers.values() if c["check"] != "verified"]
        return {"method": self.method, "injection": self.injection, "inits": self.inits,
                "ensemble": self.ensemble,
                "classifier_units": [str(unit_dir(self.run, u)) for u in self.units_used],
                "classifier_digests": {str(i): c["digest"] for i, c in self.classifiers.items()},
                "classifier_fingerprints": {str(i): c for i, c in self.classifiers.items()},
                "classifier_check": checks[0] if checks else "verified",
                "preprocessor_digest": digest(self.preprocessor().to_dict()),
                "data_dir": str(self.run.data_dir), "n_dropped": summary["n_dropped"],
                "seconds": summary["seconds"]}


def score_file(run, input_path, out, method="diffusion", injection=None, init=0, *,
               ensemble=False, chunk_size=None, num_events=None, labels=False) -> dict | None:
    """Score the first ``num_events`` (all) events of an LHCO R&D-layout file with a scan
    classifier of ``run`` (:func:`load_run`) and write ``out``. This process computes its share
    of the chunks; without ``--shard``, rank 0 then merges and returns the summary (else None)."""
    return FileScoring(run, input_path, out, method, injection, init, ensemble, chunk_size,
                       num_events).score(labels)


def read_scores(path) -> tuple[dict, dict]:
    """(arrays, attributes) of a scores file; JSON attributes parsed.

    Datasets, one row per input event in file order: ``row`` (int64, row index in the input),
    ``dropped`` (int8, 1 = fewer than two jets: not scored), ``mjj`` (float64, GeV),
    ``prob`` (float64, probability of the data class = anomaly score; the mean over
    ``prob_init`` columns), ``prob_init`` (N, K) float64 (one column per initialisation in the
    ``inits`` attribute; K = 1 without ``--ensemble``), ``label`` (int8, the input's label
    column as is); NaN for dropped events. Root attributes: ``layout``, ``run``,
    ``run_config``, ``method``, ``injection``, ``inits``, ``ensemble``, ``classifier_units``,
    ``classifier_digests``, ``classifier_fingerprints`` (recorded, with ``check``),
    ``classifier_check``, ``preprocessor_digest``, ``data_dir``, ``input``,
    ``input_identity``, ``settings``, ``config``, ``n_dropped``, ``seconds``, ``time``,
    ``metrics`` with ``--labels``."""
    return scoring.read_scores(path, LAYOUT)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    p = scoring.parser(__doc__.split("\n")[0], "lhco_fullphase", "events",
                       input_help="events in the LHCO R&D layout (pandas, key 'df', "
                                  "700 x (pT, eta, phi) + label)",
                       label_name="label column",
                       chunk_help="events per work unit (default: the run's data.chunksize)",
                       data_dir_help="the run's data folder with its prepared data (default: the "
                                     "one the run recorded in run_info.json, else data.dir, else "
                                     "RUN/data)")
    p.add_argument("--method", default="diffusion", metavar="diffusion|flow_matching|idealized",
                   help="label-0 class of the scan classifier (default: diffusion)")
    p.add_argument("--injection", type=int, default=None, metavar="N",
                   help="injected signal events of the classifier (default: the run's only one)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--init", type=int, default=0, metavar="I",
                       help="initialisation of the classifier (default: 0)")
    which.add_argument("--ensemble", action="store_true",
                       help="mean probability of all initialisations (weak_supervision.num_inits)")
    args = scoring.parse_args(p, argv, "events")
    run = load_run(args.run, data_dir=args.data_dir, shard=args.shard, progress=not args.no_progress)
    summary = score_file(run, args.input, args.out, args.method, args.injection, args.init,
                         ensemble=args.ensemble, chunk_size=args.chunk_size,
                         num_events=args.num_events, labels=args.labels)
    if not scoring.merged(run, summary, args):
        return
    what = "ensemble of the inits" if args.ensemble else f"init{args.init}"
    run.log(f"scores: {summary['out']} ({summary['num_rows']} events, {summary['n_dropped']} "
            f"without two jets; classifier {args.method}/inj{summary['injection']}/{what} of {run.out})")
    if args.labels:
        run.log(scoring.format_metrics(summary["metrics"], "events",
                                       {"prob": " (ensemble mean)"} if args.ensemble else None))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
