"""Generated-vs-true metrics of jet samples, as defined in the JetNet evaluation paper (Kansal et
al. 2023, "Evaluating generative models in high energy physics", arXiv:2211.10295), each beside
its truth-vs-truth baseline. Implemented here with NumPy/SciPy (jetnet needs PyTorch).

* W1 — Wasserstein-1 distance of a 1-D marginal (jet mass, each particle feature over all real
  particles, each of the W1 EFPs): mean ± std over ``num_bootstrap`` bootstrap replicates of
  ``w1_samples`` jets per side.
* FPD — Fréchet distance between Gaussians fitted to the EFPs, at batch sizes N evenly spaced in
  1/N between ``fpd_min_samples`` and ``fpd_max_samples`` (mean of ``fpd_num_batches`` batches
  each), extrapolated to N → ∞: the intercept of a straight-line fit of FD vs 1/N, ± its fit error.
* KPD — unbiased MMD² with the polynomial kernel k(x, y) = (x·y/d + 1)^4 on the EFPs, over
  ``kpd_num_batches`` batches of ``kpd_batch_size``: median ± half the 16–84 % range.

Before FPD/KPD each EFP is divided by its largest |value| in the true sample (``normalise``).

**Baseline.** The true sample is split at random into halves A and B (a fresh split per W1
replicate, one split for FPD/KPD). W1: generated vs A and B vs A, with the same number of jets
per side. FPD/KPD: generated vs all true, and A vs B, with the same batch sizes: FPD batches
up to min(N_generated, N_true // 2), KPD batches up to half of that (so that batches differ and
their spread means something). Batches are drawn without replacement (with replacement the
duplicates would bias the unbiased MMD² upward). A value is only meaningful next
to its baseline: the baseline is what the same estimator gives for a perfect generator.

**Input.** A sample is a dict of NumPy arrays for N jets of up to P particles:

* ``particles`` (N, P, 3) — (pT or pT_rel, Δη, Δφ) per particle; anything at padding.
* ``mask`` (N, P) bool, optional — True = real particle (default: pT > 0).
* ``mass`` (N,), optional — jet mass (default: the invariant mass of the massless constituents
  (pT, η, φ), i.e. m/pT_jet when pT is pT_rel).
* ``efps`` (N, E), optional — precomputed EFPs of ``efp_select`` (default: computed).

:func:`dijet_sample_metrics` takes events of the lhco_fullphase form (``jets`` (N, 2, 5) = pT,
η, φ, m, N; ``particles`` (N, 2, P, 3) = pT_rel, Δη, Δφ; ``mask`` (N, 2, P)).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from shared.efps import compute_efps, efp_columns
from shared.errors import ConfigError
from shared.schema import Bool, Choice, Float, Int, List, Section, Str

_DIJET_VIEWS = ("pooled", "j0", "j1")

SAMPLE_METRICS_SCHEMA = Section({
    "seed": Int(0, doc="every resampling draws from this seed"),
    "max_jets": Int(50000, min=2, nullable=True,
                    doc="random subset of at most this many jets (events for dijets) per sample "
                        "(JetNet's recommended size); null = all"),
    "num_bootstrap": Int(10, min=1, doc="W1 bootstrap replicates"),
    "w1_samples": Int(None, min=2, doc="jets per side per W1 replicate; null = "
                                       "min(N_gen, N_true // 2)"),
    "efp_select": List(Str(), ["d<=4"], min_length=1,
                       doc="EFPSet selection for FPD/KPD (JetNet: the 36 EFPs with d <= 4)"),
    "w1_efp_select": List(Str(), ["n==4", "d==4", "p==1"], min_length=1,
                          doc="EFPs whose W1 is reported (JetNet's W1-EFP)"),
    "efp_beta": Float(1.0, min=0.0, exclusive_min=True, doc="angular exponent of the EFPs"),
    "efp_jobs": Int(1, min=1, nullable=True, doc="energyflow processes; null = all CPUs"),
    "normalise": Bool(True, doc="EFPs / max |true EFP| before FPD and KPD"),
    "fpd_min_samples": Int(20000, min=2, doc="smallest FPD batch (scaled with the cap)"),
    "fpd_max_samples": Int(50000, min=2, doc="largest FPD batch (capped at min(N_gen, "
                                             "N_true // 2))"),
    "fpd_num_points": Int(10, min=1, doc="FPD batch sizes, evenly spaced in 1/N"),
    "fpd_num_batches": Int(20, min=1, doc="batches averaged per FPD batch size"),
    "kpd_batch_size": Int(5000, min=2, doc="capped at min(N_gen, N_true // 2) // 2"),
    "kpd_num_batches": Int(10, min=1),
    "kpd_degree": Int(4, min=1, doc="polynomial kernel (x·y/d + 1)^degree"),
    "particle_feature_names": List(Str(), ["pt", "eta", "phi"], length=3,
                                   doc="names of the W1 particle metrics"),
    "dijet_views": List(Choice(*_DIJET_VIEWS), list(_DIJET_VIEWS), min_length=1,
                        doc="dijet adapter: both jets pooled, leading, subleading"),
    "progress": Bool(True, doc="tqdm bar of the EFP computation"),
})
SAMPLE_METRICS_DEFAULTS = SAMPLE_METRICS_SCHEMA.fill()


def sample_metrics_config(cfg: Mapping | None, prefix: str = "", source=None) -> dict:
    """Defaults merged with ``cfg``, validated (:data:`SAMPLE_METRICS_SCHEMA`); ConfigError
    names the file and the key (``prefix.key``)."""
    source = source if source is not None else getattr(cfg, "source", None)
    out = SAMPLE_METRICS_SCHEMA.check(dict(cfg or {}), prefix, source)
    if out["fpd_min_samples"] > out["fpd_max_samples"]:
        key = f"{prefix}.fpd_min_samples" if prefix else "fpd_min_samples"
        raise ConfigError(source, key, f"must not exceed fpd_max_samples, got "
                          f"{out['fpd_min_samples']} > {out['fpd_max_samples']}")
    return out


# ---------------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------------

def wasserstein_1d(x, y) -> float:
    """Wasserstein-1 distance between the empirical distributions of 1-D samples x and y."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.ravel(x), np.ravel(y)))


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Fréchet (2-Wasserstein²) distance of N(mu1, cov1) and N(mu2, cov2):
    |mu1 − mu2|² + Tr(cov1 + cov2 − 2 (cov1^½ cov2 cov1^½)^½)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"frechet_distance: shapes mu {mu1.shape}/{mu2.shape}, "
                         f"cov {cov1.shape}/{cov2.shape} do not match")
    s1 = _sqrtm_psd(cov1)
    cross = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    tr_sqrt = np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)


