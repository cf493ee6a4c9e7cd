"""The noise-prediction contract shared by losses, likelihood and samplers.

A score network predicts the noise ``eps_hat`` of ``x_t = α(t) x_0 + σ(t) ε``. Everything
downstream takes an ``eps_fn(x_t, t, mask, cond) -> eps_hat`` (t of shape (B,), ``cond`` may be
None); :func:`eps_fn_from_model` wraps a Keras model built by ``shared.layers``. The conversions
eps → score → probability-flow drift live on the schedule (``sde.score`` / ``sde.pf_drift``), so
they are written once.

Input naming: models name their inputs ``x``, ``t``, ``mask`` and ``cond``; a model built without
conditioning has no ``cond`` input and a vector model no ``mask``: :func:`call_score_net` feeds a
model the subset it declares, so callers never special-case this.
"""
from __future__ import annotations


def call_score_net(net, x, t, mask=None, cond=None, training=False):
    """Call a model with the subset of (x, t, mask, cond) it declares (by input name)."""
    available = {"x": x, "t": t, "mask": mask, "cond": cond}
    args = []
    for inp in net.inputs:
        key = inp.name.split(":")[0]
        if key not in available:
            raise ValueError(f"score net {net.name!r}: unknown input {key!r} "
                             "(expected names x, t, mask, cond)")
        if available[key] is None:
            raise ValueError(f"score net {net.name!r} needs input {key!r} but None was given")
        args.append(available[key])
    return net(args, training=training)


def eps_fn_from_model(net, training=False):
    """Wrap a score model as the ``eps_fn(x_t, t, mask, cond)`` callable of the contract."""
    def eps_fn(x_t, t, mask, cond):
        return call_score_net(net, x_t, t, mask, cond, training=training)
    return eps_fn


__all__ = ["call_score_net", "eps_fn_from_model"]
