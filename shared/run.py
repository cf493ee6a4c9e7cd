"""The run layer both packages use: one run's settings resolved once, stages with declared
outputs, and outputs that know what made them.

* :class:`Run` — the validated config, the output folder and the data folder (resolved once,
  checked writable before any long work), ``--resume``, the distributed context and an
  in-process cache for loaded data, so stages of one process share them.
* :class:`Artifact` — an output file or folder with a *fingerprint*: the config values it
  depends on, the identity of its input files (path, size, mtime; a content hash for small
  files) and the fingerprints of the artifacts it was made from. An artifact is reused only when
  its recorded fingerprint equals the current one; otherwise it is made again and the first
  difference is printed in one line ("training.epochs: 1 -> 2"). ``--resume never`` makes every
  artifact under ``--out`` again; caches in the data folder are reused whenever they match.
* :class:`Stage` / :func:`run_stages` — a named function of the run with declared outputs,
  timed (``OUT/stage_times.json``), run on rank 0 only (others wait) unless it works on every
  rank (training, sharded work), with its declared outputs checked afterwards.
* :func:`my_units` — the share of independent work units of this process: ``--shard K/N``
  (Slurm arrays) or the Horovod rank.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from shared.config import Config, load_config, save_config
from shared.errors import ConfigError, UsageError
from shared.io import atomic_write_json, ensure_dir, read_json, to_json

SMALL_FILE_BYTES = 8 << 20   # inputs up to this size are identified by their content hash
STAGE_TIMES = "stage_times.json"


# ---------------------------------------------------------------------------------------------
# fingerprints
# ---------------------------------------------------------------------------------------------

def file_identity(path) -> dict:
    """Identity of an input file: size and mtime, plus a SHA-256 for small files."""
    path = Path(path)
    st = path.stat()
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if st.st_size <= SMALL_FILE_BYTES and path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        ident = {"size": st.st_size, "sha256": h.hexdigest()}
    return ident


def output_identity(path) -> dict:
    """Identity of an output file when it was made: its size, plus a SHA-256 for small files
    (no mtime: a copy of a run folder keeps its outputs)."""
    ident = file_identity(path)
    ident.pop("mtime_ns", None)
    return ident


def digest(obj) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(json.loads(to_json(obj, None)), sort_keys=True)
                          .encode()).hexdigest()[:16]


def _first_difference(old, new, prefix="") -> str | None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                return f"{sub}: new"
            if key not in new:
                return f"{sub}: removed"
            diff = _first_difference(old[key], new[key], sub)
            if diff:
                return diff
        return None
    if old != new:
        short = lambda v: (s if len(s := json.dumps(v, default=str)) <= 60 else s[:57] + "...")  # noqa: E731
        return f"{prefix}: {short(old)} -> {short(new)}"
    return None


def explain_change(old: Mapping, new: Mapping) -> str:
    """One line naming the first difference of two fingerprints (config key, input, upstream)."""
    for part, label in (("config", ""), ("inputs", "input "), ("upstream", "upstream ")):
        diff = _first_difference(old.get(part, {}), new.get(part, {}))
        if diff:
            return label + diff
    return "recorded with another format"


class Artifact:
    """An output file or folder and the fingerprint of what makes it (module doc).

    The fingerprint is stored beside a file (``<name>.fingerprint.json``) or inside a folder
    (``fingerprint.json``); it is written only after the output is complete, so an output
    without one (interrupted, or from an older version) is never reused as finished. It also
    records where the upstream outputs' fingerprints are (``upstream_files``, relative), so a
    reader can check that nothing it was made from was made again since
    (:func:`outdated_inputs`), and for a file the file's own identity (size, content hash of
    small files), so a file damaged or replaced after it was made is made again."""

    def __init__(self, path, recipe: Mapping, *, folder: bool = False, resume: str = "auto",
                 done_marker: str | None = None, upstream_files: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.folder = folder
        self.recipe = json.loads(to_json(dict(recipe), None))
        self.digest = digest(self.recipe)
        self.resume = resume
        # a folder is finished when this file exists in it (e.g. train_summary.json)
        self.done_marker = done_marker
        self.upstream_files = dict(upstream_files or {})

    @property
    def fingerprint_path(self) -> Path:
        return fingerprint_path(self.path, self.folder)

    def recorded(self) -> dict | None:
        """The fingerprint stored with the output, or None."""
        try:
            return read_json(self.fingerprint_path)
        except Exception:  # noqa: BLE001 - missing or corrupt: treated as not recorded
            return None

    def _changed_output(self, rec) -> str | None:
        """Why the file is not the one recorded (None if it is, or for folders)."""
        want = rec.get("output")
        if self.folder or not want or not self.path.is_file():
            return None
        have = output_identity(self.path)
        if have == want:
            return None
        what = f"size {want.get('size')} -> {have.get('size')}" if have.get("size") != want.get("size") \
            else "content changed"
        return f"the file was changed or damaged after it was made ({what})"

    def matches(self) -> bool:
        """True when the recorded fingerprint equals the current one (and a file output is
        still the file that was recorded)."""
        rec = self.recorded()
        return rec is not None and rec.get("digest") == self.digest and not self._changed_output(rec)

    def complete(self) -> bool:
        if not self.path.exists():
            return False
        if self.folder and self.done_marker:
            return (self.path / self.done_marker).is_file()
        return True

    def fresh(self) -> bool:
        """Output complete, made from exactly the current inputs, and reuse allowed."""
        return self.resume != "never" and self.complete() and self.matches()

    def stale_reason(self) -> str | None:
        """Why an existing output cannot be reused (None if it can, or if there is none)."""
        if not self.path.exists():
            return None
        if self.resume == "never":
            return "--resume never"
        rec = self.recorded()
        if rec is None:
            return "no fingerprint (interrupted, or made by an older version)"
        if rec.get("digest") != self.digest:
            return explain_change(rec.get("recipe", {}), self.recipe)
        return self._changed_output(rec)

    def prepare(self, log=print, what=None) -> bool:
        """Before making the output: True if it is fresh (nothing to do); else remove a stale
        one (saying why in one line) and return False. A folder whose fingerprint matches but
        that is not finished is kept (an interrupted training continues in it)."""
        if self.fresh():
            return True
        reason = self.stale_reason()
        if reason is not None and not (self.folder and self.matches() and self.resume != "never"):
            log(f"{what or self.path}: {reason}; making it again")
            self.clear()
        return False

    def begin(self) -> None:
        """For folders made over a long time (training): record the fingerprint at the start,
        so an interrupted run resumes only with unchanged settings."""
        ensure_dir(self.path)
        self.record()

    def record(self) -> None:
        """Store the fingerprint (call when the output is complete)."""
        base = self.fingerprint_path.parent
        rec = {"digest": self.digest, "recipe": self.recipe,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "upstream_files": {k: os.path.relpath(v, base) for k, v in self.upstream_files.items()}}
        if not self.folder and self.path.is_file():
            rec["output"] = output_identity(self.path)
        atomic_write_json(self.fingerprint_path, rec)

    def clear(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        elif self.path.exists():
            self.path.unlink()
        if not self.folder and self.fingerprint_path.exists():
            self.fingerprint_path.unlink()


def fingerprint_path(path, folder: bool = False) -> Path:
    """Where the fingerprint of the output at ``path`` is stored."""
    path = Path(path)
    return path / "fingerprint.json" if folder else path.with_name(path.name + ".fingerprint.json")


def _output_of(fp: Path) -> Path:
    return fp.parent if fp.name == "fingerprint.json" else fp.with_name(fp.name[:-len(".fingerprint.json")])


def outdated_inputs(path, *, folder: bool = False) -> str | None:
    """Why the output at ``path`` no longer fits what it was made from: an output it was made
    from (directly or further up) that was made again since, with other settings or inputs.
    None when every recorded link still holds, or when nothing is recorded (older versions).
    Needs no config: it compares the fingerprints on disk."""
    return _outdated(fingerprint_path(path, folder).resolve(), set())


def _outdated(fp: Path, seen: set) -> str | None:
    if fp in seen:
        return None
    seen.add(fp)
    try:
        rec = read_json(fp)
    except Exception:  # noqa: BLE001 - nothing recorded: nothing to check
        return None
    made_from = rec.get("recipe", {}).get("upstream", {})
    for name, rel in (rec.get("upstream_files") or {}).items():
        up = Path(os.path.normpath(fp.parent / rel))
        try:
            up_rec = read_json(up)
        except Exception:  # noqa: BLE001 - moved or removed: cannot tell
            continue
        if up_rec.get("digest") != made_from.get(name):
            return f"{_output_of(up)} was made again after {_output_of(fp).name} (other settings or inputs)"
        deeper = _outdated(up, seen)
        if deeper:
            return deeper
    return None


def require_current(path, what: str, hint: str, *, folder: bool = False) -> None:
    """A :class:`UsageError` naming ``path`` if it was made from outputs that were made again
    since (:func:`outdated_inputs`); ``hint`` says which stage to run."""
    reason = outdated_inputs(path, folder=folder)
    if reason:
        raise UsageError(f"{path}: {what} is out of date: {reason}; {hint}")


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def _config_value(cfg: Mapping, dotted: str):
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _writable_folder(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and check it is a writable folder (one clear error if not)."""
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {path}: exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise UsageError(f"{flag} {path}: cannot be created (a parent is a file)") from None
    except PermissionError:
        raise UsageError(f"{flag} {path}: cannot be created (permission denied)") from None
    import tempfile
    try:   # try it: os.access says yes to root on read-only mounts
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: folder is not writable ({exc.strerror})") from None
    return path


