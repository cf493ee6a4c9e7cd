"""Generate stand-in files in the official layouts with Pythia 8 + FastJet (SPEC §1.3b).

    python -m shared.data.generate {toptag,zprime,lhco,semivisible,twoprong} --n N --seed S --out FILE
        [--workers K] [--signal-fraction f] [--no-detector] [--chunk-size C]

Work is cut into tasks of at most `--chunk-size` selected jets/events, each with its own
Pythia instance and seeds derived from (seed, sample, task index): the output depends on
--seed and --chunk-size, not on --workers. Settings, seeds, versions and measured rates go
into the file (root attribute `generator_metadata`, JSON) and into the sidecar `<out>.json`.
"""
import argparse
import importlib.metadata
import json
import multiprocessing as mp
import os
import platform
import sys
import time

import numpy as np

from shared.io import atomic_write_text

from . import pythia_samples as ps
from .detector import DetectorConfig, smear
from .errors import DataFormatError
from .lhco import write_lhco
from .toptag import write_toptag

# Seed stream of each sample: fixed numbers (the first five are the sorted order they had when
# they were the only samples), so adding a sample never changes the jets of another.
_SAMPLE_INDEX = {"lhco_qcd": 0, "lhco_wprime": 1, "qcd": 2, "top": 3, "zprime": 4,
                 "darkqcd": 5, "semivisible": 6, "twoprong": 7}
assert set(_SAMPLE_INDEX) == set(ps.SAMPLES), "give every sample in pythia_samples a seed stream"


def task_seeds(seed, sample, task):
    """(pythia_seed, numpy_seed) for one task; Pythia accepts seeds in [1, 900 000 000]."""
    state = np.random.SeedSequence([int(seed), _SAMPLE_INDEX[sample], int(task)]).generate_state(2)
    return int(state[0] % 900_000_000) + 1, int(state[1])


def make_pythia(sample, seed):
    """An initialised, quiet Pythia for `sample`."""
    import pythia8mc

    p = pythia8mc.Pythia("", False)
    for line in ps.sample_settings(sample, seed):
        if not p.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r} of sample {sample!r}")
    if not p.init():
        raise RuntimeError(f"Pythia failed to initialise sample {sample!r}")
    return p


class _Charges:
    """Electric charge per PDG id, looked up once per id from Pythia's particle table."""

    def __init__(self, pythia):
        self._pd = pythia.particleData
        self._cache = {}

    def __call__(self, pid):
        uniq, inv = np.unique(pid, return_inverse=True)
        vals = np.array([self._cache.setdefault(int(u), self._pd.charge(int(u))) for u in uniq])
        return vals[inv] if len(uniq) else np.zeros(0)


def _detector_events(batch, charges, rng, det):
    """Final-state particles after the detector, as jagged (px, py, pz, E) awkward records."""
    import awkward as ak

    prt = batch.prt
    fs = prt[prt.status > 0]
    counts = ak.to_numpy(ak.num(fs, axis=1))
    pid = ak.to_numpy(ak.flatten(fs.id))
    mom = [ak.to_numpy(ak.flatten(fs.p[f])) for f in ("px", "py", "pz", "e")]
    keep, (px, py, pz, e) = smear(*mom, pid, charges(pid), rng, det)
    event_of = np.repeat(np.arange(len(counts)), counts)
    new_counts = np.bincount(event_of[keep], minlength=len(counts))
    return ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}), new_counts)


def _daughters(i, d1, d2):
    a, b = int(d1[i]), int(d2[i])
    if a <= 0:
        return []
    if b <= 0 or b == a:
        return [a]
    return list(range(min(a, b), max(a, b) + 1)) if b > a else [a, b]


def _top_partons(ids, d1, d2):
    """For each last-copy top: (top index, [b, q, q'] indices)."""
    out = []
    for t in np.nonzero(np.abs(ids) == 6)[0]:
        ds = _daughters(t, d1, d2)
        if any(abs(ids[d]) == 6 for d in ds):
            continue
        b = [d for d in ds if abs(ids[d]) == 5]
        w = [d for d in ds if abs(ids[d]) == 24]
        if not b or not w:
            continue
        w = w[0]
        for _ in range(100):  # follow the W through its recoil copies
            wd = _daughters(w, d1, d2)
            nxt = [d for d in wd if abs(ids[d]) == 24]
            if not nxt:
                break
            w = nxt[0]
        qs = [d for d in _daughters(w, d1, d2) if 1 <= abs(ids[d]) <= 5]
        if len(qs) == 2:
            out.append((t, [b[0]] + qs))
    return out