def _gaussian(x: np.ndarray):
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def fpd(x, y, min_samples: int, max_samples: int, num_points: int, num_batches: int,
        rng: np.random.Generator) -> tuple[float, float, list[int]]:
    """Fréchet physics distance of feature samples x (N, E) and y (M, E), extrapolated to
    infinite batch size; returns (value, error, batch sizes). Batches are drawn without
    replacement; the fit is FD = value + slope / N with value, slope >= 0 (as JetNet)."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if max_samples > min(len(x), len(y)):
        raise ValueError(f"fpd: batch size {max_samples} exceeds the samples ({len(x)}, {len(y)})")
    sizes = (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype(int)
    means = []
    for n in sizes:
        vals = [frechet_distance(*_gaussian(x[rng.choice(len(x), n, replace=False)]),
                                 *_gaussian(y[rng.choice(len(y), n, replace=False)]))
                for _ in range(num_batches)]
        means.append(np.mean(vals))
    inv = 1.0 / sizes
    if len(set(sizes.tolist())) < 2:  # one batch size: no extrapolation possible
        return float(means[0]), float("nan"), sizes.tolist()
    params, cov = curve_fit(lambda t, a, b: a + b * t, inv, means,
                            p0=[max(means[-1], 0.0), 0.0], bounds=([0, 0], [np.inf, np.inf]))
    return float(params[0]), float(np.sqrt(cov[0, 0])), sizes.tolist()


def _kernel_sum(x: np.ndarray, y: np.ndarray, degree: int, block: int = 1024) -> float:
    """Σ_ij (x_i·y_j / d + 1)^degree, in row blocks (memory ~ block × len(y))."""
    d = x.shape[1]
    return float(sum(np.sum((x[i:i + block] @ y.T / d + 1.0) ** degree)
                     for i in range(0, len(x), block)))


def mmd2_poly_unbiased(x, y, degree: int = 4) -> float:
    """Unbiased estimate of MMD² of samples x (m, d) and y (n, d) with the polynomial kernel
    (x·y/d + 1)^degree (the diagonal terms of k(x, x) and k(y, y) excluded)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"mmd2_poly_unbiased: need >= 2 samples each, got {m} and {n}")
    d = x.shape[1]
    diag_x = np.sum((np.sum(x * x, 1) / d + 1.0) ** degree)
    diag_y = np.sum((np.sum(y * y, 1) / d + 1.0) ** degree)
    kxx = (_kernel_sum(x, x, degree) - diag_x) / (m * (m - 1))
    kyy = (_kernel_sum(y, y, degree) - diag_y) / (n * (n - 1))
    return kxx + kyy - 2.0 * _kernel_sum(x, y, degree) / (m * n)


