"""Stage 3: generate background events with DDIM (+ 2nd order) and write them in physical units.

    python -m lhco_fullphase.sample --config lhco_fullphase/configs/demo.yaml --out runs/lhco [--region sr|sb]

``sr``: ``generation.num_events`` events at mjj drawn from the SR KDE (``kde``); the synthetic
background of the weak-supervision scan. ``sb``: one event per ``sb_val`` event (at most
``generation.num_sb_events``) at that event's true mjj, for the generation-quality check in the
side bands. Jets are generated first; the multiplicity N of each generated jet (rounded,
clipped to [1, P]) fixes its particle mask; then the particles. Set-level jet features of the
preprocessing (``data.jet_pt_fraction`` …) are enforced on the generated particles, and the
output is ordered like the data: jets by pT, particles by pT_rel (padding last).

Output ``OUT/generated/<region>.h5`` (h5py, written atomically; format ``lhco_fullphase/generated-v1``):

* ``jets`` (N, 2, 5) float32 — pT [GeV], η, φ, m [GeV], N (= number of generated particles);
  leading jet first
* ``particles`` (N, 2, P, 3) float32 — pT_rel = pT/pT_jet, Δη, Δφ; pT-ordered, 0 at padding
* ``mask`` (N, 2, P) bool, ``mjj`` (N,) float64 [GeV]
* ``sb_event_id`` (N,) int64 (region sb only): the true event whose mjj was used
* attributes: region, steps, second_order, seed, use_ema, jet_features, particle_features.

Values are the inverse preprocessing of what the networks produced; only network-space values
beyond ±``generation.clip`` standard deviations (default 30: failed samples, e.g. of an
undertrained net) are clipped, and counted in the ``n_clipped`` attribute. A generated pT_rel
can fall slightly outside [0, 1].
"""
from __future__ import annotations

import json
import os
import tempfile

import h5py
import numpy as np
from tqdm.auto import tqdm

from lhco_fullphase import data as ldata
from lhco_fullphase.prepare import Prepared, data_dir_for
from lhco_fullphase.train import load_generator

GENERATED_FORMAT = "lhco_fullphase/generated-v1"
REGIONS = ("sr", "sb")


def generated_path(out, region):
    return os.path.join(out, "generated", f"{region}.h5")


def generate_events(model, pre, mjj, steps, second_order, batch_size, seed, clip=30.0, progress=True,
                    enforce_mjj=False):
    """Physical jets/particles/mask for the given mjj values (GeV) and the number of
    network-space values clipped to [−clip, clip].

    ``enforce_mjj``: scale both jets' pT and m by mjj / m(j₀ + j₁), so that the generated jets
    have exactly the dijet mass they were generated at (η, φ, N and the particles, which are
    relative to the jet, are unchanged)."""
    p = model.num_particles
    chunks, n_clipped = [], 0
    for k, lo in enumerate(tqdm(range(0, len(mjj), batch_size), desc="generate", unit="batch",
                                disable=not progress)):
        m = np.asarray(mjj[lo:lo + batch_size], np.float64)
        mx = pre.scale_mjj(m).astype(np.float32)

        def n_from_jets(jx, mx=mx):
            jx = np.clip(np.nan_to_num(jx), -clip, clip)
            jets, _, _ = pre.inverse(jx, np.zeros(jx.shape[:2] + (p, 3)), np.zeros(jx.shape[:2] + (p,), bool), mx)
            return np.rint(jets[..., 4])

        g = model.sample(mx, n_from_jets, steps, second_order=second_order, seed=seed + 7919 * k)
        for key in ("jets", "particles"):
            bad = ~(np.abs(g[key]) <= clip)
            n_clipped += int(bad.sum())
            g[key] = np.clip(np.nan_to_num(g[key]), -clip, clip)
        jets, parts, mjj_back = pre.inverse(g["jets"], g["particles"], g["mask"], mx,
                                            rng=np.random.default_rng(seed + 7919 * k + 1))
        jets[..., 4] = g["mask"].sum(-1)
        if enforce_mjj:
            have = ldata.dijet_mass(jets)
            scale = np.where(have > 0, m / np.where(have > 0, have, 1.0), 1.0)
            jets[..., [0, 3]] *= scale[:, None, None]
        jets, parts, mask = ldata.sort_by_pt(jets, parts, g["mask"])
        chunks.append({"jets": jets.astype(np.float32), "particles": parts.astype(np.float32),
                       "mask": mask, "mjj": m})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}, n_clipped


