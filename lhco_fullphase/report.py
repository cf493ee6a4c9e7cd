"""Stage ``report``: ``results.json`` (every number of the run, the data counts, the published
values, stage times, acceptance checks) and ``results.md`` (our scan, Fig. 7 and the generation
quality beside the published values, paper scale vs our scale labelled).

The published values are those the text of arXiv:2307.11157 states (SPEC §5); its figures are
not digitised.
"""
from __future__ import annotations

from lhco_fullphase import artifacts

NOTE = ("Simulated stand-in data (Pythia 8 + simple smearing, not Delphes), CPU demo scale ≠ paper: "
        "small nets, few epochs, a few thousand events, large injected S/B. Not comparable "
        "number-for-number with the published values.")
# arXiv:2307.11157 (full phase space CATHODE), values stated in its text.
PAPER_SCALE = {"sr_background_in_data": 100_000, "generated_sr_background": 200_000,
               "idealized_background": 200_000, "classifier_inits": 10,
               "injections": [500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10000]}
PUBLISHED = {
    "paper": "arXiv:2307.11157",
    "scale": PAPER_SCALE,
    # Fig. 7 (and Fig. 6) as stated in the text: (injected signal, quantity, value, statement)
    "fig7": [
        {"injected": 2000, "s_over_b": 0.02, "max_sic_diffusion": "≈ 40",
         "statement": "max SIC near 40 at 2000 signal / 100k background (Fig. 6), limited by the "
                      "background statistics in the SR"},
        {"injected": "large (up to 10000)", "s_over_b": "up to 0.1", "max_sic_diffusion": "≈ 50",
         "statement": "max SIC as high as 50 for large amounts of injected signal"},
        {"injected": "low", "s_over_b": None, "auc_diffusion": "≈ 0.5",
         "statement": "AUC compatible with 0.5 at low injection (precise background prediction)"},
        {"injected": "< 1000", "s_over_b": "< 0.01", "statement":
         "low-dimensional CATHODE beats the full-phase-space and idealized detectors"},
    ],
    "max_sic": "≈ 40 at 2000 signal / 100k background; up to ≈ 50 at large injection",
    "auc_low": "compatible with 0.5 at low injection",
    "quality_sb": {"diffusion": "0.514 ± 0.07", "flow matching": "0.522 ± 0.006"},
    "quality_sr": {"diffusion": "0.52 ± 0.01", "flow matching": "0.53 ± 0.01"},
}


def acceptance(res, cfg) -> dict:
    """Demo targets (recorded, not enforced)."""
    out = {}
    q = res.get("quality", {}).get("sr")
    if q:
        out["generation-quality AUC (SR, no signal) <= 0.65"] = bool(q["auc_summary"]["median"] <= 0.65)
    inj = max(int(v) for v in cfg["weak_supervision"]["injections"])
    for method, bar in (("idealized", 1.5), ("diffusion", 1.0)):
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


def table(res, note=NOTE) -> str:
    """Markdown: our scan, Fig. 7 and the generation quality beside the published numbers."""
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
    lines += ["", "## Signal-injection scan (ours)", "",
              "| injected signal | S/B in data | AUC diffusion | max SIC diffusion | AUC idealized | max SIC idealized |",
              "|---|---|---|---|---|---|"]
    injections = sorted({int(n) for m in scan.values() for n in m})
    for n in injections:
        d, i = scan.get("diffusion", {}).get(str(n), {}), scan.get("idealized", {}).get(str(n), {})
        sb = (d or i).get("s_over_b", float("nan"))
        lines.append(f"| {n} | {sb:.3f} | {_fmt(d.get('auc_summary'))} | {_fmt(d.get('max_sic_summary'), 2)} | "
                     f"{_fmt(i.get('auc_summary'))} | {_fmt(i.get('max_sic_summary'), 2)} |")
    lines += ["", "## Fig. 7: max SIC and AUC vs injected signal, paper scale vs our scale", "",
              f"Paper scale: {PAPER_SCALE['sr_background_in_data']:,} SR background events in the "
              f"data, {PAPER_SCALE['generated_sr_background']:,} generated, "
              f"{PAPER_SCALE['classifier_inits']} initialisations; values as stated in the text "
              "(the figure is not digitised; – = not stated). Our scale: this run.", "",
              "| scale | injected | S/B | max SIC diffusion | AUC diffusion | max SIC idealized | AUC idealized |",
              "|---|---|---|---|---|---|---|"]
    for row in PUBLISHED["fig7"]:
        if not any(k in row for k in ("max_sic_diffusion", "auc_diffusion")):
            continue   # a statement without a number (listed below the table)
        lines.append(f"| paper | {row['injected']} | {_text(row.get('s_over_b'))} | "
                     f"{_text(row.get('max_sic_diffusion'))} | {_text(row.get('auc_diffusion'))} | – | – |")
    for n in injections:
        d, i = scan.get("diffusion", {}).get(str(n), {}), scan.get("idealized", {}).get(str(n), {})
        sb = (d or i).get("s_over_b", float("nan"))
        lines.append(f"| ours | {n} | {sb:.3f} | {_fmt(d.get('max_sic_summary'), 2)} | "
                     f"{_fmt(d.get('auc_summary'))} | {_fmt(i.get('max_sic_summary'), 2)} | "
                     f"{_fmt(i.get('auc_summary'))} |")
    lines += ["", "Paper statements: " + "; ".join(r["statement"] for r in PUBLISHED["fig7"]) + ".",
              "", "## Generation quality (classifier AUC, generated vs true, no signal)", "",
              "| region | ours (diffusion) | paper diffusion | paper flow matching |", "|---|---|---|---|"]
    for region in ("sb", "sr"):
        q = res.get("quality", {}).get(region)
        ours = _fmt(q["auc_summary"]) + f" (test: {q['n_test']} events)" if q else "–"
        pub = PUBLISHED[f"quality_{region}"]
        lines.append(f"| {region.upper()} | {ours} | {pub['diffusion']} | {pub['flow matching']} |")
    lines += ["", "Paper scale of the quality check: 10 classifier trainings on generated vs "
                  "reference events; ours: this run's generation_quality settings."]
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
