"""Scoring a whole input file with a trained model of a finished run: what ``permutation_ad.score``
and ``lhco_fullphase.score`` share.

* :func:`load_finished_run` — a finished run folder as a read-only :class:`shared.run.Run` (its
  ``config.resolved.yaml`` validated against the package's schema; nothing is written).
* :func:`check_recorded_config` — refuse a trained model whose recorded settings are not the
  run's config now (the config was edited after training).
* :class:`ChunkedScoring` — one input file cut into chunks of rows, each a work unit with its own
  part file in ``<out>.parts/`` (and fingerprint: settings, model, input identity, rows), so the
  result does not depend on how the chunks were spread over processes (``--shard K/N``, Horovod
  ranks) and an interrupted scoring continues. Without ``--shard`` the last process merges the
  parts in file order into one HDF5 file (:func:`write_scores`) and removes them. A package
  subclasses it with how to read, score and combine its chunks.
* :func:`label_metrics` / :func:`curve_summary` / :func:`format_metrics` — ``--labels``: AUC and
  max SIC of each score against the input's labels, and the lines printed.
* :func:`write_scores` / :func:`read_scores` — the scores file: one dataset per output column,
  root attributes (scalars, JSON strings where structured).
* :func:`parser` / :func:`parse_args` / :func:`merged` — the flags every scoring command has.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from shared.errors import DataFormatError, UsageError
from shared.io import atomic_savez, read_npz, to_json
from shared.run import run_units

RUN_CONFIG = "config.resolved.yaml"


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def load_finished_run(run_dir, schema, package, *, data_dir=None, shard=None, progress=True):
    """The finished run of ``package`` in ``run_dir`` as a :class:`shared.run.Run`: its saved
    config validated against ``schema`` (a config of another package fails naming a key); the
    folders are not created or checked for writing."""
    from shared.config import Config, load_config
    from shared.run import Run
    from shared.schema import validate
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise UsageError(f"--run {run_dir}: no such folder")
    cfg_path = run_dir / RUN_CONFIG
    if not cfg_path.is_file():
        raise DataFormatError(cfg_path, RUN_CONFIG, f"missing: not a {package} run folder "
                              f"(python -m {package}.pipeline writes it)")
    raw = load_config(cfg_path, out=run_dir)
    cfg = Config(validate(raw, schema, raw.source), raw.source)
    return Run(cfg, run_dir, data_dir, shard=shard, progress=progress, source=raw.source,
               check_folders=False)


def json_value(value):
    """``value`` as it reads back from JSON (tuples → lists, NumPy → Python)."""
    return json.loads(to_json(value, None))


def check_recorded_config(run, record: dict, where, expected: dict, hint: str) -> None:
    """Raise :class:`UsageError` unless the config values recorded in an artifact's fingerprint
    ``record`` (``shared.run.Artifact``) equal the run's current ones. ``expected`` gives the
    values of its ``<extra>`` entries (a missing one counts as None); ``hint`` says what to do."""
    from shared.run import explain_change
    rec_cfg = record.get("recipe", {}).get("config", {})
    now = {k: expected.get(k) if k.startswith("<") else json_value(run.key(k)) for k in rec_cfg}
    if now != rec_cfg:
        raise UsageError(f"{where}: trained with other settings than {run.source} "
                         f"({explain_change({'config': rec_cfg}, {'config': now})}); {hint}")


# ---------------------------------------------------------------------------------------------
# work units
# ---------------------------------------------------------------------------------------------

def parts_dir(out) -> Path:
    """Folder of the per-chunk part files of an output (removed after the merge)."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