class Run:
    """One run: validated config, output and data folders, --resume, distributed context."""

    def __init__(self, cfg: Mapping, out, data_dir=None, *, resume: str = "auto",
                 progress: bool = True, source=None, shard: tuple[int, int] | None = None,
                 ctx=None, check_folders: bool = True):
        self.cfg = cfg
        self.source = str(source or getattr(cfg, "source", None) or "<config>")
        self.out = Path(os.path.expanduser(str(out))).resolve()
        d = data_dir or _config_value(cfg, "data.dir") or self.out / "data"
        self.data_dir = Path(os.path.expanduser(str(d))).resolve()
        self.resume = resume
        self.progress = progress
        self.shard = shard
        self._ctx = ctx
        self.cache: dict[str, Any] = {}
        if check_folders:
            _writable_folder(self.out, "--out")
            _writable_folder(self.data_dir, "--data-dir")

    @classmethod
    def from_args(cls, args, schema, *, save_config_as: str | None = "config.resolved.yaml"):
        """Load ``args.config`` with ``--set``, validate it against ``schema`` (defaults filled),
        resolve ``--out``/``--data-dir``, and save the resolved config in OUT (rank 0)."""
        from shared.cli import flatten_overrides, resolve_resume
        from shared.schema import validate
        if not getattr(args, "out", None):
            raise UsageError("--out is required")
        out = Path(os.path.expanduser(args.out)).resolve()
        raw = load_config(args.config, flatten_overrides(getattr(args, "overrides", [])), out=out)
        cfg = Config(validate(raw, schema), raw.source)
        data_dir = getattr(args, "data_dir", None)
        run = cls(cfg, out, os.path.abspath(os.path.expanduser(data_dir)) if data_dir else None,
                  resume=resolve_resume(getattr(args, "resume", "auto")),
                  shard=getattr(args, "shard", None), source=raw.source)
        if save_config_as and run.is_root:
            save_config(cfg, run.out / save_config_as)
        return run

    @classmethod
    def from_config(cls, config, out, schema, *, overrides=(), data_dir=None, resume="auto",
                    progress=True, shard=None, save_config_as="config.resolved.yaml"):
        """The programmatic twin of :meth:`from_args` (tests, notebooks)."""
        import argparse
        args = argparse.Namespace(config=str(config), out=str(out), overrides=list(overrides),
                                  data_dir=None if data_dir is None else str(data_dir),
                                  resume=resume, shard=shard)
        run = cls.from_args(args, schema, save_config_as=save_config_as)
        run.progress = progress
        return run

    # -- context -----------------------------------------------------------------------------
    @property
    def ctx(self):
        if self._ctx is None:
            from shared.distributed import get_context
            self._ctx = get_context()
        return self._ctx

    @property
    def is_root(self) -> bool:
        return self._ctx.is_root if self._ctx is not None else _launcher_rank() == 0

    def log(self, *args) -> None:
        if self.is_root:
            print(*args, flush=True)

    # -- config ------------------------------------------------------------------------------
    def key(self, dotted: str, default=None):
        """Config value at ``a.b.c`` (``default`` if absent or null)."""
        value = _config_value(self.cfg, dotted)
        return default if value is None else value

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def config_values(self, keys: Iterable[str]) -> dict:
        return {k: _config_value(self.cfg, k) for k in keys}

    # -- artifacts ---------------------------------------------------------------------------
    def artifact(self, path, *, config: Iterable[str] = (), inputs: Iterable = (),
                 upstream: Mapping[str, "Artifact"] | None = None, extra: Mapping | None = None,
                 folder: bool = False, done_marker: str | None = None,
                 cache: bool = False) -> Artifact:
        """An :class:`Artifact` at ``path`` made from the config ``keys``, input files and
        upstream artifacts. ``cache=True`` (data-folder caches): reused even with
        ``--resume never`` when it matches."""
        recipe = {"config": self.config_values(config),
                  "inputs": {str(Path(p).resolve()): file_identity(p) for p in inputs},
                  "upstream": {name: a.digest for name, a in (upstream or {}).items()}}
        if extra:
            recipe["config"].update({f"<{k}>": v for k, v in extra.items()})
        return Artifact(path, recipe, folder=folder, done_marker=done_marker,
                        resume="auto" if cache else self.resume,
                        upstream_files={name: str(a.fingerprint_path.resolve())
                                        for name, a in (upstream or {}).items()})

    def start(self, art: Artifact, what: str | None = None) -> bool:
        """Decide on rank 0 whether ``art`` is done (True) or must be made; a stale output is
        removed with a one-line notice and a folder output gets its fingerprint recorded (so an
        interrupted run resumes only with the same settings). Every rank gets the same answer."""
        done = None
        if self.is_root:
            done = art.prepare(log=self.log, what=what)
            if not done and art.folder:
                art.begin()
        if self.ctx.size > 1:
            done = self.ctx.broadcast_object(done)
        return bool(done)

    def root_only(self, fn: Callable[["Run"], Any]):
        """``fn(run)`` on rank 0 while the other ranks wait; a failure stops every rank with its
        message (no hang). Returns fn's value on rank 0, None elsewhere."""
        return _on_root(self, fn, getattr(fn, "__name__", "step"))

    def cached(self, name: str, loader: Callable[[], Any]):
        """``loader()`` once per process (e.g. the prepared data shared by stages)."""
        if name not in self.cache:
            self.cache[name] = loader()
        return self.cache[name]


