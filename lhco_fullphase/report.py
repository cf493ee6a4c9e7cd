"""Stage ``report``: ``results.json`` (every number of the run, the data counts, the published
values, stage times, acceptance checks) and ``results.md`` (per injection AUC and max SIC of
every method, Fig. 7 beside the published values, the generation quality and the generated-
sample metrics of every generator; paper scale vs our scale labelled).

The published values are those the text of arXiv:2307.11157 states (SPEC §5); its figures are
not digitised.
"""
from __future__ import annotations

from lhco_fullphase import artifacts

NOTE = ("Simulated stand-in data (Pythia 8 + simple smearing, not Delphes), CPU demo scale ≠ paper: "
        "small nets, few epochs, a few thousand events, large injected S/B. Not comparable "
        "number-for-number with the published values.")
METHOD_LABELS = {"diffusion": "diffusion", "flow_matching": "flow matching", "idealized": "idealized",
                 "lowdim": "low-dim CATHODE", "lowdim_idealized": "low-dim idealized"}
# arXiv:2307.11157 (full phase space CATHODE), values stated in its text.
PAPER_SCALE = {"sr_background_in_data": 100_000, "generated_sr_background": 200_000,
               "idealized_background": 200_000, "classifier_inits": 10,
               "injections": [500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10000]}
PUBLISHED = {
    "paper": "arXiv:2307.11157",
    "scale": PAPER_SCALE,
    # Fig. 7 (and Fig. 6) as stated in the text: per row the injection, S/B, the values per method
    # ({quantity: {method: value}}) and the statement
    "fig7": [
        {"injected": 2000, "s_over_b": 0.02,
         "max_sic": {"diffusion": "≈ 40", "flow_matching": "≈ 40"},
         "statement": "both generative models reach a max SIC near 40 at 2000 signal / 100k "
                      "background (Fig. 6), limited by the background statistics in the SR"},
        {"injected": "large (up to 10000)", "s_over_b": "up to 0.1",
         "max_sic": {"diffusion": "≈ 50", "flow_matching": "≈ 50"},
         "statement": "max SIC as high as 50 for large amounts of injected signal"},
        {"injected": "low", "s_over_b": None, "auc": {"diffusion": "≈ 0.5", "flow_matching": "≈ 0.5"},
         "statement": "AUC compatible with 0.5 at low injection (precise background prediction)"},
        {"injected": "< 1000", "s_over_b": "< 0.01", "statement":
         "low-dimensional CATHODE beats the full-phase-space and idealized detectors"},
        {"injected": "> 1000", "s_over_b": "> 0.01", "statement":
         "the idealized detector matches low-dimensional CATHODE's best and keeps improving with "
         "more signal; so do the diffusion and flow-matching detectors"},
    ],
    "max_sic": "≈ 40 at 2000 signal / 100k background; up to ≈ 50 at large injection",
    "auc_low": "compatible with 0.5 at low injection",
    "quality_sb": {"diffusion": "0.514 ± 0.07", "flow_matching": "0.522 ± 0.006"},
    "quality_sr": {"diffusion": "0.52 ± 0.01", "flow_matching": "0.53 ± 0.01"},
}


def acceptance(res, cfg) -> dict:
    """Demo targets (recorded, not enforced)."""
    out = {}
    for generator, by_region in res.get("quality", {}).items():
        q = by_region.get("sr")
        if q:
            name = "" if generator == "diffusion" else f", {METHOD_LABELS[generator]}"
            out[f"generation-quality AUC (SR, no signal{name}) <= 0.65"] = bool(q["auc_summary"]["median"] <= 0.65)
    inj = max(int(v) for v in cfg["weak_supervision"]["injections"])
    for method, bar in (("idealized", 1.5), ("diffusion", 1.0), ("flow_matching", 1.0), ("lowdim", 1.0)):
        s = res.get("scan", {}).get(method, {}).get(str(inj))
        if s:
            out[f"{method} median max SIC at {inj} injected > {bar}"] = bool(s["max_sic_summary"]["median"] > bar)
    return out


def _fmt(s, digits=3):
    if not s or not s.get("n"):
        return "–"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


def _text(v):
    return "–" if v is None else str(v)


def _methods(res) -> list[str]:
    return [m for m in res.get("methods", list(res.get("scan", {}))) if m in res.get("scan", {})]


def _scan_table(res, injections) -> list[str]:
    lines = ["| injected signal | S/B in data | method | AUC | max SIC | label-0 events |", "|---|---|---|---|---|---|"]
    for n in injections:
        for m in _methods(res):
            s = res["scan"][m].get(str(n))
            if s:
                lines.append(f"| {n} | {s['s_over_b']:.3f} | {METHOD_LABELS.get(m, m)} | "
                             f"{_fmt(s.get('auc_summary'))} | {_fmt(s.get('max_sic_summary'), 2)} | "
                             f"{s['n_label0']} |")
    return lines


