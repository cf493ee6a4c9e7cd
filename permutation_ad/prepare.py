"""Stage ``prepare``: raw jets → processed splits in the data folder (SPEC §1.4 layout).

    python -m permutation_ad.prepare --config permutation_ad/configs/demo.yaml --out runs/demo

Sources (``data.source``): ``embedded`` — Pythia 8 stand-ins generated on first use and cached
under ``<data dir>/raw`` (one independent generation per sample and split, so no train/test
overlap); ``files`` — the official Top-Tagging files (``data.files``, relative to the data
folder; QCD = label 0, top = label 1 of each split; the Z′ file holds signal only);
``synthetic`` — cheap jet-like sets for tests (not physics).

Each processed file carries a fingerprint of the settings and raw input it was made from and is
made again (with a one-line notice) when they change.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from permutation_ad import artifacts
from permutation_ad.features import jet_features
from shared.data.errors import DataFormatError
from shared.data.processed import read_processed, write_processed

SPLITS = (("qcd", "train"), ("qcd", "val"), ("qcd", "test"),
          ("top", "train"), ("top", "val"), ("top", "test"), ("zprime", "test"))
LABEL = {"qcd": 0, "top": 1, "zprime": 1}
_SYNTH_PRONGS = {"qcd": 1, "top": 3, "zprime": 2}
FEATURE_KEYS = ("data.num_particles", "data.particle_pt_feature", "data.jet_features")


def _size_key(sample, split):
    return "data.n_zprime" if sample == "zprime" else f"data.n_{split}"


def _files_key(sample, split):
    return "data.files.zprime" if sample == "zprime" else f"data.files.{split}"


def raw_file(run, sample, split) -> Path | None:
    """The raw file a split is read from (``files``/``embedded``), None for ``synthetic``."""
    src = run.key("data.source")
    if src == "files":
        name = run.key(_files_key(sample, split))
        if not name:
            raise run.error(_files_key(sample, split), "a file is required for data.source=files")
        path = Path(name) if Path(name).is_absolute() else run.data_dir / name
        if not path.is_file():
            raise DataFormatError(path, _files_key(sample, split), "file not found")
        return path
    if src == "embedded":
        from shared.data.embedded import embedded_path
        return Path(embedded_path(sample, artifacts.raw_dir(run.data_dir), _size(run, sample, split),
                                  _seed(run, sample, split)))
    return None


def _size(run, sample, split):
    n = run.key(_size_key(sample, split))
    if n is None and run.key("data.source") != "files":
        raise run.error(_size_key(sample, split), "required for generated/synthetic data")
    return n


def _seed(run, sample, split):
    return int(run.key("seed", 0)) + zlib.crc32(f"{sample}/{split}".encode()) % 1000


def processed_artifact(run, sample, split):
    """The processed split's :class:`shared.run.Artifact` (a data-folder cache)."""
    src = run.key("data.source")
    raw = raw_file(run, sample, split)
    keys = ["seed", "data.source", _size_key(sample, split), *FEATURE_KEYS]
    if src == "files":
        return run.artifact(artifacts.processed_path(run.data_dir, sample, split),
                            config=[*keys, _files_key(sample, split)], inputs=[raw], cache=True)
    extra = {"raw": raw.name if raw is not None else "synthetic",
             **({"workers": run.key("data.workers")} if src == "embedded" else {})}
    return run.artifact(artifacts.processed_path(run.data_dir, sample, split), config=keys,
                        extra=extra, cache=True)


