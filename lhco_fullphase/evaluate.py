"""Stage 5: ROC / AUC / SIC of every classifier run on the independent evaluation set.

    python -m lhco_fullphase.evaluate --config lhco_fullphase/configs/demo.yaml --out runs/lhco

Per method and injection: AUC and max SIC of each initialisation (SIC only where at least
``evaluate.min_background`` background events pass), their median and central
``evaluate.band`` (68 %) interval over initialisations. Generation quality: test AUC per region.
Writes ``OUT/results_eval.json``, ``OUT/results.md`` (our numbers beside the published ones,
scale labelled) and ``OUT/predictions/sic_inj<n>.npz`` in the ``plots/plot_sic.py`` format
(one curve per method and initialisation).
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np

from lhco_fullphase.classify import run_dir
from shared import metrics
from shared.config import atomic_write_text
from shared.plotting import save_predictions

PUBLISHED = {
    "max_sic": "≈ 40 at 2000 signal / 100k background; up to ≈ 50 at large injection",
    "auc_low": "compatible with 0.5 at low injection",
    "quality_sb": {"diffusion": "0.514 ± 0.07", "flow matching": "0.522 ± 0.006"},
    "quality_sr": {"diffusion": "0.52 ± 0.01", "flow matching": "0.53 ± 0.01"},
}


def summarize(values, band=0.68):
    """Median and central ``band`` interval of finite values (NaN if none)."""
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"median": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    q = 100 * (0.5 - band / 2), 100 * (0.5 + band / 2)
    return {"median": float(np.median(v)), "lo": float(np.percentile(v, q[0])),
            "hi": float(np.percentile(v, q[1])), "n": int(v.size)}


def load_runs(out, method, injection):
    """Loaded ``scores.npz`` of all initialisations of one (method, injection), by init."""
    pattern = os.path.join(os.path.dirname(run_dir(out, method, injection, 0)), "init*", "scores.npz")
    runs = []
    for p in sorted(glob.glob(pattern), key=lambda s: int(s.split("init")[-1].split(os.sep)[0])):
        with np.load(p) as d:
            runs.append({k: d[k] for k in d.files})
    return runs


def evaluate(cfg, out):
    ws, ev = cfg["weak_supervision"], cfg["evaluate"]
    mb, band = int(ev.get("min_background", 10)), float(ev.get("band", 0.68))
    methods = ["diffusion"] + (["idealized"] if ws.get("idealized", True) else [])
    res = {"min_background": mb, "band": band, "scan": {}, "quality": {}}
    for method in methods:
        res["scan"][method] = {}
        for n in [int(v) for v in ws["injections"]]:
            runs = load_runs(out, method, n)
            if not runs:
                continue
            aucs = [metrics.auc(r["labels"], r["scores"]) for r in runs]
            sics = [metrics.max_sic(r["labels"], r["scores"], mb) for r in runs]
            r0 = runs[0]
            res["scan"][method][str(n)] = {
                "n_signal_injected": n, "n_data_background": int(r0["n_data_background"]),
                "s_over_b": n / max(int(r0["n_data_background"]), 1),
                "n_label0": int(r0["n_label0"]),
                "n_eval_signal": int(r0["labels"].sum()), "n_eval_background": int((r0["labels"] == 0).sum()),
                "auc": aucs, "max_sic": sics, "auc_summary": summarize(aucs, band),
                "max_sic_summary": summarize(sics, band),
                "epochs": [int(r["epochs"]) for r in runs], "wall_s": [float(r["wall_s"]) for r in runs]}
    for n in [int(v) for v in ws["injections"]]:
        curves = {}
        for method in methods:
            for i, r in enumerate(load_runs(out, method, n)):
                curves[f"{method}_init{i}"] = (r["labels"], r["scores"])
        if curves:
            save_predictions(os.path.join(out, "predictions", f"sic_inj{n}.npz"), curves,
                             title=f"lhco_fullphase, {n} injected signal events")
    for region in ("sb", "sr"):
        runs = []
        for p in sorted(glob.glob(os.path.join(out, "classify", f"quality_{region}", "init*", "scores.npz"))):
            with np.load(p) as d:
                runs.append({k: d[k] for k in d.files})
        if runs:
            aucs = [float(r["auc"]) for r in runs]
            res["quality"][region] = {"auc": aucs, "auc_summary": summarize(aucs, band),
                                      "n_test": int(len(runs[0]["labels"])),
                                      "n_generated": int(runs[0]["n_generated"]), "n_true": int(runs[0]["n_true"])}
    atomic_write_text(os.path.join(out, "results_eval.json"), json.dumps(res, indent=1))
    return res


def _fmt(s, digits=3):
    if not s or not s.get("n"):
        return "–"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


def table(res, note):
    """Markdown: our scan and generation quality beside the published numbers (SPEC §5)."""
    lines = ["# lhco_fullphase: results", "", f"**Scale:** {note}", "",
             f"Median over initialisations [central {int(100 * res.get('band', 0.68))} % interval]; "
             f"max SIC over cuts with ≥ {res.get('min_background', 10)} background events.", "",
             "| injected signal | S/B in data | AUC diffusion | max SIC diffusion | AUC idealized | max SIC idealized |",
             "|---|---|---|---|---|---|"]
    scan = res.get("scan", {})
    injections = sorted({int(n) for m in scan.values() for n in m}, key=int)
    for n in injections:
        d, i = scan.get("diffusion", {}).get(str(n), {}), scan.get("idealized", {}).get(str(n), {})
        sb = (d or i).get("s_over_b", float("nan"))
        lines.append(f"| {n} | {sb:.3f} | {_fmt(d.get('auc_summary'))} | {_fmt(d.get('max_sic_summary'), 2)} | "
                     f"{_fmt(i.get('auc_summary'))} | {_fmt(i.get('max_sic_summary'), 2)} |")
    lines += ["", "Published (arXiv:2307.11157, 100k SR background, 200k generated, 10 inits): max SIC "
              + PUBLISHED["max_sic"] + "; AUC " + PUBLISHED["auc_low"] + ".", "",
              "## Generation quality (classifier AUC, generated vs true, no signal)", "",
              "| region | ours (diffusion) | paper diffusion | paper flow matching |", "|---|---|---|---|"]
    for region in ("sb", "sr"):
        q = res.get("quality", {}).get(region)
        ours = _fmt(q["auc_summary"]) + f" (test: {q['n_test']} events)" if q else "–"
        pub = PUBLISHED[f"quality_{region}"]
        lines.append(f"| {region.upper()} | {ours} | {pub['diffusion']} | {pub['flow matching']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from shared.config import build_parser, config_from_args
    from lhco_fullphase.pipeline import NOTE
    p = build_parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    res = evaluate(cfg, args.out)
    atomic_write_text(os.path.join(args.out, "results.md"), table(res, NOTE))
    print(os.path.join(args.out, "results.md"))


if __name__ == "__main__":
    main()
