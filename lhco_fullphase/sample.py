"""Stage ``sample``: generate background events with every generator of the run, in physical
units; and the low-dimensional CATHODE features in the SR.

    python -m lhco_fullphase.sample --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--region sr|sb|both] [--generator diffusion|flow_matching|lowdim] [--shard K/N]
    horovodrun -np 4 python -m lhco_fullphase.sample ...    # the chunks spread over 4 ranks

Samplers: ``diffusion`` — ``generation.sampler`` (ddim | ddim_heun | dpm_solver_2m; null = DDIM,
+ Heun 2nd order with ``generation.second_order``) with ``generation.ddim_steps`` steps;
``flow_matching`` — the ODE with ``flow_model.steps`` and ``flow_model.solver``. Both generators
generate at the same mjj values with the same seeds.

``sr``: ``generation.num_events`` events at mjj drawn from the SR KDE (``kde``); the synthetic
background of the weak-supervision scan. ``sb``: one event per ``sb_val`` event (at most
``generation.num_sb_events``) at that event's true mjj, for the generation-quality check in the
side bands. Jets are generated first; the multiplicity N of each generated jet (rounded,
clipped to [1, P]) fixes its particle mask; then the particles. Set-level jet features of the
preprocessing (``data.jet_pt_fraction`` …) are enforced on the generated particles, and the
output is ordered like the data: jets by pT, particles by pT_rel (padding last).

The events of a region are cut into fixed chunks of ``generation.chunk_size`` events (default:
one batch of ``generation.batch_size``), each with the seeds of its batches' global positions,
so the result does not depend on how the chunks were spread over processes. Chunks are spread
over the Horovod ranks (or ``--shard K/N``); rank 0 then merges them (making any chunk still
missing) into the region's file and removes the chunk files.

Low-dimensional CATHODE (``lowdim.enabled``): ``lowdim.num_events`` (null: ``generation.num_events``)
feature vectors (m_J1, Δm_J, τ21^J1, τ21^J2) of the trained MAF at mjj drawn from the same SR KDE
(seed ``lowdim.seed`` + 1), ``OUT/generated/lowdim/sr.npz`` (``features``, ``mjj``,
``feature_names``); rank 0.

Output ``OUT/generated/<generator>/<region>.h5`` (h5py, written atomically; format
``lhco_fullphase/generated-v1``):

* ``jets`` (N, 2, 5) float32 — pT [GeV], η, φ, m [GeV], N (= number of generated particles);
  leading jet first
* ``particles`` (N, 2, P, 3) float32 — pT_rel = pT/pT_jet, Δη, Δφ; pT-ordered, 0 at padding
* ``mask`` (N, 2, P) bool, ``mjj`` (N,) float64 [GeV]
* ``sb_event_id`` (N,) int64 (region sb only): the true event whose mjj was used
* attributes: generator, region, steps, second_order (diffusion; None for flow matching), solver
  (``generation.sampler`` or ``flow_model.solver``), seed, use_ema, clip, n_clipped, enforce_mjj,
  jet_features, particle_features.

Values are the inverse preprocessing of what the networks produced; only network-space values
beyond ±``generation.clip`` standard deviations (default 30: failed samples, e.g. of an
undertrained net) are clipped, and counted in the ``n_clipped`` attribute. A generated pT_rel
can fall slightly outside [0, 1].
"""
from __future__ import annotations

import math
import shutil

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.prepare import KDE_ROLE, load_prepared, prepare
from lhco_fullphase.schema import GENERATORS, PARTS, REGIONS

GENERATION_KEYS = ("seed", "generation.batch_size", "generation.seed", "generation.use_ema",
                   "generation.enforce_mjj", "generation.clip")
SAMPLER_KEYS = {"diffusion": ("generation.ddim_steps", "generation.second_order", "generation.sampler"),
                "flow_matching": ("flow_model.steps", "flow_model.solver")}
BATCH_SEED_STRIDE = 7919   # batch k of a region draws its noise with seed + 7919·k