def _match_top(event, jet_eta, jet_phi, max_dr):
    """Truth four-momentum (E, px, py, pz) of a top whose top, b, q, q' lie within max_dr, or None."""
    from .jets import ptetaphim_from_p4, wrap_phi

    ids = np.asarray(event.id)
    d1, d2 = np.asarray(event.daughter1), np.asarray(event.daughter2)
    p4 = np.stack([np.asarray(event.p[f]) for f in ("e", "px", "py", "pz")], -1)
    for t, parts in _top_partons(ids, d1, d2):
        k = ptetaphim_from_p4(p4[[t] + parts])
        dr = np.hypot(k[:, 1] - jet_eta, wrap_phi(k[:, 2] - jet_phi))
        if np.all(dr < max_dr):
            return p4[t]
    return None


def _batch_size(missing, eff, n_generated, max_batch):
    """Events for the next nextBatch call: a small probe first, then what the efficiency asks."""
    nb = missing / max(eff, 0.01) * 1.1
    if n_generated == 0:
        nb = min(nb, 50)
    return int(np.clip(nb, 10, max_batch))


def _run_jet_task(sample, n_target, seed, det, sel, max_batch):
    import awkward as ak

    from .jets import cluster, jet_kinematics, pad_p4

    py_seed, np_seed = seed
    pythia = make_pythia(sample, py_seed)
    rng = np.random.default_rng(np_seed)
    charges = _Charges(pythia)
    want_truth = sample == "top"
    out_p4, out_truth, n_gen, eff = [], [], 0, 0.2
    have = n_pass = 0
    while have < n_target:
        nb = _batch_size(n_target - have, eff, n_gen, max_batch)
        batch = pythia.nextBatch(nb)
        n_gen += len(batch)
        events = _detector_events(batch, charges, rng, det)
        jets, consts = cluster(events, sel["jet_r"], sel["cluster_pt_min"])
        has = np.nonzero(ak.to_numpy(ak.num(jets, axis=1)) > 0)[0]
        if len(has):
            p4, mask = pad_p4(consts[has][:, 0], sel["max_constituents"])
            p4 = p4.astype(np.float32)  # cut on exactly what is stored
            kin = jet_kinematics(p4, mask)
            ok = (kin["pt"] > sel["pt_min"]) & (kin["pt"] < sel["pt_max"]) & (np.abs(kin["eta"]) < sel["eta_max"])
            for j in np.nonzero(ok)[0]:
                truth = np.zeros(4)
                if want_truth:
                    truth = _match_top(batch.prt[int(has[j])], kin["eta"][j], kin["phi"][j], sel["truth_match_dr"])
                    if truth is None:
                        continue
                out_p4.append(p4[j])
                out_truth.append(truth)
                have += 1
        n_pass = have
        eff = max(have, 1) / n_gen
    return {"p4": np.asarray(out_p4[:n_target], np.float32).reshape(-1, sel["max_constituents"], 4),
            "truth": np.asarray(out_truth[:n_target], np.float32).reshape(-1, 4), "n_generated": n_gen,
            "n_passed": n_pass}


def _run_event_task(sample, n_target, seed, det, sel, max_batch):
    import awkward as ak

    from .jets import cluster_ptetaphi, pad_p4, ptetaphim_from_p4, sort_by_pt

    py_seed, np_seed = seed
    pythia = make_pythia(sample, py_seed)
    rng = np.random.default_rng(np_seed)
    charges = _Charges(pythia)
    out, n_gen, eff, have, n_pass = [], 0, 0.5, 0, 0
    while have < n_target:
        nb = _batch_size(n_target - have, eff, n_gen, max_batch)
        batch = pythia.nextBatch(nb)
        n_gen += len(batch)
        events = sort_by_pt(_detector_events(batch, charges, rng, det), axis=1)
        p4, mask = pad_p4(events, sel["max_particles"])
        parts = ptetaphim_from_p4(p4)[..., :3] * mask[..., None]
        jets, _ = cluster_ptetaphi(parts, mask, R=sel["jet_r"], ptmin=sel["trigger_pt"])
        ok = np.nonzero(ak.to_numpy(ak.num(jets, axis=1)) > 0)[0]
        out.append(parts[ok[: n_target - have]])
        have += min(len(ok), n_target - have)
        n_pass += len(ok)
        eff = max(n_pass, 1) / n_gen
    return {"particles": np.concatenate(out), "n_generated": n_gen, "n_passed": n_pass}


