"""Score any Top-Tagging-layout file with a trained run: one anomaly score per jet.

    python -m permutation_ad.score --run runs/demo --input jets.h5 --out scores.h5 \
        [--sample qcd --objective standard] [--labels] [--chunk-size 1000] [--num-jets N]
    python -m permutation_ad.score ... --shard 3/16        # one Slurm array task
    horovodrun -np 4 python -m permutation_ad.score ...    # the chunks spread over 4 ranks

The run's own settings (``RUN/config.resolved.yaml``) decide everything: the features
(``data.*``), the density ``models/<sample>_<objective>`` (its preprocessor and EMA weights)
and the likelihood options (``likelihood.*``). The input is read in chunks of ``--chunk-size``
jets (default: the run's ``evaluate.chunk_size``); each chunk is a work unit with its own seed
(``evaluate.unit_seed``) and part file in ``<out>.parts/``, so the result does not depend on how
the chunks were spread over processes, and an interrupted scoring continues. Without ``--shard``
the last process merges the parts into ``--out`` (an HDF5 file, layout in :func:`write_scores`)
and removes them; with ``--labels`` it prints the AUC and max SIC of every score against the
file's ``is_signal_new`` column (the run's minimum-background rule).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from permutation_ad import artifacts
from permutation_ad.evaluate import density_loglik, unit_seed
from permutation_ad.schema import OBJECTIVES, SAMPLES, SCHEMA
from shared import scoring
from shared.errors import DataFormatError, InputError, UsageError
from shared.io import read_json
from shared.scoring import (RUN_CONFIG, ChunkedScoring, check_recorded_config,  # noqa: F401
                            load_finished_run, parts_dir)
LAYOUT = "permutation_ad-scores-v1"
SCORE_KEYS = ("nll_per_particle", "nll_code_variant", "nll")
# the run settings a part file depends on (besides the density and the input chunk)
SETTING_KEYS = ("seed", "likelihood", "data.num_particles", "data.particle_pt_feature",
                "data.jet_features")


# ---------------------------------------------------------------------------------------------
# the reusable part: score four-momenta with a loaded density
# ---------------------------------------------------------------------------------------------

def score_p4(model, preprocessor, p4, data_cfg, options=None, seed=None, path="<array>") -> dict:
    """Log-likelihood parts and anomaly scores of jets under a loaded density.

    Args:
        model, preprocessor: ``permutation_ad.train.load_density(cfg, workdir, objective)``.
        p4: (N, M, 4) constituent four-momenta E, px, py, pz, zero padded (Top-Tagging layout).
        data_cfg: the run's ``data`` section (``num_particles``, ``particle_pt_feature``,
            ``jet_features``) — the features the density was trained on.
        options: ``shared.diffusion.likelihood.LikelihoodOptions`` (the run's ``likelihood``).
        seed: Hutchinson probe seed (the result is deterministic given it and the batch).
        path: where the jets came from, for error messages.
    Returns:
        dict of (N,) float64 arrays: ``logp``, ``logp_jet``, ``logp_particles`` (physical
        units), ``n`` (particles in the density, ≤ P), the scores ``nll_per_particle``,
        ``nll_code_variant``, ``nll`` (``permutation_ad.model.anomaly_scores``); plus ``nfe``
        ([jet, particles] ODE evaluations) and ``seconds``.
    """
    from permutation_ad.features import jet_features
    from permutation_ad.model import anomaly_scores
    f = jet_features(p4, int(data_cfg["num_particles"]), data_cfg["particle_pt_feature"],
                     data_cfg["jet_features"], path=str(path))
    ll = density_loglik(model, preprocessor, f["constituents"], f["mask"], f["jets"], options, seed)
    return {**ll, **anomaly_scores(ll)}


# ---------------------------------------------------------------------------------------------
# the run and its density
# ---------------------------------------------------------------------------------------------

def load_run(run_dir, *, data_dir=None, shard=None, progress=True):
    """The finished permutation_ad run in ``run_dir`` as a :class:`shared.run.Run` (its saved
    config validated against ``permutation_ad.schema.SCHEMA``; nothing is written)."""
    return load_finished_run(run_dir, SCHEMA, "permutation_ad", data_dir=data_dir, shard=shard,
                             progress=progress)


def check_density(run, sample, objective) -> dict:
    """The recorded fingerprint of a finished density of ``run``, with ``check``: "verified"
    when it equals the fingerprint the run's settings and training data give now, else why it
    could not be verified. A density trained with other settings than the run's config (the
    config changed after training) is refused: scoring would not use the run's settings."""
    from permutation_ad.train import density_artifact
    from shared.run import explain_change
    workdir = artifacts.model_dir(run.out, sample, objective)
    done = artifacts.train_summary_path(workdir)
    if not done.is_file():
        raise DataFormatError(workdir, done.name, f"missing: density {sample}/{objective} was not "
                              "trained to the end in this run")
    rec = read_json(workdir / "fingerprint.json", "density fingerprint")
    check_recorded_config(run, rec, workdir, {"<sample>": sample, "<objective>": objective},
                          "re-run its train stage")
    try:
        art = density_artifact(run, sample, objective)
        check = "verified" if art.digest == rec.get("digest") else \
            f"training data changed since training ({explain_change(rec['recipe'], art.recipe)})"
    except InputError as exc:
        check = f"training data not verifiable here ({exc})"
    return {**rec, "check": check}