def generate_events(model, pre, mjj, steps, second_order, batch_size, seed, clip=30.0, progress=True,
                    enforce_mjj=False, first_batch=0, solver=None):
    """Physical jets/particles/mask for the given mjj values (GeV) and the number of
    network-space values clipped to [−clip, clip]. Batch k (counted from ``first_batch``, its
    position in the whole region) uses the seeds ``seed + 7919·k`` (+1).

    ``enforce_mjj``: scale both jets' pT and m by mjj / m(j₀ + j₁), so that the generated jets
    have exactly the dijet mass they were generated at (η, φ, N and the particles, which are
    relative to the jet, are unchanged). ``solver``: passed to ``model.sample`` (None: its default)."""
    from tqdm.auto import tqdm

    from lhco_fullphase.events import dijet_mass, sort_by_pt
    p = model.num_particles
    chunks, n_clipped = [], 0
    for k, lo in enumerate(tqdm(range(0, len(mjj), batch_size), desc="generate", unit="batch",
                                disable=not progress), start=int(first_batch)):
        m = np.asarray(mjj[lo:lo + batch_size], np.float64)
        mx = pre.scale_mjj(m).astype(np.float32)

        def n_from_jets(jx, mx=mx):
            jx = np.clip(np.nan_to_num(jx), -clip, clip)
            jets, _, _ = pre.inverse(jx, np.zeros(jx.shape[:2] + (p, 3)), np.zeros(jx.shape[:2] + (p,), bool), mx)
            return np.rint(jets[..., 4])

        s = seed + BATCH_SEED_STRIDE * k
        g = model.sample(mx, n_from_jets, steps, second_order=second_order, seed=s, solver=solver)
        for key in ("jets", "particles"):
            bad = ~(np.abs(g[key]) <= clip)
            n_clipped += int(bad.sum())
            g[key] = np.clip(np.nan_to_num(g[key]), -clip, clip)
        jets, parts, _ = pre.inverse(g["jets"], g["particles"], g["mask"], mx,
                                     rng=np.random.default_rng(s + 1))
        jets[..., 4] = g["mask"].sum(-1)
        if enforce_mjj:
            have = dijet_mass(jets)
            scale = np.where(have > 0, m / np.where(have > 0, have, 1.0), 1.0)
            jets[..., [0, 3]] *= scale[:, None, None]
        jets, parts, mask = sort_by_pt(jets, parts, g["mask"])
        chunks.append({"jets": jets.astype(np.float32), "particles": parts.astype(np.float32),
                       "mask": mask, "mjj": m})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}, n_clipped


# ---------------------------------------------------------------------------------------------
# the region's events: mjj values, chunks, fingerprints
# ---------------------------------------------------------------------------------------------

def sampler(run, generator) -> tuple[int, bool | None, str | None]:
    """(steps, second_order, solver) of ``model.sample``. Diffusion: ``generation.ddim_steps``,
    ``generation.second_order`` and ``generation.sampler`` (None: DDIM, Heun by
    ``second_order``); flow matching: ``flow_model.steps``, None and ``flow_model.solver``."""
    if generator == "diffusion":
        return (int(run.key("generation.ddim_steps")), bool(run.key("generation.second_order")),
                run.key("generation.sampler"))
    return int(run.key("flow_model.steps")), None, run.key("flow_model.solver")


def region_seed(run, region) -> int:
    base = run.key("generation.seed")
    return int(run.key("seed") if base is None else base) + (0 if region == "sr" else 100)


def num_events(run, region, prep) -> int:
    if region == "sr":
        return int(run.key("generation.num_events"))
    n_val = int(prep.info["roles"]["sb_val"])
    return min(int(run.key("generation.num_sb_events", n_val)), n_val)


def _mjj_recipe(run, region, prep) -> tuple[list, dict]:
    """(config keys, prepared fingerprint) that decide a region's mjj values."""
    if region == "sr":
        return (["seed", "generation.seed", "generation.num_events", "kde", "windows.sr"],
                prep.fingerprint(KDE_ROLE[run.key("kde.fit_on")]))
    return ["generation.num_sb_events"], prep.fingerprint("sb_val")


def region_mjj(run, region, prep) -> dict:
    """The mjj values (GeV) a region is generated at (+ ``sb_event_id`` for sb); the same for
    every generator."""
    from shared.run import digest

    def make():
        n = num_events(run, region, prep)
        if region == "sr":
            return {"mjj": prep.kde(run.cfg).sample_sr_mjj(n, region_seed(run, region))}
        val = prep.take("sb_val")
        return {"mjj": val["mjj"][:n], "sb_event_id": val["event_id"][:n]}
    keys, used = _mjj_recipe(run, region, prep)
    return run.cached(f"mjj/{region}/{digest([run.config_values(keys), used])}", make)


def chunks(run, region, prep) -> list[tuple[int, int, int]]:
    """The region's work units (chunk, lo, hi), in order."""
    n = num_events(run, region, prep)
    size = int(run.key("generation.chunk_size") or run.key("generation.batch_size"))
    return [(c, c * size, min((c + 1) * size, n)) for c in range(math.ceil(n / size))]


