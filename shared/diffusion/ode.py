"""Many independent ODE problems solved at once in one TensorFlow graph: adaptive explicit
Runge–Kutta (Dormand–Prince ``RK45``, Bogacki–Shampine ``RK23``) with per-problem error control.

Each problem (row of ``y0``) has its own time, step size and accept/reject decisions, computed
exactly as SciPy's ``solve_ivp`` does for a single problem: the same tableaus (taken from
``scipy.integrate.RK45/RK23``), the same initial-step heuristic (Hairer–Nørsett–Wanner II.4),
the same weighted RMS error norm with scale ``atol + max(|y|, |y_new|)·rtol``, the same safety
factor and step-factor limits.  ``weights`` (0/1 per component) restrict the norm to the real
components of a problem, so padded coordinates never change its steps.

The solver keeps ``slots`` problems in flight in a ``tf.while_loop``; every loop iteration is ONE
batched evaluation of the right-hand side, each slot at its own Runge–Kutta stage.  A slot whose
problem reaches ``t1`` writes its result and takes the next waiting problem, so a hard problem
never holds the others back and no evaluation is spent on finished problems until the queue is
empty (then the last slots drain).  Nothing leaves the graph during a solve.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import numpy as np
import tensorflow as tf

METHODS = ("RK45", "RK23")
# scipy.integrate._ivp.rk constants
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


class ODESolution(NamedTuple):
    y: np.ndarray          # (N, D) float64 state at t1
    nfe: np.ndarray        # (N,) right-hand-side evaluations spent on each problem (SciPy's nfev)
    calls: int             # batched right-hand-side calls (loop iterations), summed over chunks
    slots: int             # problems in flight per call


def _tableau(method):
    """Phase table of the per-slot stage machine.

    Phase 0 evaluates f(t0, y0) (initial step, part 1), phase 1 f(t0 + h0, y0 + h0 f0) (part 2),
    phase 1 + k (k = 1..s) Runge–Kutta stage k: its point is y + h Σ_j coef[phase, j] K_j at
    t + c[phase] h, and its value is stored in K[k] (phase 0 stores f0 in K[0]).
    """
    from scipy.integrate import RK23, RK45

    if method not in METHODS:
        raise ValueError(f"ode method must be one of {METHODS}, got {method!r}")
    rk = {"RK45": RK45, "RK23": RK23}[method]
    s = rk.n_stages
    coef = np.zeros((s + 2, s + 1))
    coef[1, 0] = 1.0
    for k in range(1, s):
        coef[k + 1, :k] = rk.A[k, :k]
    coef[s + 1, :s] = rk.B
    c = np.concatenate([[0.0, 1.0], rk.C[1:s], [1.0]])
    store = np.concatenate([[0, -1], np.arange(1, s + 1)]).astype(np.int32)
    return coef, c, store, np.asarray(rk.E, np.float64), s, int(rk.error_estimator_order)


class BatchedRK:
    """Adaptive RK for N independent problems dy/dt = rhs(t, y, extras), t from t0 to t1 > t0.

    ``rhs(t (b,) float64, y (b, D) float64, extras: dict of (b, ...) tensors) -> (b, D)`` must be
    traceable TensorFlow and row-independent (row i of the output depends only on row i).
    ``slots``: problems in flight per call; ``chunk``: problems per graph call (bounds the memory
    of inputs/outputs and gives progress); ``jit_compile``: XLA-compile the whole loop.
    """

    def __init__(self, rhs: Callable, method="RK45", rtol=1e-4, atol=1e-5, slots=256,
                 chunk=None, max_calls=200_000, jit_compile=False):
        self.rhs, self.method = rhs, method
        self.rtol, self.atol = float(rtol), float(atol)
        self.slots, self.chunk = int(slots), None if chunk is None else int(chunk)
        self.max_calls = int(max_calls)
        coef, c, store, e, s, order = _tableau(method)
        self._consts = dict(coef=tf.constant(coef), c=tf.constant(c), store=tf.constant(store),
                            e=tf.constant(e), s=s, order=order)
        self._fn = tf.function(self._solve, jit_compile=bool(jit_compile), reduce_retracing=True,
                               autograph=False)

    def __call__(self, y0, t0, t1, weights=None, extras: Mapping | None = None,
                 progress=None) -> ODESolution:
        y0 = np.asarray(y0, np.float64)
        if y0.ndim != 2:
            raise ValueError(f"BatchedRK: y0 must be (N, D), got shape {y0.shape}")
        n = len(y0)
        w = np.ones_like(y0) if weights is None else np.asarray(weights, np.float64)
        if w.shape != y0.shape:
            raise ValueError(f"BatchedRK: weights shape {w.shape} does not match y0 {y0.shape}")
        extras = {k: np.asarray(v) for k, v in (extras or {}).items()}
        for k, v in extras.items():
            if len(v) != n:
                raise ValueError(f"BatchedRK: extras[{k!r}] has {len(v)} rows, y0 has {n}")
        if not t1 > t0:
            raise ValueError(f"BatchedRK: need t1 > t0, got t0={t0}, t1={t1}")
        y1, nfe, calls = np.empty_like(y0), np.zeros(n, np.int64), 0
        slots = max(1, min(self.slots, n))
        chunk = n if self.chunk is None else max(self.chunk, slots)
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            b = min(slots, sl.stop - sl.start)
            out_y, out_nfe, it, failed = self._fn(
                tf.constant(y0[sl]), tf.constant(w[sl]),
                {k: tf.constant(v[sl]) for k, v in extras.items()},
                tf.constant(float(t0), tf.float64), tf.constant(float(t1), tf.float64),
                tf.zeros([b], tf.int32))
            it = int(it)
            if it >= self.max_calls:
                raise RuntimeError(f"BatchedRK: not finished after max_calls={self.max_calls} "
                                   "batched evaluations (stiff problem or too tight rtol/atol?)")
            bad = np.flatnonzero(failed.numpy())
            if bad.size:
                raise RuntimeError(f"BatchedRK: step size underflow (as SciPy's 'Required step "
                                   f"size is less than spacing between numbers') for problems "
                                   f"{(bad + start).tolist()[:10]}")
            y1[sl], nfe[sl], calls = out_y.numpy(), out_nfe.numpy(), calls + it
            if progress is not None:
                progress.update(sl.stop - sl.start)
        return ODESolution(y=y1, nfe=nfe, calls=calls, slots=slots)

    # ---------------------------------------------------------------------------- the graph --
    def _solve(self, y0, w_all, extras_all, t0, t1, slot_template):
        cst = self._consts
        s, coef, cvec, store, e_row = cst["s"], cst["coef"], cst["c"], cst["store"], cst["e"]
        exponent = -1.0 / (cst["order"] + 1.0)
        rtol, atol = self.rtol, self.atol
        f64 = tf.float64
        n = tf.shape(y0)[0]
        b = tf.shape(slot_template)[0]
        d = y0.shape[1]
        interval = t1 - t0

        def rms(v, w):  # weighted RMS over the real components of each row
            return tf.sqrt(tf.reduce_sum(w * v * v, 1) / tf.maximum(tf.reduce_sum(w, 1), 1.0))

        def gather(src, idx):
            return tf.gather(src, tf.minimum(idx, n - 1))

        def bcast(flag, like):  # (b,) bool -> broadcastable to ``like``
            return tf.reshape(flag, [-1] + [1] * (len(like.shape) - 1))

        idx0 = tf.range(b)
        state = dict(
            idx=idx0, y=gather(y0, idx0), w=gather(w_all, idx0),
            ex={k: gather(v, idx0) for k, v in extras_all.items()},
            k=tf.zeros([b, s + 1, d], f64), t=tf.fill([b], t0), h=tf.zeros([b], f64),
            aux=tf.zeros([b], f64), phase=tf.zeros([b], tf.int32),
            rejected=tf.zeros([b], tf.bool), nfe=tf.zeros([b], tf.int32))
        out_y = tf.zeros(tf.stack([n + 1, d]), f64)          # row n collects idle writes
        out_nfe = tf.zeros(tf.stack([n + 1]), tf.int32)
        out_failed = tf.zeros(tf.stack([n + 1]), tf.bool)

        def body(it, nxt, st, out_y, out_nfe, out_failed):
            active = st["idx"] < n
            y, kk, t, h, phase = st["y"], st["k"], st["t"], st["h"], st["phase"]
            w = st["w"]
            point = y + h[:, None] * tf.einsum("bj,bjd->bd", tf.gather(coef, phase), kk)
            f = self.rhs(t + tf.gather(cvec, phase) * h, point, st["ex"])
            slot = tf.gather(store, phase)
            kk = tf.where(tf.one_hot(slot, s + 1, on_value=True, off_value=False,
                                     dtype=tf.bool)[..., None], f[:, None, :], kk)
            f0 = kk[:, 0]
            scale0 = atol + tf.abs(y) * rtol
            # phase 0: first half of SciPy's select_initial_step (f0 = f)
            d0, d1 = rms(y / scale0, w), rms(f / scale0, w)
            h0 = tf.where((d0 < 1e-5) | (d1 < 1e-5), tf.constant(1e-6, f64), 0.01 * d0 / d1)
            h0 = tf.minimum(h0, interval)
            # phase 1: second half (f = f1, st.h = h0, st.aux = d1)
            d2 = rms((f - f0) / scale0, w) / h
            h1 = tf.where((st["aux"] <= 1e-15) & (d2 <= 1e-15), tf.maximum(h * 1e-3, 1e-6),
                          tf.pow(0.01 / tf.maximum(st["aux"], d2), -exponent))
            h_first = tf.minimum(tf.minimum(100.0 * h, h1), interval)
            # phase s + 1: the last stage; point is y_new and f is f(t + h, y_new)
            err = h[:, None] * tf.einsum("j,bjd->bd", e_row, kk)
            scale = atol + tf.maximum(tf.abs(y), tf.abs(point)) * rtol
            en = rms(err / scale, w)
            accept = en < 1.0
            grow = tf.where(en == 0.0, tf.constant(_MAX_FACTOR, f64),
                            tf.minimum(_SAFETY * tf.pow(en, exponent), _MAX_FACTOR))
            grow = tf.where(st["rejected"], tf.minimum(grow, 1.0), grow)
            shrink = tf.maximum(_SAFETY * tf.pow(en, exponent), _MIN_FACTOR)
            h_next = h * tf.where(accept, grow, shrink)
            last = phase == s + 1
            stepped = last & accept
            finished = stepped & (t + h >= t1 - 1e-12 * tf.abs(t1))   # h was clipped to t1 - t
            t_new = tf.where(stepped, tf.where(finished, t1, t + h), t)
            y_new = tf.where(bcast(stepped, y), point, y)
            kk = tf.where(bcast(stepped, kk), tf.concat([kk[:, s:], kk[:, 1:]], 1), kk)
            # the step about to start (phases 1 -> 2 and s + 1 -> 2): clip to t1 like SciPy
            h_new = tf.where(phase == 0, h0, tf.where(phase == 1, h_first,
                                                      tf.where(last, h_next, h)))
            starting = (phase == 1) | last
            h_new = tf.where(starting, tf.minimum(h_new, t1 - t_new), h_new)
            min_step = 10.0 * tf.abs(t_new) * np.finfo(np.float64).eps
            too_small = starting & ~finished & (h_new < min_step)
            phase_new = tf.where(phase == 0, 1, tf.where(phase == 1, 2, tf.where(
                last, 2, phase + 1)))
            done = active & (finished | too_small)
            nfe = st["nfe"] + tf.cast(active, tf.int32)
            # write the finished problems, idle slots write to row n
            rows = tf.where(done, st["idx"], n)[:, None]
            out_y = tf.tensor_scatter_nd_update(out_y, rows, y_new)
            out_nfe = tf.tensor_scatter_nd_update(out_nfe, rows, nfe)
            out_failed = tf.tensor_scatter_nd_update(out_failed, rows, too_small)
            # refill finished slots from the queue
            di = tf.cast(done, tf.int32)
            new_idx = nxt + tf.cumsum(di, exclusive=True)
            load = done & (new_idx < n)
            idx = tf.where(load, new_idx, tf.where(done, n, st["idx"]))
            keep = active & ~done

            def pick(new, old, fresh):
                return tf.where(bcast(load, old), fresh, tf.where(bcast(keep, old), new, old))

            new_st = dict(
                idx=idx,
                y=pick(y_new, y, gather(y0, new_idx)),
                w=pick(w, w, gather(w_all, new_idx)),
                ex={key: pick(v, v, gather(extras_all[key], new_idx)) for key, v in st["ex"].items()},
                k=pick(kk, st["k"], tf.zeros_like(kk)),
                t=pick(t_new, t, tf.fill([b], t0)),
                h=pick(h_new, h, tf.zeros([b], f64)),
                aux=pick(tf.where(phase == 0, d1, st["aux"]), st["aux"], tf.zeros([b], f64)),
                phase=pick(phase_new, phase, tf.zeros([b], tf.int32)),
                rejected=pick(tf.where(last, ~accept, st["rejected"]), st["rejected"],
                              tf.zeros([b], tf.bool)),
                nfe=pick(nfe, st["nfe"], tf.zeros([b], tf.int32)))
            # keep the static shapes of the loop variables (broadcasting against a dynamic
            # batch dimension can lose them, e.g. with a single slot)
            for new, old in zip(tf.nest.flatten(new_st), tf.nest.flatten(st)):
                new.set_shape(old.shape)
            return it + 1, nxt + tf.reduce_sum(di), new_st, out_y, out_nfe, out_failed

        def cond(it, nxt, st, *_):
            return tf.reduce_any(st["idx"] < n) & (it < self.max_calls)

        it, _, _, out_y, out_nfe, out_failed = tf.while_loop(
            cond, body, (tf.constant(0), b, state, out_y, out_nfe, out_failed))
        return out_y[:n], out_nfe[:n], it, out_failed[:n]


__all__ = ["BatchedRK", "ODESolution", "METHODS"]
