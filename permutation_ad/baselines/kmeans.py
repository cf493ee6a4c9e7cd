"""k-means anomaly scores and the spherical Gaussian-mixture NLL
(``whats_anomalous_in_lhc_jets.txt`` Sec. 3; the clustering itself is scikit-learn).

Scores (higher = more anomalous), for a point r and clusters i with centroid μ_i:

* MinD  — distance to the nearest centroid.
* KNC<k> — mean distance to the k nearest centroids.
* MLLED — −log Σ_i L_i(r) with the cluster likelihood of Eq. 12, radius ρ_i = mean member
  distance, tail width σ_i, normalised so that ∫ L_i d^d r = N_i in d dimensions, with
  d = median over clusters of the effective dimension d_i = ln(N(cρ_i)/N(ρ_i)) / ln c
  (N(R) = training points within R of μ_i, c = ``dim_scale``).
* MLL1D — the same with d = 1.
* MLLN  — d = 1 and normalisation 𝒩_i = N_i (no volume factor).
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp


def _distances(x, centers, batch=2048):
    """(N, K) Euclidean distances, in batches (x may be large)."""
    c2 = (centers**2).sum(1)
    out = np.empty((len(x), len(centers)))
    for a in range(0, len(x), batch):
        xb = x[a:a + batch]
        d2 = (xb**2).sum(1)[:, None] + c2[None, :] - 2.0 * xb @ centers.T
        out[a:a + batch] = np.sqrt(np.maximum(d2, 0.0))
    return out


def effective_dimensions(dist, rho, c=1.1):
    """d_i = ln(N_i(c ρ_i) / N_i(ρ_i)) / ln c from the (N, K) training distances to the
    centroids; NaN where fewer than one point lies within ρ_i."""
    inner = (dist <= rho[None, :]).sum(0).astype(np.float64)
    outer = (dist <= c * rho[None, :]).sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(outer / inner) / np.log(c)
    return np.where(inner > 0, d, np.nan)


class KMeansScorer:
    """k-means (scikit-learn, explicit ``n_init`` and init) plus the five scores above."""

    def __init__(self, k=100, n_init=10, max_iter=300, init="k-means++", knc=5, dim_scale=1.1,
                 seed=0):
        self.k, self.n_init, self.max_iter, self.init = int(k), int(n_init), int(max_iter), init
        self.knc, self.dim_scale, self.seed = int(knc), float(dim_scale), int(seed)

    def fit(self, x):
        from sklearn.cluster import KMeans

        x = np.asarray(x, np.float64)
        if len(x) < self.k:
            raise ValueError(f"kmeans: {len(x)} training points for k = {self.k} clusters")
        km = KMeans(n_clusters=self.k, init=self.init, n_init=self.n_init, max_iter=self.max_iter,
                    random_state=self.seed).fit(x)
        self.centers = km.cluster_centers_
        dist = _distances(x, self.centers)
        lab = km.labels_
        own = dist[np.arange(len(x)), lab]
        self.counts = np.bincount(lab, minlength=self.k).astype(np.float64)
        if np.any(self.counts == 0):
            raise RuntimeError("kmeans: empty cluster after fitting")
        self.rho = np.bincount(lab, weights=own, minlength=self.k) / self.counts
        # a one-member cluster (few jets per cluster, e.g. a smoke run) has ρ = 0: floor it so
        # that log ρ and the MLL scores stay finite
        positive = self.rho[self.rho > 0]
        self.rho = np.maximum(self.rho, 1e-6 * (np.median(positive) if positive.size else 1.0))
        self.sigma = np.sqrt(np.bincount(lab, weights=(own - self.rho[lab]) ** 2,
                                         minlength=self.k) / self.counts)
        self.sigma = np.maximum(self.sigma, 1e-12 * max(self.rho.max(), 1e-300))
        self.dims = effective_dimensions(dist, self.rho, self.dim_scale)
        self.dim = float(np.nanmedian(self.dims))
        self.inertia = float(km.inertia_)
        self.n_iter = int(km.n_iter_)
        return self

    def _log_norm(self, d):
        """log 𝒩_i with ∫ L_i = N_i in d dimensions: 𝒩_i = N_i / (S_d (ρ^d/d + ρ^(d-1) σ √(π/2)))."""
        log_sd = np.log(2.0) + 0.5 * d * np.log(np.pi) - gammaln(0.5 * d)
        vol = np.logaddexp(d * np.log(self.rho) - np.log(d),
                           (d - 1) * np.log(self.rho) + np.log(self.sigma) + 0.5 * np.log(np.pi / 2))
        return np.log(self.counts) - log_sd - vol

    def _mll(self, dist, d, log_norm):
        """−log Σ_i L_i(r) of Eq. 12 (ρ/|r − μ| factor with |r − μ| the distance to μ_i)."""
        outside = dist > self.rho[None, :]
        safe = np.maximum(dist, 1e-300)
        tail = (d - 1) * (np.log(self.rho)[None, :] - np.log(safe)) \
            - (dist - self.rho[None, :]) ** 2 / (2 * self.sigma[None, :] ** 2)
        log_l = log_norm[None, :] + np.where(outside, tail, 0.0)
        return -logsumexp(log_l, axis=1)

    def scores(self, x):
        """{MinD, KNC<k>, MLLED, MLL1D, MLLN: (N,)}."""
        dist = _distances(np.asarray(x, np.float64), self.centers)
        near = np.sort(dist, axis=1)
        return {
            "mind": near[:, 0],
            f"knc{self.knc}": near[:, :self.knc].mean(1),
            "mlled": self._mll(dist, self.dim, self._log_norm(self.dim)),
            "mll1d": self._mll(dist, 1.0, self._log_norm(1.0)),
            "mlln": self._mll(dist, 1.0, np.log(self.counts)),
        }

    def info(self):
        return {"effective_dimension": self.dim, "rho_min": float(self.rho.min()),
                "rho_median": float(np.median(self.rho)), "rho_max": float(self.rho.max()),
                "max_sigma_over_rho": float((self.sigma / self.rho).max()),
                "smallest_cluster": int(self.counts.min()), "inertia": self.inertia,
                "n_iter": self.n_iter}


class GMMScorer:
    """Spherical Gaussian mixture (scikit-learn); score = −log p(x).

    The variance regulariser β (``reg_covar``) starts at ``reg_start`` (default: the mean
    per-dimension variance of the data) and is divided by 10 until the smallest fitted
    variance is at least ``reg_ratio`` × β (paper Sec. 3.2), at most ``max_refits`` fits."""

    def __init__(self, n_components=100, max_iter=100, tol=1e-3, init_params="kmeans",
                 reg_start=None, reg_ratio=1000.0, max_refits=8, seed=0):
        self.n_components, self.max_iter, self.tol = int(n_components), int(max_iter), float(tol)
        self.init_params, self.reg_start = init_params, reg_start
        self.reg_ratio, self.max_refits, self.seed = float(reg_ratio), int(max_refits), int(seed)

    def fit(self, x):
        from sklearn.mixture import GaussianMixture

        import warnings

        from sklearn.exceptions import ConvergenceWarning

        x = np.asarray(x, np.float64)
        reg = float(self.reg_start) if self.reg_start else float(x.var(0).mean())
        for fit in range(self.max_refits):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)   # recorded in info()
                gmm = GaussianMixture(self.n_components, covariance_type="spherical", reg_covar=reg,
                                      max_iter=self.max_iter, tol=self.tol,
                                      init_params=self.init_params, random_state=self.seed).fit(x)
            var_min = float(gmm.covariances_.min())
            if var_min >= self.reg_ratio * reg:
                break
            if fit < self.max_refits - 1:
                # next β: a power of ten at most β/10, jumping straight to the scale the
                # fitted variances (without β) ask for
                need = (var_min - reg) / self.reg_ratio
                reg = min(reg / 10.0, 10.0 ** np.floor(np.log10(need))) if need > 0 else reg / 10.0
        self.gmm, self.reg, self.n_fits = gmm, reg, fit + 1
        self.em_converged = bool(gmm.converged_)
        self.reg_condition = bool(gmm.covariances_.min() >= self.reg_ratio * reg)
        return self

    def scores(self, x):
        return {"nll": -self.gmm.score_samples(np.asarray(x, np.float64))}

    def info(self):
        var = self.gmm.covariances_
        return {"reg_covar": self.reg, "fits": self.n_fits, "reg_condition_met": self.reg_condition,
                "em_converged": self.em_converged,
                "sqrt_var_min": float(np.sqrt(var.min())), "sqrt_var_median": float(np.sqrt(np.median(var)))}