def generated_artifact(run, generator, region, prep=None, chunk=None):
    """A generator's file of a region (``chunk=(c, lo, hi)``: one work unit): made from both
    parts of that generator, the events whose mjj it uses and the generation settings."""
    from lhco_fullphase.train import generator_artifact
    prep = prep or load_prepared(run)
    keys, used = _mjj_recipe(run, region, prep)
    extra = {"generator": generator, "region": region, "prepared": used}
    if chunk is not None:
        extra["events"] = [int(chunk[1]), int(chunk[2])]
        path = artifacts.generated_unit_path(run.out, generator, region, chunk[0])
    else:
        path = artifacts.generated_path(run.out, generator, region)
    return run.artifact(path, config=[*GENERATION_KEYS, *SAMPLER_KEYS[generator], *keys], extra=extra,
                        upstream={part: generator_artifact(run, generator, part, prep) for part in PARTS})


def generation_attrs(run, generator, region, n_clipped) -> dict:
    g = run.cfg["generation"]
    steps, second_order, solver = sampler(run, generator)
    return {"generator": generator, "region": region, "steps": steps, "second_order": second_order,
            "solver": solver,
            "seed": region_seed(run, region), "use_ema": bool(g["use_ema"]), "n_clipped": int(n_clipped),
            "clip": float(g["clip"]), "enforce_mjj": bool(g["enforce_mjj"])}


# ---------------------------------------------------------------------------------------------
# low-dimensional CATHODE: flow samples of the 4 features in the SR
# ---------------------------------------------------------------------------------------------

def lowdim_num_events(run) -> int:
    return int(run.key("lowdim.num_events") or run.key("generation.num_events"))


def lowdim_samples_artifact(run, prep=None):
    """``generated/lowdim/sr.npz``: made from the trained flow, the SR KDE and the sizes."""
    from lhco_fullphase.train import lowdim_flow_artifact
    prep = prep or load_prepared(run)
    return run.artifact(artifacts.lowdim_samples_path(run.out),
                        config=["lowdim.num_events", "lowdim.seed", "kde", "windows.sr"],
                        extra={"num_events": lowdim_num_events(run),
                               "prepared": prep.fingerprint(KDE_ROLE[run.key("kde.fit_on")])},
                        upstream={"flow": lowdim_flow_artifact(run, prep)})


def sample_lowdim(run, prep=None):
    """Sample the flow's SR features (rank 0); returns the artifact."""
    from lhco_fullphase.lowdim import FEATURE_NAMES, sample_flow
    from lhco_fullphase.train import load_lowdim_flow
    from shared.io import atomic_savez
    prep = prep or load_prepared(run)
    art = lowdim_samples_artifact(run, prep)
    if art.prepare(log=run.log, what="generated/lowdim/sr.npz"):
        run.log("generated/lowdim/sr.npz: up to date")
        return art
    seed = int(run.key("lowdim.seed")) + 1
    mjj = prep.kde(run.cfg).sample_sr_mjj(lowdim_num_events(run), seed)
    features = sample_flow(load_lowdim_flow(run, prep), prep.pre.scale_mjj(mjj), seed)
    atomic_savez(art.path, features=features, mjj=mjj, feature_names=np.array(FEATURE_NAMES))
    art.record()
    run.log(f"generated/lowdim/sr.npz: {len(mjj)} events")
    return art


def read_lowdim_samples(run, prep=None) -> dict:
    """The flow's SR samples (``features`` (N, 4), ``mjj``); an error if missing or stale."""
    from shared.errors import UsageError
    from shared.io import read_npz
    art = lowdim_samples_artifact(run, prep)
    if not (art.complete() and art.matches()):
        raise UsageError(f"{art.path}: low-dimensional CATHODE samples {art.stale_reason() or 'missing'}; "
                         "run the sample stage (python -m lhco_fullphase.sample --generator lowdim)")
    return run.cached(f"lowdim_samples/{art.digest}", lambda: read_npz(art.path, "lowdim samples"))


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------

def compute_chunk(run, generator, region, chunk, prep) -> None:
    """Generate one work unit and write it with its fingerprint."""
    from lhco_fullphase.train import load_generator
    g = run.cfg["generation"]
    c, lo, hi = chunk
    mjj = region_mjj(run, region, prep)
    steps, second_order, solver = sampler(run, generator)
    arrays, n_clipped = generate_events(
        load_generator(run, generator, prep), prep.pre, mjj["mjj"][lo:hi], steps, second_order,
        int(g["batch_size"]), region_seed(run, region), float(g["clip"]), progress=False,
        enforce_mjj=bool(g["enforce_mjj"]), first_batch=lo // int(g["batch_size"]),
        solver=solver)
    if "sb_event_id" in mjj:
        arrays["sb_event_id"] = mjj["sb_event_id"][lo:hi]
    art = generated_artifact(run, generator, region, prep, chunk)
    artifacts.write_generated_unit(art.path, arrays, n_clipped)
    art.record()


