"""The small embedded dataset: generated with Pythia 8 + FastJet on first use, then cached.

    path = ensure_embedded("toptag", cache_dir, n=2000, seed=1, workers=2)

Kinds: toptag (balanced QCD/top), qcd, top, zprime (top-tagging layout); lhco (balanced),
lhco_qcd, lhco_signal (LHCO layout); darkqcd, semivisible, twoprong (top-tagging layout,
150 < pT < 300 GeV: the dark-jet benchmarks; darkqcd is the background of both). The cache file name carries a hash of everything that
determines its content (kind, n, seed, chunk size, detector, selection, Pythia settings and
`GENERATOR_VERSION`), so a change of settings produces a new file instead of a stale hit.
"""
import argparse
import hashlib
import json
import os
import sys

from . import pythia_samples as ps
from .detector import DetectorConfig
from .generate import generate

# Bump when generation code changes the content of files made with the same settings.
GENERATOR_VERSION = 1

KINDS = {
    "toptag": ("toptag", None),
    "qcd": ("toptag", 0.0),
    "top": ("toptag", 1.0),
    "zprime": ("zprime", None),
    "lhco": ("lhco", None),
    "lhco_qcd": ("lhco", 0.0),
    "lhco_signal": ("lhco", 1.0),
    # dark-jet benchmarks (150 < pT < 300 GeV, 13 TeV, MPI on)
    "darkqcd": ("semivisible", 0.0),
    "semivisible": ("semivisible", 1.0),
    "twoprong": ("twoprong", 1.0),
}


def embedded_key(kind, n, seed, detector=None, chunk_size=250, selection=None):
    """Hex digest identifying the content of an embedded file."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedded kind {kind!r}; choose from {sorted(KINDS)}")
    command, frac = KINDS[kind]
    spec = ps.COMMANDS[command]
    samples = [s for s in (spec["background"], spec["signal"]) if s]
    det = detector if isinstance(detector, DetectorConfig) else DetectorConfig.from_dict(detector)
    blob = json.dumps({
        "kind": kind, "n": int(n), "seed": int(seed), "fraction": frac, "chunk_size": int(chunk_size),
        "detector": det.to_dict(), "selection": ps.command_selection(command, selection),
        "settings": ps.settings_digest(samples), "common": ps.COMMON, "version": GENERATOR_VERSION,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def embedded_path(kind, cache_dir, n, seed, **kw):
    """Where `ensure_embedded` keeps this file."""
    key = embedded_key(kind, n, seed, **kw)
    return os.path.join(os.path.abspath(os.fspath(cache_dir)), f"{kind}_n{int(n)}_seed{int(seed)}_{key[:12]}.h5")


def ensure_embedded(kind, cache_dir, n, seed, workers=1, detector=None, chunk_size=250,
                    selection=None, progress=False):
    """Path of the cached file, generating it first if needed (atomic: never half-written)."""
    path = embedded_path(kind, cache_dir, n, seed, detector=detector, chunk_size=chunk_size, selection=selection)
    if os.path.isfile(path) and os.path.isfile(path + ".json"):
        problem = _cache_problem(path, kind, n)
        if problem is None:
            return path
        print(f"{path}: cached file unusable ({problem}); generating it again", file=sys.stderr)
        os.remove(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    command, frac = KINDS[kind]
    generate(command, int(n), int(seed), path, workers=workers, signal_fraction=frac, detector=detector,
             selection=selection, chunk_size=chunk_size, progress=progress)
    return path


def _cache_problem(path, kind, n):
    """Why a cached file cannot be used (None if it can): unreadable, or not n events."""
    from .errors import DataFormatError
    from .lhco import count_lhco
    from .toptag import count_toptag
    count = count_lhco if KINDS[kind][0] == "lhco" else count_toptag
    try:
        rows = count(path)
    except (DataFormatError, OSError) as exc:
        return str(exc)
    return None if rows == int(n) else f"holds {rows} events, expected {int(n)}"


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate (or find) a cached embedded dataset and print its path.")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--chunk-size", type=int, default=250)
    p.add_argument("--no-detector", action="store_true")
    args = p.parse_args(argv)
    det = DetectorConfig(enabled=not args.no_detector)
    print(ensure_embedded(args.kind, args.cache_dir, args.n, args.seed, workers=args.workers, detector=det,
                          chunk_size=args.chunk_size, progress=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