def _launcher_rank() -> int:
    for var in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                pass
    return 0


def my_units(run: Run, units: Sequence) -> list:
    """The share of ``units`` this process works on: every N-th from K with ``--shard K/N``,
    else spread over the Horovod ranks (all of them in a single process)."""
    if run.shard is not None:
        k, n = run.shard
    else:
        k, n = run.ctx.rank, run.ctx.size
    return [u for i, u in enumerate(units) if i % n == k]


def run_units(run: Run, all_units: Sequence, artifact_of: Callable, compute: Callable,
              desc: str = "units") -> bool:
    """Compute this process's share of ``all_units`` (:func:`my_units`) whose
    ``artifact_of(unit)`` is not fresh, with ``compute(unit)``. Returns True on the process that
    merges: rank 0 without ``--shard``, after every rank finished and rank 0 computed any unit
    still missing (made by no rank, e.g. by a failed array task)."""
    from tqdm.auto import tqdm
    todo = [u for u in my_units(run, all_units) if not artifact_of(u).fresh()]
    for u in tqdm(todo, desc=desc, disable=not run.progress or not todo):
        compute(u)
    if run.shard is not None:
        run.log(f"shard {run.shard[0]}/{run.shard[1]}: {len(todo)} unit(s) computed")
        return False
    run.ctx.barrier()
    if not run.ctx.is_root:
        return False
    done = lambda a: a.complete() and a.matches()  # noqa: E731 - made in this run, whatever --resume says
    missing = [u for u in all_units if not done(artifact_of(u))]
    for u in tqdm(missing, desc=f"{desc} (missing)", disable=not run.progress or not missing):
        compute(u)
    return True


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """A pipeline stage: ``fn(run)`` does the work (skipping fresh artifacts), ``outputs(run)``
    lists the paths it must leave behind. ``ranks="root"``: only rank 0 works, the others wait;
    ``"all"``: every rank calls ``fn`` (data-parallel training, sharded work)."""

    name: str
    fn: Callable[[Run], Any]
    outputs: Callable[[Run], list] = field(default=lambda run: [])
    ranks: str = "root"
    help: str = ""


