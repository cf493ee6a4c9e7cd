"""Stage ``report``: metrics of every score from the cached likelihoods and the classifier,
prediction files for the SIC/ROC figures, ``results.json`` and ``table1.md`` (our numbers beside
both published versions of Table I).

Every curve uses ONE model's scores for both signal and background (SPEC §7). Max SIC only over
cuts that keep ≥ max(``evaluate.min_background``, ``evaluate.min_background_eff``·N_b)
background jets.
"""
from __future__ import annotations

import math

import numpy as np

from permutation_ad import artifacts
from permutation_ad.evaluate import read_permutation
from permutation_ad.schema import TEST_SAMPLES
from shared.io import atomic_write_json, atomic_write_text, read_json, read_npz

SCORES = ("nll_per_particle", "nll_code_variant", "nll")
SCORE_DEFINITIONS = {"nll_per_particle": "-log p(jet)/N  (paper, default)",
                     "nll_code_variant": "-log p(jet feats) - log p(particles|jet)/N (authors' code)",
                     "nll": "-log p(jet)"}
# Table I of arXiv:2306.03933: standard training (maximum-likelihood training). The first
# version is the seed paper text (../shared/papers/permutation_invariant_ad.txt); the revision's
# values are those quoted in the project's issue #15 (its unsupervised AUCs were not quoted).
PUBLISHED = {
    "v1": {"top": {"max_sic": (1.86, 1.85), "auc": (0.852, 0.847),
                   "density_ratio_auc": (0.947, 0.935), "supervised_auc": 0.978},
           "zprime": {"max_sic": (3.30, 4.12), "auc": (0.908, 0.905)}},
    "revision": {"top": {"max_sic": (1.77, 1.71), "auc": (None, None),
                         "density_ratio_auc": (0.954, 0.954), "supervised_auc": 0.982},
                 "zprime": {"max_sic": (2.72, 3.99), "auc": (None, None)}},
}
NOTE = ("Simulated stand-in data (Pythia 8 + simple smearing, or synthetic for tests), CPU demo "
        "scale ≠ paper: small nets, few epochs, few thousand jets. Not comparable number-for-number.")


def anomaly_scores_of(ll, test):
    """Anomaly scores of one test sample from a merged likelihood dict."""
    from permutation_ad.model import anomaly_scores
    return anomaly_scores({k: ll[f"{k}_{test}"] for k in artifacts.LOGLIK_KEYS})


def min_background_for(n_background, ecfg):
    """Background events required for a SIC point: max(count rule, efficiency rule)."""
    return max(int(ecfg.get("min_background", 10)),
               int(math.ceil(float(ecfg.get("min_background_eff", 1e-4)) * n_background)))


def curve_metrics(labels, scores, ecfg):
    """AUC, max SIC (min-background rule), 1/ε_b at ε_s = 0.2 and 0.5."""
    from shared import metrics
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    nb = int((labels == 0).sum())
    mb = min_background_for(nb, ecfg)
    out = {"auc": float(metrics.auc(labels, scores)),
           "max_sic": _finite(metrics.max_sic(labels, scores, min_background=mb)),
           "min_background_events": mb, "n_signal": int((labels == 1).sum()), "n_background": nb}
    for eff in (0.2, 0.5):
        out[f"inv_eps_b_at_eps_s_{eff}"] = _finite(metrics.inverse_bkg_eff_at(labels, scores, eff))
    return out


def _finite(x):
    x = float(np.asarray(x).ravel()[0]) if np.ndim(x) else float(x)
    return x if np.isfinite(x) else None


def labelled(bkg, sig):
    """(labels, scores) of background (0) followed by signal (1)."""
    return (np.concatenate([np.zeros(len(bkg), np.int8), np.ones(len(sig), np.int8)]),
            np.concatenate([bkg, sig]))