# ---------------------------------------------------------------------------------------------
# scoring a file
# ---------------------------------------------------------------------------------------------

class FileScoring(ChunkedScoring):
    """Scoring one input file with one density of a run, cut into chunks (work units)."""

    layout = LAYOUT
    rows = "jets"
    empty_field = "table"
    setting_keys = SETTING_KEYS

    def __init__(self, run, input_path, out, sample="qcd", objective="standard",
                 chunk_size=None, num_jets=None):
        if sample not in SAMPLES:
            raise UsageError(f"--sample {sample!r}: choose from {SAMPLES}")
        if objective not in OBJECTIVES:
            raise UsageError(f"--objective {objective!r}: choose from {OBJECTIVES}")
        self.sample, self.objective = sample, objective
        super().__init__(run, input_path, out, chunk_size=chunk_size, num_rows=num_jets,
                         default_chunk_size=run.key("evaluate.chunk_size"))
        self.density = check_density(run, sample, objective)
        if self.density["check"] != "verified":
            run.log(f"note: density {sample}/{objective}: {self.density['check']}")
        self.options = self._options()

    def _options(self):
        from shared.diffusion.likelihood import LikelihoodOptions
        return LikelihoodOptions.from_config(self.run.cfg["likelihood"], self.run.source)

    @property
    def num_jets(self) -> int:
        return self.num_rows

    @property
    def model_name(self) -> str:
        return f"{self.sample}_{self.objective}"

    def count_rows(self) -> int:
        from shared.data.toptag import count_toptag
        return count_toptag(self.input)

    def check_input(self) -> None:
        from shared.data.toptag import iter_toptag
        next(iter_toptag(self.input, 0, 1, 1))

    def unit_key(self) -> tuple:
        """Units are ("score", sample, objective, chunk, lo, hi)."""
        return ("score", self.sample, self.objective)

    def fingerprint(self) -> dict:
        return {"density": self.density["digest"], "model": self.model_name}

    def density_model(self):
        from permutation_ad.train import load_density
        return self.run.cached(f"density/{self.model_name}", lambda: load_density(
            self.run.cfg, artifacts.model_dir(self.run.out, self.sample, self.objective),
            self.objective))

    def score_chunk(self, unit, lo, hi) -> dict:
        from shared.data.toptag import iter_toptag
        chunk = next(iter_toptag(self.input, lo, hi, hi - lo))
        model, pre = self.density_model()
        res = score_p4(model, pre, chunk["p4"], self.run.cfg["data"], self.options,
                       unit_seed(self.run.key("seed", 0), *unit[:4]), path=self.input)
        return {**{k: res[k] for k in (*artifacts.LOGLIK_KEYS, "nfe", "seconds")},
                "label": chunk["label"].astype(np.int8)}

    def settings(self) -> dict:
        return {"data": {k: self.run.key(f"data.{k}") for k in
                         ("num_particles", "particle_pt_feature", "jet_features")},
                "likelihood": self.options.as_dict(), "seed": int(self.run.key("seed", 0)),
                "seed_rule": "chunk c: permutation_ad.evaluate.unit_seed(seed, 'score', sample, "
                             "objective, c)",
                "chunk_size": self.chunk_size, "num_jets": self.num_jets,
                "sample": self.sample, "objective": self.objective,
                "min_background": self.run.key("evaluate.min_background"),
                "min_background_eff": self.run.key("evaluate.min_background_eff")}

    def combine(self, parts) -> tuple[dict, dict]:
        from permutation_ad.model import anomaly_scores
        ll = {k: np.concatenate([p[k] for p in parts]) for k in (*artifacts.LOGLIK_KEYS, "label")}
        arrays = {**{k: ll[k] for k in artifacts.LOGLIK_KEYS}, **anomaly_scores(ll),
                  "label": ll["label"]}
        return arrays, {"nfe": np.sum([p["nfe"] for p in parts], axis=0).tolist(),
                        "seconds": float(sum(float(p["seconds"]) for p in parts))}

    def metrics(self, arrays) -> dict:
        return label_metrics(arrays["label"], {k: arrays[k] for k in SCORE_KEYS},
                             self.run.cfg["evaluate"], self.input)

    def attrs(self, summary) -> dict:
        from permutation_ad.report import SCORE_DEFINITIONS
        return {"model": self.model_name, "density_digest": self.density["digest"],
                "density_check": self.density["check"], "density_fingerprint": self.density,
                "score_definitions": SCORE_DEFINITIONS, "nfe": summary["nfe"],
                "seconds": summary["seconds"]}


