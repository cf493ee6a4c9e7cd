"""Log-likelihood of sets (or vectors) through the probability-flow ODE (paper Eq. 3-4).

log p_eps(x) = log p_1(x(1)) + ∫_eps^1 ∇·f̃(x(t), t) dt,   f̃ = f(t) x − ½ g(t)² s(x, t),
s = −eps_hat / σ(t).  Two solvers integrate the state [x, Δlogp] of every set:

* ``solver="graph"`` (default): :class:`shared.diffusion.ode.BatchedRK` — the whole solve in
  one TensorFlow graph, each set with its own time, step size and error control (SciPy's RK45
  algorithm applied to that set alone: its real coordinates and its Δlogp), sets refilled into
  the batch as others finish.
* ``solver="scipy"`` (reference): SciPy ``solve_ivp`` over the flattened state of a whole batch
  (one error norm for the batch), one ``tf.function`` call per evaluation.

Only real elements count: the probes, the divergence, the prior and the error norm are masked.
Units are those of the model inputs.  Options: :class:`LikelihoodOptions` (config ``likelihood:``).
"""
from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
import tensorflow as tf
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

from shared.errors import ConfigError
from shared.diffusion.ode import METHODS, BatchedRK

DIVERGENCES = ("hutchinson", "exact")
PROBES = ("gaussian", "rademacher")
SOLVERS = ("graph", "scipy")