def run_task(task):
    """Worker entry point: one chunk of one sample. Returns arrays plus timing."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn = _run_jet_task if ps.SAMPLES[task["sample"]]["kind"] == "jet" else _run_event_task
    det = DetectorConfig.from_dict(task["detector"])
    res = fn(task["sample"], task["n"], task["seeds"], det, task["selection"], task["max_batch"])
    res.update(task=task["index"], sample=task["sample"], wall_s=time.perf_counter() - t0,
               cpu_s=time.process_time() - c0)
    return res


def plan_counts(command, n, signal_fraction):
    """{sample: count} for a command; signal_fraction None means balanced (or signal-only for zprime)."""
    spec = ps.COMMANDS[command]
    if spec["background"] is None:
        if signal_fraction not in (None, 1.0):
            raise ValueError(f"{command} holds signal only; --signal-fraction must be 1 or omitted")
        return {spec["signal"]: n}
    f = 0.5 if signal_fraction is None else float(signal_fraction)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"--signal-fraction must lie in [0, 1], got {f}")
    n_sig = int(round(n * f))
    return {spec["background"]: n - n_sig, spec["signal"]: n_sig}


def _versions():
    out = {"python": platform.python_version()}
    for pkg in ("pythia8mc", "fastjet", "numpy", "awkward", "pandas", "tables", "h5py"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def generate(command, n, seed, out, workers=1, signal_fraction=None, detector=None,
             selection=None, chunk_size=250, max_batch=500, progress=True):
    """Generate `n` jets/events for `command` into `out`; returns the metadata dict."""
    from tqdm import tqdm

    if command not in ps.COMMANDS:
        raise ValueError(f"unknown command {command!r}; choose from {sorted(ps.COMMANDS)}")
    if n <= 0:
        raise ValueError("--n must be positive")
    layout = ps.COMMANDS[command]["layout"]
    sel = ps.command_selection(command, selection)
    det = detector if isinstance(detector, DetectorConfig) else DetectorConfig.from_dict(detector)
    counts = plan_counts(command, n, signal_fraction)
    tasks = []
    for sample, count in counts.items():
        for i, a in enumerate(range(0, count, chunk_size)):
            tasks.append({"index": len(tasks), "sample": sample, "n": min(chunk_size, count - a),
                          "seeds": task_seeds(seed, sample, i), "detector": det.to_dict(),
                          "selection": sel, "max_batch": max_batch})
    results = [None] * len(tasks)
    unit = "jet" if layout == "toptag" else "event"
    t0 = time.perf_counter()
    with tqdm(total=n, unit=unit, desc=f"{command}", disable=not progress) as bar:
        if workers <= 1 or len(tasks) == 1:
            for t in tasks:
                results[t["index"]] = run_task(t)
                bar.update(t["n"])
        else:
            with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
                for r in pool.imap_unordered(run_task, tasks):
                    results[r["task"]] = r
                    bar.update(tasks[r["task"]]["n"])
    wall = time.perf_counter() - t0

    rates = {}
    for sample in counts:
        rs = [r for r in results if r["sample"] == sample]
        acc = sum(len(r["p4"] if "p4" in r else r["particles"]) for r in rs)
        cpu = sum(r["cpu_s"] for r in rs)
        passed = sum(r["n_passed"] for r in rs)  # includes passing events beyond a task's quota
        rates[sample] = {"selected": acc, "passed": passed, "generated": sum(r["n_generated"] for r in rs),
                         "cpu_s": round(cpu, 3), "per_core_per_s": round(passed / cpu, 3) if cpu > 0 else None}
    order = list(counts)
    labels = np.concatenate([np.full(counts[s], ps.SAMPLES[s]["label"], np.int64) for s in order])
    perm = np.random.default_rng(seed).permutation(len(labels))
    meta = {
        "command": command, "layout": layout, "n": n, "seed": seed, "counts": counts,
        "signal_fraction": signal_fraction, "chunk_size": chunk_size, "workers": workers,
        "detector": det.to_dict(), "selection": sel,
        "pythia_settings": {s: ps.sample_settings(s, 0)[:-1] for s in counts},
        "samples": {s: {k: v for k, v in ps.SAMPLES[s].items() if k != "settings"} for s in counts},
        "task_seeds": [{"sample": t["sample"], "n": t["n"], "pythia_seed": t["seeds"][0],
                        "numpy_seed": t["seeds"][1]} for t in tasks],
        "rates": rates, "wall_s": round(wall, 3), "versions": _versions(),
        "settings_digest": ps.settings_digest(counts),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if layout == "toptag":
        p4 = np.concatenate([r["p4"] for s in order for r in results if r["sample"] == s])
        truth = np.concatenate([r["truth"] for s in order for r in results if r["sample"] == s])
        write_toptag(out, p4[perm], labels[perm], truth=truth[perm], metadata=meta)
    else:
        parts = np.concatenate([r["particles"] for s in order for r in results if r["sample"] == s])
        write_lhco(out, parts[perm], labels[perm], metadata=meta)
    atomic_write_text(os.fspath(out) + ".json", json.dumps(meta, indent=1, sort_keys=True))
    return meta


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=sorted(ps.COMMANDS))
    p.add_argument("--n", type=int, required=True,
                   help="number of jets (toptag, zprime, semivisible, twoprong) or events (lhco)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="output HDF5 file (a sidecar <out>.json is written too)")
    p.add_argument("--workers", type=int, default=1, help="processes (each task has its own seed)")
    p.add_argument("--signal-fraction", type=float, default=None,
                   help="fraction of signal (top / W' / dark jets); default 0.5; zprime is signal only")
    p.add_argument("--no-detector", action="store_true", help="particle level: no detector smearing")
    p.add_argument("--chunk-size", type=int, default=250, help="selected jets/events per task")
    p.add_argument("--max-batch", type=int, default=500, help="largest Pythia nextBatch call")
    p.add_argument("--pt-min", type=float, help="toptag: jet pT lower cut [GeV]")
    p.add_argument("--pt-max", type=float, help="toptag: jet pT upper cut [GeV]")
    p.add_argument("--eta-max", type=float, help="toptag: jet |eta| cut")
    p.add_argument("--trigger-pt", type=float, help="lhco: trigger jet pT cut [GeV]")
    p.add_argument("--no-progress", action="store_true")
    return p


def check_request(args):
    """Impossible requests fail at once, before any generation: sizes, cuts, the output path."""
    from shared.errors import UsageError
    for name in ("n", "workers", "chunk_size", "max_batch"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    sel = ps.command_selection(args.command)
    sel.update({k: getattr(args, k) for k in ("pt_min", "pt_max") if getattr(args, k) is not None})
    if "pt_min" in sel and "pt_max" in sel and sel["pt_min"] >= sel["pt_max"]:
        raise UsageError(f"jet pT window [{sel['pt_min']}, {sel['pt_max']}] GeV (--pt-min/--pt-max) "
                         "is empty: no jet can pass (the generator would run forever)")
    for name in ("pt_min", "pt_max", "eta_max", "trigger_pt"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if args.signal_fraction is not None and not 0.0 <= args.signal_fraction <= 1.0:
        raise UsageError(f"--signal-fraction must lie in [0, 1], got {args.signal_fraction}")
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        raise UsageError(f"--out {out}: is a folder, expected a file name")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create its folder ({exc.strerror})") from None
    import tempfile
    try:   # try it: os.access says yes to root on read-only mounts and /proc
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write in {parent} ({exc.strerror})") from None
    return out


def main(argv=None):
    from shared.cli import run_cli

    def _main(argv):
        args = build_parser().parse_args(argv)
        out = check_request(args)
        sel = {k: v for k, v in (("pt_min", args.pt_min), ("pt_max", args.pt_max),
                                 ("eta_max", args.eta_max), ("trigger_pt", args.trigger_pt))
               if v is not None}
        det = DetectorConfig(enabled=not args.no_detector)
        try:
            meta = generate(args.command, args.n, args.seed, out, workers=args.workers,
                            signal_fraction=args.signal_fraction, detector=det, selection=sel,
                            chunk_size=args.chunk_size, max_batch=args.max_batch,
                            progress=not args.no_progress)
        except ValueError as exc:
            from shared.errors import UsageError
            raise UsageError(str(exc)) from None
        for s, r in meta["rates"].items():
            print(f"{s}: {r['selected']} kept, {r['passed']} passed of {r['generated']} generated, "
                  f"{r['per_core_per_s']} per core per second", file=sys.stderr)
        print(f"wrote {args.out} ({meta['wall_s']} s)", file=sys.stderr)

    run_cli(_main, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
