"""Event roles of the weak-supervision study: mjj windows, random splits, globally unique event
ids, and the assignment of every event to at most one role.

Every event gets an id ``source_index·10¹² + row`` (:func:`make_event_ids`). The roles are
disjoint id sets (checked pairwise by :func:`check_roles`):

* ``sb_train`` / ``sb_val``: background in the side bands (generator training / validation),
* ``data_bkg``: true SR background in the "data" class, ``inj_pool``: SR signal to inject (the
  first n of it for injection n), ``idealized_bkg``: independent true SR background (idealized
  detector; generation-quality check in the SR),
* ``eval_bkg`` / ``eval_sig``: the evaluation set, used by NO training.

With only one background file the SR background is partitioned into data / idealized /
evaluation; with the extra SR file the idealized and evaluation sets come from it. Evaluation
signal: the first ``evaluate.n_signal`` SR signal events not injected — null = all of them.
"""
from __future__ import annotations

import hashlib

import numpy as np

from shared.errors import ConfigError

ROLES = ("sb_train", "sb_val", "data_bkg", "inj_pool", "idealized_bkg", "eval_bkg", "eval_sig")
TRAINING_ROLES = ("sb_train", "sb_val", "data_bkg", "inj_pool", "idealized_bkg")
EVAL_ROLES = ("eval_bkg", "eval_sig")
# Event ids encode the source file: id = source_index * ID_STRIDE + row (rows < 10^12).
ID_STRIDE = 10**12


def _interval(cfg, key):
    lo, hi = (float(v) for v in cfg[key])
    if not lo < hi:
        raise ValueError(f"windows.{key}: need lower < upper, got {cfg[key]}")
    return lo, hi


def region_masks(mjj, windows):
    """(sr, sb) boolean masks. Intervals are half-open [lo, hi) so no event is in both.

    ``windows``: mapping with ``sr: [lo, hi]`` and ``sb: [[lo, hi], ...]`` (GeV)."""
    mjj = np.asarray(mjj, dtype=np.float64)
    lo, hi = _interval(windows, "sr")
    sr = (mjj >= lo) & (mjj < hi)
    sb = np.zeros_like(sr)
    for i, band in enumerate(windows["sb"]):
        blo, bhi = (float(v) for v in band)
        if not blo < bhi:
            raise ValueError(f"windows.sb[{i}]: need lower < upper, got {band}")
        if blo < hi and lo < bhi:
            raise ValueError(f"windows.sb[{i}] {band} overlaps the signal region {windows['sr']}")
        sb |= (mjj >= blo) & (mjj < bhi)
    return sr, sb


def split_indices(n, fraction, seed):
    """Random split of range(n) into (first, second) index arrays, ``fraction`` in the first."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(fraction * n))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def make_event_ids(rows, source_index):
    """Globally unique ids: ``source_index * ID_STRIDE + row`` (int64)."""
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(rows < 0) or np.any(rows >= ID_STRIDE):
        raise ValueError(f"event rows must lie in [0, {ID_STRIDE})")
    return np.int64(source_index) * ID_STRIDE + rows


def assert_disjoint(ids_a, ids_b, name_a="a", name_b="b"):
    """Raise ValueError if two event-id sets share any event (e.g. training vs evaluation)."""
    common = np.intersect1d(np.asarray(ids_a), np.asarray(ids_b))
    if common.size:
        raise ValueError(f"{name_a} and {name_b} share {common.size} events "
                         f"(e.g. ids {common[:5].tolist()}); evaluation must use independent events")


def _take_first(pool, n, what, key, source):
    if n is None:
        return pool, pool[:0]
    n = int(n)
    if n > len(pool):
        raise ConfigError(source, key, f"{what} needs {n} events, only {len(pool)} available "
                                       "(more data, or a smaller number)")
    return pool[:n], pool[n:]


def assign_roles(arrays, cfg, has_extra, source=None):
    """Disjoint event-id sets per role (module doc) from the events' ``event_id``, ``label`` and
    ``mjj``; settings from ``windows``, ``weak_supervision`` and ``evaluate`` of ``cfg``. Too
    few events for a requested number: a ConfigError naming that key."""
    source = source if source is not None else getattr(cfg, "source", None)
    w, ws, ev = cfg["windows"], cfg["weak_supervision"], cfg["evaluate"]
    rng = np.random.default_rng(int(w["split_seed"]))
    ids, label = np.asarray(arrays["event_id"]), np.asarray(arrays["label"])
    source_index = ids // ID_STRIDE
    sr, sb = region_masks(arrays["mjj"], w)
    main = source_index == 0
    sb_ids = ids[sb & (label == 0) & main]
    a, b = split_indices(len(sb_ids), float(w["sb_train_fraction"]), int(w["split_seed"]))
    roles = {"sb_train": sb_ids[a], "sb_val": sb_ids[b]}

    bkg_main = rng.permutation(ids[sr & (label == 0) & main])
    roles["data_bkg"], rest = _take_first(bkg_main, ws["n_background_data"], "SR data background",
                                          "weak_supervision.n_background_data", source)
    if has_extra:
        rest = rng.permutation(ids[sr & (label == 0) & (source_index == 1)])
    roles["idealized_bkg"], rest = _take_first(rest, ws.get("n_idealized_background"),
                                               "idealized SR background",
                                               "weak_supervision.n_idealized_background", source)
    roles["eval_bkg"], _ = _take_first(rest, ev.get("n_background"), "evaluation background",
                                       "evaluate.n_background", source)

    sig = rng.permutation(ids[sr & (label == 1)])
    n_inj = max([int(x) for x in ws["injections"]] or [0])
    roles["inj_pool"], rest = _take_first(sig, n_inj, "injected signal",
                                          "weak_supervision.injections", source)
    roles["eval_sig"], _ = _take_first(rest, ev.get("n_signal"), "evaluation signal",
                                       "evaluate.n_signal", source)
    for r in ROLES:
        roles[r] = np.sort(roles[r]).astype(np.int64)
    check_roles(roles)
    return roles


def check_roles(roles):
    """Every pair of roles is disjoint; above all no evaluation event in any training role."""
    names = list(roles)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert_disjoint(roles[a], roles[b], a, b)


def ids_digest(ids) -> str:
    """Short content hash of an id set (the fingerprint of a role)."""
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]