@dataclass(frozen=True)
class LikelihoodOptions:
    """Validated options of :func:`log_likelihood` (the config's ``likelihood:`` section)."""

    divergence: str = "hutchinson"   # hutchinson (paper) | exact (trace of the Jacobian)
    probe: str = "rademacher"        # Hutchinson probe: rademacher (3x lower per-jet std at the
    #                                  same cost, benchmarks/likelihood_estimators.py) | gaussian (paper)
    num_probes: int = 1              # Hutchinson: mean of k probes per set (fixed per solve)
    method: str = "RK45"             # RK45 | RK23 (graph); any solve_ivp method (scipy)
    rtol: float = 1e-4
    atol: float = 1e-5
    t_eps: float = 1e-5              # integrate from t_eps to 1
    batch_size: int | None = None    # graph: sets in flight, None = auto (max_elements);
    #                                  scipy: sets per solve_ivp call, None = all
    solver: str = "graph"            # graph (in-graph batched RK) | scipy (reference)
    jit_compile: bool = False        # graph solver: XLA-compile the drift + divergence (see docs)
    max_elements: int = 4096         # auto batch: sets × elements × probe copies per evaluation
    trim_padding: bool = True        # graph solver: drop trailing padded slots (width buckets)

    @classmethod
    def from_config(cls, mapping: Mapping | None, source=None,
                    prefix: str = "likelihood") -> "LikelihoodOptions":
        """Options from a config mapping; ConfigError names the unknown or bad ``prefix.key``."""
        mapping = dict(mapping or {})
        names = {f.name for f in dataclasses.fields(cls)}
        for key in mapping:
            if key not in names:
                raise ConfigError(source, f"{prefix}.{key}",
                                  f"unknown key (known keys here: {', '.join(sorted(names))})")
        opts = cls(**mapping)
        opts.validate(source, prefix)
        return opts

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self, source=None, prefix: str = "likelihood") -> None:
        def bad(key, what):
            return ConfigError(source, f"{prefix}.{key}", f"{what}, got {getattr(self, key)!r}")

        def positive_int(v):
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        def positive_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0

        for key, allowed in (("divergence", DIVERGENCES), ("probe", PROBES), ("solver", SOLVERS)):
            if getattr(self, key) not in allowed:
                raise bad(key, f"must be one of {allowed}")
        if self.solver == "graph" and self.method not in METHODS:
            raise bad("method", f"must be one of {METHODS} with solver 'graph'")
        if not isinstance(self.method, str):
            raise bad("method", "must be a solve_ivp method name")
        for key in ("rtol", "atol"):
            if not positive_num(getattr(self, key)):
                raise bad(key, "must be a positive number")
        if not (positive_num(self.t_eps) and self.t_eps < 1):
            raise bad("t_eps", "must be in (0, 1)")
        for key in ("num_probes", "max_elements"):
            if not positive_int(getattr(self, key)):
                raise bad(key, "must be a positive integer")
        if self.batch_size is not None and not positive_int(self.batch_size):
            raise bad("batch_size", "must be a positive integer or null")
        for key in ("jit_compile", "trim_padding"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "must be true or false")

    def copies(self, num_elements: int, num_features: int) -> int:
        """Network evaluations per set per ODE evaluation (probe copies)."""
        return num_elements * num_features if self.divergence == "exact" else self.num_probes

    def sets_per_batch(self, num_sets: int, num_elements: int, num_features: int) -> int:
        """``batch_size`` or, if None, as many sets as fit ``max_elements``
        (memory ∝ sets × elements × probe copies)."""
        if self.batch_size is not None:
            return min(self.batch_size, max(num_sets, 1))
        per_set = num_elements * self.copies(num_elements, num_features)
        return int(max(1, min(num_sets, self.max_elements // max(per_set, 1))))


class LikelihoodResult(NamedTuple):
    logp: np.ndarray              # (B,) float64, log-density in model-input units
    nfe: int                      # scipy: evaluations summed over batches; graph: batched calls
    latent: np.ndarray | None     # x(1), same shape as x, if requested
    nfe_per_set: np.ndarray | None = None   # graph solver: evaluations each set needed


def _integrand(eps_fn, sde, divergence, vector_input):
    """(x (B,P,F), t (B,), mask (B,P), cond, probes (B,k,P,F) | None) -> (f̃ masked, ∇·f̃ (B,)).

    Hutchinson: the mean over the k probes of vᵀ(∂f̃/∂x)v from one backward pass of the batch
    replicated k times (k = 1: no copy).  Exact (``probes`` None): Σ_d e_dᵀ J e_d with the P·F
    one-hot probes of the real coordinates, the batch replicated P·F times (memory ∝ P·F;
    batch_jacobian's pfor crashed TF 2.21 on CPU)."""

    def drift(x, t, mask, cond):
        call_x = x[:, 0, :] if vector_input else x
        eps_hat = eps_fn(call_x, t, None if vector_input else mask, cond)
        if vector_input:
            eps_hat = eps_hat[:, None, :]
        return sde.pf_drift(x, t, eps_hat) * tf.expand_dims(mask, -1)

    def f_and_div(x, t, mask, cond, probes):
        shape = tf.shape(x)
        if divergence == "exact":
            d = shape[1] * shape[2]
            eye = tf.reshape(tf.eye(d, dtype=x.dtype), tf.stack([1, d, shape[1], shape[2]]))
            probes, mean = eye * mask[:, None, :, None], False
        else:
            probes, mean = probes * mask[:, None, :, None], True
        if probes.shape[1] == 1:
            with tf.GradientTape() as tape:
                tape.watch(x)
                f = drift(x, t, mask, cond)
                fp = tf.reduce_sum(f * probes[:, 0])
            return f, tf.reduce_sum(tape.gradient(fp, x) * probes[:, 0], axis=[1, 2])
        k = tf.shape(probes)[1]

        def rep(v):  # (B, ...) -> (B·k, ...), the copies of a set adjacent
            return None if v is None else tf.repeat(v, k, axis=0)

        x_rep = rep(x)
        with tf.GradientTape() as tape:
            tape.watch(x_rep)
            f_rep = drift(x_rep, rep(t), rep(mask), rep(cond))
            v = tf.reshape(probes, tf.shape(x_rep))
            fp = tf.reduce_sum(f_rep * v)
        vjv = tf.reduce_sum(tf.reshape(tape.gradient(fp, x_rep) * v, tf.stack([shape[0], k, -1])),
                            axis=2)
        div = tf.reduce_mean(vjv, axis=1) if mean else tf.reduce_sum(vjv, axis=1)
        return tf.reshape(f_rep, tf.stack([shape[0], k, shape[1], shape[2]]))[:, 0], div

    return f_and_div


def make_ode_fn(eps_fn, sde, divergence, vector_input):
    """tf.function (x, t scalar, mask, cond, probe (B,P,F)) -> (f̃ masked, divergence (B,))."""
    f_and_div = _integrand(eps_fn, sde, divergence, vector_input)

    @tf.function(reduce_retracing=True)
    def ode_fn(x, t, mask, cond, probe):
        t_vec = tf.fill([tf.shape(x)[0]], t)
        probes = None if divergence == "exact" else probe[:, None]
        return f_and_div(x, t_vec, mask, cond, probes)

    return ode_fn


def draw_probes(opts: LikelihoodOptions, shape, mask, seed):
    """Hutchinson probes (N, k, P, F) float32, zero at padding; None for the exact divergence."""
    if opts.divergence == "exact":
        return None
    rng = np.random.default_rng(seed)
    n, p, nf = shape
    size = (n, opts.num_probes, p, nf)
    z = rng.standard_normal(size) if opts.probe == "gaussian" else rng.choice([-1.0, 1.0], size=size)
    return (z * mask[:, None, :, None]).astype(np.float32)


def log_likelihood(eps_fn, x, mask, cond, sde, *, seed=None, return_latent=False, progress=False,
                   options: LikelihoodOptions | None = None, probes=None,
                   **overrides) -> LikelihoodResult:
    """log p(x) per set, integrating the probability-flow ODE from ``t_eps`` to 1.

    x (B,P,F) with mask (B,P) (None = all real), or x (B,F) for vector models (mask ignored).
    Options: ``options`` and/or keyword overrides (the fields of :class:`LikelihoodOptions`:
    divergence, probe, num_probes, method, rtol, atol, t_eps, batch_size, solver, jit_compile,
    max_elements, trim_padding).  Hutchinson probes are drawn once per set per solve from
    ``seed`` (the same probes for both solvers; deterministic given ``seed``) unless ``probes``
    (B, k, P, F) are given.
    """
    base = dataclasses.asdict(options) if options is not None else {}
    opts = LikelihoodOptions.from_config({**base, **overrides}, source="log_likelihood")
    x = np.asarray(x, dtype=np.float64)
    vector_input = x.ndim == 2
    x3 = x[:, None, :] if vector_input else x
    if x3.ndim != 3:
        raise ValueError(f"log_likelihood: x must be (B,P,F) or (B,F), got shape {x.shape}")
    n, p, nf = x3.shape
    if vector_input or mask is None:
        m = np.ones((n, p), dtype=np.float64)
    else:
        m = np.asarray(mask, dtype=np.float64)
        if m.shape != (n, p):
            raise ValueError(f"log_likelihood: mask shape {m.shape} does not match x {x.shape}")
    x3 = x3 * m[..., None]
    cond_arr = None if cond is None else np.asarray(cond, dtype=np.float32)
    if cond_arr is not None and len(cond_arr) != n:
        raise ValueError(f"log_likelihood: cond has {len(cond_arr)} rows, x has {n}")
    if probes is None:
        probes = draw_probes(opts, x3.shape, m, seed)
    elif opts.divergence == "hutchinson":
        probes = np.asarray(probes, np.float32)
        if probes.shape != (n, opts.num_probes, p, nf):
            raise ValueError(f"log_likelihood: probes must have shape {(n, opts.num_probes, p, nf)}"
                             f", got {probes.shape}")
        probes = probes * m[:, None, :, None].astype(np.float32)
    else:
        probes = None
    # the scipy reference keeps its historical default: one solve over all sets
    bs = n if opts.solver == "scipy" and opts.batch_size is None else opts.sets_per_batch(n, p, nf)
    solve = _solve_graph if opts.solver == "graph" else _solve_scipy
    z1, delta, nfe, nfe_per_set = solve(eps_fn, sde, opts, vector_input, x3, m, cond_arr, probes,
                                        bs, progress)
    logp = sde.prior_logp(z1, m) + delta
    latent = (z1[:, 0, :] if vector_input else z1) if return_latent else None
    return LikelihoodResult(logp=logp, nfe=nfe, latent=latent, nfe_per_set=nfe_per_set)


_GRAPH_SOLVERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _graph_solver(eps_fn, sde, opts, vector_input, p, nf, bs):
    """The BatchedRK of this eps_fn/schedule/options/shape, cached so repeated calls reuse its
    traced (and XLA-compiled) graph; the cache holds eps_fn weakly."""
    key = (id(sde), opts, vector_input, p, nf, bs)
    per_fn = _GRAPH_SOLVERS.setdefault(eps_fn, {})
    hit = per_fn.get(key)
    if hit is not None and hit[0] is sde:
        return hit[1]
    pf = p * nf
    f_and_div = _integrand(eps_fn, sde, opts.divergence, vector_input)
    if opts.jit_compile:
        f_and_div = tf.function(f_and_div, jit_compile=True, reduce_retracing=True)

    def rhs(t, y, ex):
        xs = tf.reshape(tf.cast(y[:, :pf], tf.float32), [-1, p, nf])
        f, div = f_and_div(xs, tf.cast(t, tf.float32), ex["mask"], ex.get("cond"),
                           ex.get("probe"))
        return tf.concat([tf.cast(tf.reshape(f, [-1, pf]), tf.float64),
                          tf.cast(div, tf.float64)[:, None]], axis=1)

    solver = BatchedRK(rhs, method=opts.method, rtol=opts.rtol, atol=opts.atol, slots=bs,
                       chunk=16 * bs)
    per_fn[key] = (sde, solver)
    return solver


def width_buckets(num_elements: int) -> np.ndarray:
    """Set widths the graph solver trims to: about P/4, P/2, 3P/4 (multiples of 8) and P for
    P > 32, else P alone.  Few distinct widths bound the number of traced/compiled shapes."""
    if num_elements <= 32:
        return np.array([num_elements])
    return np.array(sorted({-(-num_elements * k // 32) * 8 for k in (1, 2, 3)} | {num_elements}))


def assign_widths(mask, min_group=None) -> np.ndarray:
    """Width each set is solved at: the smallest bucket holding its last real slot; a bucket
    with fewer than ``min_group`` sets (default max(4, 2 % of the sets)) joins the next wider
    non-empty one (one compiled shape less)."""
    n, p = mask.shape
    buckets = width_buckets(p)
    used = np.where(mask.any(1), p - np.argmax(mask[:, ::-1] > 0, axis=1), 1)
    width = buckets[np.searchsorted(buckets, used)]
    min_group = max(4, n // 50) if min_group is None else min_group
    for i, lo in enumerate(buckets[:-1]):
        count = np.count_nonzero(width == lo)
        wider = [b for b in buckets[i + 1:] if np.any(width == b)]
        if 0 < count < min_group and wider:
            width[width == lo] = wider[0]
    return width


def _solve_graph(eps_fn, sde, opts, vector_input, x3, m, cond_arr, probes, bs, progress):
    """Sets grouped by the width they need (last real slot + 1, rounded up to a bucket); each
    group solved at that width: padded slots beyond it cannot affect real ones (mask contract),
    so they are not evaluated at all."""
    n, p, nf = x3.shape
    z1, delta, nfe_set, calls = np.zeros_like(x3), np.zeros(n), np.zeros(n, np.int64), 0
    if opts.trim_padding and not vector_input:
        width = assign_widths(m)
    else:
        width = np.full(n, p)
    bar = tqdm(total=n, desc="log-likelihood", disable=not progress)
    for w in np.unique(width):
        rows = np.flatnonzero(width == w)
        w = int(w)
        mw = m[rows, :w]
        extras = {"mask": mw.astype(np.float32)}
        if cond_arr is not None:
            extras["cond"] = cond_arr[rows]
        if probes is not None:
            extras["probe"] = probes[rows, :, :w]
        weights = np.concatenate([np.repeat(mw, nf, axis=1), np.ones((len(rows), 1))], axis=1)
        y0 = np.concatenate([x3[rows, :w].reshape(len(rows), w * nf), np.zeros((len(rows), 1))], 1)
        slots = bs if w == p else opts.sets_per_batch(n, w, nf)
        solver = _graph_solver(eps_fn, sde, opts, vector_input, w, nf, min(slots, len(rows)))
        sol = solver(y0, opts.t_eps, 1.0, weights=weights, extras=extras, progress=bar)
        z1[rows, :w] = sol.y[:, :w * nf].reshape(len(rows), w, nf)
        delta[rows], nfe_set[rows], calls = sol.y[:, w * nf], sol.nfe, calls + sol.calls
    bar.close()
    return z1, delta, int(calls), nfe_set


def _solve_scipy(eps_fn, sde, opts, vector_input, x3, m, cond_arr, probes, bs, progress):
    n, p, nf = x3.shape
    f_and_div = _integrand(eps_fn, sde, opts.divergence, vector_input)

    @tf.function(reduce_retracing=True)
    def ode_fn(x, t, mask, cond, probe):
        return f_and_div(x, tf.fill([tf.shape(x)[0]], t), mask, cond, probe)

    z1, delta, nfe = np.zeros_like(x3), np.zeros(n), 0
    for start in tqdm(range(0, n, bs), desc="log-likelihood", disable=not progress):
        sl = slice(start, min(start + bs, n))
        xb, mb = x3[sl], m[sl]
        b = xb.shape[0]
        mask_tf = tf.constant(mb, tf.float32)
        cond_tf = None if cond_arr is None else tf.constant(cond_arr[sl])
        probe_tf = None if probes is None else tf.constant(probes[sl])
        # the ODE state holds real coordinates only, so padding cannot even change step sizes
        real_idx = np.flatnonzero(np.broadcast_to(mb[..., None] > 0, xb.shape))
        n_state = real_idx.size

        def rhs(t, y, xb_shape=xb.shape, mask_tf=mask_tf, cond_tf=cond_tf, probe_tf=probe_tf,
                real_idx=real_idx, n_state=n_state):
            full = np.zeros(int(np.prod(xb_shape)), dtype=np.float32)
            full[real_idx] = y[:n_state]
            f, div = ode_fn(tf.constant(full.reshape(xb_shape)), tf.constant(t, tf.float32),
                            mask_tf, cond_tf, probe_tf)
            return np.concatenate([f.numpy().ravel()[real_idx].astype(np.float64),
                                   div.numpy().astype(np.float64)])

        y0 = np.concatenate([xb.ravel()[real_idx], np.zeros(b)])
        sol = solve_ivp(rhs, (opts.t_eps, 1.0), y0, method=opts.method, rtol=opts.rtol,
                        atol=opts.atol)
        if not sol.success:
            raise RuntimeError(f"log_likelihood: ODE solver failed: {sol.message}")
        y1 = sol.y[:, -1]
        zb = np.zeros(xb.size)
        zb[real_idx] = y1[:n_state]
        z1[sl] = zb.reshape(xb.shape)
        delta[sl] = y1[n_state:]
        nfe += int(sol.nfev)
    return z1, delta, nfe, None


__all__ = ["LikelihoodOptions", "LikelihoodResult", "log_likelihood", "draw_probes", "make_ode_fn",
           "DIVERGENCES", "PROBES", "SOLVERS"]