def load_stage_times(run: Run) -> dict:
    path = run.out / STAGE_TIMES
    try:
        return dict(read_json(path)) if path.exists() else {}
    except Exception:  # noqa: BLE001 - a corrupt timing file is not worth failing a run
        return {}


def run_stages(run: Run, stages: Sequence[Stage], selected: Iterable[str] | None = None) -> dict:
    """Run the selected stages in order; returns ``{name: value of fn}``. Stage wall times are
    summed over resumed calls in ``OUT/stage_times.json``. A failure on rank 0 of a root-only
    stage stops every rank with its message (no hang)."""
    selected = [s.name for s in stages] if selected is None else list(selected)
    times = load_stage_times(run)
    values = {}
    for stage in stages:
        if stage.name not in selected:
            continue
        t0 = time.time()
        run.log(f"[{run.out.name}] stage {stage.name} ...")
        values[stage.name] = _run_one(run, stage)
        if run.is_root:
            missing = [str(p) for p in stage.outputs(run) if not Path(p).exists()]
            if missing and run.shard is None:
                raise RuntimeError(f"stage {stage.name} finished without its declared outputs: "
                                   f"{missing[:3]}")
            times[stage.name] = times.get(stage.name, 0.0) + (time.time() - t0)
            atomic_write_json(run.out / STAGE_TIMES, times)
        run.log(f"[{run.out.name}] stage {stage.name} done in {time.time() - t0:.1f} s")
    return values


