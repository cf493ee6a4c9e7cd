"""Stage ``evaluate``: log-likelihoods of the test jets under every trained density, and the
permutation test of Fig. 1.

    python -m permutation_ad.evaluate --config permutation_ad/configs/demo.yaml --out runs/demo
    python -m permutation_ad.evaluate ... --shard 3/16      # one Slurm array task: shard 3 of 16
    horovodrun -np 4 python -m permutation_ad.evaluate ...  # the units spread over 4 ranks

The work is cut into independent units — (density, test sample, chunk of
``evaluate.chunk_size`` jets) and the permutation test — each with its own seed and output file
(``artifacts.loglik_unit_path``), so the merged result does not depend on how the units were
spread over processes. With ``--shard K/N`` only that share is computed; without it the units
are spread over the Horovod ranks and rank 0 merges them into
``eval/loglik_<sample>_<objective>.npz`` (computing any unit still missing). Log densities are
in physical units (the standardisation's Jacobian added), EMA weights, first
``evaluate.num_jets`` test jets of each sample.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from permutation_ad import artifacts
from permutation_ad.prepare import load_split, processed_artifact
from permutation_ad.schema import TEST_SAMPLES
from permutation_ad.train import density_artifact, load_density
from shared.io import atomic_write_json, read_json
from shared.run import run_units

LIKELIHOOD_KEYS = ("likelihood", "evaluate.chunk_size")


def _n_test(run, test):
    """Test jets of ``test`` scored: the first ``evaluate.num_jets`` (all if null)."""
    from shared.data.processed import count_processed
    total = count_processed(artifacts.processed_path(run.data_dir, test, "test"))
    lim = run.key("evaluate.num_jets")
    return total if lim is None else min(int(lim), total)


def units(run) -> list[tuple]:
    """Every likelihood unit ("loglik", sample, objective, test, chunk, lo, hi) plus the
    permutation test ("permutation",), in a fixed order."""
    size = int(run.key("evaluate.chunk_size"))
    out = []
    counts = {t: _n_test(run, t) for t in TEST_SAMPLES}
    for s in run.key("model.samples"):
        for o in run.key("model.objectives"):
            for t in TEST_SAMPLES:
                for c in range(math.ceil(counts[t] / size)):
                    out.append(("loglik", s, o, t, c, c * size, min((c + 1) * size, counts[t])))
    if "qcd" in run.key("model.samples") and "standard" in run.key("model.objectives"):
        out.append(("permutation",))
    return out


def unit_artifact(run, unit):
    if unit[0] == "permutation":
        return run.artifact(artifacts.permutation_path(run.out),
                            config=["seed", "likelihood", "evaluate.permutation"],
                            upstream={"density": density_artifact(run, "qcd", "standard"),
                                      "test": processed_artifact(run, "qcd", "test")})
    _, s, o, t, c, lo, hi = unit
    return run.artifact(artifacts.loglik_unit_path(run.out, s, o, t, c),
                        config=["seed", *LIKELIHOOD_KEYS], extra={"jets": [lo, hi]},
                        upstream={"density": density_artifact(run, s, o),
                                  "test": processed_artifact(run, t, "test")})


def _density(run, sample, objective):
    """The trained density, loaded once per process; an error if it is missing or was trained
    with other settings or data than the run's (its likelihoods would be recorded as made from
    the density the settings describe)."""
    from shared.errors import UsageError
    art = density_artifact(run, sample, objective)
    if not (art.complete() and art.matches()):
        raise UsageError(f"{art.path}: density {art.stale_reason() or 'not trained'}; run the train "
                         f"stage (python -m permutation_ad.train --sample {sample} --objective {objective})")
    return run.cached(f"density/{sample}_{objective}", lambda: load_density(run.cfg, art.path, objective))


def _options(run):
    from shared.diffusion.likelihood import LikelihoodOptions
    return LikelihoodOptions.from_config(run.cfg["likelihood"], run.source)


def unit_seed(seed, *key) -> int:
    """Seed of one work unit: the run's ``seed`` plus a stable hash of the unit's ``key``, so
    the result does not depend on which process computed the unit."""
    return int(seed) + 17 + zlib.crc32("/".join(map(str, key)).encode()) % 100000


def _unit_seed(run, unit):
    return unit_seed(run.key("seed", 0), *unit[:5])


def density_loglik(model, preprocessor, constituents, mask, jets, options, seed) -> dict:
    """Log-likelihood parts of physical features under a loaded density: ``LOGLIK_KEYS``
    (float64, physical units) plus ``nfe`` ([jet, particles]) and ``seconds``."""
    c_x, j_x = preprocessor.transform(constituents, mask, jets)
    ll = model.log_likelihood(c_x, mask, j_x, preprocessor=preprocessor, options=options, seed=seed)
    return {**{k: np.asarray(ll[k], np.float64) for k in artifacts.LOGLIK_KEYS},
            "nfe": np.asarray([ll["nfe_jet"], ll["nfe_particles"]]),
            "seconds": np.asarray(ll["seconds"])}


def compute_unit(run, unit) -> None:
    """Compute one unit and write its file with its fingerprint."""
    art = unit_artifact(run, unit)
    if unit[0] == "permutation":
        atomic_write_json(art.path, permutation_test(run))
        art.record()
        return
    _, s, o, t, c, lo, hi = unit
    model, pre = _density(run, s, o)
    split = load_split(run, t, "test", limit=hi)
    sl = slice(lo, hi)
    artifacts.write_loglik(art.path, density_loglik(
        model, pre, split["constituents"][sl], split["mask"][sl], split["jets"][sl],
        _options(run), _unit_seed(run, unit)))
    art.record()


def permutation_test(run, sample="qcd", objective="standard") -> dict:
    """Fig. 1: NLL of one test jet under several particle permutations, ``repeats`` estimates
    each (one batched ODE solve, independent Hutchinson probes per row)."""
    pcfg = run.cfg["evaluate"]["permutation"]
    k, r, idx = int(pcfg["num_permutations"]), int(pcfg["repeats"]), int(pcfg["jet_index"])
    model, pre = _density(run, sample, objective)
    split = load_split(run, "qcd", "test", limit=idx + 1)
    one = slice(idx, idx + 1)
    c, j = pre.transform(split["constituents"][one], split["mask"][one], split["jets"][one])
    m = split["mask"][one].astype(np.float32)
    rng = np.random.default_rng(int(run.key("seed", 0)) + 99)
    perms = [np.arange(c.shape[1])] + [rng.permutation(c.shape[1]) for _ in range(k - 1)]
    cs = np.concatenate([np.repeat(c[:, p], r, axis=0) for p in perms])
    ms = np.concatenate([np.repeat(m[:, p], r, axis=0) for p in perms])
    ll = model.log_likelihood(cs, ms, np.repeat(j, k * r, axis=0), preprocessor=pre,
                              options=_options(run), seed=int(run.key("seed", 0)) + 5)
    nll = -ll["logp"].reshape(k, r)
    res = {"model": f"{sample}_{objective}", "jet_index": idx, "num_particles": int(m.sum()),
           "permutations": [p.tolist() for p in perms], "nll": nll.tolist(),
           "nfe": [ll["nfe_jet"], ll["nfe_particles"]], "seconds": ll["seconds"]}
    res.update(permutation_stats(nll))
    return res


def permutation_stats(nll) -> dict:
    """Mean ± std per permutation (rows of ``nll``) and the pairwise agreement test."""
    nll = np.asarray(nll, np.float64)
    k, r = nll.shape
    mean, sd = nll.mean(1), nll.std(1, ddof=1)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    dev = [abs(mean[a] - mean[b]) / max(math.hypot(sd[a], sd[b]), 1e-12) for a, b in pairs]
    dev_se = [d * math.sqrt(r) for d in dev]  # same, in standard errors of the means
    return {"mean": mean.tolist(), "std": sd.tolist(),
            "max_pairwise_deviation_sigma": float(max(dev)), "all_within_3sigma": bool(max(dev) <= 3.0),
            "max_pairwise_deviation_stderr": float(max(dev_se)),
            "all_within_3_stderr": bool(max(dev_se) <= 3.0),
            "rule": "|mean_a - mean_b| <= 3*sqrt(std_a^2 + std_b^2) for every pair of permutations; "
                    "std = spread of the repeated Hutchinson estimates (the paper's error bars). "
                    "Stricter companion: the same with standard errors std/sqrt(repeats)."}


def merged_artifact(run, sample, objective, all_units=None):
    """The merged likelihood file of one density: made from its units."""
    all_units = units(run) if all_units is None else all_units
    mine = [u for u in all_units if u[0] == "loglik" and u[1] == sample and u[2] == objective]
    return run.artifact(artifacts.loglik_path(run.out, sample, objective),
                        upstream={f"{u[3]}_{u[4]}": unit_artifact(run, u) for u in mine})


def merge(run, all_units) -> dict:
    """Rank 0: concatenate the units of every density into its merged likelihood file (kept
    when it was merged from exactly these units)."""
    from shared.io import atomic_savez
    merged = {}
    for s in run.key("model.samples"):
        for o in run.key("model.objectives"):
            art = merged_artifact(run, s, o, all_units)
            merged[(s, o)] = art.path
            if art.prepare(log=run.log, what=f"eval/{art.path.name}"):
                continue
            mine = [u for u in all_units if u[0] == "loglik" and u[1] == s and u[2] == o]
            res = {}
            for t in TEST_SAMPLES:
                parts = [artifacts.read_loglik(unit_artifact(run, u).path) for u in mine if u[3] == t]
                for k in artifacts.LOGLIK_KEYS:
                    res[f"{k}_{t}"] = np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
                res[f"nfe_{t}"] = np.sum([p["nfe"] for p in parts], axis=0) if parts else np.zeros(2)
                res[f"seconds_{t}"] = np.asarray(sum(float(p["seconds"]) for p in parts))
            atomic_savez(art.path, **res)
            art.record()
    return merged


def evaluate(run) -> dict | None:
    """Compute this process's share of the units (skipping fresh ones); without ``--shard``,
    rank 0 then merges (computing any unit still missing). Returns the merged paths (rank 0)."""
    all_units = units(run)
    if not run_units(run, all_units, lambda u: unit_artifact(run, u), lambda u: compute_unit(run, u),
                     "likelihood units"):
        return None
    return merge(run, all_units)


def read_permutation(out) -> dict | None:
    path = artifacts.permutation_path(out)
    return read_json(path, "permutation test") if path.is_file() else None


def main(argv=None):
    from permutation_ad.schema import SCHEMA
    from shared.cli import add_shard_argument, parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    add_shard_argument(p)
    run = Run.from_args(p.parse_args(argv), SCHEMA)
    merged = evaluate(run)
    for key, path in (merged or {}).items():
        run.log(f"{key[0]}/{key[1]}: {path}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
