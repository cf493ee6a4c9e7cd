"""Fault sweep (issue 14): every entry point of both packages tried as a careless or hostile user
would, each case classified automatically.

    python -m benchmarks.fault_sweep --out sweep.json [--only PATTERN] [--jobs 2] [--keep DIR]

Cases (``--list`` prints them): bad files for every reader and ``prepare``, bad flags and configs
(typos at every level, wrong types, impossible sizes, a list as config, a ``base:`` cycle, bad
``--out``/``--resume``/``--shard``), kills (SIGKILL mid-training then resume, SIGINT), stale
folders (a setting changed after a finished stage, an input file changed, a cached file
corrupted, a checkpoint damaged at each step of its rotation), the figure wrappers, the
generator script and the umask of written files. Every case states what the *right* behaviour
is and checks it; the outcome is one of

* ``clear``     — bad input: exit code 2 and one error line naming the file/key, no traceback;
* ``ok``        — the input was fine (or the right recovery happened): correct behaviour;
* ``traceback`` — a Python traceback where the input was bad;
* ``silent``    — exit 0 but a wrong/stale result, or bad input accepted without a word;
* ``lost``      — training progress lost (a resume restarted from epoch 0);
* ``unclear``   — none of the above: non-zero exit without a clear line, several error lines,
  an error not naming the file/key, a hang, or needless recomputation;
* ``broken``    — the harness itself failed (a fixture could not be built): not a finding.

Runtime: the fixtures (one tiny finished run of each package, official-layout files) are built
once and copied for the cases that change them; the cases run ``--jobs`` at a time. Data are
tiny and synthetic (``permutation_ad/configs/tiny.yaml``, the miniature lhco config of
``tests/test_lhco_pipeline.py``, ``tests/official_layout.py``); nothing is downloaded.
The per-case JSON holds the commands, exit codes, timings and the tail of stderr.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ("clear", "ok", "traceback", "silent", "lost", "unclear", "broken")
BAD = ("traceback", "silent", "lost", "unclear")
UNWRITABLE = Path("/sys/fs")          # a folder even root cannot write in (sysfs)
PY = sys.executable


# =============================================================================================
# framework
# =============================================================================================

@dataclass
class Result:
    argv: list
    rc: int | None                    # None: killed by the harness after the timeout
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err

    def summary(self) -> dict:
        tail = self.err.strip().splitlines()[-6:]
        return {"argv": [str(a) for a in self.argv], "rc": self.rc,
                "seconds": round(self.seconds, 1), "stderr_tail": tail}


@dataclass
class Outcome:
    category: str
    detail: str = ""


@dataclass
class Case:
    name: str
    group: str
    right: str                        # what the right behaviour is
    fn: Callable


CASES: list[Case] = []


def case(name, group, right):
    def deco(fn):
        CASES.append(Case(name, group, right, fn))
        return fn
    return deco


def add_case(name, group, right, fn):
    CASES.append(Case(name, group, right, fn))


class FixtureError(RuntimeError):
    pass


class Sweep:
    """Workspace, fixtures (built once, thread-safe) and the subprocess environment."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("HOROVOD_", "OMPI_", "PMI_", "PMIX_"))}
        self.env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", PAD_DISTRIBUTED="none",
                        CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
        self._fixtures: dict = {}
        self.children: set = set()
        self._locks: dict = {}
        self._lock = threading.Lock()
        self.fixture_seconds: dict = {}

    def fixture(self, name):
        """The fixture's value, built once; with ``--keep`` a fixture finished by an earlier
        invocation in the same folder is reused (its value is in ``fixtures/<name>.done``)."""
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._fixtures:
                marker = self.root / "fixtures" / f"{name}.done"
                t0 = time.time()
                try:
                    if marker.is_file():
                        value = json.loads(marker.read_text())
                    else:
                        value = str(FIXTURES[name](self))
                        marker.parent.mkdir(parents=True, exist_ok=True)
                        marker.write_text(json.dumps(value))
                    self._fixtures[name] = ("ok", value)
                except Exception as exc:  # noqa: BLE001 - recorded, reported per case
                    self._fixtures[name] = ("error", f"{type(exc).__name__}: {exc}")
                self.fixture_seconds[name] = round(time.time() - t0, 1)
            status, value = self._fixtures[name]
        if status != "ok":
            raise FixtureError(f"fixture {name}: {value}")
        return Path(value)

    def popen(self, argv, **kw) -> subprocess.Popen:
        """A child in its own process group (killed with the sweep), umask 022."""
        p = subprocess.Popen([str(a) for a in argv], env=self.env, text=True,
                             start_new_session=True, preexec_fn=_child_setup, **kw)
        with self._lock:
            self.children.add(p)
        return p

    def forget(self, p):
        with self._lock:
            self.children.discard(p)

    def kill_children(self):
        with self._lock:
            for p in list(self.children):
                if p.poll() is None:
                    _killpg(p, signal.SIGKILL)

    def run(self, argv, *, cwd=None, timeout=900, env=None, log=None) -> Result:
        t0 = time.time()
        p = self.popen(argv, cwd=cwd or self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       **({"env": dict(self.env, **env)} if env else {}))
        try:
            out, err = p.communicate(timeout=timeout)
            res = Result(list(argv), p.returncode, out, err, time.time() - t0)
        except subprocess.TimeoutExpired:
            _killpg(p, signal.SIGKILL)
            out, err = p.communicate()
            res = Result(list(argv), None, out, err, time.time() - t0)
        finally:
            self.forget(p)
        if log is not None:
            log.append(res)
        return res


def _child_setup():
    """In the child: umask 022, and Ctrl-C handled as in a terminal (a sweep started in the
    background would otherwise pass on an ignored SIGINT)."""
    os.umask(0o022)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _text(b):
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


class Ctx:
    """What a case works with: its own folder, the fixtures, and commands it runs (recorded)."""

    def __init__(self, sweep: Sweep, c: Case):
        self.sweep, self.case = sweep, c
        self.dir = sweep.root / "cases" / c.name
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.results: list[Result] = []
        self.procs: list = []

    def fixture(self, name):
        return self.sweep.fixture(name)

    def run(self, argv, **kw) -> Result:
        return self.sweep.run(argv, log=self.results, **kw)

    def m(self, module, *args, **kw) -> Result:
        return self.run([PY, "-m", module, *args], **kw)

    def script(self, rel, *args, **kw) -> Result:
        return self.run([PY, str(REPO / rel), *args], **kw)

    def copy(self, fixture, name="run") -> Path:
        """A private copy of a fixture folder (times preserved: fingerprints stay valid)."""
        src = Path(self.fixture(fixture))
        dst = self.dir / name
        shutil.copytree(src, dst, symlinks=True)
        return dst

    def start(self, argv) -> subprocess.Popen:
        """Start a command in the background (own process group), output to files."""
        n = len(self.procs)
        out, err = open(self.dir / f"p{n}.out", "w"), open(self.dir / f"p{n}.err", "w")
        p = self.sweep.popen(argv, cwd=self.sweep.root, stdout=out, stderr=err)
        p._files, p._t0, p._argv = (out, err, n), time.time(), argv
        self.procs.append(p)
        return p

    def finish(self, p, timeout=900) -> Result:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(p, signal.SIGKILL)
            p.wait()
            rc = None
        self.sweep.forget(p)
        out, err, n = p._files
        out.close()
        err.close()
        res = Result(list(p._argv), rc, (self.dir / f"p{n}.out").read_text(),
                     (self.dir / f"p{n}.err").read_text(), time.time() - p._t0)
        self.results.append(res)
        return res


