"""Comparison tables and ROC / SIC figures: one table per signal, every score side by side.

Metrics (``shared.metrics``): AUC; max SIC = max ε_s/√ε_b over cuts that keep at least
``min_background`` background jets; 1/ε_b at ε_s = ``eff_s``. Single observables are
references whose sign (which tail is anomalous) is chosen per signal on the test labels, and
are marked so. Published values are printed in their own rows, labelled as other data.
"""
from __future__ import annotations

import math

import numpy as np

from shared import metrics

# Published numbers (paper text), printed beside ours; they are on other data.
PUBLISHED = {
    "semivisible": [("DVAE (image), pT^n n≲0.1, σ≈1", 0.71, None, 37.0,
                     "whats_anomalous_in_lhc_jets Sec. 4.2, Aachen dataset (MadGraph+Pythia+Delphes)")],
    "twoprong": [("DVAE (image), pT^n n≈0.4-0.6, σ≈1", 0.73, None, 27.0,
                  "whats_anomalous_in_lhc_jets Sec. 4.2, Heidelberg dataset (Pythia+Delphes)")],
    "top": [("diffusion NLL/N (λ=σ²)", 0.852, 1.86, None,
             "permutation_invariant_ad Table I, Top Tagging Reference Dataset")],
    "zprime": [("diffusion NLL/N (λ=σ²)", 0.908, 3.30, None,
                "permutation_invariant_ad Table I, their Z′ sample")],
}

SIGNAL_TITLES = {"top": "top jets vs QCD (550-650 GeV)", "zprime": "Z′ dark-shower jets vs QCD (550-650 GeV)",
                 "semivisible": "semi-visible dark jets (r_inv≈0.75) vs QCD (150-300 GeV)",
                 "twoprong": "two-prong dark-quark jets (m_qd=50 GeV) vs QCD (150-300 GeV)"}


def finite_scores(scores):
    """Scores with NaN/+inf -> above the largest finite value (most anomalous) and −inf -> below
    the smallest; returns (scores, number replaced)."""
    s = np.asarray(scores, np.float64).copy()
    bad = ~np.isfinite(s)
    if not bad.any():
        return s, 0
    fin = s[~bad]
    hi, lo = (fin.max(), fin.min()) if fin.size else (0.0, 0.0)
    s[np.isnan(s) | (s == np.inf)] = hi + 1.0
    s[s == -np.inf] = lo - 1.0
    return s, int(bad.sum())


def score_metrics(labels, scores, min_background=10, eff_s=0.2):
    """AUC, max SIC (NaN if no cut keeps enough background) and 1/ε_b at ε_s; when no background
    jet passes the ε_s cut, ``inv_eps_b`` is None and ``inv_eps_b_above`` = N_background."""
    s, n_bad = finite_scores(scores)
    out = {"auc": metrics.auc(labels, s), "max_sic": metrics.max_sic(labels, s, min_background),
           "inv_eps_b": metrics.inverse_bkg_eff_at(labels, s, eff_s)}
    if math.isinf(out["inv_eps_b"]):
        out["inv_eps_b"], out["inv_eps_b_above"] = None, int((np.asarray(labels) == 0).sum())
    if math.isnan(out["max_sic"]):
        out["max_sic"] = None
    if n_bad:
        out["non_finite"] = n_bad
    return out


def orient_reference(labels, raw):
    """(sign, oriented scores) with the sign whose AUC is >= 0.5 on these labels."""
    s, _ = finite_scores(raw)
    sign = 1.0 if metrics.auc(labels, s) >= 0.5 else -1.0
    return sign, sign * s


def _fmt(v, nd=3):
    if v is None:
        return "–"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown_table(rows, eff_s=0.2):
    """Markdown table of result rows (dicts with label, kind, auc, max_sic, inv_eps_b,
    train_time_s, note)."""
    head = (f"| score | kind | AUC | max SIC | 1/ε_b(ε_s={eff_s:g}) | train time [s] | note |\n"
            "|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        t = r.get("train_time_s")
        ieb = f"> {r['inv_eps_b_above']}" if r.get("inv_eps_b_above") else _fmt(r.get("inv_eps_b"), 1)
        lines.append(f"| {r['label'].replace('|', '∣')} | {r['kind']} | {_fmt(r.get('auc'))} | "
                     f"{_fmt(r.get('max_sic'), 2)} | {ieb} | {_fmt(t, 1)} | {r.get('note', '')} |")
    return head + "\n".join(lines) + "\n"


def published_rows(signal):
    return [{"id": f"published_{i}", "label": lab, "kind": "published (other data)", "auc": a,
             "max_sic": sic, "inv_eps_b": ieb, "train_time_s": None, "note": src}
            for i, (lab, a, sic, ieb, src) in enumerate(PUBLISHED.get(signal, []))]


def draw_figures(curves, rows, out_stem, title, min_background=10):
    """ROC (1/ε_b vs ε_s, log) and SIC (ε_s/√ε_b vs ε_s) of every score; ``curves`` maps a
    row id to (labels, oriented scores). Returns the written paths."""
    import matplotlib.pyplot as plt

    from shared.plotting import figure, label_plot, save

    by_id = {r["id"]: r for r in rows}
    cmap = plt.get_cmap("tab20")
    paths = []
    given_styles = ["-", "-.", ":", (0, (5, 1))]
    for kind in ("roc", "sic"):
        fig, ax = figure()
        n_given = 0
        for i, (rid, (lab, sc)) in enumerate(curves.items()):
            r = by_id[rid]
            style = {"color": cmap(i % 20), "lw": 1.6, "ls": "-"}
            if r["kind"].startswith("reference"):
                style.update(ls="--")
            elif r["kind"] == "diffusion (given)":
                style.update(color="black", lw=2.6, ls=given_styles[n_given % len(given_styles)])
                n_given += 1
            if kind == "roc":
                fpr, tpr, _ = metrics.roc(lab, sc)
                ok = fpr > 0
                ax.plot(tpr[ok], 1.0 / fpr[ok], label=f"{r['label']} ({r['auc']:.3f})", **style)
            else:
                eff, sic = metrics.sic_curve(lab, sc, min_background)
                ax.plot(eff, sic, label=r["label"], **style)
        if kind == "roc":
            e = np.linspace(0.005, 1, 200)
            ax.plot(e, 1 / e, color="grey", lw=1, ls=":", label="random")
            ax.set_yscale("log")
            ax.set_xlabel(r"$\epsilon_s$")
            ax.set_ylabel(r"$1/\epsilon_b$")
        else:
            ax.axhline(1.0, color="grey", lw=1, ls=":")
            ax.set_xlabel(r"$\epsilon_s$")
            ax.set_ylabel(r"$\epsilon_s/\epsilon_b^{1/2}$")
        ax.set_xlim(0, 1)
        label_plot(ax, "Pythia 8 stand-in data; every score trained on QCD only")
        ax.legend(fontsize=8, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title=title.replace("′", "'"), title_fontsize=9)
        paths += save(fig, f"{out_stem}_{kind}")
    return paths