class ChunkedScoring:
    """Scoring one input file with a run's model, cut into chunks of ``chunk_size`` rows.

    A subclass sets :attr:`layout` (the output's ``layout`` attribute), :attr:`rows` (what a row
    is: "jets", "events"), :attr:`empty_field` (field named when the file holds no rows),
    :attr:`setting_keys` (run config keys every part depends on) and implements
    :meth:`count_rows`, :meth:`check_input`, :meth:`unit_key`, :meth:`fingerprint`,
    :meth:`score_chunk`, :meth:`combine`, :meth:`metrics`, :meth:`settings`, :meth:`attrs`."""

    layout = "scores"
    rows = "rows"
    empty_field = "file"
    setting_keys: tuple = ()

    def __init__(self, run, input_path, out, *, chunk_size=None, default_chunk_size=1000,
                 num_rows=None):
        import h5py

        from shared.run import file_identity
        self.run = run
        self.input = Path(input_path).expanduser().resolve()
        self.out = Path(out).expanduser().resolve()
        if self.out == self.input:
            raise UsageError(f"--out {self.out}: is the input file")
        if self.out.is_dir():
            raise UsageError(f"--out {self.out}: is a folder (give a file name)")
        if self.input.is_file() and not h5py.is_hdf5(self.input):
            raise DataFormatError(self.input, "file", "not an HDF5 file")
        total = self.count_rows()     # missing file / wrong key: named by the format's reader
        if total == 0:
            raise DataFormatError(self.input, self.empty_field, f"holds no {self.rows}")
        self.check_input()
        self.num_rows = total if num_rows is None else min(int(num_rows), total)
        if chunk_size is not None and int(chunk_size) < 1:
            raise UsageError(f"--chunk-size {chunk_size}: must be >= 1")
        self.chunk_size = int(chunk_size or default_chunk_size)
        self.identity = file_identity(self.input)

    # -- what a subclass provides ------------------------------------------------------------
    def count_rows(self) -> int:
        """Rows in the input (errors name the file and the missing key)."""
        raise NotImplementedError

    def check_input(self) -> None:
        """Read the first row: a missing column or bad value is named before any work."""

    def unit_key(self) -> tuple:
        """The leading entries of every unit tuple (what is scored with what)."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What every part depends on besides ``setting_keys`` and the input (model digests)."""
        raise NotImplementedError

    def score_chunk(self, unit, lo, hi) -> dict:
        """Arrays of the rows [lo, hi) (written to the unit's part file)."""
        raise NotImplementedError

    def combine(self, parts: list) -> tuple[dict, dict]:
        """(output arrays, summary entries) of the part files' arrays, in file order."""
        raise NotImplementedError

    def metrics(self, arrays) -> dict:
        """``--labels`` metrics of the output arrays (:func:`label_metrics`)."""
        raise NotImplementedError

    def settings(self) -> dict:
        """What decided the scores (the output's ``settings`` attribute)."""
        raise NotImplementedError

    def attrs(self, summary) -> dict:
        """Further root attributes of the output (model identity, fingerprints, costs)."""
        return {}

    # -- the units ---------------------------------------------------------------------------
    def units(self) -> list[tuple]:
        """(*unit_key, chunk, lo, hi) for every chunk, in file order."""
        n, size = self.num_rows, self.chunk_size
        return [(*self.unit_key(), c, c * size, min((c + 1) * size, n))
                for c in range(math.ceil(n / size))]

    def unit_artifact(self, unit):
        c, lo, hi = unit[-3:]
        return self.run.artifact(parts_dir(self.out) / f"chunk_{int(c):06d}.npz",
                                 config=self.setting_keys,
                                 extra={**self.fingerprint(), "input": str(self.input),
                                        "identity": self.identity, self.rows: [lo, hi]})

    def compute_unit(self, unit) -> None:
        art = self.unit_artifact(unit)
        lo, hi = unit[-2:]
        atomic_savez(art.path, **{k: np.asarray(v) for k, v in self.score_chunk(unit, lo, hi).items()})
        art.record()

    def score(self, labels=False, desc=None) -> dict | None:
        """This process's share of the chunks; without ``--shard``, rank 0 then merges and
        returns the summary (else None)."""
        units = self.units()
        if not run_units(self.run, units, self.unit_artifact, self.compute_unit,
                         desc or f"scoring {self.input.name}"):
            return None
        return self.merge(units, labels)

    def merge(self, units, labels=False) -> dict:
        """Combine the part files, compute the metrics (``labels``), write ``out``, remove the
        parts. Returns the summary (output path, rows, metrics, subclass entries)."""
        parts = [read_npz(self.unit_artifact(u).path, "scores part file") for u in units]
        arrays, extra = self.combine(parts)
        summary = {"out": str(self.out), "num_rows": int(len(next(iter(arrays.values())))), **extra}
        if labels:
            summary["metrics"] = self.metrics(arrays)
        attrs = {"layout": self.layout, "run": str(self.run.out), "run_config": self.run.source,
                 "input": str(self.input), "input_identity": self.identity,
                 "settings": self.settings(), "config": self.run.cfg, **self.attrs(summary),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if labels:
            attrs["metrics"] = summary["metrics"]
        write_scores(self.out, arrays, attrs)
        shutil.rmtree(parts_dir(self.out), ignore_errors=True)
        return summary


# ---------------------------------------------------------------------------------------------
# --labels
# ---------------------------------------------------------------------------------------------

def label_metrics(labels, scores: dict, metric, path, field, rows="rows") -> dict:
    """{name: metric(labels, scores[name])}; the labels must hold both classes (else one
    :class:`DataFormatError` naming ``path`` and the label ``field``)."""
    labels = np.asarray(labels)
    n_sig = int((labels == 1).sum())
    if n_sig == 0 or n_sig == len(labels):
        what = f"are all {int(labels[0])}" if len(labels) else "are none"
        raise DataFormatError(path, field, f"--labels needs signal (1) and background (0) {rows}; "
                              f"the scored {rows} {what} (the part files are kept: run again "
                              "without --labels to write the scores)")
    return {k: metric(labels, s) for k, s in scores.items()}


def curve_summary(labels, scores, min_background) -> dict:
    """AUC and max SIC over cuts keeping >= ``min_background`` background rows (None if no
    cut does), with the class counts (``shared.metrics``)."""
    from shared import metrics
    labels = np.asarray(labels)
    sic = metrics.max_sic(labels, scores, min_background=int(min_background))
    return {"auc": float(metrics.auc(labels, scores)),
            "max_sic": float(sic) if np.isfinite(sic) else None,
            "min_background_events": int(min_background), "n_signal": int((labels == 1).sum()),
            "n_background": int((labels == 0).sum())}


def format_metrics(metrics: dict, rows="rows", tags: dict | None = None) -> str:
    """The lines printed with ``--labels``: AUC (8 decimals) and max SIC of every score;
    ``tags``: text after a score's name."""
    first = next(iter(metrics.values()))
    lines = [f"labels: {first['n_signal']} signal, {first['n_background']} background {rows}; "
             f"max SIC over cuts keeping >= {first['min_background_events']} background {rows}"]
    for name, m in metrics.items():
        sic = "n/a" if m["max_sic"] is None else f"{m['max_sic']:.4f}"
        lines.append(f"  {name}{(tags or {}).get(name, '')}: AUC {m['auc']:.8f}  max SIC {sic}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the output file
# ---------------------------------------------------------------------------------------------

def write_scores(path, arrays: dict, attrs: dict) -> Path:
    """Write a scores file atomically (h5py): one dataset per entry of ``arrays``; ``attrs`` as
    root attributes (str/number/bool as they are, anything else as a JSON string, None left
    out)."""
    import h5py

    from shared.io import atomic_path
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=np.asarray(v))
            for k, v in attrs.items():
                if v is not None:
                    f.attrs[k] = v if isinstance(v, (str, bool, int, float, np.generic)) \
                        else to_json(v, None)
    return Path(path)


def read_scores(path, layout) -> tuple[dict, dict]:
    """(arrays, attributes) of a scores file of ``layout``; JSON attributes parsed."""
    import h5py
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file", "not found")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("layout") != layout:
                raise DataFormatError(path, "layout", f"not a {layout} file")
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

def parser(description, package, rows, *, input_help, label_name, chunk_help, data_dir_help):
    """Argument parser with the flags of every scoring command: ``--run``, ``--input``, ``--out``,
    ``--labels``, ``--chunk-size``, ``--num-<rows>``, ``--data-dir``, ``--no-progress``,
    ``--shard``; the package adds those choosing its model."""
    import argparse

    from shared.cli import add_shard_argument
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--run", required=True, metavar="DIR", help=f"a finished {package} run folder")
    p.add_argument("--input", required=True, metavar="FILE", help=input_help)
    p.add_argument("--out", required=True, metavar="FILE", help="scores file to write (HDF5)")
    p.add_argument("--labels", action="store_true",
                   help=f"print AUC and max SIC of the scores against the file's {label_name}")
    p.add_argument("--chunk-size", type=int, default=None, metavar="N", help=chunk_help)
    p.add_argument(f"--num-{rows}", type=int, default=None, metavar="N",
                   help=f"score only the first N {rows} (default: all)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=data_dir_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_shard_argument(p)
    return p


def parse_args(p, argv, rows):
    """``p.parse_args(argv)`` with ``--num-<rows>`` checked (>= 1)."""
    args = p.parse_args(argv)
    n = getattr(args, f"num_{rows}")
    if n is not None and n < 1:
        raise UsageError(f"--num-{rows} {n}: must be >= 1")
    return args


def merged(run, summary, args) -> bool:
    """True if this process merged the output (``summary``); a shard says how to merge."""
    if summary is None:
        if args.shard is not None:
            run.log(f"run again without --shard (same --out) to merge into {args.out}")
        return False
    return True


__all__ = ["parser", "parse_args", "merged", "RUN_CONFIG", "load_finished_run", "json_value", "check_recorded_config",
           "parts_dir", "ChunkedScoring", "label_metrics", "curve_summary", "format_metrics",
           "write_scores", "read_scores"]