def kpd(x, y, batch_size: int, num_batches: int, rng: np.random.Generator,
        degree: int = 4) -> tuple[float, float]:
    """Kernel physics distance: median and half the 16–84 % range of the unbiased MMD² over
    batches of ``batch_size`` drawn without replacement from x and y."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if batch_size > min(len(x), len(y)):
        raise ValueError(f"kpd: batch size {batch_size} exceeds the samples ({len(x)}, {len(y)})")
    vals = [mmd2_poly_unbiased(x[rng.choice(len(x), batch_size, replace=False)],
                               y[rng.choice(len(y), batch_size, replace=False)], degree)
            for _ in range(num_batches)]
    lo, hi = np.percentile(vals, [16.275, 83.725])
    return float(np.median(vals)), float((hi - lo) / 2)


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------

def _check_sample(sample: Mapping, name: str) -> dict:
    if not isinstance(sample, Mapping) or "particles" not in sample:
        raise ValueError(f"{name}: expected a dict with 'particles' (N, P, 3)")
    x = np.asarray(sample["particles"], np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name}['particles']: expected (N, P, 3), got {x.shape}")
    n = len(x)
    out = {"particles": x}
    out["mask"] = (x[..., 0] > 0) if sample.get("mask") is None else np.asarray(sample["mask"], bool)
    if out["mask"].shape != x.shape[:2]:
        raise ValueError(f"{name}['mask']: shape {out['mask'].shape}, expected {x.shape[:2]}")
    for key, ndim in (("mass", 1), ("efps", 2)):
        if sample.get(key) is not None:
            v = np.asarray(sample[key], np.float64)
            if v.ndim != ndim or len(v) != n:
                raise ValueError(f"{name}['{key}']: shape {v.shape}, expected {ndim}-D with "
                                 f"{n} rows")
            out[key] = v
    if n < 2:
        raise ValueError(f"{name}: need at least 2 jets, got {n}")
    return out


def _subset(sample: dict, idx) -> dict:
    return {k: v[idx] for k, v in sample.items()}


def _complete(sample: dict, c: dict, name: str) -> dict:
    """Fill in the jet mass and EFPs if the sample does not carry them."""
    if "mass" not in sample:
        from shared.data.jets import jet_kinematics_ptetaphi

        sample["mass"] = jet_kinematics_ptetaphi(sample["particles"], sample["mask"])["mass"]
    if "efps" not in sample:
        sample["efps"] = compute_efps(sample["particles"], sample["mask"], c["efp_select"],
                                      c["efp_beta"], jobs=c["efp_jobs"], progress=c["progress"])
    if not np.all(np.isfinite(sample["efps"])) or not np.all(np.isfinite(sample["mass"])):
        raise ValueError(f"{name}: jet mass or EFPs contain NaN/inf")
    return sample


def _cap(sample: dict, c: dict, rng: np.random.Generator) -> dict:
    n = len(sample["particles"])
    if c["max_jets"] is None or n <= c["max_jets"]:
        return sample
    return _subset(sample, np.sort(rng.choice(n, c["max_jets"], replace=False)))


def _entry(value, error, baseline, baseline_error) -> dict:
    return {"value": float(value), "error": float(error), "baseline": float(baseline),
            "baseline_error": float(baseline_error)}


def _w1_metrics(gen: dict, true: dict, c: dict, rng: np.random.Generator) -> dict:
    """W1 of jet mass, particle features and the W1 EFPs: bootstrap mean ± std, gen vs A and
    B vs A (A, B = random halves of the true sample, redrawn per replicate)."""
    n_t = len(true["mass"]) // 2
    n = min(len(gen["mass"]), n_t) if c["w1_samples"] is None else c["w1_samples"]
    if n > min(len(gen["mass"]), n_t):
        raise ValueError(f"w1_samples {n} exceeds min(N_generated, N_true // 2) = "
                         f"{min(len(gen['mass']), n_t)}")
    cols = np.flatnonzero(efp_columns(c["w1_efp_select"], c["efp_select"]))
    names = c["particle_feature_names"]

    def observables(s, idx):
        parts = s["particles"][idx][s["mask"][idx]]
        obs = {"w1_mass": s["mass"][idx]}
        obs.update({f"w1_particle_{nm}": parts[:, f] for f, nm in enumerate(names)})
        obs.update({f"w1_efp_{k}": s["efps"][idx, k] for k in cols})
        return obs

    value, base = {}, {}
    for _ in range(c["num_bootstrap"]):
        perm = rng.permutation(len(true["mass"]))
        half_a, half_b = perm[:n_t], perm[n_t:2 * n_t]
        og = observables(gen, rng.choice(len(gen["mass"]), n))
        oa = observables(true, rng.choice(half_a, n))
        ob = observables(true, rng.choice(half_b, n))
        for key in og:
            value.setdefault(key, []).append(wasserstein_1d(og[key], oa[key]))
            base.setdefault(key, []).append(wasserstein_1d(ob[key], oa[key]))
    efp_keys = [f"w1_efp_{k}" for k in cols]
    for d in (value, base):  # JetNet's single W1-EFP number: the mean over the W1 EFPs
        d["w1_efp"] = list(np.mean([d[k] for k in efp_keys], axis=0))
    out = {key: _entry(np.mean(value[key]), np.std(value[key]), np.mean(base[key]),
                       np.std(base[key])) for key in value if key not in efp_keys}
    out["w1_efp"]["per_efp"] = [_entry(np.mean(value[k]), np.std(value[k]), np.mean(base[k]),
                                       np.std(base[k])) for k in efp_keys]
    out["w1_efp"]["efp_columns"] = [int(k) for k in cols]
    out["w1_samples"] = int(n)
    return out


def sample_metrics(gen: Mapping, true: Mapping, cfg: Mapping | None = None) -> dict:
    """W1 (jet mass, particle features, EFPs), FPD and KPD of ``gen`` vs ``true`` (input form:
    module docstring), each as ``{value, error, baseline, baseline_error}``; config keys:
    :data:`SAMPLE_METRICS_DEFAULTS`. Deterministic for a given ``seed``."""
    c = sample_metrics_config(cfg)
    streams = np.random.SeedSequence(c["seed"]).spawn(5)
    rngs = [np.random.default_rng(s) for s in streams]
    g = _complete(_cap(_check_sample(gen, "generated"), c, rngs[0]), c, "generated")
    t = _complete(_cap(_check_sample(true, "true"), c, rngs[1]), c, "true")
    if g["efps"].shape[1] != t["efps"].shape[1]:
        raise ValueError(f"efps: generated has {g['efps'].shape[1]} columns, true "
                         f"{t['efps'].shape[1]}")
    if len(t["mass"]) < 4:
        raise ValueError(f"true: need at least 4 jets for the truth-vs-truth baseline, got "
                         f"{len(t['mass'])}")
    res = {"n_generated": int(len(g["mass"])), "n_true": int(len(t["mass"])),
           "num_efps": int(g["efps"].shape[1])}
    res.update(_w1_metrics(g, t, c, rngs[2]))

    xg, xt = g["efps"], t["efps"]
    if c["normalise"]:
        scale = np.max(np.abs(xt), axis=0)
        scale[scale == 0] = 1.0
        xg, xt = xg / scale, xt / scale
    perm = rngs[3].permutation(len(xt))
    half = len(xt) // 2
    xa, xb = xt[perm[:half]], xt[perm[half:2 * half]]
    cap = min(len(xg), half)
    hi = min(c["fpd_max_samples"], cap)
    lo = max(2, min(c["fpd_min_samples"], int(hi * c["fpd_min_samples"] / c["fpd_max_samples"])))
    fpd_args = (lo, hi, c["fpd_num_points"], c["fpd_num_batches"])
    seed_fpd, seed_kpd = streams[4].spawn(2)
    v, e, sizes = fpd(xg, xt, *fpd_args, np.random.default_rng(seed_fpd))
    bv, be, _ = fpd(xa, xb, *fpd_args, np.random.default_rng(seed_fpd))
    res["fpd"] = dict(_entry(v, e, bv, be), batch_sizes=sizes)
    kb = min(c["kpd_batch_size"], max(2, cap // 2))  # < pool size: batches must differ
    kpd_args = (kb, c["kpd_num_batches"])
    v, e = kpd(xg, xt, *kpd_args, np.random.default_rng(seed_kpd), c["kpd_degree"])
    bv, be = kpd(xa, xb, *kpd_args, np.random.default_rng(seed_kpd), c["kpd_degree"])
    res["kpd"] = dict(_entry(v, e, bv, be), batch_size=int(kb))
    return res


# ---------------------------------------------------------------------------------------------
# Dijet events (lhco_fullphase form) and reporting
# ---------------------------------------------------------------------------------------------

def dijet_jet_samples(events: Mapping, name: str = "events") -> dict:
    """Per-jet sample dicts ``{"j0", "j1", "pooled"}`` of dijet events: ``jets`` (N, 2, 5) =
    (pT, η, φ, m, N), ``particles`` (N, 2, P, 3) = (pT_rel, Δη, Δφ), ``mask`` (N, 2, P); j0 is the
    jet of higher pT in each event, ``pooled`` both jets of every event (2N jets). Optional
    ``efps`` (N, 2, E) are carried along."""
    for key in ("jets", "particles", "mask"):
        if key not in events:
            raise ValueError(f"{name}: missing '{key}' (dijet events need jets, particles, mask)")
    jets = np.asarray(events["jets"], np.float64)
    parts = np.asarray(events["particles"], np.float64)
    mask = np.asarray(events["mask"], bool)
    n = len(jets)
    if jets.shape[1:] != (2, 5) or parts.shape[:2] != (n, 2) or parts.shape[-1] != 3 \
            or mask.shape != parts.shape[:3]:
        raise ValueError(f"{name}: expected jets (N, 2, 5), particles (N, 2, P, 3), mask "
                         f"(N, 2, P); got {jets.shape}, {parts.shape}, {mask.shape}")
    order = np.argsort(-jets[:, :, 0], axis=1, kind="stable")
    per_jet = {"particles": np.take_along_axis(parts, order[:, :, None, None], 1),
               "mask": np.take_along_axis(mask, order[:, :, None], 1),
               "mass": np.take_along_axis(jets[:, :, 3], order, 1)}
    if events.get("efps") is not None:
        per_jet["efps"] = np.take_along_axis(np.asarray(events["efps"], np.float64),
                                             order[:, :, None], 1)
    out = {f"j{k}": {key: v[:, k] for key, v in per_jet.items()} for k in range(2)}
    out["pooled"] = {key: v.reshape((2 * n,) + v.shape[2:]) for key, v in per_jet.items()}
    return out


def dijet_sample_metrics(gen: Mapping, true: Mapping, cfg: Mapping | None = None) -> dict:
    """:func:`sample_metrics` of dijet events (``dijet_jet_samples`` form) for each of
    ``dijet_views`` (pooled, j0 = leading, j1 = subleading jet); ``max_jets`` caps the number of
    *events*. Jet mass = the stored jet mass (GeV); particle features named pt_rel, deta, dphi.
    EFPs are computed once per jet and shared by the views."""
    c = sample_metrics_config(cfg)
    if cfg is None or "particle_feature_names" not in cfg:
        c["particle_feature_names"] = ["pt_rel", "deta", "dphi"]
    rng = np.random.default_rng(np.random.SeedSequence(c["seed"]).spawn(6)[5])
    samples = []
    for events, name in ((gen, "generated"), (true, "true")):
        n = len(np.asarray(events["jets"])) if "jets" in events else 0
        idx = np.arange(n) if c["max_jets"] is None or n <= c["max_jets"] else \
            np.sort(rng.choice(n, c["max_jets"], replace=False))
        ev = {k: np.asarray(events[k])[idx] for k in ("jets", "particles", "mask", "efps")
              if events.get(k) is not None}
        views = dijet_jet_samples(ev, name)
        if "efps" not in views["pooled"]:
            pooled = views["pooled"]
            efps = compute_efps(pooled["particles"], pooled["mask"], c["efp_select"],
                                c["efp_beta"], jobs=c["efp_jobs"], progress=c["progress"])
            views = dijet_jet_samples(dict(ev, efps=efps.reshape(len(idx), 2, -1)), name)
        samples.append(views)
    c["max_jets"] = None  # already applied to the events
    return {view: sample_metrics(samples[0][view], samples[1][view], c)
            for view in c["dijet_views"]}


METRIC_LABELS = {"w1_mass": "W1 jet mass", "w1_efp": "W1 EFP (mean)", "fpd": "FPD",
                 "kpd": "KPD"}


def _fmt(v: float, e: float) -> str:
    if not math.isfinite(e):
        return f"{v:.4g}"
    return f"{v:.4g} ± {e:.2g}"


def metrics_table(res: dict, title: str | None = None) -> str:
    """Markdown table (metric | generated vs true | true vs true) of a :func:`sample_metrics`
    result; per-EFP W1 values are left out (they are in the dict)."""
    lines = ([f"**{title}** ({res['n_generated']} generated, {res['n_true']} true jets)", ""]
             if title else [])
    lines += ["| metric | generated vs true | true vs true |", "|---|---|---|"]
    for key, entry in res.items():
        if isinstance(entry, dict) and "value" in entry:
            label = METRIC_LABELS.get(key, key.replace("w1_particle_", "W1 particle "))
            lines.append(f"| {label} | {_fmt(entry['value'], entry['error'])} | "
                         f"{_fmt(entry['baseline'], entry['baseline_error'])} |")
    return "\n".join(lines)


__all__ = ["SAMPLE_METRICS_SCHEMA", "SAMPLE_METRICS_DEFAULTS", "sample_metrics_config", "wasserstein_1d",
           "frechet_distance", "fpd", "mmd2_poly_unbiased", "kpd", "sample_metrics",
           "dijet_jet_samples", "dijet_sample_metrics", "metrics_table"]