def merge(run, generator, region, prep) -> None:
    """Rank 0: the region's chunks (any still missing made here) → ``generated/<generator>/<region>.h5``;
    the chunk files are removed afterwards."""
    parts = []
    for chunk in chunks(run, region, prep):
        art = generated_artifact(run, generator, region, prep, chunk)
        if not (art.complete() and art.matches()):
            compute_chunk(run, generator, region, chunk, prep)
        parts.append(artifacts.read_generated_unit(art.path))
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "n_clipped"}
    n_clipped = sum(int(p["n_clipped"]) for p in parts)
    art = generated_artifact(run, generator, region, prep)
    artifacts.write_generated(art.path, arrays, generation_attrs(run, generator, region, n_clipped))
    art.record()
    shutil.rmtree(artifacts.generated_units_dir(run.out, generator, region), ignore_errors=True)
    run.log(f"generated/{generator}/{region}.h5: {len(arrays['mjj'])} events ({n_clipped} values clipped)")


def outputs(run, regions=REGIONS, which=None) -> list:
    """The files the stage leaves behind for ``which`` (default: every generator of the run and,
    with ``lowdim.enabled``, the low-dimensional samples)."""
    from lhco_fullphase.train import generators
    which = list(which) if which is not None else [*generators(run)] + \
        (["lowdim"] if run.key("lowdim.enabled") else [])
    return [artifacts.generated_path(run.out, g, r) for g in which if g != "lowdim" for r in regions] + \
        ([artifacts.lowdim_samples_path(run.out)] if "lowdim" in which and "sr" in regions else [])


def sample(run, regions=REGIONS, which=None) -> dict | None:
    """Generate the requested regions with every generator of ``which`` (default: the run's,
    + ``lowdim`` if enabled): this process's share of the chunks, then (without ``--shard``)
    rank 0 merges and samples the low-dimensional features. Returns {(generator, region): path}
    of the finished files (rank 0)."""
    from tqdm.auto import tqdm

    from lhco_fullphase.train import generators
    from shared.run import my_units
    which = list(which) if which is not None else [*generators(run)] + \
        (["lowdim"] if run.key("lowdim.enabled") else [])
    prep = load_prepared(run)
    todo, done = [], {}
    for generator in [g for g in which if g in GENERATORS]:
        for region in regions:
            art = generated_artifact(run, generator, region, prep)
            name = f"generated/{generator}/{region}.h5"
            if run.is_root and art.path.exists() and not art.fresh():
                run.log(f"{name}: {art.stale_reason()}; making it again")
            if art.fresh():
                run.log(f"{name}: up to date")
                done[(generator, region)] = art.path
                continue
            for chunk in my_units(run, chunks(run, region, prep)):
                unit = generated_artifact(run, generator, region, prep, chunk)
                if run.resume == "never" or not (unit.complete() and unit.matches()):
                    todo.append((generator, region, chunk))
    for generator, region, chunk in tqdm(todo, desc="generate (chunks)", disable=not run.progress or not todo):
        compute_chunk(run, generator, region, chunk, prep)
    if run.shard is not None:
        run.log(f"shard {run.shard[0]}/{run.shard[1]}: {len(todo)} chunk(s) generated")
        return None
    run.ctx.barrier()
    if run.is_root:
        for generator in [g for g in which if g in GENERATORS]:
            for region in regions:
                if (generator, region) not in done:
                    merge(run, generator, region, prep)
                    done[(generator, region)] = artifacts.generated_path(run.out, generator, region)
        if "lowdim" in which and "sr" in regions:
            done[("lowdim", "sr")] = sample_lowdim(run, prep).path
    run.ctx.barrier()
    return done if run.is_root else None


def main(argv=None):
    from lhco_fullphase.schema import SCHEMA
    from shared.cli import add_shard_argument, parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--region", default="sr", choices=REGIONS + ("both",),
                   help="sr (default), sb or both")
    p.add_argument("--generator", default=None, choices=(*GENERATORS, "lowdim"),
                   help="one generator (default: every one of the run)")
    add_shard_argument(p)
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    run.root_only(prepare)
    which = None if args.generator is None else [args.generator]
    done = sample(run, REGIONS if args.region == "both" else (args.region,), which) or {}
    for (generator, region), path in done.items():
        run.log(f"{generator}/{region}: {path}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