def _raw_p4(run, sample, split):
    """Four-momenta of one (sample, split) from the configured source."""
    src, n = run.key("data.source"), _size(run, sample, split)
    if src == "synthetic":
        return synthetic_p4(n, 200, _SYNTH_PRONGS[sample], _seed(run, sample, split)), "<synthetic>"
    if src == "embedded":
        from shared.data.embedded import ensure_embedded
        path = ensure_embedded(sample, artifacts.raw_dir(run.data_dir), int(n), _seed(run, sample, split),
                               workers=int(run.key("data.workers", 1)), progress=run.progress)
        from shared.data.toptag import read_toptag
        return read_toptag(path)["p4"][:n], path
    from shared.data.toptag import read_toptag
    path = raw_file(run, sample, split)
    d = read_toptag(path)
    p4 = d["p4"] if sample == "zprime" else d["p4"][np.asarray(d["label"]) == LABEL[sample]]
    if n is not None and len(p4) < n:
        raise DataFormatError(path, _size_key(sample, split),
                              f"asks for {n} {sample} jets, the file holds {len(p4)}")
    return (p4[:n] if n else p4), path


def prepare(run) -> dict:
    """Make (or reuse) every processed split; returns {(sample, split): Artifact}."""
    from tqdm.auto import tqdm
    out = {}
    for sample, split in tqdm(SPLITS, desc="prepare data", disable=not run.progress):
        art = processed_artifact(run, sample, split)
        if not art.prepare(log=run.log, what=f"{sample}/{split} data"):
            p4, path = _raw_p4(run, sample, split)
            feats = jet_features(p4, int(run.key("data.num_particles")),
                                 run.key("data.particle_pt_feature"), run.key("data.jet_features"),
                                 path=str(path))
            attrs = {"sample": sample, "split": split, "source": run.key("data.source"),
                     "raw": str(path), "num_particles": int(run.key("data.num_particles")),
                     "particle_features": ["deta", "dphi", run.key("data.particle_pt_feature")],
                     "jet_features": list(run.key("data.jet_features")),
                     "n_dequantisation": "jets[:, n] = total multiplicity + 0.5 (bin centre)"}
            write_processed(art.path, feats["constituents"], feats["mask"], feats["jets"],
                            np.full(len(p4), LABEL[sample], np.int8), attrs)
            art.record()
        out[(sample, split)] = art
    return out


def load_split(run_or_dir, sample, split, limit=None) -> dict:
    """dict(constituents, mask, jets, label) of a processed split (first ``limit`` jets)."""
    data_dir = getattr(run_or_dir, "data_dir", run_or_dir)
    d = read_processed(artifacts.processed_path(data_dir, sample, split),
                       stop=None if limit is None else int(limit))
    return {k: np.asarray(d[k]) for k in ("constituents", "mask", "jets", "label")}


def synthetic_p4(n, num_slots, prongs, seed, pt_jet=600.0):
    """Cheap jet-like four-momenta: ``prongs`` hard subjets + soft spray, pT ordered.

    Only for tests and smoke runs: not physics. 1-prong ≈ QCD-like, 2/3-prong ≈ Z′/top-like.
    """
    rng = np.random.default_rng(seed)
    p4 = np.zeros((n, num_slots, 4), np.float32)
    for i in range(n):
        mult = int(np.clip(rng.poisson(12 + 6 * prongs), 3, num_slots))
        axes = rng.normal(0, 0.25 if prongs > 1 else 0.02, size=(prongs, 2))
        which = rng.integers(0, prongs, size=mult)
        deta = axes[which, 0] + rng.normal(0, 0.08, mult)
        dphi = axes[which, 1] + rng.normal(0, 0.08, mult)
        frac = rng.dirichlet(np.full(mult, 0.6))
        pt = np.sort(frac * pt_jet * rng.uniform(0.92, 1.08))[::-1]
        eta0, phi0 = rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        eta, phi = eta0 + deta, phi0 + dphi
        p4[i, :mult] = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi),
                                 pt * np.sinh(eta)], -1)
    return p4


def main(argv=None):
    from permutation_ad.schema import SCHEMA
    from shared.cli import parser
    from shared.run import Run
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    for (sample, split), art in prepare(run).items():
        print(f"{sample}/{split}: {art.path}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