def write_generated(path, arrays, attrs):
    """Atomic HDF5 write of generated events (layout in the module doc)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=os.path.dirname(path))
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h5:
            for k, v in arrays.items():
                h5.create_dataset(k, data=v, compression="gzip" if k == "particles" else None)
            h5.attrs.update({"format": GENERATED_FORMAT, "jet_features": json.dumps(ldata.JET_FEATURES),
                             "particle_features": json.dumps(ldata.PARTICLE_FEATURES),
                             **{k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                                for k, v in attrs.items()}})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_generated(path):
    """Arrays of a generated file (+ ``attrs``); clear error if it is not one."""
    from shared.data.errors import DataFormatError
    if not os.path.isfile(path):
        raise DataFormatError(path, "file", "not found (run lhco_fullphase.sample)")
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != GENERATED_FORMAT:
            raise DataFormatError(path, "format", f"not a {GENERATED_FORMAT} file")
        out = {k: h5[k][()] for k in h5.keys()}
        out["attrs"] = dict(h5.attrs)
    for k in ("jets", "particles", "mask", "mjj"):
        if k not in out:
            raise DataFormatError(path, k, "missing dataset")
    return out


def sample_region(cfg, out, region, data_dir=None, progress=True):
    """Generate one region's events (skips if the file exists); returns the path."""
    if region not in REGIONS:
        raise ValueError(f"--region: {region!r} not in {REGIONS}")
    path = generated_path(out, region)
    if os.path.isfile(path):
        return path
    g = cfg["generation"]
    seed = int(g.get("seed", cfg.get("seed", 0))) + (0 if region == "sr" else 100)
    prep = Prepared(data_dir_for(cfg, out, data_dir))
    extra = {}
    if region == "sr":
        mjj = prep.kde(cfg).sample_sr_mjj(int(g["num_events"]), seed)
    else:
        val = prep.take("sb_val")
        n = min(int(g.get("num_sb_events", len(val["mjj"]))), len(val["mjj"]))
        mjj = val["mjj"][:n]
        extra["sb_event_id"] = val["event_id"][:n]
    model = load_generator(cfg, out, prep.pre)
    arrays, n_clipped = generate_events(model, prep.pre, mjj, int(g["ddim_steps"]),
                                        bool(g.get("second_order", True)), int(g.get("batch_size", 1000)),
                                        seed, float(g.get("clip", 30.0)), progress,
                                        bool(g.get("enforce_mjj", False)))
    arrays.update(extra)
    write_generated(path, arrays, {"region": region, "steps": int(g["ddim_steps"]),
                                   "second_order": bool(g.get("second_order", True)), "seed": seed,
                                   "use_ema": bool(g.get("use_ema", True)), "n_clipped": n_clipped,
                                   "clip": float(g.get("clip", 30.0)),
                                   "enforce_mjj": bool(g.get("enforce_mjj", False))})
    return path


def main(argv=None):
    from shared.config import build_parser, config_from_args
    p = build_parser(__doc__.split("\n")[0])
    p.add_argument("--region", default="sr", choices=REGIONS + ("both",))
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    for r in (REGIONS if args.region == "both" else (args.region,)):
        print(sample_region(cfg, args.out, r, args.data_dir))


if __name__ == "__main__":
    main()