def metrics_of_run(cfg, out) -> dict:
    """All metrics of a run folder; writes the prediction files of the SIC/ROC figures."""
    from shared.plotting import save_predictions
    ecfg = cfg["evaluate"]
    samples, objectives = list(cfg["model"]["samples"]), list(cfg["model"]["objectives"])
    ll = {(s, o): artifacts.read_merged_loglik(out, s, o, TEST_SAMPLES)
          for s in samples for o in objectives}
    ll = {k: v for k, v in ll.items() if v is not None}
    res = {"unsupervised": {}, "density_ratio": {}, "supervised": {},
           "score_definitions": SCORE_DEFINITIONS,
           "sic_rule": "max SIC over cuts with >= max(min_background, min_background_eff*N_b) "
                       "background jets passing; ε_b = FPR of the background test jets",
           "likelihood_evaluation": {
               f"{s}_{o}": {"seconds": float(sum(float(v[f"seconds_{t}"]) for t in TEST_SAMPLES)),
                            "nfe": {t: np.asarray(v[f"nfe_{t}"]).tolist() for t in TEST_SAMPLES},
                            "jets": {t: int(len(v[f"logp_{t}"])) for t in TEST_SAMPLES}}
               for (s, o), v in ll.items()}}
    for sig in ("top", "zprime"):
        curves = {}
        for o in objectives:
            if ("qcd", o) not in ll:
                continue
            bkg_s, sig_s = anomaly_scores_of(ll[("qcd", o)], "qcd"), anomaly_scores_of(ll[("qcd", o)], sig)
            for name in SCORES:
                lab, sc = labelled(bkg_s[name], sig_s[name])
                res["unsupervised"].setdefault(sig, {}).setdefault(o, {})[name] = curve_metrics(lab, sc, ecfg)
                if name == "nll_per_particle":
                    curves[o] = (lab, sc)
        if curves:
            save_predictions(artifacts.predictions_path(out, f"sic_{sig}"), curves,
                             title=f"{sig} vs QCD, QCD-trained density, score -log p/N")
    roc = {}
    for o in objectives:
        if ("qcd", o) in ll and ("top", o) in ll:
            ratio = {t: ll[("top", o)][f"logp_{t}"] - ll[("qcd", o)][f"logp_{t}"] for t in ("qcd", "top")}
            lab, sc = labelled(ratio["qcd"], ratio["top"])
            res["density_ratio"][o] = curve_metrics(lab, sc, ecfg)
            roc[f"density_ratio_{o}"] = (lab, sc)
            b, s_ = anomaly_scores_of(ll[("qcd", o)], "qcd"), anomaly_scores_of(ll[("qcd", o)], "top")
            roc[f"unsupervised_{o}"] = labelled(b["nll_per_particle"], s_["nll_per_particle"])
    clf = artifacts.classifier_predictions_path(out)
    if clf.is_file():
        d = read_npz(clf, "classifier predictions")
        n = ecfg.get("num_jets")
        sub = slice(None) if n is None else slice(0, int(n))
        lab, sc = labelled(d["prob_qcd"][sub], d["prob_top"][sub])
        res["supervised"]["same_jets_as_likelihood"] = curve_metrics(lab, sc, ecfg)
        res["supervised"]["all_test_jets"] = curve_metrics(*labelled(d["prob_qcd"], d["prob_top"]), ecfg)
        roc["classifier"] = (lab, sc)
    if roc:
        save_predictions(artifacts.predictions_path(out, "roc_top"), roc, title="top vs QCD")
    perm = read_permutation(out)
    if perm is not None:
        res["permutation_test"] = perm
        res["likelihood_estimator"] = estimator_noise(perm, cfg.get("likelihood", {}))
    return res


def estimator_noise(perm, likelihood_cfg) -> dict:
    """Per-jet scatter of the divergence estimator, from the permutation test's repeated
    estimates of one jet (each permutation: ``repeats`` independent probe draws)."""
    std = np.asarray(perm["std"], np.float64)
    n = max(int(perm["num_particles"]), 1)
    return {"divergence": likelihood_cfg.get("divergence"), "probe": likelihood_cfg.get("probe"),
            "num_probes": likelihood_cfg.get("num_probes"),
            "per_jet_std_nats": float(np.sqrt(np.mean(std ** 2))),
            "per_jet_std_nats_per_particle": float(np.sqrt(np.mean(std ** 2)) / n),
            "num_particles": n, "repeats": len(perm["nll"][0]), "permutations": len(perm["nll"]),
            "source": "permutation test: std of the repeated estimates of one QCD test jet "
                      "(rms over its permutations); 0 for the exact divergence"}


def acceptance(res) -> dict:
    """Checks of the demo targets (recorded, not enforced)."""
    u, dr = res.get("unsupervised", {}), res.get("density_ratio", {})
    sup = res.get("supervised", {}).get("same_jets_as_likelihood", {}).get("auc")
    out = {}
    for o in ("standard", "likelihood"):
        ua_top = u.get("top", {}).get(o, {}).get("nll_per_particle", {}).get("auc")
        ua_z = u.get("zprime", {}).get(o, {}).get("nll_per_particle", {}).get("auc")
        d = dr.get(o, {}).get("auc")
        if ua_top is not None:
            out[f"{o}: unsupervised AUC top vs QCD > 0.5"] = bool(ua_top > 0.5)
        if ua_z is not None:
            out[f"{o}: unsupervised AUC Z' vs QCD > 0.5"] = bool(ua_z > 0.5)
        if d is not None and ua_top is not None:
            out[f"{o}: density-ratio AUC > unsupervised AUC (top)"] = bool(d > ua_top)
        if d is not None and sup is not None:
            out[f"{o}: supervised AUC >= density-ratio AUC - 0.02"] = bool(sup >= d - 0.02)
    perm = res.get("permutation_test")
    if perm:
        out["permutation means within 3 sigma"] = perm["all_within_3sigma"]
        out["permutation means within 3 standard errors (stricter)"] = perm["all_within_3_stderr"]
    return out


