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

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from permutation_ad import artifacts
from permutation_ad.evaluate import density_loglik, run_units, unit_seed
from permutation_ad.schema import OBJECTIVES, SAMPLES, SCHEMA
from shared.errors import DataFormatError, InputError, UsageError
from shared.io import read_json, to_json

RUN_CONFIG = "config.resolved.yaml"
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
    from shared.config import Config, load_config
    from shared.run import Run
    from shared.schema import validate
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise UsageError(f"--run {run_dir}: no such folder")
    cfg_path = run_dir / RUN_CONFIG
    if not cfg_path.is_file():
        raise DataFormatError(cfg_path, RUN_CONFIG, "missing: not a permutation_ad run folder "
                              "(python -m permutation_ad.pipeline writes it)")
    raw = load_config(cfg_path, out=run_dir)
    cfg = Config(validate(raw, SCHEMA, raw.source), raw.source)
    return Run(cfg, run_dir, data_dir, shard=shard, progress=progress, source=raw.source,
               check_folders=False)


def _json_value(value):
    return json.loads(to_json(value, None))


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
    rec_cfg = rec.get("recipe", {}).get("config", {})
    now = {k: (_json_value(run.key(k)) if not k.startswith("<") else
               {"<sample>": sample, "<objective>": objective}.get(k)) for k in rec_cfg}
    if now != rec_cfg:
        raise UsageError(f"{workdir}: trained with other settings than {run.source} "
                         f"({explain_change({'config': rec_cfg}, {'config': now})}); "
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

def parts_dir(out) -> Path:
    """Folder of the per-chunk part files of an output (removed after the merge)."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


class FileScoring:
    """Scoring one input file with one density of a run, cut into chunks (work units)."""

    def __init__(self, run, input_path, out, sample="qcd", objective="standard",
                 chunk_size=None, num_jets=None):
        import h5py

        from shared.data.toptag import count_toptag, iter_toptag
        from shared.run import file_identity
        if sample not in SAMPLES:
            raise UsageError(f"--sample {sample!r}: choose from {SAMPLES}")
        if objective not in OBJECTIVES:
            raise UsageError(f"--objective {objective!r}: choose from {OBJECTIVES}")
        self.run, self.sample, self.objective = run, sample, objective
        self.input = Path(input_path).expanduser().resolve()
        self.out = Path(out).expanduser().resolve()
        if self.out == self.input:
            raise UsageError(f"--out {self.out}: is the input file")
        if self.out.is_dir():
            raise UsageError(f"--out {self.out}: is a folder (give a file name)")
        if self.input.is_file() and not h5py.is_hdf5(self.input):
            raise DataFormatError(self.input, "file", "not an HDF5 file")
        total = count_toptag(self.input)     # missing file / no 'table' key: named here
        if total == 0:
            raise DataFormatError(self.input, "table", "holds no jets")
        next(iter_toptag(self.input, 0, 1, 1))  # missing columns / bad first row: named here
        self.num_jets = total if num_jets is None else min(int(num_jets), total)
        if chunk_size is not None and int(chunk_size) < 1:
            raise UsageError(f"--chunk-size {chunk_size}: must be >= 1")
        self.chunk_size = int(chunk_size or run.key("evaluate.chunk_size"))
        self.identity = file_identity(self.input)
        self.density = check_density(run, sample, objective)
        if self.density["check"] != "verified":
            run.log(f"note: density {sample}/{objective}: {self.density['check']}")
        self.options = self._options()

    def _options(self):
        from shared.diffusion.likelihood import LikelihoodOptions
        return LikelihoodOptions.from_config(self.run.cfg["likelihood"], self.run.source)

    @property
    def model_name(self) -> str:
        return f"{self.sample}_{self.objective}"

    def units(self) -> list[tuple]:
        """("score", sample, objective, chunk, lo, hi) for every chunk, in file order."""
        n, size = self.num_jets, self.chunk_size
        return [("score", self.sample, self.objective, c, c * size, min((c + 1) * size, n))
                for c in range(math.ceil(n / size))]

    def unit_artifact(self, unit):
        c, lo, hi = unit[3:]
        return self.run.artifact(parts_dir(self.out) / f"chunk_{int(c):06d}.npz",
                                 config=SETTING_KEYS,
                                 extra={"density": self.density["digest"], "model": self.model_name,
                                        "input": str(self.input), "identity": self.identity,
                                        "jets": [lo, hi]})

    def density_model(self):
        from permutation_ad.train import load_density
        return self.run.cached(f"density/{self.model_name}", lambda: load_density(
            self.run.cfg, artifacts.model_dir(self.run.out, self.sample, self.objective),
            self.objective))

    def compute_unit(self, unit) -> None:
        from shared.data.toptag import iter_toptag
        art = self.unit_artifact(unit)
        lo, hi = unit[4:]
        chunk = next(iter_toptag(self.input, lo, hi, hi - lo))
        model, pre = self.density_model()
        res = score_p4(model, pre, chunk["p4"], self.run.cfg["data"], self.options,
                       unit_seed(self.run.key("seed", 0), *unit[:4]), path=self.input)
        artifacts.write_loglik(art.path, {**{k: res[k] for k in (*artifacts.LOGLIK_KEYS, "nfe", "seconds")},
                                          "label": chunk["label"].astype(np.int8)})
        art.record()

    def settings(self) -> dict:
        """What decided the scores (stored in the output's attributes)."""
        return {"data": {k: self.run.key(f"data.{k}") for k in
                         ("num_particles", "particle_pt_feature", "jet_features")},
                "likelihood": self.options.as_dict(), "seed": int(self.run.key("seed", 0)),
                "seed_rule": "chunk c: permutation_ad.evaluate.unit_seed(seed, 'score', sample, "
                             "objective, c)",
                "chunk_size": self.chunk_size, "num_jets": self.num_jets,
                "sample": self.sample, "objective": self.objective,
                "min_background": self.run.key("evaluate.min_background"),
                "min_background_eff": self.run.key("evaluate.min_background_eff")}

    def merge(self, units, labels=False) -> dict:
        """Concatenate the part files, compute metrics (``labels``), write ``out``, remove the
        parts. Returns the summary (output path, jets, metrics)."""
        from permutation_ad.model import anomaly_scores
        parts = [artifacts.read_loglik(self.unit_artifact(u).path) for u in units]
        ll = {k: np.concatenate([p[k] for p in parts]) for k in (*artifacts.LOGLIK_KEYS, "label")}
        scores = anomaly_scores(ll)
        summary = {"out": str(self.out), "num_jets": int(len(ll["logp"])),
                   "nfe": np.sum([p["nfe"] for p in parts], axis=0).tolist(),
                   "seconds": float(sum(float(p["seconds"]) for p in parts))}
        if labels:
            summary["metrics"] = label_metrics(ll["label"], scores, self.run.cfg["evaluate"], self.input)
        attrs = {"layout": LAYOUT, "run": str(self.run.out), "run_config": self.run.source,
                 "model": self.model_name, "density_digest": self.density["digest"],
                 "density_check": self.density["check"],
                 "density_fingerprint": to_json(self.density, None),
                 "input": str(self.input), "input_identity": to_json(self.identity, None),
                 "settings": to_json(self.settings(), None),
                 "config": to_json(self.run.cfg, None),
                 "score_definitions": to_json(_score_definitions(), None),
                 "nfe": to_json(summary["nfe"], None), "seconds": summary["seconds"],
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if labels:
            attrs["metrics"] = to_json(summary["metrics"], None)
        write_scores(self.out, {**{k: ll[k] for k in artifacts.LOGLIK_KEYS}, **scores,
                                "label": ll["label"]}, attrs)
        shutil.rmtree(parts_dir(self.out), ignore_errors=True)
        return summary


def _score_definitions() -> dict:
    from permutation_ad.report import SCORE_DEFINITIONS
    return SCORE_DEFINITIONS


def label_metrics(labels, scores, ecfg, path="<labels>") -> dict:
    """{score: AUC, max SIC, ... (``report.curve_metrics``)} against the input's labels."""
    from permutation_ad.report import curve_metrics
    labels = np.asarray(labels)
    n_sig = int((labels == 1).sum())
    if n_sig == 0 or n_sig == len(labels):
        raise DataFormatError(path, "is_signal_new", f"--labels needs signal (1) and background (0) "
                              f"jets; the scored jets are all {int(labels[0])} (the part files are "
                              "kept: run again without --labels to write the scores)")
    return {k: curve_metrics(labels, scores[k], ecfg) for k in SCORE_KEYS}


def score_file(run, input_path, out, sample="qcd", objective="standard", *, chunk_size=None,
               num_jets=None, labels=False) -> dict | None:
    """Score the first ``num_jets`` (all) jets of a Top-Tagging-layout file with one density of
    ``run`` (:func:`load_run`) and write ``out``. This process computes its share of the chunks;
    without ``--shard``, rank 0 then merges and returns the summary (else None)."""
    job = FileScoring(run, input_path, out, sample, objective, chunk_size, num_jets)
    units = job.units()
    if not run_units(run, units, job.unit_artifact, job.compute_unit, f"scoring {job.input.name}"):
        return None
    return job.merge(units, labels)


# ---------------------------------------------------------------------------------------------
# the output file
# ---------------------------------------------------------------------------------------------

def write_scores(path, arrays: dict, attrs: dict) -> Path:
    """Write a scores file atomically (h5py).

    Datasets, one row per jet in input order: ``logp``, ``logp_jet``, ``logp_particles``,
    ``n`` (float64; log densities in physical units, n = particles in the density, ≤ P),
    ``nll_per_particle`` (paper default, −log p/N), ``nll_code_variant``, ``nll`` (float64;
    higher = more anomalous), ``label`` (int8, the input's ``is_signal_new`` copied as is).
    Root attributes: scalars and JSON strings (``layout``, ``run``, ``model``,
    ``density_digest``, ``density_fingerprint``, ``input``, ``input_identity``, ``settings``,
    ``config``, ``score_definitions``, ``metrics`` with ``--labels``, ...).
    """
    import h5py

    from shared.io import atomic_path
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=np.asarray(v))
            for k, v in attrs.items():
                f.attrs[k] = v
    return Path(path)


def read_scores(path) -> tuple[dict, dict]:
    """(arrays, attributes) of a scores file; JSON attributes parsed."""
    import h5py
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file", "not found")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("layout") != LAYOUT:
                raise DataFormatError(path, "layout", f"not a {LAYOUT} file")
            arrays = {k: f[k][()] for k in f}
            attrs = {k: f.attrs[k] for k in f.attrs}
    except OSError as exc:
        raise DataFormatError(path, "file", f"not a readable HDF5 file ({exc})") from None
    for k, v in attrs.items():
        if isinstance(v, (str, bytes)):
            v = v.decode() if isinstance(v, bytes) else v
            try:
                attrs[k] = json.loads(v) if v[:1] in "{[" else v
            except json.JSONDecodeError:
                attrs[k] = v
    return arrays, attrs


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def format_metrics(metrics: dict) -> str:
    """The lines printed with ``--labels``: AUC (8 decimals) and max SIC of every score."""
    first = next(iter(metrics.values()))
    lines = [f"labels: {first['n_signal']} signal, {first['n_background']} background jets; max SIC "
             f"over cuts keeping >= {first['min_background_events']} background jets"]
    for name, m in metrics.items():
        sic = "n/a" if m["max_sic"] is None else f"{m['max_sic']:.4f}"
        tag = " (paper default)" if name == "nll_per_particle" else ""
        lines.append(f"  {name}{tag}: AUC {m['auc']:.8f}  max SIC {sic}")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    from shared.cli import add_shard_argument
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, metavar="DIR", help="a finished permutation_ad run folder")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="jets in the Top-Tagging layout (pandas table, key 'table')")
    p.add_argument("--out", required=True, metavar="FILE", help="scores file to write (HDF5)")
    p.add_argument("--sample", default="qcd", choices=SAMPLES, help="training sample of the density")
    p.add_argument("--objective", default="standard", choices=OBJECTIVES,
                   help="training objective of the density")
    p.add_argument("--labels", action="store_true",
                   help="print AUC and max SIC of every score against the file's is_signal_new")
    p.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help="jets per work unit (default: the run's evaluate.chunk_size); the scores "
                        "depend on it through the ODE batches and probe seeds")
    p.add_argument("--num-jets", type=int, default=None, metavar="N",
                   help="score only the first N jets (default: all)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the run's data folder, only to verify the density's fingerprint "
                        "(default: data.dir of the run's config, else RUN/data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_shard_argument(p)
    args = p.parse_args(argv)
    if args.num_jets is not None and args.num_jets < 1:
        raise UsageError(f"--num-jets {args.num_jets}: must be >= 1")
    run = load_run(args.run, data_dir=args.data_dir, shard=args.shard, progress=not args.no_progress)
    summary = score_file(run, args.input, args.out, args.sample, args.objective,
                         chunk_size=args.chunk_size, num_jets=args.num_jets, labels=args.labels)
    if summary is None:
        if args.shard is not None:
            run.log(f"run again without --shard (same --out) to merge into {args.out}")
        return
    run.log(f"scores: {summary['out']} ({summary['num_jets']} jets, density "
            f"{args.sample}/{args.objective} of {run.out})")
    if args.labels:
        run.log(format_metrics(summary["metrics"]))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