def _run_one(run: Run, stage: Stage):
    if stage.ranks == "all" or run.ctx.size == 1:
        return stage.fn(run)
    return _on_root(run, stage.fn, f"stage {stage.name}")


def _on_root(run: Run, fn, what: str):
    if run.ctx.size == 1:
        return fn(run)
    error = value = None
    if run.is_root:
        try:
            value = fn(run)
        except BaseException as exc:  # noqa: BLE001 - reported to every rank below
            error = exc
    status = run.ctx.broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if status is not None:
        raise RuntimeError(f"{what} failed on rank 0: {status}")
    return value


def refresh_stage_times(run: Run, results_name: str = "results.json") -> None:
    """Bring the stage times into ``OUT/results.json`` (the figures stage runs after the
    report that writes it)."""
    path = run.out / results_name
    if not (run.is_root and path.is_file()):
        return
    res = read_json(path, "results")
    times = load_stage_times(run)
    atomic_write_json(path, {**res, "stage_seconds": times, "total_seconds": float(sum(times.values()))})


def run_pipeline(run: Run, stages: Sequence[Stage], selected: Iterable[str] | None = None) -> dict:
    """Run the selected stages, refresh the stage times; returns the report stage's value."""
    values = run_stages(run, stages, selected)
    refresh_stage_times(run)
    return values.get("report") or {}


def pipeline_main(argv, description: str, schema, stages: Sequence[Stage], result_files=()):
    """The ``python -m <package>.pipeline`` command line of either package."""
    from shared.cli import add_stages_argument, parser
    p = parser(description.split("\n")[0])
    names = [s.name for s in stages]
    add_stages_argument(p, names)
    args = p.parse_args(argv)
    run = Run.from_args(args, schema)
    res = run_pipeline(run, stages, args.stages)
    if res:
        run.log(to_json({"stage_seconds": res.get("stage_seconds"),
                         "acceptance": res.get("acceptance")}))
        run.log("results: " + " and ".join(str(run.out / f) for f in result_files))


__all__ = ["Run", "Artifact", "Stage", "run_stages", "run_pipeline", "pipeline_main", "my_units",
           "run_units", "file_identity", "output_identity", "digest", "explain_change",
           "load_stage_times", "refresh_stage_times", "fingerprint_path", "outdated_inputs",
           "require_current"]