def table1(res, note=NOTE) -> str:
    """Markdown: our numbers beside both published versions of Table I."""
    def f(x, fmt="{:.3f}"):
        return "–" if x is None else fmt.format(x)

    def pair(sig, key, metric_key="nll_per_particle"):
        u = res.get("unsupervised", {}).get(sig, {})
        vals = [u.get(o, {}).get(metric_key, {}).get(key) for o in ("standard", "likelihood")]
        return f"{f(vals[0])} ({f(vals[1])})"

    def pub(v):
        return "–" if v is None else (f"{f(v[0], '{}')} ({f(v[1], '{}')})" if isinstance(v, tuple)
                                      else f"{v}")

    dr = res.get("density_ratio", {})
    sup = res.get("supervised", {}).get("same_jets_as_likelihood", {})
    lines = ["# Table I — ours vs published", "", f"**{note}**", "",
             "Standard training (maximum-likelihood training in parentheses). Unsupervised: "
             "QCD-trained density, score −log p(jet)/N. Max SIC with the minimum-background rule "
             "in results.json (`sic_rule`). Published: arXiv:2306.03933 first version (v1, the "
             "seed text) and its revision; – = not quoted.", "",
             "| dataset | source | max SIC | unsupervised AUC | density-ratio AUC | supervised AUC |",
             "|---|---|---|---|---|---|"]
    for version, label in (("v1", "paper v1"), ("revision", "paper revision")):
        t = PUBLISHED[version]["top"]
        lines.append(f"| Top | {label} | {pub(t['max_sic'])} | {pub(t['auc'])} | "
                     f"{pub(t['density_ratio_auc'])} | {pub(t['supervised_auc'])} |")
    lines.append(f"| Top | ours | {pair('top', 'max_sic')} | {pair('top', 'auc')} | "
                 f"{f(dr.get('standard', {}).get('auc'))} ({f(dr.get('likelihood', {}).get('auc'))}) | "
                 f"{f(sup.get('auc'))} |")
    for version, label in (("v1", "paper v1"), ("revision", "paper revision")):
        z = PUBLISHED[version]["zprime"]
        lines.append(f"| Z′ | {label} | {pub(z['max_sic'])} | {pub(z['auc'])} | – | – |")
    lines.append(f"| Z′ | ours | {pair('zprime', 'max_sic')} | {pair('zprime', 'auc')} | – | – |")
    lines += ["", "Other scores (ours, AUC, standard (max-likelihood)):", ""]
    for sig in ("top", "zprime"):
        for name in ("nll_code_variant", "nll"):
            lines.append(f"- {sig} vs QCD, `{name}`: {pair(sig, 'auc', name)}")
    return "\n".join(lines) + "\n"


PREDICTIONS = ("sic_top", "sic_zprime", "roc_top")


def report_inputs(run) -> dict:
    """The artifacts the report reads, each checked to be finished with the run's current
    settings: the merged likelihoods of every configured density, the permutation test and, if
    it was trained, the classifier. A missing or stale one is one error naming it and the stage
    that makes it (never a report of other settings' results)."""
    from permutation_ad.classify import classifier_artifact
    from permutation_ad.evaluate import merged_artifact, unit_artifact, units
    from shared.errors import UsageError

    def require(art, what, stage):
        if not art.complete():
            raise UsageError(f"{art.path}: {what} missing; run the {stage} stage")
        if not art.matches():
            raise UsageError(f"{art.path}: {what} not made with the current settings "
                             f"({art.stale_reason()}); run the {stage} stage")
        return art

    all_units = units(run)
    used = {f"loglik_{s}_{o}": require(merged_artifact(run, s, o, all_units), "likelihoods", "evaluate")
            for s in run.key("model.samples") for o in run.key("model.objectives")}
    if ("permutation",) in all_units:
        used["permutation"] = require(unit_artifact(run, ("permutation",)), "permutation test", "evaluate")
    clf = classifier_artifact(run)
    if clf.complete():
        used["classifier"] = require(clf, "classifier", "classify")
    return used


def report(run) -> dict:
    """Write results.json, table1.md and the prediction files of the figures (with their
    fingerprints) from the current likelihoods; returns the results."""
    from shared.run import load_stage_times
    used = report_inputs(run)
    for name in PREDICTIONS:   # made again below from the current inputs (or not at all)
        for p in (artifacts.predictions_path(run.out, name),
                  run.artifact(artifacts.predictions_path(run.out, name)).fingerprint_path):
            p.unlink(missing_ok=True)
    res = metrics_of_run(run.cfg, run.out)
    for name in PREDICTIONS:
        if artifacts.predictions_path(run.out, name).is_file():
            run.artifact(artifacts.predictions_path(run.out, name), upstream=used).record()
    baselines = run.out / "baselines" / "results.json"
    if baselines.is_file():
        res["baselines"] = read_json(baselines, "baselines results")
    times = load_stage_times(run)
    res.update(note=NOTE, stage_seconds=times, total_seconds=float(sum(times.values())),
               acceptance=acceptance(res), published=PUBLISHED)
    atomic_write_text(artifacts.table_path(run.out), table1(res))
    atomic_write_json(artifacts.results_path(run.out), res)
    return res