def label_metrics(labels, scores, ecfg, path="<labels>") -> dict:
    """{score: AUC, max SIC, ... (``report.curve_metrics``)} against the input's labels."""
    from permutation_ad.report import curve_metrics
    return scoring.label_metrics(labels, scores, lambda y, s: curve_metrics(y, s, ecfg), path,
                                 "is_signal_new", "jets")


def score_file(run, input_path, out, sample="qcd", objective="standard", *, chunk_size=None,
               num_jets=None, labels=False) -> dict | None:
    """Score the first ``num_jets`` (all) jets of a Top-Tagging-layout file with one density of
    ``run`` (:func:`load_run`) and write ``out``. This process computes its share of the chunks;
    without ``--shard``, rank 0 then merges and returns the summary (else None)."""
    return FileScoring(run, input_path, out, sample, objective, chunk_size, num_jets).score(labels)


# ---------------------------------------------------------------------------------------------
# the output file
# ---------------------------------------------------------------------------------------------

def write_scores(path, arrays: dict, attrs: dict) -> Path:
    """Write a scores file atomically (``shared.scoring.write_scores``).

    Datasets, one row per jet in input order: ``logp``, ``logp_jet``, ``logp_particles``,
    ``n`` (float64; log densities in physical units, n = particles in the density, ≤ P),
    ``nll_per_particle`` (paper default, −log p/N), ``nll_code_variant``, ``nll`` (float64;
    higher = more anomalous), ``label`` (int8, the input's ``is_signal_new`` copied as is).
    Root attributes: scalars and JSON strings (``layout``, ``run``, ``model``,
    ``density_digest``, ``density_fingerprint``, ``input``, ``input_identity``, ``settings``,
    ``config``, ``score_definitions``, ``metrics`` with ``--labels``, ...).
    """
    return scoring.write_scores(path, arrays, attrs)


def read_scores(path) -> tuple[dict, dict]:
    """(arrays, attributes) of a scores file; JSON attributes parsed."""
    return scoring.read_scores(path, LAYOUT)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def format_metrics(metrics: dict) -> str:
    """The lines printed with ``--labels``: AUC (8 decimals) and max SIC of every score."""
    return scoring.format_metrics(metrics, "jets", {"nll_per_particle": " (paper default)"})


def main(argv=None):
    p = scoring.parser(__doc__.split("\n")[0], "permutation_ad", "jets",
                       input_help="jets in the Top-Tagging layout (pandas table, key 'table')",
                       label_name="is_signal_new",
                       chunk_help="jets per work unit (default: the run's evaluate.chunk_size); the "
                                  "scores depend on it through the ODE batches and probe seeds",
                       data_dir_help="the run's data folder, only to verify the density's "
                                     "fingerprint (default: data.dir of the run's config, else RUN/data)")
    p.add_argument("--sample", default="qcd", choices=SAMPLES, help="training sample of the density")
    p.add_argument("--objective", default="standard", choices=OBJECTIVES,
                   help="training objective of the density")
    args = scoring.parse_args(p, argv, "jets")
    run = load_run(args.run, data_dir=args.data_dir, shard=args.shard, progress=not args.no_progress)
    summary = score_file(run, args.input, args.out, args.sample, args.objective,
                         chunk_size=args.chunk_size, num_jets=args.num_jets, labels=args.labels)
    if not scoring.merged(run, summary, args):
        return
    run.log(f"scores: {summary['out']} ({summary['num_rows']} jets, density "
            f"{args.sample}/{args.objective} of {run.out})")
    if args.labels:
        run.log(format_metrics(summary["metrics"]))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