def _killpg(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def wait_for(pred, timeout=600, every=0.2, proc=None) -> bool:
    """Poll ``pred()`` until true (False on timeout or when ``proc`` ended)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return True
        except (OSError, ValueError):
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(every)
    return False


# -- judging ----------------------------------------------------------------------------------

TRACEBACK = "Traceback (most recent call last)"


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:") or ": error:" in ln]


def expect_error(res: Result, *needles, rc=2) -> Outcome:
    """Bad input: clear = exit ``rc``, one error line (the last line of stderr) naming every
    needle, no traceback."""
    if res.rc is None:
        return Outcome("unclear", f"no answer within {res.seconds:.0f} s (hang?)")
    if TRACEBACK in res.err:
        last = [ln for ln in res.err.strip().splitlines() if ln.strip()][-1:]
        return Outcome("traceback", f"rc {res.rc}: {last[0] if last else ''}"[:300])
    if res.rc == 0:
        return Outcome("silent", "exit 0: the bad input was accepted")
    lines = error_lines(res.err)
    nonblank = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    if not lines:
        return Outcome("unclear", f"rc {res.rc} without an error line: {nonblank[-1:]}"[:300])
    msg = lines[-1]
    problems = []
    if res.rc != rc:
        problems.append(f"exit {res.rc} (want {rc})")
    if len(lines) > 1:
        problems.append(f"{len(lines)} error lines")
    if nonblank and nonblank[-1] != msg:
        problems.append(f"{len(nonblank) - nonblank.index(msg) - 1} more line(s) after the error")
    missing = [str(n) for n in needles if str(n) not in msg]
    if missing:
        problems.append(f"does not name {missing}")
    if problems:
        return Outcome("unclear", "; ".join(problems) + f": {msg}"[:400])
    return Outcome("clear", msg[:300])


def expect_success(res: Result, what="") -> Outcome | None:
    """Fine input: None if exit 0, else the outcome of the failure."""
    if res.rc == 0:
        return None
    if res.rc is None:
        return Outcome("unclear", f"{what}: no answer within {res.seconds:.0f} s (hang?)")
    if TRACEBACK in res.err:
        last = [ln for ln in res.err.strip().splitlines() if ln.strip()][-1:]
        return Outcome("traceback", f"{what}: rc {res.rc}: {last[0] if last else ''}"[:300])
    return Outcome("unclear", f"{what}: fine input failed with rc {res.rc}: "
                              f"{res.err.strip().splitlines()[-1:]}"[:300])


def expect_interrupt(res: Result) -> Outcome:
    if res.rc is None:
        return Outcome("unclear", "did not stop after SIGINT")
    if TRACEBACK in res.err:
        return Outcome("traceback", f"rc {res.rc}: traceback on Ctrl-C")
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    if res.rc == 130 and lines and lines[-1].startswith("interrupted"):
        return Outcome("clear", lines[-1][:300])
    return Outcome("unclear", f"rc {res.rc}: {lines[-1:]}"[:300])


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def truncate(path, keep=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def mtimes(folder, pattern="**/*"):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in Path(folder).glob(pattern)
            if p.is_file()}


# =============================================================================================
# fixtures
# =============================================================================================

PAD_CFG = """\
# tiny permutation_ad run of the fault sweep (synthetic jets, one objective)
base: {repo}/permutation_ad/configs/tiny.yaml
model: {{objectives: [standard]}}
training: {{progress: false, tensorboard: false}}
classifier: {{progress: false, tensorboard: false}}
evaluate: {{num_jets: 8, permutation: {{num_permutations: 2, repeats: 2, jet_index: 0}}}}
"""

PAD_FILES_CFG = """\
base: {pad}
data: {{source: files, files: {{train: {d}/train.h5, val: {d}/val.h5, test: {d}/test.h5,
        zprime: {d}/zprime_test.h5}}, n_train: 30, n_val: 20, n_test: 20, n_zprime: 20}}
"""


def _fixture_pad_cfg(s):
    path = s.root / "configs" / "pad.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PAD_CFG.format(repo=REPO))
    return path


def _fixture_pad_run(s):
    """A finished tiny permutation_ad pipeline (data folder inside)."""
    out = s.root / "fixtures" / "pad_run"
    res = s.run([PY, "-m", "permutation_ad.pipeline", "--config", s.fixture("pad_cfg"),
                 "--out", out], timeout=3600)
    if res.rc != 0:
        raise FixtureError(f"pad pipeline failed rc {res.rc}: {res.err[-1500:]}")
    return out


def _fixture_pad_train3(s):
    """One density (qcd/standard) trained for 3 epochs: the checkpoint cases."""
    out = s.root / "fixtures" / "pad_train3"
    res = s.run([PY, "-m", "permutation_ad.train", "--config", s.fixture("pad_cfg"), "--out", out,
                 "--sample", "qcd", "--objective", "standard", "--set", *TRAIN3], timeout=3600)
    if res.rc != 0:
        raise FixtureError(f"pad train failed rc {res.rc}: {res.err[-1500:]}")
    return out


TRAIN3 = ("training.epochs=3", "training.patience=10")


def _fixture_pad_retrained(s):
    """The finished pad run after `train --set training.epochs=2` of qcd/standard (its
    likelihoods, report and figures are now from the old model)."""
    out = s.root / "fixtures" / "pad_retrained"
    shutil.copytree(s.fixture("pad_run"), out, symlinks=True)
    res = s.run([PY, "-m", "permutation_ad.train", "--config", s.fixture("pad_cfg"), "--out", out,
                 "--sample", "qcd", "--objective", "standard", "--set", "training.epochs=2"],
                timeout=3600)
    if res.rc != 0:
        raise FixtureError(f"retrain failed rc {res.rc}: {res.err[-1500:]}")
    (out.parent / "pad_retrained.log").write_text(res.text)
    return out


def _official():
    sys.path.insert(0, str(REPO / "tests"))
    import official_layout
    return official_layout


def _fixture_toptag(s):
    """Official-layout Top-Tagging files (pandas only, not the project's writers)."""
    d = s.root / "fixtures" / "toptag"
    _official().write_toptag_set(d, n_train=40, n_val=25, n_test=25, n_zprime=25, seed=0)
    return d


def _fixture_pad_files_cfg(s):
    path = s.root / "configs" / "pad_files.yaml"
    path.write_text(PAD_FILES_CFG.format(pad=s.fixture("pad_cfg"), d=s.fixture("toptag")))
    return path


def _fixture_lhco_cfg(s):
    """The miniature lhco config of tests/test_lhco_pipeline.py and its raw file (synthetic
    events written in the official layout with pandas)."""
    import numpy as np
    sys.path.insert(0, str(REPO / "tests"))
    from lhco_synthetic import synthetic_events
    from test_lhco_pipeline import PAPER, TINY
    d = s.root / "lhco"
    (d / "data").mkdir(parents=True, exist_ok=True)
    parts, _ = synthetic_events(500, seed=5, max_particles=80)
    label = (np.random.default_rng(1).random(500) < 0.3).astype(np.float64)
    full = np.zeros((500, 700, 3))
    full[:, :80] = parts
    _official().write_lhco_file(d / "data" / "raw.h5", full, label)
    (d / "tiny.yaml").write_text(TINY.format(paper=os.path.abspath(PAPER)))
    return d / "tiny.yaml"


def lhco_data(s) -> Path:
    return Path(s.fixture("lhco_cfg")).parent / "data"


def _fixture_lhco_run(s):
    """A finished miniature lhco pipeline (output folder; data folder shared, read only)."""
    out = s.root / "fixtures" / "lhco_out"
    res = s.run([PY, "-m", "lhco_fullphase.pipeline", "--config", s.fixture("lhco_cfg"), "--out",
                 out, "--data-dir", lhco_data(s)], timeout=3600)
    if res.rc != 0:
        raise FixtureError(f"lhco pipeline failed rc {res.rc}: {res.err[-1500:]}")
    return out


def _fixture_lhco_retrained(s):
    """The finished lhco run after its jet generator was retrained (epochs 2 -> 3)."""
    out = s.root / "fixtures" / "lhco_retrained"
    shutil.copytree(s.fixture("lhco_run"), out, symlinks=True)
    res = s.run([PY, "-m", "lhco_fullphase.train", "--config", s.fixture("lhco_cfg"), "--out", out,
                 "--data-dir", lhco_data(s), "--model", "jet", "--set", "training_jet.epochs=3"],
                timeout=3600)
    if res.rc != 0:
        raise FixtureError(f"lhco retrain failed rc {res.rc}: {res.err[-1500:]}")
    (out.parent / "lhco_retrained.log").write_text(res.text)
    return out


FIXTURES = {"pad_cfg": _fixture_pad_cfg, "pad_run": _fixture_pad_run,
            "pad_train3": _fixture_pad_train3, "pad_retrained": _fixture_pad_retrained,
            "toptag": _fixture_toptag, "pad_files_cfg": _fixture_pad_files_cfg,
            "lhco_cfg": _fixture_lhco_cfg, "lhco_run": _fixture_lhco_run,
            "lhco_retrained": _fixture_lhco_retrained}


# =============================================================================================
# entry points
# =============================================================================================

def _main_modules(pkg):
    mods = []
    for path in sorted((REPO / pkg).glob("*.py")):
        text = path.read_text()
        if '__name__ == "__main__"' in text:
            scorer = '"--run"' in text or "scoring.parser(" in text   # shared.scoring's --run
            mods.append((f"{pkg}.{path.stem}", "--run" if scorer else "--config"))
    return mods


PAD_MODULES = _main_modules("permutation_ad")
LHCO_MODULES = _main_modules("lhco_fullphase")
CONFIG_MODULES = [(m, "pad" if m.startswith("permutation_ad") else "lhco")
                  for m, style in PAD_MODULES + LHCO_MODULES if style == "--config"]


def cfg_of(c, pkg):
    return c.fixture("pad_cfg" if pkg == "pad" else "lhco_cfg")


def run_module(c, module, pkg, *extra, cfg=None, out=None, **kw):
    """``python -m module --config CFG --out OUT [extra]`` (lhco: with its own data folder)."""
    out = out or c.dir / "o"
    args = ["--config", cfg or cfg_of(c, pkg), "--out", out]
    if pkg == "lhco" and "--data-dir" not in extra:
        args += ["--data-dir", c.dir / "data"]
    return c.m(module, *args, *extra, **kw)


# =============================================================================================
# cases: configs and flags
# =============================================================================================

def _config_case(module, pkg, sets, *needles, cfg_name=None, extra=()):
    def fn(c):
        cfg = c.fixture("pad_cfg" if pkg == "pad" else "lhco_cfg")
        res = run_module(c, module, pkg, *extra, *(["--set", *sets] if sets else []))
        return expect_error(res, *[cfg if n == "CFG" else n for n in needles])
    return fn


for _mod, _pkg in CONFIG_MODULES:
    _short = _mod.replace("permutation_ad", "pad").replace("lhco_fullphase", "lhco")
    add_case(f"config/{_short}/nested-typo", "config",
             "data.n_trian=10: exit 2, one line naming the config file and 'data.n_trian'",
             _config_case(_mod, _pkg, ["data.n_trian=10"], "CFG", "'data.n_trian'"))
    add_case(f"config/{_short}/top-level-typo", "config",
             "trainig.epochs=2: exit 2, one line naming 'trainig'",
             _config_case(_mod, _pkg, ["trainig.epochs=2"], "CFG", "'trainig'"))
    add_case(f"config/{_short}/wrong-type", "config",
             "training.epochs=abc: exit 2, one line naming 'training.epochs'",
             _config_case(_mod, _pkg, ["training.epochs=abc"], "CFG", "'training.epochs'"))


def _write(path, text):
    Path(path).write_text(text)
    return path


def _cfg_file_case(pkg, make, *needles):
    """A hand-written config file (``make(c, base_cfg) -> path``) given to the pipeline."""
    def fn(c):
        cfg = make(c, cfg_of(c, pkg))
        res = run_module(c, f"{PKG[pkg]}.pipeline", pkg, cfg=cfg)
        return expect_error(res, *[str(cfg) if n == "CFG" else n for n in needles])
    return fn


PKG = {"pad": "permutation_ad", "lhco": "lhco_fullphase"}
_DEEP = {"pad": ("model.particle_net.widht=3", "'model.particle_net.widht'"),
         "lhco": ("model.particle_net.widht=3", "'model.particle_net.widht'")}
_NEG = {"pad": ("data.n_train=-5", "'data.n_train'"), "lhco": ("generation.num_events=-5",
                                                              "'generation.num_events'")}
_ZERO = {"pad": ("data.n_val=0", "'data.n_val'"), "lhco": ("generation.ddim_steps=0",
                                                          "'generation.ddim_steps'")}
_CHOICE = {"pad": ("likelihood.method=foo", "likelihood.method"),
           "lhco": ("model.sde.name=foo", "model.sde")}
_LIST = {"pad": ("data.jet_features=[eta,foo]", "data.jet_features"),
         "lhco": ("windows.sr=[3700,3300]", "windows")}

for _pkg in ("pad", "lhco"):
    _pm = f"{PKG[_pkg]}.pipeline"
    for _name, (_set, _key) in (("deep-typo", _DEEP[_pkg]), ("negative-size", _NEG[_pkg]),
                                ("zero-size", _ZERO[_pkg]), ("bad-choice", _CHOICE[_pkg]),
                                ("bad-list-value", _LIST[_pkg]),
                                ("num-particles-abc", ("data.num_particles=abc", "'data.num_particles'")),
                                ("seed-float", ("seed=1.5", "'seed'")),
                                ("seed-bool", ("seed=true", "'seed'")),
                                ("negative-lr", ("training.learning_rate=-1", "'training.learning_rate'")),
                                ("zero-batch", ("training.batch_size=0", "'training.batch_size'")),
                                ("section-scalar", ("data=5", "'data'")),
                                ("set-without-equals", ("training.epochs", "training.epochs")),
                                ("set-empty-key", ("a..b=1", "a..b"))):
        add_case(f"config/{_pkg}/{_name}", "config", f"--set {_set}: exit 2, one line naming {_key}",
                 _config_case(_pm, _pkg, [_set], "CFG", _key))

    add_case(f"config/{_pkg}/config-is-a-list", "config",
             "a config file holding a YAML list: exit 2, one line naming the file",
             _cfg_file_case(_pkg, lambda c, b: _write(c.dir / "list.yaml", "- a\n- b\n"), "CFG"))
    add_case(f"config/{_pkg}/unparsable", "config",
             "a config that is not YAML: exit 2, one line naming the file",
             _cfg_file_case(_pkg, lambda c, b: _write(c.dir / "bad.yaml", "data: {a: [1, 2\n"), "CFG"))
    add_case(f"config/{_pkg}/empty-file", "config",
             "an empty config: exit 2, one line naming a required key",
             _cfg_file_case(_pkg, lambda c, b: _write(c.dir / "empty.yaml", ""), "CFG",
                            "'data.num_particles'"))
    add_case(f"config/{_pkg}/no-data-section", "config",
             "a config without data: (num_particles required): exit 2 naming data.num_particles",
             _cfg_file_case(_pkg, (lambda c, b: _write(c.dir / "nodata.yaml", "seed: 1\n")) if _pkg == "pad"
                            else (lambda c, b: _write(c.dir / "nodata.yaml", f"base: {b}\ndata: null\n")),
                            "'data.num_particles'"))
    add_case(f"config/{_pkg}/base-cycle", "config",
             "a.yaml base: b.yaml, b.yaml base: a.yaml: exit 2, one line naming the cycle",
             _cfg_file_case(_pkg, lambda c, b: (_write(c.dir / "b.yaml", "base: a.yaml\n"),
                                                _write(c.dir / "a.yaml", "base: b.yaml\nseed: 1\n"))[1],
                            "cycle"))
    add_case(f"config/{_pkg}/base-missing", "config",
             "base: a file that does not exist: exit 2, one line naming 'base'",
             _cfg_file_case(_pkg, lambda c, b: _write(c.dir / "m.yaml", "base: nothere.yaml\n"),
                            "CFG", "'base'", "nothere.yaml"))


def _flag_case(module, pkg, make, *needles):
    def fn(c):
        extra, out = make(c)
        res = run_module(c, module, pkg, *extra, out=out)
        return expect_error(res, *needles)
    return fn


def _out_file(c):
    (c.dir / "afile").write_text("x")
    return [], c.dir / "afile"


def _out_under_file(c):
    (c.dir / "afile").write_text("x")
    return [], c.dir / "afile" / "sub"


def _data_dir_file(c):
    (c.dir / "afile").write_text("x")
    return ["--data-dir", c.dir / "afile"], None


for _pkg in ("pad", "lhco"):
    _pm = f"{PKG[_pkg]}.pipeline"
    for _name, _make, _needles in (
            ("out-is-a-file", _out_file, ("--out", "afile")),
            ("out-under-a-file", _out_under_file, ("--out", "afile")),
            ("out-unwritable", lambda c: ([], UNWRITABLE), ("--out", str(UNWRITABLE))),
            ("out-uncreatable", lambda c: ([], UNWRITABLE / "new"), ("--out",)),
            ("data-dir-is-a-file", _data_dir_file, ("--data-dir", "afile")),
            ("resume-missing-dir", lambda c: (["--resume", c.dir / "nothere"], None), ("--resume", "nothere")),
            ("stages-unknown", lambda c: (["--stages", "prepare,trian"], None), ("--stages", "trian")),
            ("unknown-flag", lambda c: (["--epochs", "3"], None), ("--epochs",))):
        add_case(f"flags/{_pkg}/{_name}", "flags", f"{_name}: exit 2, one line naming {_needles}",
                 _flag_case(_pm, _pkg, _make, *_needles))

for _module, _pkg in (("permutation_ad.evaluate", "pad"), ("lhco_fullphase.sample", "lhco"),
                      ("lhco_fullphase.classify", "lhco")):
    for _shard in ("3/2", "abc", "-1/2"):
        add_case(f"flags/{_module.replace('permutation_ad', 'pad').replace('lhco_fullphase', 'lhco')}/"
                 f"shard-{_shard.replace('/', 'of')}",
                 "flags", f"--shard {_shard}: exit 2, one line naming --shard",
                 _flag_case(_module, _pkg, lambda c, s=_shard: (["--shard", s], None), "--shard"))

add_case("flags/pad.train/sample-unknown", "flags", "--sample zprime (not trainable): exit 2 naming --sample",
         _flag_case("permutation_ad.train", "pad", lambda c: (["--sample", "zprime"], None), "--sample"))
add_case("flags/lhco.train/model-unknown", "flags", "--model both: exit 2 naming --model",
         _flag_case("lhco_fullphase.train", "lhco", lambda c: (["--model", "both"], None), "--model"))


# =============================================================================================
# cases: bad Top-Tagging files (permutation_ad prepare, score) and the readers
# =============================================================================================

def _toptag_frame(c):
    import pandas as pd
    return pd.read_hdf(Path(c.fixture("toptag")) / "train.h5", "table")


def _write_table(df, path, key="table"):
    df.to_hdf(path, key=key, format="table", mode="w")
    _official()._add_pandas_version(path, key)
    return path


def _bad_toptag(kind):
    """Make a bad variant of the official train file; returns (path, field it should name)."""
    def make(c):
        import numpy as np
        p = c.dir / f"{kind}.h5"
        good = Path(c.fixture("toptag")) / "train.h5"
        if kind == "missing":
            return c.dir / "nothere.h5", None
        if kind == "empty":
            p.write_bytes(b"")
            return p, None
        if kind == "truncated":
            p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
            return p, None
        if kind == "not-hdf5":
            p.write_text("E_0,PX_0\n1,2\n")
            return p, None
        if kind == "a-folder":
            p.mkdir()
            return p, None
        if kind == "lhco-layout":
            return lhco_data(c.sweep) / "raw.h5", "table"
        df = _toptag_frame(c)
        field = None
        if kind == "wrong-key":
            return _write_table(df, p, key="jets"), "table"
        if kind == "missing-column":
            df, field = df.drop(columns=["E_5"]), "E_5"
        elif kind == "nan":
            df.loc[df.index[3], "PX_0"], field = np.nan, "PX_0"
        elif kind == "inf":
            df.loc[df.index[3], "PZ_1"], field = np.inf, "PZ_1"
        elif kind == "strings":
            df["E_3"] = df["E_3"].astype(str)
            df.loc[df.index[2], "E_3"], field = "abc", "E_3"
        elif kind == "negative-energy":
            df.loc[df.index[1], "E_4"], field = np.float32(-7e32), "E_4"
        elif kind == "huge-eta":
            df.loc[df.index[2], ["E_1", "PX_1", "PY_1", "PZ_1"]] = np.float32([1e30, 1.0, 0.0, 1e30])
            field = "PZ_1"
        elif kind == "zero-particle-jets":
            cols = [col for col in df.columns if col.split("_")[0] in ("E", "PX", "PY", "PZ")]
            df.loc[df.index[:2], cols] = 0.0
            field = "p4"
        elif kind == "label-2":
            df.loc[df.index[0], "is_signal_new"], field = 2, "is_signal_new"
        return _write_table(df, p), field
    return make


TOPTAG_BAD = ("missing", "empty", "truncated", "not-hdf5", "a-folder", "wrong-key", "lhco-layout",
              "missing-column", "nan", "inf", "strings", "negative-energy", "huge-eta",
              "zero-particle-jets", "label-2")


def _pad_prepare_bad(kind):
    def fn(c):
        bad, fld = _bad_toptag(kind)(c)
        res = c.m("permutation_ad.prepare", "--config", c.fixture("pad_files_cfg"), "--out",
                  c.dir / "o", "--set", f"data.files.train={bad}")
        return expect_error(res, str(bad), *([fld] if fld else []))
    return fn


for _kind in TOPTAG_BAD:
    add_case(f"data/pad.prepare/{_kind}", "data",
             f"data.files.train = a {_kind} file: exit 2, one line naming the file (and field)",
             _pad_prepare_bad(_kind))


@case("data/pad.prepare/too-few-jets", "data",
      "data.n_train larger than the file holds: exit 2 naming the file and data.n_train")
def _(c):
    res = c.m("permutation_ad.prepare", "--config", c.fixture("pad_files_cfg"), "--out", c.dir / "o",
              "--set", "data.n_train=500")
    return expect_error(res, "train.h5", "data.n_train")


def _pad_score_bad(kind):
    def fn(c):
        bad, fld = _bad_toptag(kind)(c)
        res = c.m("permutation_ad.score", "--run", c.fixture("pad_run"), "--input", bad,
                  "--out", c.dir / "s.h5", "--no-progress")
        return expect_error(res, str(bad), *([fld] if fld else []))
    return fn


for _kind in ("empty", "not-hdf5", "nan", "negative-energy", "zero-particle-jets", "lhco-layout"):
    add_case(f"data/pad.score/{_kind}", "data",
             f"score --input a {_kind} file: exit 2, one line naming the file",
             _pad_score_bad(_kind))


def _score_flag(extra, *needles, run="pad_run"):
    def fn(c):
        r = c.fixture(run) if run else c.dir / "norun"
        args = ["--run", r, "--input", Path(c.fixture("toptag")) / "test.h5", "--out", c.dir / "s.h5",
                "--no-progress"]
        res = c.m("permutation_ad.score", *args, *[a(c) if callable(a) else a for a in extra])
        return expect_error(res, *needles)
    return fn


add_case("flags/pad.score/run-missing", "flags", "--run a folder that does not exist: exit 2 naming it",
         _score_flag([], "norun", run=None))
add_case("flags/pad.score/num-jets-0", "flags", "--num-jets 0: exit 2 naming --num-jets",
         _score_flag(["--num-jets", "0"], "--num-jets"))
add_case("flags/pad.score/chunk-size-0", "flags", "--chunk-size 0: exit 2 naming --chunk-size",
         _score_flag(["--chunk-size", "0"], "--chunk-size"))
add_case("flags/pad.score/untrained-density", "flags",
         "--objective likelihood (not trained in this run): exit 2 naming the model folder",
         _score_flag(["--objective", "likelihood"], "qcd_likelihood"))
add_case("flags/pad.score/shard-3of2", "flags", "--shard 3/2: exit 2 naming --shard",
         _score_flag(["--shard", "3/2"], "--shard"))


def _out_dir(c):
    (c.dir / "adir").mkdir(exist_ok=True)
    return c.dir / "adir"


def _lhco_score(extra, *needles, run=True, make_input=None):
    def fn(c):
        inp = make_input(c) if make_input else _good_lhco(c)
        args = ["--run", c.fixture("lhco_run") if run else c.dir / "norun", "--input", inp,
                "--out", c.dir / "s.h5", "--no-progress", "--data-dir", lhco_data(c.sweep)]
        res = c.m("lhco_fullphase.score", *args, *extra)
        return expect_error(res, *[n(c) if callable(n) else n for n in needles])
    return fn


if any(m == "lhco_fullphase.score" for m, _ in LHCO_MODULES):
    add_case("flags/lhco.score/run-missing", "flags", "--run a folder that does not exist: exit 2 naming it",
             _lhco_score([], "norun", run=False))
    add_case("flags/lhco.score/injection-unknown", "flags",
             "--injection 999 (not in the run): exit 2 naming it", _lhco_score(["--injection", "999"], "999"))
    add_case("flags/lhco.score/init-unknown", "flags", "--init 7 (one init trained): exit 2 naming it",
             _lhco_score(["--init", "7"], "7"))
    add_case("flags/lhco.score/method-unknown", "flags", "--method foo: exit 2 naming it",
             _lhco_score(["--method", "foo"], "foo"))
    add_case("data/lhco.score/not-hdf5", "data", "score --input a text file: exit 2 naming it",
             _lhco_score([], lambda c: "x.h5", make_input=lambda c: _write(c.dir / "x.h5", "hello")))
    add_case("data/lhco.score/toptag-layout", "data", "score --input a Top-Tagging file: exit 2 naming 'df'",
             _lhco_score([], "df", make_input=lambda c: _toptag_good(c)))
    add_case("data/lhco.score/negative-pt", "data", "score --input with a negative pT: exit 2 naming pT",
             _lhco_score([], "pT", make_input=lambda c: _bad_lhco("negative-pt")(c)[0]))


@case("flags/pad.score/out-is-a-folder", "flags", "--out an existing folder: exit 2 naming --out")
def _(c):
    (c.dir / "adir").mkdir()
    res = c.m("permutation_ad.score", "--run", c.fixture("pad_run"), "--input",
              Path(c.fixture("toptag")) / "test.h5", "--out", c.dir / "adir", "--no-progress",
              "--num-jets", "2")
    return expect_error(res, "adir")


# -- readers, in process ------------------------------------------------------------------------

def _reader_case(call, *needles):
    """``call(c)`` must raise DataFormatError whose message names every needle."""
    def fn(c):
        from shared.errors import InputError
        try:
            value = call(c)
        except InputError as exc:
            msg = str(exc)
            if "\n" in msg:
                return Outcome("unclear", f"{len(msg.splitlines())}-line message: {msg.splitlines()[0]}"[:300])
            missing = [n for n in needles if str(n) not in msg]
            if missing:
                return Outcome("unclear", f"does not name {missing}: {msg}"[:300])
            return Outcome("clear", msg[:300])
        except Exception as exc:  # noqa: BLE001 - classified
            return Outcome("traceback", f"{type(exc).__name__}: {exc}"[:300])
        n = len(value["p4"] if "p4" in value else value.get("particles", value.get("jets", [])))
        return Outcome("silent", f"returned {n} rows without an error")
    return fn


def _good_lhco(c):
    return lhco_data(c.sweep) / "raw.h5"


def _toptag_good(c):
    return Path(c.fixture("toptag")) / "train.h5"


def _read(name, **kw):
    def call(c):
        import shared.data as sd
        args = dict(kw)
        path = args.pop("path")(c) if "path" in args else (_good_lhco(c) if "lhco" in name else _toptag_good(c))
        return getattr(sd, name)(path, **args)
    return call


def _processed_file(c):
    import numpy as np

    from shared.data import write_processed
    p = c.dir / "proc.h5"
    write_processed(p, np.zeros((5, 3, 3)), np.ones((5, 3)), np.zeros((5, 2)), np.zeros(5))
    return p


for _name, _call, _needles in (
        ("read_toptag-stop-negative", _read("read_toptag", stop=-3), ("'stop'",)),
        ("read_toptag-start-beyond-stop", _read("read_toptag", start=10, stop=2), ("'start'",)),
        ("read_toptag-start-float", _read("read_toptag", start=1.5), ("'start'",)),
        ("read_toptag-chunksize-0", _read("read_toptag", chunksize=0), ("'chunksize'",)),
        ("read_lhco-start-negative", _read("read_lhco", start=-5), ("'start'",)),
        ("read_lhco-of-toptag-file", _read("read_lhco", path=_toptag_good), ("df",)),
        ("read_toptag-of-lhco-file", _read("read_toptag", path=_good_lhco), ("table",)),
        ("read_processed-start-negative", _read("read_processed", path=_processed_file, start=-2), ("start",)),
        ("read_processed-stop-negative", _read("read_processed", path=_processed_file, stop=-1), ("stop",)),
        ("read_processed-of-toptag-file", _read("read_processed", path=_toptag_good), ("constituents",)),
        ("read_processed-truncated", _read("read_processed", path=lambda c: (
            _processed_file(c), truncate(c.dir / "proc.h5"), c.dir / "proc.h5")[-1]), ("proc.h5",)),
        ("read_toptag-not-hdf5-one-line", _read("read_toptag", path=lambda c: _write(
            c.dir / "x.h5", "hello")), ("x.h5", "file"))):
    add_case(f"data/reader/{_name}", "data",
             "a bad request/file: DataFormatError, one line naming the file and field",
             _reader_case(_call, *_needles))


# =============================================================================================
# cases: bad LHCO files (lhco prepare)
# =============================================================================================

def _lhco_frame(c):
    import pandas as pd
    return pd.read_hdf(_good_lhco(c), "df")


def _write_fixed(df, path, key="df"):
    df.to_hdf(path, key=key, format="fixed", mode="w")
    _official()._add_pandas_version(path, key)
    return path


def _bad_lhco(kind):
    def make(c):
        import numpy as np
        p = c.dir / f"{kind}.h5"
        good = _good_lhco(c)
        if kind == "missing":
            return c.dir / "nothere.h5", None
        if kind == "empty":
            p.write_bytes(b"")
            return p, None
        if kind == "truncated":
            p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
            return p, None
        if kind == "not-hdf5":
            p.write_text("0,1,2\n")
            return p, None
        if kind == "toptag-layout":
            return _toptag_good(c), "df"
        df = _lhco_frame(c)
        if kind == "wrong-key":
            return _write_fixed(df, p, key="events"), "df"
        if kind == "wrong-columns":
            return _write_fixed(df.iloc[:, :2100], p), "columns"
        if kind == "nan":
            df.iloc[4, 3] = np.nan
            return _write_fixed(df, p), "3"
        if kind == "strings":
            df[7] = df[7].astype(str)
            df.iloc[1, 7] = "abc"
            return _write_fixed(df, p), "7"
        if kind == "negative-pt":
            df.iloc[2, 0] = -50.0
            return _write_fixed(df, p), "pT"
        if kind == "huge-eta":
            df.iloc[2, 1] = 1e6
            return _write_fixed(df, p), "eta"
        if kind == "label-2":
            df.iloc[0, 2100] = 2.0
            return _write_fixed(df, p), "2100"
        raise KeyError(kind)
    return make


def _lhco_prepare(c, background, *more):
    shutil.copytree(lhco_data(c.sweep), c.dir / "data")
    return c.m("lhco_fullphase.prepare", "--config", c.fixture("lhco_cfg"), "--out", c.dir / "o",
               "--data-dir", c.dir / "data", "--set", f"data.files.background={background}", *more)


def _lhco_prepare_bad(kind):
    def fn(c):
        bad, fld = _bad_lhco(kind)(c)
        return expect_error(_lhco_prepare(c, bad), str(bad), *([fld] if fld else []))
    return fn


for _kind in ("missing", "empty", "truncated", "not-hdf5", "toptag-layout", "wrong-key",
              "wrong-columns", "nan", "strings", "negative-pt", "huge-eta", "label-2"):
    add_case(f"data/lhco.prepare/{_kind}", "data",
             f"data.files.background = a {_kind} file: exit 2, one line naming the file (and field)",
             _lhco_prepare_bad(_kind))


@case("data/lhco.prepare/zero-particle-events", "data",
      "events without any particle are dropped like events with < 2 jets (counted in n_dropped), "
      "or one clear error naming the file")
def _(c):
    df = _lhco_frame(c)
    df.iloc[[3, 10, 11], :2100] = 0.0
    p = _write_fixed(df, c.dir / "zero.h5")
    res = _lhco_prepare(c, p)
    if res.rc != 0:
        return expect_error(res, str(p))
    from lhco_fullphase.artifacts import read_dijet_cache
    caches = list((c.dir / "data" / "processed").glob("background_zero_*.h5"))
    if not caches:
        return Outcome("silent", "exit 0 but no dijet cache for the file")
    attrs = read_dijet_cache(caches[0])["attrs"]
    dropped = int(attrs.get("n_dropped", -1))
    return Outcome("ok", f"dropped {dropped} events") if dropped >= 3 else \
        Outcome("silent", f"n_dropped = {dropped} < 3 empty events")


@case("data/lhco.prepare/no-dijet-events", "data",
      "a file where no event has two jets: exit 2, one line naming the file (no empty run)")
def _(c):
    df = _lhco_frame(c)
    df.iloc[:, :2100] = 0.0
    df.iloc[:, 0] = 100.0                     # one particle per event: one jet
    p = _write_fixed(df, c.dir / "onejet.h5")
    return expect_error(_lhco_prepare(c, p), "onejet")


# =============================================================================================
# cases: generator script, figure wrappers
# =============================================================================================

def _gen_case(args, *needles):
    def fn(c):
        resolved = [a(c) if callable(a) else a for a in args]
        t0 = time.time()
        res = c.script("scripts/generate_data.py", *resolved, timeout=120)
        out = expect_error(res, *needles)
        if out.category == "clear" and time.time() - t0 > 60:
            return Outcome("unclear", f"took {time.time() - t0:.0f} s: {out.detail}")
        return out
    return fn


_GEN = ["--seed", "1", "--no-progress"]
for _name, _args, _needles in (
        ("pt-window-empty", ["toptag", "--n", "5", "--out", lambda c: c.dir / "x.h5", "--pt-min", "700",
                             "--pt-max", "600"], ("--pt-min",)),
        ("max-batch-0", ["toptag", "--n", "5", "--out", lambda c: c.dir / "x.h5", "--max-batch", "0"],
         ("--max-batch",)),
        ("n-0", ["toptag", "--n", "0", "--out", lambda c: c.dir / "x.h5"], ("--n",)),
        ("n-negative", ["lhco", "--n", "-3", "--out", lambda c: c.dir / "x.h5"], ("--n",)),
        ("n-abc", ["lhco", "--n", "abc", "--out", lambda c: c.dir / "x.h5"], ("--n",)),
        ("workers-0", ["toptag", "--n", "5", "--out", lambda c: c.dir / "x.h5", "--workers", "0"],
         ("--workers",)),
        ("signal-fraction-2", ["toptag", "--n", "5", "--out", lambda c: c.dir / "x.h5",
                               "--signal-fraction", "2"], ("--signal-fraction",)),
        ("chunk-size-0", ["zprime", "--n", "5", "--out", lambda c: c.dir / "x.h5", "--chunk-size", "0"],
         ("--chunk-size",)),
        ("eta-max-negative", ["toptag", "--n", "5", "--out", lambda c: c.dir / "x.h5", "--eta-max", "-1"],
         ("--eta-max",)),
        ("unknown-command", ["higgs", "--n", "5", "--out", lambda c: c.dir / "x.h5"], ("higgs",)),
        ("out-is-a-folder", ["toptag", "--n", "5", "--out", lambda c: c.dir], ("--out",)),
        ("out-under-a-file", ["toptag", "--n", "5", "--out", lambda c: (_write(c.dir / "f", "x"),
                                                                         c.dir / "f" / "x.h5")[1]],
         ("--out",)),
        ("out-unwritable", ["toptag", "--n", "5", "--out", UNWRITABLE / "x.h5"], ("--out",))):
    add_case(f"generator/{_name}", "generator",
             "an impossible request: exit 2 within seconds, one line naming the flag, no file",
             _gen_case([*_args, *_GEN], *_needles))


def _fig(script, args, needles, prep=None):
    def fn(c):
        extra = prep(c) if prep else []
        res = c.script(f"plots/{script}.py", *[a(c) if callable(a) else a for a in args], *extra)
        return expect_error(res, *[n(c) if callable(n) else n for n in needles])
    return fn


def _pad_run_without(c, *rel):
    run = c.copy("pad_run")
    for r in rel:
        p = run / r
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return run


add_case("plots/pad-fig1-run-missing", "plots", "--run a missing folder: exit 2 naming it",
         _fig("fig1_permutations", ["--run", lambda c: c.dir / "norun"], ["norun"]))
add_case("plots/pad-fig2-no-eval", "plots", "--run without likelihoods: exit 2 naming the eval files",
         _fig("fig2_scores_qcd", ["--run", lambda c: _pad_run_without(c, "eval")], ["loglik"]))
add_case("plots/pad-fig3-corrupt-results", "plots", "corrupt results.json: exit 2 naming it",
         _fig("fig3_sic", ["--run", lambda c: (lambda r: (_write(r / "results.json", "{oops"), r)[1])(
             c.copy("pad_run"))], ["results.json"]))
add_case("plots/pad-fig5-no-predictions", "plots", "--run without predictions: exit 2 naming roc_top.npz",
         _fig("fig5_roc", ["--run", lambda c: _pad_run_without(c, "predictions")], ["roc_top"]))
add_case("plots/pad-fig6-out-under-a-file", "plots", "--out STEM under a file: exit 2 naming it",
         _fig("fig6_nll", ["--run", lambda c: c.fixture("pad_run"), "--out",
                           lambda c: (_write(c.dir / "f", "x"), c.dir / "f" / "stem")[1]], ["f"]))
add_case("plots/lhco-fig4-run-missing", "plots", "--run a missing folder: exit 2 naming it",
         _fig("lhco_fig4_jets", ["--run", lambda c: c.dir / "norun"], ["norun"]))
add_case("plots/lhco-fig6-unknown-injection", "plots", "--injection 999 (not in the run): exit 2 naming it",
         _fig("lhco_fig6_sic_roc", ["--run", lambda c: c.fixture("lhco_run"), "--injection", "999"],
              ["999"]))
add_case("plots/lhco-fig5-no-generated", "plots", "--run without generated events: exit 2 naming them",
         _fig("lhco_fig5_particles", ["--run", lambda c: (lambda r: (shutil.rmtree(r / "generated"), r)[1])(
             c.copy("lhco_run")), "--data-dir", lambda c: lhco_data(c.sweep)], ["generated"]))


def _npz(c, name, **arrays):
    import numpy as np
    p = c.dir / name
    np.savez(p, **arrays)
    return p


for _name, _make, _needles in (
        ("missing-file", lambda c: [c.dir / "none.npz"], ["none.npz"]),
        ("not-npz", lambda c: [_write(c.dir / "x.npz", "hello")], ["x.npz"]),
        ("no-labels", lambda c: [_npz(c, "s.npz", scores_a=[0.1, 0.2])], ["s.npz"]),
        ("length-mismatch", lambda c: [_npz(c, "s.npz", scores_a=[0.1, 0.2], labels_a=[0, 1, 1])],
         ["s.npz"]),
        ("labels-count", lambda c: [_npz(c, "s.npz", scores_a=[0.1, 0.2], labels_a=[0, 1]),
                                    "--labels", "a", "b"], ["--labels"])):
    add_case(f"plots/plot_sic-{_name}", "plots", f"plot_sic.py with {_name}: exit 2, one line naming it",
             (lambda make, needles: lambda c: expect_error(
                 c.script("plots/plot_sic.py", *make(c), "--out", c.dir / "sic"), *needles))(_make, _needles))


# =============================================================================================
# cases: stale outputs, permutation_ad
# =============================================================================================

def pad_train(c, run, *sets, sample="qcd", extra=()):
    return c.m("permutation_ad.train", "--config", c.fixture("pad_cfg"), "--out", run, "--sample",
               sample, "--objective", "standard", *extra, *(["--set", *sets] if sets else []))


def pad_pipe(c, run, stages, *sets):
    return c.m("permutation_ad.pipeline", "--config", c.fixture("pad_cfg"), "--out", run,
               "--stages", stages, *(["--set", *sets] if sets else []))


def history_len(run, model="qcd_standard"):
    return len(read_json(Path(run) / "models" / model / "train_summary.json")["history"])


@case("stale/pad/rerun-unchanged", "stale",
      "the same pipeline again: every stage reused ('up to date'), no file of models/ or eval/ rewritten")
def _(c):
    run = c.copy("pad_run")
    before = mtimes(run, "models/**/*") | mtimes(run, "eval/**/*") | mtimes(run, "data/**/*")
    res = c.m("permutation_ad.pipeline", "--config", c.fixture("pad_cfg"), "--out", run)
    if (bad := expect_success(res, "rerun")):
        return bad
    after = mtimes(run, "models/**/*") | mtimes(run, "eval/**/*") | mtimes(run, "data/**/*")
    changed = [k for k in before if after.get(k) != before[k] and not k.endswith(".fingerprint.json")]
    if changed:
        return Outcome("unclear", f"recomputed without need: {changed[:3]}")
    return Outcome("ok", "nothing recomputed")


@case("stale/pad/train-epochs-changed", "stale",
      "train --set training.epochs=2 after a finished 1-epoch run: trains 2 epochs with a notice "
      "naming training.epochs")
def _(c):
    run = c.copy("pad_run")
    res = pad_train(c, run, "training.epochs=2")
    if (bad := expect_success(res, "train")):
        return bad
    n = history_len(run)
    if n != 2:
        return Outcome("silent", f"history has {n} epoch(s): the 1-epoch model was reused")
    if "training.epochs" not in res.text:
        return Outcome("silent", "retrained without a notice naming training.epochs")
    return Outcome("ok", "retrained for 2 epochs with a notice")


@case("stale/pad/num-particles-changed", "stale",
      "data.num_particles=8: processed files remade with P=8 and both densities retrained, with a "
      "notice naming data.num_particles")
def _(c):
    import h5py
    run = c.copy("pad_run")
    old = read_json(run / "models" / "qcd_standard" / "fingerprint.json")["digest"]
    res = pad_pipe(c, run, "prepare,train", "data.num_particles=8")
    if (bad := expect_success(res, "prepare,train")):
        return bad
    with h5py.File(run / "data" / "processed" / "qcd_train.h5") as f:
        p = f["constituents"].shape[1]
    if p != 8:
        return Outcome("silent", f"processed file still has P={p}")
    if read_json(run / "models" / "qcd_standard" / "fingerprint.json")["digest"] == old:
        return Outcome("silent", "density of P=12 reused")
    if "data.num_particles" not in res.text:
        return Outcome("silent", "remade without a notice naming data.num_particles")
    return Outcome("ok", "P=8, retrained, with a notice")


@case("stale/pad/evaluate-after-retrain", "stale",
      "train,evaluate with training.epochs=2: the likelihood units are recomputed from the "
      "retrained density (their fingerprints name its new digest)")
def _(c):
    run = c.copy("pad_run")
    res = pad_pipe(c, run, "train,evaluate", "training.epochs=2")
    if (bad := expect_success(res, "train,evaluate")):
        return bad
    dens = read_json(run / "models" / "qcd_standard" / "fingerprint.json")["digest"]
    unit = read_json(run / "eval" / "loglik" / "qcd_standard" / "qcd_0000.npz.fingerprint.json")
    if unit["recipe"]["upstream"]["density"] != dens:
        return Outcome("silent", "likelihood unit still from the old density")
    return Outcome("ok", "units recomputed from the retrained density")


@case("stale/pad/report-after-retrain", "stale",
      "report after a retrain without evaluate: stops with one line naming the stale likelihood "
      "file (or recomputes it) - never a results.json from the old model")
def _(c):
    run = c.copy("pad_retrained")
    res = pad_pipe(c, run, "report", "training.epochs=2")
    dens = read_json(run / "models" / "qcd_standard" / "fingerprint.json")["digest"]
    unit = read_json(run / "eval" / "loglik" / "qcd_standard" / "qcd_0000.npz.fingerprint.json")
    if res.rc == 0:
        if unit["recipe"]["upstream"]["density"] == dens:
            return Outcome("ok", "likelihoods recomputed before the report")
        return Outcome("silent", "results.json written from likelihoods of the old model")
    return expect_error(res, "loglik")


@case("stale/pad/figure-after-retrain", "stale",
      "plots/fig2_scores_qcd.py --run after the QCD density was retrained: exit 2 naming the stale "
      "likelihood file, never a figure of the old model")
def _(c):
    run = c.copy("pad_retrained")
    res = c.script("plots/fig2_scores_qcd.py", "--run", run, "--out", c.dir / "fig2")
    if res.rc == 0:
        return Outcome("silent", "figure drawn from likelihoods of the old model")
    return expect_error(res, "loglik")


@case("stale/pad/score-after-config-changed", "stale",
      "permutation_ad.score after the run's config changed (prepare --set training.epochs=5 "
      "rewrote config.resolved.yaml): exit 2 naming the changed key")
def _(c):
    run = c.copy("pad_run")
    res = c.m("permutation_ad.prepare", "--config", c.fixture("pad_cfg"), "--out", run, "--set",
              "training.epochs=5")
    if (bad := expect_success(res, "prepare")):
        return bad
    res = c.m("permutation_ad.score", "--run", run, "--input", Path(c.fixture("toptag")) / "test.h5",
              "--out", c.dir / "s.h5", "--num-jets", "2", "--no-progress")
    return expect_error(res, "training.epochs")


@case("stale/pad/score-fine", "stale", "permutation_ad.score on a finished run: scores written, exit 0")
def _(c):
    res = c.m("permutation_ad.score", "--run", c.fixture("pad_run"), "--input",
              Path(c.fixture("toptag")) / "test.h5", "--out", c.dir / "s.h5", "--num-jets", "3",
              "--no-progress")
    if (bad := expect_success(res, "score")):
        return bad
    return Outcome("ok", "scored") if (c.dir / "s.h5").is_file() else Outcome("silent", "no output")


@case("stale/pad/num-jets-changed", "stale",
      "evaluate,report with evaluate.num_jets=12: merged likelihoods hold 12 jets per test sample")
def _(c):
    import numpy as np
    run = c.copy("pad_run")
    res = pad_pipe(c, run, "evaluate,report", "evaluate.num_jets=12")
    if (bad := expect_success(res, "evaluate,report")):
        return bad
    with np.load(run / "eval" / "loglik_qcd_standard.npz") as d:
        n = len(d["logp_qcd"])
    return Outcome("ok", "12 jets") if n == 12 else Outcome("silent", f"merged file holds {n} jets")


@case("stale/pad/likelihood-setting-changed", "stale",
      "evaluate --set likelihood.rtol=0.005: every unit recomputed with a notice naming "
      "likelihood.rtol")
def _(c):
    run = c.copy("pad_run")
    res = c.m("permutation_ad.evaluate", "--config", c.fixture("pad_cfg"), "--out", run, "--set",
              "likelihood.rtol=0.005")
    if (bad := expect_success(res, "evaluate")):
        return bad
    fp = read_json(run / "eval" / "loglik" / "qcd_standard" / "top_0000.npz.fingerprint.json")
    if fp["recipe"]["config"]["likelihood"]["rtol"] != 0.005:
        return Outcome("silent", "unit not recomputed")
    if "likelihood" not in res.text:
        return Outcome("silent", "recomputed without a notice")
    return Outcome("ok", "recomputed with a notice")


@case("stale/pad/resume-never", "stale",
      "train --resume never: the finished density is trained again (notice), not reused")
def _(c):
    run = c.copy("pad_run")
    ck = run / "models" / "qcd_standard" / "checkpoints" / "last" / "weights.npz"
    before = ck.stat().st_mtime_ns
    res = pad_train(c, run, extra=("--resume", "never"))
    if (bad := expect_success(res, "train")):
        return bad
    return Outcome("ok", "retrained") if ck.stat().st_mtime_ns != before else \
        Outcome("silent", "--resume never reused the model")


@case("stale/pad/processed-file-corrupted", "stale",
      "a truncated processed file in the data folder: remade (notice) or one line naming it")
def _(c):
    run = c.copy("pad_run")
    p = run / "data" / "processed" / "qcd_test.h5"
    truncate(p)
    res = pad_pipe(c, run, "prepare,evaluate")
    if res.rc == 0:
        import h5py
        try:
            with h5py.File(p) as f:
                f["constituents"].shape
        except OSError:
            return Outcome("silent", "exit 0 with the processed file still corrupt")
        return Outcome("ok", "processed file remade")
    return expect_error(res, "qcd_test.h5")


@case("stale/pad/loglik-unit-corrupted", "stale",
      "a truncated likelihood unit: recomputed, or one line naming it")
def _(c):
    run = c.copy("pad_run")
    unit = run / "eval" / "loglik" / "qcd_standard" / "top_0000.npz"
    truncate(unit)
    res = c.m("permutation_ad.evaluate", "--config", c.fixture("pad_cfg"), "--out", run)
    if res.rc == 0:
        import numpy as np
        try:
            np.load(unit)["logp"]
        except Exception:  # noqa: BLE001
            return Outcome("silent", "exit 0 with the unit still corrupt")
        return Outcome("ok", "unit recomputed")
    return expect_error(res, "top_0000.npz")


@case("stale/pad/merged-loglik-corrupted", "stale",
      "a truncated merged likelihood file, then the report: one line naming it (or remade)")
def _(c):
    run = c.copy("pad_run")
    truncate(run / "eval" / "loglik_qcd_standard.npz")
    res = pad_pipe(c, run, "report")
    if res.rc == 0:
        return Outcome("silent", "report written from a corrupt likelihood file")
    return expect_error(res, "loglik_qcd_standard.npz")


@case("stale/pad/classifier-predictions-corrupted", "stale",
      "a truncated classifier predictions file, then the report: one line naming it (or remade)")
def _(c):
    run = c.copy("pad_run")
    truncate(run / "classifier" / "predictions.npz")
    res = pad_pipe(c, run, "classify,report")
    if res.rc == 0:
        import numpy as np
        try:
            np.load(run / "classifier" / "predictions.npz")["prob_qcd"]
        except Exception:  # noqa: BLE001
            return Outcome("silent", "exit 0 with corrupt predictions")
        return Outcome("ok", "predictions remade")
    return expect_error(res, "predictions.npz")


@case("stale/pad/report-without-evaluate", "stale",
      "the report stage of a run whose evaluate stage never ran: one line naming the missing "
      "likelihoods (not an empty table1.md with exit 0)")
def _(c):
    run = _pad_run_without(c, "eval", "results.json", "table1.md", "predictions")
    res = pad_pipe(c, run, "report")
    if res.rc == 0:
        return Outcome("silent", "exit 0: a report without any likelihood")
    return expect_error(res, "loglik")


@case("stale/pad/evaluate-before-train", "stale",
      "evaluate in a folder without trained densities: exit 2 naming the missing model")
def _(c):
    run = _pad_run_without(c, "models", "eval", "classifier")
    res = c.m("permutation_ad.evaluate", "--config", c.fixture("pad_cfg"), "--out", run)
    return expect_error(res, "qcd_standard")


def _files_prepare(c, d, train="train.h5"):
    return c.m("permutation_ad.prepare", "--config", c.fixture("pad_files_cfg"), "--out", c.dir / "o",
               "--data-dir", c.dir / "data", "--set", f"data.files.train={d / train}",
               f"data.files.val={d / 'val.h5'}", f"data.files.test={d / 'test.h5'}",
               f"data.files.zprime={d / 'zprime_test.h5'}")


def _md5(p):
    import hashlib
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


@case("stale/pad/input-file-rewritten", "stale",
      "the raw train file replaced by other jets (same name): processed split remade with a notice "
      "naming the input")
def _(c):
    d = c.dir / "raw"
    _official().write_toptag_set(d, n_train=40, n_val=25, n_test=25, n_zprime=25, seed=0)
    if (bad := expect_success(_files_prepare(c, d), "prepare")):
        return bad
    proc = c.dir / "data" / "processed" / "qcd_train.h5"
    before = _md5(proc)
    other = c.dir / "raw2"
    _official().write_toptag_set(other, n_train=40, n_val=25, n_test=25, n_zprime=25, seed=1)
    shutil.copy(other / "train.h5", d / "train.h5")
    res = _files_prepare(c, d)
    if (bad := expect_success(res, "prepare again")):
        return bad
    if _md5(proc) == before:
        return Outcome("silent", "processed split kept from the old file")
    if "train.h5" not in res.text:
        return Outcome("silent", "remade without a notice naming the input")
    return Outcome("ok", "remade with a notice")


@case("stale/pad/input-file-touched", "stale",
      "the raw train file touched (content unchanged): processed split reused")
def _(c):
    d = c.dir / "raw"
    _official().write_toptag_set(d, n_train=40, n_val=25, n_test=25, n_zprime=25, seed=0)
    if (bad := expect_success(_files_prepare(c, d), "prepare")):
        return bad
    proc = c.dir / "data" / "processed" / "qcd_train.h5"
    before = proc.stat().st_mtime_ns
    os.utime(d / "train.h5")
    if (bad := expect_success(_files_prepare(c, d), "prepare again")):
        return bad
    return Outcome("ok", "reused") if proc.stat().st_mtime_ns == before else \
        Outcome("unclear", "remade although the content did not change")


@case("stale/pad/input-file-switched", "stale",
      "data.files.train switched to another file in the same folder: processed split remade with a "
      "notice naming data.files.train")
def _(c):
    d = c.dir / "raw"
    _official().write_toptag_set(d, n_train=40, n_val=25, n_test=25, n_zprime=25, seed=0)
    other = c.dir / "raw2"
    _official().write_toptag_set(other, n_train=40, n_val=25, n_test=25, n_zprime=25, seed=1)
    shutil.copy(other / "train.h5", d / "train_b.h5")
    if (bad := expect_success(_files_prepare(c, d), "prepare")):
        return bad
    proc = c.dir / "data" / "processed" / "qcd_train.h5"
    before = _md5(proc)
    res = _files_prepare(c, d, train="train_b.h5")
    if (bad := expect_success(res, "prepare again")):
        return bad
    if _md5(proc) == before:
        return Outcome("silent", "processed split kept from the old file")
    return Outcome("ok", "remade") if "data.files.train" in res.text else \
        Outcome("silent", "remade without a notice naming data.files.train")


# -- checkpoints ---------------------------------------------------------------------------------

def _ckpt_case(damage, right):
    """On a 3-epoch training whose train_summary.json is removed (an interrupted run), damage the
    checkpoints; the same command must resume (from last, last.prev or best), never restart."""
    def fn(c):
        run = c.copy("pad_train3")
        model = run / "models" / "qcd_standard"
        (model / "train_summary.json").unlink()
        damage(model / "checkpoints")
        res = pad_train(c, run, *TRAIN3)
        if (bad := expect_success(res, "resume")):
            return bad
        if "resumed from" not in res.text:
            return Outcome("lost", "the training started again from epoch 0")
        line = next(ln for ln in res.text.splitlines() if "resumed from" in ln)
        return Outcome("ok", line.strip()[:200])
    return fn


def _trunc(rel):
    return lambda ck: truncate(ck / rel)


def _to_prev(ck):
    os.replace(ck / "last", ck / "last.prev")


def _stale_tmp(ck):
    shutil.copytree(ck / "last", ck / ".last.tmp-abc123")
    truncate(ck / ".last.tmp-abc123" / "weights.npz")


def _prev_and_tmp(ck):
    os.replace(ck / "last", ck / "last.prev")
    shutil.copytree(ck / "last.prev", ck / ".last.tmp-xyz")


def _last_empty(ck):
    shutil.rmtree(ck / "last")
    (ck / "last").mkdir()


for _name, _damage in (("weights-truncated", _trunc("last/weights.npz")),
                       ("state-truncated", _trunc("last/state.json")),
                       ("optimizer-truncated", _trunc("last/optimizer.npz")),
                       ("crash-after-moved-to-prev", _to_prev),
                       ("crash-before-moved-in", _prev_and_tmp),
                       ("stale-temp-folder", _stale_tmp),
                       ("last-empty-folder", _last_empty)):
    add_case(f"kill/pad/checkpoint-{_name}", "kill",
             f"interrupted training with checkpoints/{_name}: resumes (from last.prev or best with a "
             "warning), never from epoch 0", _ckpt_case(_damage, ""))


@case("kill/pad/checkpoint-stale-temp-cleaned", "kill",
      "a half-written .last.tmp-* folder is removed by the next save")
def _(c):
    run = c.copy("pad_train3")
    model = run / "models" / "qcd_standard"
    (model / "train_summary.json").unlink()
    _stale_tmp(model / "checkpoints")
    res = pad_train(c, run, "training.epochs=4", "training.patience=10")
    if (bad := expect_success(res, "train")):
        return bad
    left = list((model / "checkpoints").glob(".last.tmp-*"))
    return Outcome("ok", "cleaned") if not left else Outcome("silent", f"left behind: {left}")


@case("kill/pad/best-corrupted-evaluate", "kill",
      "a finished density whose checkpoints/best/weights.npz is truncated, then evaluate: falls "
      "back to last with a warning, or one line naming the checkpoint")
def _(c):
    run = c.copy("pad_run")
    truncate(run / "models" / "qcd_standard" / "checkpoints" / "best" / "weights.npz")
    shutil.rmtree(run / "eval")
    res = c.m("permutation_ad.evaluate", "--config", c.fixture("pad_cfg"), "--out", run)
    if res.rc == 0:
        return Outcome("ok", "fell back") if "best" in res.text else \
            Outcome("silent", "evaluated without a word about the corrupt checkpoint")
    return expect_error(res, "weights.npz")


@case("kill/pad/resume-dir-other-batch-size", "kill",
      "--resume DIR of a checkpoint written with another batch size: exit 2 naming the mismatch")
def _(c):
    src = Path(c.fixture("pad_train3")) / "models" / "qcd_standard" / "checkpoints" / "last"
    ck = c.dir / "ck"
    shutil.copytree(src, ck)
    res = pad_train(c, c.dir / "o", "training.batch_size=16", extra=("--resume", ck))
    return expect_error(res, "ck")


@case("kill/pad/resume-dir-empty", "kill",
      "--resume DIR of an empty folder: exit 2 naming it")
def _(c):
    (c.dir / "ck").mkdir()
    res = pad_train(c, c.dir / "o", extra=("--resume", c.dir / "ck"))
    return expect_error(res, "ck")


def _kill_train(c, cmd, state_json, min_epoch=2, sig=signal.SIGKILL):
    p = c.start(cmd)
    ok = wait_for(lambda: read_json(state_json)["epoch"] >= min_epoch, timeout=900, proc=p)
    epoch = read_json(state_json)["epoch"] if state_json.is_file() else 0
    _killpg(p, sig)
    res = c.finish(p, timeout=300)
    return ok, epoch, res


@case("kill/pad/sigkill-mid-training", "kill",
      "SIGKILL after epoch >= 2 of a 12-epoch training, then the same command: resumes after the "
      "last saved epoch and finishes (history of 12 or early-stopped, no restart)")
def _(c):
    cmd = [PY, "-m", "permutation_ad.train", "--config", c.fixture("pad_cfg"), "--out", c.dir / "o",
           "--sample", "qcd", "--objective", "standard", "--set", "training.epochs=12",
           "training.patience=20"]
    state = c.dir / "o" / "models" / "qcd_standard" / "checkpoints" / "last" / "state.json"
    ok, epoch, _ = _kill_train(c, cmd, state)
    if not ok:
        return Outcome("broken", "training ended before it could be killed")
    res = c.run(cmd)
    if (bad := expect_success(res, "resume")):
        return bad
    if f"after epoch {epoch}" not in res.text:
        return Outcome("lost", f"killed after epoch {epoch}; the rerun did not resume from it")
    n = history_len(c.dir / "o")
    return Outcome("ok", f"killed after epoch {epoch}, resumed, {n} epochs in the history")


@case("kill/pad/sigint-mid-training", "kill",
      "SIGINT during training: exit 130 with one line naming the last checkpoint, no traceback")
def _(c):
    cmd = [PY, "-m", "permutation_ad.train", "--config", c.fixture("pad_cfg"), "--out", c.dir / "o",
           "--sample", "qcd", "--objective", "standard", "--set", "training.epochs=40",
           "training.patience=50"]
    state = c.dir / "o" / "models" / "qcd_standard" / "checkpoints" / "last" / "state.json"
    ok, epoch, res = _kill_train(c, cmd, state, min_epoch=1, sig=signal.SIGINT)
    if not ok:
        return Outcome("broken", "training ended before it could be interrupted")
    out = expect_interrupt(res)
    if out.category == "clear" and "checkpoints/" not in out.detail:
        return Outcome("unclear", f"does not name the checkpoint: {out.detail}")
    return out


@case("kill/pad/sigint-mid-evaluate", "kill",
      "SIGINT during the likelihood evaluation: exit 130 with one line, no traceback")
def _(c):
    run = _pad_run_without(c, "eval")
    p = c.start([PY, "-m", "permutation_ad.evaluate", "--config", c.fixture("pad_cfg"), "--out", run,
                 "--set", "evaluate.num_jets=48"])
    if not wait_for(lambda: any((run / "eval").rglob("*.npz")), proc=p):
        c.finish(p)
        return Outcome("broken", "evaluate ended before it could be interrupted")
    _killpg(p, signal.SIGINT)
    return expect_interrupt(c.finish(p, timeout=300))


@case("kill/pad/sigkill-mid-evaluate", "kill",
      "SIGKILL during evaluate, then evaluate again: finishes, reusing the units already written")
def _(c):
    import numpy as np
    run = _pad_run_without(c, "eval")
    cmd = [PY, "-m", "permutation_ad.evaluate", "--config", c.fixture("pad_cfg"), "--out", run,
           "--set", "evaluate.num_jets=16", "evaluate.chunk_size=4"]
    p = c.start(cmd)
    units = lambda: list((run / "eval" / "loglik").rglob("*.npz.fingerprint.json"))  # noqa: E731
    if not wait_for(lambda: len(units()) >= 2, proc=p):
        c.finish(p)
        return Outcome("broken", "evaluate ended before it could be killed")
    _killpg(p, signal.SIGKILL)
    c.finish(p)
    done = {str(u): u.stat().st_mtime_ns for u in units()}
    res = c.run(cmd)
    if (bad := expect_success(res, "evaluate again")):
        return bad
    redone = [u for u, t in done.items() if Path(u).stat().st_mtime_ns != t]
    with np.load(run / "eval" / "loglik_qcd_standard.npz") as d:
        n = len(d["logp_top"])
    if n != 16:
        return Outcome("silent", f"merged file holds {n} jets, want 16")
    if redone:
        return Outcome("unclear", f"{len(redone)} finished unit(s) recomputed")
    return Outcome("ok", f"{len(done)} unit(s) reused, merged 16 jets")


# =============================================================================================
# cases: stale outputs and kills, lhco_fullphase
# =============================================================================================

def lhco_cmd(c, module, run, *extra, sets=()):
    return [PY, "-m", f"lhco_fullphase.{module}", "--config", c.fixture("lhco_cfg"), "--out", run,
            "--data-dir", lhco_data(c.sweep), *extra, *(["--set", *sets] if sets else [])]


@case("stale/lhco/rerun-unchanged", "stale",
      "the same lhco pipeline again: every stage reused, no model/generated/classify file rewritten")
def _(c):
    run = c.copy("lhco_run")
    before = mtimes(run, "models/**/*") | mtimes(run, "generated/**/*") | mtimes(run, "classify/**/*")
    res = c.run(lhco_cmd(c, "pipeline", run))
    if (bad := expect_success(res, "rerun")):
        return bad
    after = mtimes(run, "models/**/*") | mtimes(run, "generated/**/*") | mtimes(run, "classify/**/*")
    changed = [k for k in before if after.get(k) != before[k]]
    return Outcome("unclear", f"recomputed without need: {changed[:3]}") if changed else \
        Outcome("ok", "nothing recomputed")


@case("stale/lhco/train-epochs-changed", "stale",
      "train --model jet --set training_jet.epochs=3 after a finished 2-epoch run: retrained for 3 "
      "epochs with a notice naming training_jet.epochs; the same command again reuses it")
def _(c):
    run = Path(c.fixture("lhco_retrained"))
    log = (run.parent / "lhco_retrained.log").read_text()
    n = read_json(run / "models" / "diffusion" / "jet" / "train_summary.json")["epochs_run"]
    if n != 3:
        return Outcome("silent", f"epochs_run = {n}: the 2-epoch model was reused")
    if "training_jet.epochs" not in log and "epochs" not in log:
        return Outcome("silent", "retrained without a notice naming the key")
    res = c.run(lhco_cmd(c, "train", c.copy("lhco_retrained"), "--model", "jet",
                         sets=["training_jet.epochs=3"]))
    if (bad := expect_success(res, "train again")):
        return bad
    return Outcome("ok", "retrained with a notice, then reused") if "up to date" in res.text else \
        Outcome("unclear", "the same command retrained again")


@case("stale/lhco/sample-after-retrain", "stale",
      "sample after the jet generator was retrained: generated events remade with a notice")
def _(c):
    run = c.copy("lhco_retrained")
    before = (run / "generated" / "diffusion" / "sr.h5").stat().st_mtime_ns
    res = c.run(lhco_cmd(c, "sample", run, sets=["training_jet.epochs=3"]))
    if (bad := expect_success(res, "sample")):
        return bad
    if (run / "generated" / "diffusion" / "sr.h5").stat().st_mtime_ns == before:
        return Outcome("silent", "generated events of the old generator reused")
    return Outcome("ok", "regenerated") if "upstream" in res.text or "making it again" in res.text \
        else Outcome("silent", "regenerated without a notice")


@case("stale/lhco/figure-after-retrain", "stale",
      "plots/lhco_fig4_jets.py --run after the jet generator was retrained: exit 2 naming the stale "
      "generated file, never a figure of the old generator")
def _(c):
    run = c.copy("lhco_retrained")
    res = c.script("plots/lhco_fig4_jets.py", "--run", run, "--data-dir", lhco_data(c.sweep),
                   "--out", c.dir / "fig4")
    if res.rc == 0:
        return Outcome("silent", "figure drawn from events of the old generator")
    return expect_error(res, "generated")


@case("stale/lhco/evaluate-after-retrain", "stale",
      "evaluate after the generator was retrained (classify not rerun): the diffusion units are "
      "left out with a notice (missing_units), never scored as current")
def _(c):
    run = c.copy("lhco_retrained")
    res = c.run(lhco_cmd(c, "evaluate", run, sets=["training_jet.epochs=3"]))
    if (bad := expect_success(res, "evaluate")):
        return bad
    ev = read_json(run / "results_eval.json")
    if not ev["missing_units"] or "diffusion" in ev["scan"] and ev["scan"]["diffusion"]:
        return Outcome("silent", "results_eval.json scores the old generator's units as current")
    return Outcome("ok", f"left out {len(ev['missing_units'])} unit(s) with a notice") \
        if "not finished" in res.text else Outcome("silent", "left out without a word")


@case("stale/lhco/ddim-steps-changed", "stale",
      "sample --set generation.ddim_steps=3: events regenerated with a notice naming the key")
def _(c):
    run = c.copy("lhco_run")
    res = c.run(lhco_cmd(c, "sample", run, sets=["generation.ddim_steps=3"]))
    if (bad := expect_success(res, "sample")):
        return bad
    from lhco_fullphase.artifacts import read_generated
    steps = read_generated(run / "generated" / "diffusion" / "sr.h5")["attrs"]["steps"]
    if int(steps) != 3:
        return Outcome("silent", f"generated file has steps={steps}")
    return Outcome("ok", "regenerated") if "generation.ddim_steps" in res.text else \
        Outcome("silent", "regenerated without a notice naming the key")


@case("stale/lhco/generated-corrupted", "stale",
      "a truncated generated/diffusion/sr.h5, then classify: regenerated, or one line naming the file")
def _(c):
    run = c.copy("lhco_run")
    truncate(run / "generated" / "diffusion" / "sr.h5")
    shutil.rmtree(run / "classify")
    res = c.run(lhco_cmd(c, "classify", run))
    if res.rc == 0:
        return Outcome("silent", "classified from a corrupt generated file")
    return expect_error(res, "sr.h5")


def _private_lhco(c):
    data = c.dir / "data"
    shutil.copytree(lhco_data(c.sweep), data)
    return data


@case("stale/lhco/raw-file-rewritten", "stale",
      "the raw background file replaced by other events: dijet cache and prepared data remade with "
      "a notice naming the input")
def _(c):
    import numpy as np
    data = _private_lhco(c)
    cmd = [PY, "-m", "lhco_fullphase.prepare", "--config", c.fixture("lhco_cfg"), "--out", c.dir / "o",
           "--data-dir", data]
    if (bad := expect_success(c.run(cmd), "prepare")):
        return bad
    cache = next((data / "processed").glob("background_raw_*.h5"))
    before = _md5(cache)
    sys.path.insert(0, str(REPO / "tests"))
    from lhco_synthetic import synthetic_events
    parts, _ = synthetic_events(500, seed=9, max_particles=80)
    full = np.zeros((500, 700, 3))
    full[:, :80] = parts
    _official().write_lhco_file(data / "raw.h5", full, (np.arange(500) % 3 == 0).astype(float))
    res = c.run(cmd)
    if (bad := expect_success(res, "prepare again")):
        return bad
    if _md5(cache) == before:
        return Outcome("silent", "dijet cache of the old file reused")
    return Outcome("ok", "remade with a notice") if "raw.h5" in res.text else \
        Outcome("silent", "remade without a notice naming the input")


@case("stale/lhco/dijet-cache-corrupted", "stale",
      "a truncated dijet cache, then prepare (settings changed so prepared/ is remade): the cache is "
      "remade, or one line naming it")
def _(c):
    data = _private_lhco(c)
    cmd = [PY, "-m", "lhco_fullphase.prepare", "--config", c.fixture("lhco_cfg"), "--out", c.dir / "o",
           "--data-dir", data]
    if (bad := expect_success(c.run(cmd), "prepare")):
        return bad
    cache = next((data / "processed").glob("background_raw_*.h5"))
    truncate(cache)
    res = c.run([*cmd, "--set", "windows.sr=[3300.0,3650.0]"])
    if res.rc == 0:
        import h5py
        try:
            with h5py.File(cache) as f:
                f["jets"].shape
        except OSError:
            return Outcome("silent", "exit 0 with the dijet cache still corrupt")
        return Outcome("ok", "cache remade")
    return expect_error(res, cache.name)


@case("stale/lhco/window-changed", "stale",
      "prepare --set windows.sr=[3300,3650]: prepared data remade with a notice naming windows.sr")
def _(c):
    data = _private_lhco(c)
    cmd = [PY, "-m", "lhco_fullphase.prepare", "--config", c.fixture("lhco_cfg"), "--out", c.dir / "o",
           "--data-dir", data]
    if (bad := expect_success(c.run(cmd), "prepare")):
        return bad
    res = c.run([*cmd, "--set", "windows.sr=[3300.0,3650.0]"])
    if (bad := expect_success(res, "prepare again")):
        return bad
    info = read_json(data / "prepared" / "info.json")
    return Outcome("ok", f"remade, sr events {info['events']['sr']}") if "windows.sr" in res.text \
        else Outcome("silent", "no notice naming windows.sr")


@case("stale/lhco/diagnose-fine", "stale", "diagnose on a finished run: a table, exit 0")
def _(c):
    run = c.copy("lhco_run")
    res = c.run(lhco_cmd(c, "diagnose", run, "--region", "sb"))
    return expect_success(res, "diagnose") or Outcome("ok", "diagnosed")


@case("stale/lhco/evaluate-without-classify", "stale",
      "evaluate in a run whose classify stage never ran: every unit reported missing, not an empty "
      "results table with exit 0 and no word")
def _(c):
    run = c.copy("lhco_run")
    shutil.rmtree(run / "classify")
    res = c.run(lhco_cmd(c, "evaluate", run))
    if res.rc == 0:
        return Outcome("ok", "notice: units left out") if "not finished" in res.text else \
            Outcome("silent", "exit 0 without a word")
    return expect_error(res, "classify")


@case("kill/lhco/sigkill-mid-training", "kill",
      "SIGKILL during the jet generator's training, then the same command: resumes, no restart")
def _(c):
    run = c.copy("lhco_run")
    shutil.rmtree(run / "models" / "diffusion" / "jet")
    cmd = lhco_cmd(c, "train", run, "--model", "jet", sets=["training_jet.epochs=30",
                                                            "training_jet.patience=40"])
    state = run / "models" / "diffusion" / "jet" / "checkpoints" / "last" / "state.json"
    ok, epoch, _ = _kill_train(c, cmd, state)
    if not ok:
        return Outcome("broken", "training ended before it could be killed")
    res = c.run(cmd)
    if (bad := expect_success(res, "resume")):
        return bad
    return Outcome("ok", f"killed after epoch {epoch}, resumed") if f"after epoch {epoch}" in res.text \
        else Outcome("lost", f"killed after epoch {epoch}; the rerun did not resume from it")


@case("kill/lhco/sigint-mid-training", "kill",
      "SIGINT during lhco training: exit 130, one line naming the last checkpoint")
def _(c):
    run = c.copy("lhco_run")
    shutil.rmtree(run / "models" / "diffusion" / "particle")
    cmd = lhco_cmd(c, "train", run, "--model", "particle", sets=["training_particle.epochs=40",
                                                                  "training_particle.patience=50"])
    state = run / "models" / "diffusion" / "particle" / "checkpoints" / "last" / "state.json"
    ok, epoch, res = _kill_train(c, cmd, state, min_epoch=1, sig=signal.SIGINT)
    if not ok:
        return Outcome("broken", "training ended before it could be interrupted")
    return expect_interrupt(res)


@case("kill/lhco/sigkill-mid-sample", "kill",
      "SIGKILL during generation, then sample again: both regions complete, exit 0")
def _(c):
    run = c.copy("lhco_run")
    shutil.rmtree(run / "generated")
    cmd = lhco_cmd(c, "sample", run, sets=["generation.chunk_size=25"])
    p = c.start(cmd)
    if not wait_for(lambda: any((run / "generated").rglob("*.npz")), proc=p):
        c.finish(p)
        return Outcome("broken", "sample ended before it could be killed")
    _killpg(p, signal.SIGKILL)
    c.finish(p)
    res = c.run(cmd)
    if (bad := expect_success(res, "sample again")):
        return bad
    import h5py
    with h5py.File(run / "generated" / "diffusion" / "sr.h5") as f:
        n = f["mjj"].shape[0]
    return Outcome("ok", f"{n} SR events") if n == 60 else Outcome("silent", f"{n} SR events, want 60")


# =============================================================================================
# cases: file permissions
# =============================================================================================

def _umask_case(fixture):
    def fn(c):
        root = Path(c.fixture(fixture))
        bad = []
        for p in root.rglob("*"):
            mode = p.stat().st_mode & 0o777
            need = 0o055 if p.is_dir() else 0o044
            if mode & need != need:
                bad.append(f"{p.relative_to(root)} {oct(mode)}")
        return Outcome("silent", f"{len(bad)} unreadable by group/others: {bad[:3]}") if bad else \
            Outcome("ok", "every file and folder readable under umask 022")
    return fn


add_case("umask/pad-run", "umask", "files of a pad run made under umask 022 are 0644 (folders 0755)",
         _umask_case("pad_run"))
add_case("umask/lhco-run", "umask", "files of an lhco run made under umask 022 are 0644 (folders 0755)",
         _umask_case("lhco_run"))


# =============================================================================================
# driver
# =============================================================================================

def run_case(sweep: Sweep, c: Case) -> dict:
    ctx = Ctx(sweep, c)
    t0 = time.time()
    try:
        out = c.fn(ctx)
    except FixtureError as exc:
        out = Outcome("broken", str(exc)[:500])
    except Exception:  # noqa: BLE001 - a harness bug, reported as such
        out = Outcome("broken", traceback.format_exc()[-800:])
    finally:
        for p in ctx.procs:
            if p.poll() is None:
                _killpg(p, signal.SIGKILL)
    if out.category not in CATEGORIES:
        out = Outcome("broken", f"unknown category {out.category!r}: {out.detail}")
    return {"name": c.name, "group": c.group, "category": out.category, "detail": out.detail,
            "right": c.right, "seconds": round(time.time() - t0, 1),
            "commands": [r.summary() for r in ctx.results]}


def counts_table(results) -> str:
    groups = sorted({r["group"] for r in results})
    cols = ("tried", *CATEGORIES)
    rows = [("group", *cols)]
    for g in [*groups, "all"]:
        rs = [r for r in results if g in ("all", r["group"])]
        rows.append((g, str(len(rs)), *[str(sum(r["category"] == k for r in rs)) for k in CATEGORIES]))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i]) for i, v in enumerate(r))
                     for r in rows)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="sweep.json", help="per-case JSON (default sweep.json)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only cases whose name matches this glob (or contains it); repeatable")
    p.add_argument("--jobs", type=int, default=2, help="cases run at a time (default 2)")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="work in DIR and keep it (default: a temporary folder, removed)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    a = p.parse_args(argv)
    names = [c.name for c in CASES]
    if len(set(names)) != len(names):
        raise SystemExit(f"duplicate case names: {sorted({n for n in names if names.count(n) > 1})}")
    chosen = [c for c in CASES if not a.only or any(
        fnmatch.fnmatch(c.name, pat) or pat in c.name for pat in a.only)]
    if a.list:
        for c in chosen:
            print(f"{c.name:55s} {c.right}")
        print(f"{len(chosen)} cases")
        return 0
    # stop cleanly (children killed) on SIGTERM, and on Ctrl-C even when started in the background
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    root = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="fault_sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(root)
    t0 = time.time()
    results = []
    print(f"fault sweep: {len(chosen)} cases, {a.jobs} at a time, in {root}", flush=True)
    pool = ThreadPoolExecutor(max_workers=max(1, a.jobs))
    try:
        futures = {pool.submit(run_case, sweep, c): c for c in chosen}
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            print(f"[{len(results):3d}/{len(chosen)}] {r['category']:9s} {r['name']} "
                  f"({r['seconds']:.0f} s) {r['detail'][:140]}", flush=True)
    finally:
        sweep.stopping = True
        pool.shutdown(wait=False, cancel_futures=True)
        sweep.kill_children()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    order = {c.name: i for i, c in enumerate(CASES)}
    results.sort(key=lambda r: order[r["name"]])
    table = counts_table(results)
    summary = {"tried": len(results), **{k: sum(r["category"] == k for r in results) for k in CATEGORIES},
               "seconds": round(time.time() - t0, 1), "fixture_seconds": sweep.fixture_seconds}
    with open(a.out, "w") as fh:
        json.dump({"summary": summary, "cases": results}, fh, indent=1)
    print("\n" + table)
    print(f"\n{summary['seconds']:.0f} s; fixtures {sweep.fixture_seconds}; per-case JSON: {a.out}")
    bad = [r for r in results if r["category"] in BAD]
    for r in bad:
        print(f"  {r['category']:9s} {r['name']}: {r['detail'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