def _fig7_table(res, injections, quantity, key, digits) -> list[str]:
    """Fig. 7 as a table of one quantity: the paper's stated values, then ours, one column per
    method."""
    methods = _methods(res) or ["diffusion"]
    lines = ["| scale | injected | S/B | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for row in PUBLISHED["fig7"]:
        if quantity in row:
            lines.append(f"| paper | {row['injected']} | {_text(row.get('s_over_b'))} | " +
                         " | ".join(_text(row[quantity].get(m)) for m in methods) + " |")
    scan = res.get("scan", {})
    for n in injections:
        any_s = next((scan[m][str(n)] for m in methods if str(n) in scan.get(m, {})), None)
        if any_s is None:
            continue
        lines.append(f"| ours | {n} | {any_s['s_over_b']:.3f} | " +
                     " | ".join(_fmt(scan.get(m, {}).get(str(n), {}).get(key), digits) for m in methods) + " |")
    return lines


def _quality_table(res) -> list[str]:
    lines = ["| generator | region | ours (test AUC) | paper |", "|---|---|---|---|"]
    for generator, by_region in res.get("quality", {}).items():
        for region in ("sb", "sr"):
            q = by_region.get(region)
            ours = _fmt(q["auc_summary"]) + f" (test: {q['n_test']} events)" if q else "–"
            pub = PUBLISHED[f"quality_{region}"].get(generator, "–")
            lines.append(f"| {METHOD_LABELS.get(generator, generator)} | {region.upper()} | {ours} | {pub} |")
    return lines


def _sample_metrics_tables(res) -> list[str]:
    from shared.sample_metrics import metrics_table
    lines = []
    for generator, by_region in res.get("sample_metrics", {}).items():
        for region in ("sb", "sr"):
            views = by_region.get(region)
            if views:
                view = "pooled" if "pooled" in views else next(iter(views))
                lines += ["", metrics_table(views[view], f"{METHOD_LABELS.get(generator, generator)}, "
                                                        f"{region.upper()}, jets {view}")]
    return lines


def table(res, note=NOTE) -> str:
    """Markdown: our scan of every method, Fig. 7, the generation quality and the sample metrics
    beside the published numbers."""
    scan = res.get("scan", {})
    data = res.get("data", {})
    roles = data.get("roles", {})
    lines = ["# lhco_fullphase: results", "", f"**Scale:** {note}", "",
             f"Median over initialisations [central {int(100 * res.get('band', 0.68))} % interval]; "
             f"max SIC over cuts with ≥ {res.get('min_background', 10)} background events."]
    if roles:
        lines += ["", f"Evaluation set (used by no training): {roles.get('eval_sig', '–')} signal "
                      f"events = {data.get('evaluation_signal', '–')}, and "
                      f"{roles.get('eval_bkg', '–')} independent SR background events."]
    if res.get("missing_units"):
        lines += ["", f"**{len(res['missing_units'])} classifier unit(s) missing** (not trained "
                      f"with the current settings): {', '.join(res['missing_units'][:5])}"]
    injections = sorted({int(n) for m in scan.values() for n in m})
    lines += ["", "## Signal-injection scan (ours)", "",
              "Methods: diffusion / flow matching = generated SR background as label 0 (full phase "
              "space); idealized = true independent SR background; low-dim CATHODE = flow samples of "
              "(m_J1, Δm_J, τ21^J1, τ21^J2), low-dim idealized = true background on those 4 features.", "",
              *_scan_table(res, injections)]
    lines += ["", "## Fig. 7: max SIC and AUC vs injected signal, paper scale vs our scale", "",
              f"Paper scale: {PAPER_SCALE['sr_background_in_data']:,} SR background events in the "
              f"data, {PAPER_SCALE['generated_sr_background']:,} generated, "
              f"{PAPER_SCALE['classifier_inits']} initialisations; values as stated in the text "
              "(the figure is not digitised; – = not stated). Our scale: this run.", "",
              "**max SIC**", "", *_fig7_table(res, injections, "max_sic", "max_sic_summary", 2),
              "", "**AUC**", "", *_fig7_table(res, injections, "auc", "auc_summary", 3),
              "", "Paper statements: " + "; ".join(r["statement"] for r in PUBLISHED["fig7"]) + ".",
              "", "## Generation quality (classifier AUC, generated vs true, no signal)", "",
              *_quality_table(res),
              "", "Paper scale of the quality check: 10 classifier trainings on generated vs "
                  "reference events; ours: this run's generation_quality settings."]
    if any(res.get("sample_metrics", {}).values()):
        lines += ["", "## Generated-sample metrics (JetNet definitions, shared.sample_metrics)", "",
                  "W1 of single-jet distributions, Fréchet (FPD) and kernel (KPD) physics distances "
                  "of the EFPs, each beside the same estimator on two halves of the true sample "
                  "(truth vs truth: what a perfect generator gives at this size). Same event sets as "
                  "the quality check; both jets pooled here, leading/subleading in results.json. "
                  "The paper quotes none.", *_sample_metrics_tables(res)]
    return "\n".join(lines) + "\n"


def report(run) -> dict:
    """Write results.json and results.md of the run; returns the results."""
    from lhco_fullphase.prepare import load_prepared
    from shared.io import atomic_write_json, atomic_write_text
    from shared.run import load_stage_times
    path = artifacts.results_eval_path(run.out)
    res = dict(artifacts.read_results_eval(run.out)) if path.is_file() else {}
    if not res:
        run.log(f"report: {path} missing (run the evaluate stage); no metrics")
    info = load_prepared(run).info
    res["data"] = {"roles": info["roles"], "events": info["events"],
                   "evaluation_signal": info.get("evaluation_signal")}
    times = load_stage_times(run)
    res.update(note=NOTE, published=PUBLISHED, stage_seconds=times,
               total_seconds=float(sum(times.values())), acceptance=acceptance(res, run.cfg))
    atomic_write_text(artifacts.results_md_path(run.out), table(res))
    atomic_write_json(artifacts.results_path(run.out), res)
    return res
