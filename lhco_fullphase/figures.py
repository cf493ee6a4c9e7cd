"""The paper's figures 4–7 of a finished lhco_fullphase run (importable; ``plots/lhco_fig*.py``
are thin command-line wrappers: ``python plots/lhco_fig4_jets.py --run OUT``).

Each figure function takes the run (a :class:`shared.run.Run`, or its output folder; the data
folder then comes from ``OUT/run_info.json`` unless ``data_dir`` is given) and an output path
stem (default ``OUT/plots/<name>``), and returns the saved PNG + PDF paths.

* Fig. 4 ``lhco_fig4_jets``: jet kinematics (both jets) and mjj, every generator over the truth,
  SB and SR.
* Fig. 5 ``lhco_fig5_particles``: particle features of both jets, every generator over the truth,
  SB and SR.
* Fig. 6 ``lhco_fig6_sic_roc``: SIC and background rejection at one injection, median and band,
  every method.
* Fig. 7 ``lhco_fig7_scan``: max SIC and AUC vs injected signal, median and band, every method.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lhco_fullphase import artifacts
from shared import metrics, plotting
from shared.errors import DataFormatError

# method: (colour, marker, legend label, line style)
SCAN_STYLE = {"diffusion": ("#bd1f01", "o", "diffusion background", "-"),
              "flow_matching": ("#1845fb", "D", "flow-matching background", "-"),
              "lowdim": ("#8a5a00", "^", "low-dim CATHODE", "-"),
              "idealized": ("#2e8b57", "s", "idealized (true background)", "--"),
              "lowdim_idealized": ("#a0a0a0", "v", "low-dim idealized", "--")}
GENERATOR_STYLE = {"diffusion": ("#bd1f01", "diffusion"), "flow_matching": ("#1845fb", "flow matching")}
JET_PANELS = ((0, r"jet $p_T$ [GeV]"), (1, r"jet $\eta$"), (3, r"jet mass [GeV]"),
              (4, "jet constituents N"))
PARTICLE_PANELS = ((0, r"particle $p_T/p_{T,jet}$", True), (1, r"particle $\Delta\eta$", False),
                   (2, r"particle $\Delta\phi$", False))


def _out(run) -> Path:
    return Path(getattr(run, "out", run)).resolve()


def _stem(run, name, out):
    return str(out) if out else str(artifacts.plots_dir(_out(run)) / name)


def generated_vs_true(run, data_dir=None) -> dict:
    """{region: (true, {generator: generated})} physical arrays of every generated file of the
    run: SB (true = the sb_val events whose mjj was used) and SR (true = the independent idealized
    background, no signal)."""
    from lhco_fullphase.prepare import Prepared, load_prepared
    from lhco_fullphase.schema import GENERATORS
    out = _out(run)
    found = {r: [g for g in GENERATORS if artifacts.generated_path(out, g, r).is_file()] for r in ("sb", "sr")}
    if not any(found.values()):
        raise DataFormatError(out / "generated", "<generator>/<region>.h5",
                              "no generated events (run the sample stage)")
    from shared.run import require_current
    for region, gens in found.items():
        for g in gens:
            require_current(artifacts.generated_path(out, g, region), "generated events",
                            "run the sample stage again (python -m lhco_fullphase.sample --region both)")
    prep = load_prepared(run) if hasattr(run, "cfg") else \
        Prepared.load(data_dir or artifacts.data_dir_of(out))
    pairs = {}
    for region, gens in found.items():
        if not gens:
            continue
        g = {name: artifacts.read_generated(artifacts.generated_path(out, name, region)) for name in gens}
        first = g[gens[0]]
        true = prep.take(np.asarray(first["sb_event_id"], np.int64)) if region == "sb" else \
            prep.take("idealized_bkg")
        pairs[region] = (true, g)
    return pairs


def hist_ratio(ax, ax_r, gens, true, bins, xlabel, log=False):
    """Normalised histograms of true (filled) and each generated sample (lines; ``gens``
    {generator: values}) + ratios generated/true with Poisson errors of both."""
    true = np.asarray(true, float)
    true = true[np.isfinite(true)]
    ht, _ = np.histogram(true, bins)
    wt = 1.0 / max(ht.sum(), 1) / np.diff(bins)
    ax.stairs(ht * wt, bins, fill=True, alpha=0.35, color="#3f90da", label=f"true ({len(true)})")
    centers = 0.5 * (bins[1:] + bins[:-1])
    shift = 0.15 * np.diff(bins)
    for k, (name, gen) in enumerate(gens.items()):
        color, label = GENERATOR_STYLE.get(name, ("#333333", name))
        gen = np.asarray(gen, float)
        gen = gen[np.isfinite(gen)]
        hg, _ = np.histogram(gen, bins)
        wg = 1.0 / max(hg.sum(), 1) / np.diff(bins)
        ax.stairs(hg * wg, bins, color=color, lw=1.8, label=f"{label} ({len(gen)})")
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (hg * wg) / (ht * wt)
            err = r * np.sqrt(1.0 / np.maximum(hg, 1) + 1.0 / np.maximum(ht, 1))
        ok = (ht > 0) & (hg > 0)
        x = centers + (k - (len(gens) - 1) / 2) * shift   # side by side, not on top of each other
        ax_r.errorbar(x[ok], r[ok], yerr=err[ok], fmt="o", ms=3, color=color)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("density", fontsize=11)
    ax.tick_params(labelbottom=False, labelsize=9)
    ax_r.axhline(1.0, color="gray", lw=1)
    ax_r.set_ylim(0.0, 2.0)
    ax_r.set_ylabel("gen/true", fontsize=10)
    ax_r.set_xlabel(xlabel, fontsize=11)
    ax_r.tick_params(labelsize=9)


def grid_figure(nrows, ncols, panel=(3.6, 3.4)):
    """Figure with ``nrows`` × ``ncols`` (main, ratio) panel pairs; returns fig, axes[r][c] = (main, ratio)."""
    import matplotlib.pyplot as plt
    plotting.set_style()
    fig = plt.figure(figsize=(panel[0] * ncols, (panel[1] + 0.8) * nrows))
    # (main, ratio, spacer) rows per region: room for the x label and the next row's title
    gs = fig.add_gridspec(3 * nrows, ncols, height_ratios=[3, 1, 0.9] * nrows, hspace=0.08, wspace=0.35)
    axes = []
    for r in range(nrows):
        row = []
        for c in range(ncols):
            a = fig.add_subplot(gs[3 * r, c])
            b = fig.add_subplot(gs[3 * r + 1, c], sharex=a)
            row.append((a, b))
        axes.append(row)
    return fig, axes


def quantile_bins(*arrays, n=30, q=(0.005, 0.995)):
    v = np.concatenate([np.asarray(a, float).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    lo, hi = np.quantile(v, q) if v.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n + 1)


def band_curves(runs, kind, grid, min_background=10):
    """Median and central 68 % band over initialisations, on ``grid`` of signal efficiency:
    ``kind`` = "sic" (ε_s/√ε_b, NaN below min_background) or "rejection" (1/ε_b)."""
    ys = []
    for r in runs:
        lab, sc = r["labels"], r["scores"]
        if kind == "sic":
            eff_s, y = metrics.sic_curve(lab, sc, min_background)
        else:
            fpr, tpr, _ = metrics.roc(lab, sc)
            eff_s = tpr
            with np.errstate(divide="ignore"):
                y = np.where(fpr > 0, 1.0 / np.maximum(fpr, 1e-300), np.nan)
            n_b = int((np.asarray(lab) == 0).sum())
            y[fpr * n_b < min_background] = np.nan
        order = np.argsort(eff_s, kind="stable")
        ys.append(np.interp(grid, eff_s[order], y[order], left=np.nan, right=np.nan))
    ys = np.array(ys)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (np.nanmedian(ys, 0), np.nanpercentile(ys, 16, 0), np.nanpercentile(ys, 84, 0))


def lhco_fig4_jets(run, out=None, data_dir=None):
    """Jet kinematics (both jets) and mjj, every generator over the truth, SB and SR, with ratio
    panels. True SR = the independent true SR background (no signal)."""
    pairs = generated_vs_true(run, data_dir)
    fig, axes = grid_figure(len(pairs), len(JET_PANELS) + 1)
    for r, (region, (true, gens)) in enumerate(pairs.items()):
        for c, (f, name) in enumerate(JET_PANELS):
            g = {k: v["jets"][..., f].ravel() for k, v in gens.items()}
            t = true["jets"][..., f].ravel()
            if f == 4:
                hi = max(max(v.max() for v in g.values()), t.max()) + 1.5
                bins = np.arange(0.5, hi, max(1, int(hi // 30)))
            else:
                bins = quantile_bins(t, *g.values())
            hist_ratio(*axes[r][c], g, t, bins, name)
            axes[r][c][0].set_title(f"{region.upper()}", fontsize=11, loc="left")
        g = {k: v["mjj"] for k, v in gens.items()}
        hist_ratio(*axes[r][-1], g, true["mjj"], quantile_bins(true["mjj"], *g.values()), r"$m_{jj}$ [GeV]")
        axes[r][-1][0].set_title(f"{region.upper()}", fontsize=11, loc="left")
    axes[0][0][0].legend(fontsize=9, frameon=False)
    fig.suptitle("Jets: generated vs true (simulated stand-in data, CPU demo scale)", fontsize=13)
    return plotting.save(fig, _stem(run, "lhco_fig4_jets", out))


def lhco_fig5_particles(run, out=None, data_dir=None):
    """Particle features of both jets (real particles only), every generator over the truth, SB
    and SR, with ratio panels."""
    pairs = generated_vs_true(run, data_dir)
    fig, axes = grid_figure(len(pairs), len(PARTICLE_PANELS) + 1)
    for r, (region, (true, gens)) in enumerate(pairs.items()):
        tm = true["mask"].astype(bool)
        for c, (f, name, log) in enumerate(PARTICLE_PANELS):
            g = {k: v["particles"][..., f][v["mask"].astype(bool)] for k, v in gens.items()}
            t = true["particles"][..., f][tm]
            hist_ratio(*axes[r][c], g, t, quantile_bins(t, *g.values(), n=40), name, log=log)
            axes[r][c][0].set_title(region.upper(), fontsize=11, loc="left")
        # Leading-particle momentum fraction (first slot: the hardest particle of true jets).
        g = {k: v["particles"][..., 0].max(-1).ravel() for k, v in gens.items()}
        t = true["particles"][..., 0].max(-1).ravel()
        hist_ratio(*axes[r][-1], g, t, quantile_bins(t, *g.values()), r"leading $p_T/p_{T,jet}$")
        axes[r][-1][0].set_title(region.upper(), fontsize=11, loc="left")
    axes[0][0][0].legend(fontsize=9, frameon=False)
    fig.suptitle("Particles: generated vs true (simulated stand-in data, CPU demo scale)", fontsize=13)
    return plotting.save(fig, _stem(run, "lhco_fig5_particles", out))


def _injections(res, path):
    injections = sorted({int(n) for m in res["scan"].values() for n in m})
    if not injections:
        raise DataFormatError(path, "scan", "no results")
    return injections


def lhco_fig6_sic_roc(run, out=None, data_dir=None, injection=None):
    """SIC and background rejection vs signal efficiency at one injection (default: the
    largest), median and 68 % band over initialisations, every method of the run; both left
    empty where fewer than ``evaluate.min_background`` background
    events pass. (Single curves per initialisation: ``python plots/plot_sic.py
    OUT/predictions/sic_inj<n>.npz --out STEM``.)"""
    folder = _out(run)
    res = artifacts.read_results_eval(folder)
    mb = int(res.get("min_background", 10))
    n = injection if injection is not None else _injections(res, artifacts.results_eval_path(folder))[-1]
    if not any(str(n) in m for m in res["scan"].values()):
        raise DataFormatError(artifacts.results_eval_path(folder), f"scan.*.{n}", "no such injection")
    curves = plotting.load_predictions(artifacts.predictions_path(folder, f"sic_inj{n}"))
    fig, (ax_s, ax_r) = plotting.figure(2)
    grid = np.linspace(0.005, 1.0, 200)
    for method, (color, _, label, ls) in SCAN_STYLE.items():
        runs = [{"labels": lab, "scores": sc} for name, (lab, sc) in sorted(curves.items())
                if name.rsplit("_init", 1)[0] == method]
        if not runs or str(n) not in res["scan"].get(method, {}):
            continue
        s = res["scan"][method][str(n)]
        for ax, kind in ((ax_s, "sic"), (ax_r, "rejection")):
            med, lo, hi = band_curves(runs, kind, grid, mb)
            ax.plot(grid, med, color=color, ls=ls, label=f"{label} ({len(runs)} inits, AUC "
                                                          f"{s['auc_summary']['median']:.2f})")
            ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
    ax_r.plot(grid, 1.0 / grid, color="gray", ls=":", label="random")
    ax_s.axhline(1.0, color="gray", ls=":", lw=1)
    ax_s.set_xlabel(r"Signal efficiency $\epsilon_s$")
    ax_s.set_ylabel(r"SIC = $\epsilon_s/\sqrt{\epsilon_b}$")
    ax_r.set_xlabel(r"Signal efficiency $\epsilon_s$")
    ax_r.set_ylabel(r"Background rejection $1/\epsilon_b$")
    ax_r.set_yscale("log")
    for ax in (ax_s, ax_r):
        ax.set_xlim(0, 1)
        ax.legend(frameon=False, fontsize=9)
    ax_s.set_ylim(bottom=0)
    any_s = next(m[str(n)] for m in res["scan"].values() if str(n) in m)
    plotting.label_plot(ax_s, f"{n} signal in {any_s['n_data_background']} SR bkg (S/B {any_s['s_over_b']:.2f}); "
                              f"median, 68% band; empty < {mb} bkg")
    plotting.label_plot(ax_r, f"eval: {any_s['n_eval_signal']} sig, {any_s['n_eval_background']} bkg (stand-in data)")
    return plotting.save(fig, _stem(run, "lhco_fig6_sic_roc", out))


def lhco_fig7_scan(run, out=None, data_dir=None):
    """Max SIC and AUC vs the number of injected signal events, median and 68 % band over
    initialisations, every method of the run (diffusion, flow matching, low-dim CATHODE,
    idealized, low-dim idealized)."""
    folder = _out(run)
    res = artifacts.read_results_eval(folder)
    _injections(res, artifacts.results_eval_path(folder))
    fig, (ax_s, ax_a) = plotting.figure(2)
    for method, (color, marker, label, ls) in SCAN_STYLE.items():
        scan = res["scan"].get(method, {})
        if not scan:
            continue
        ns = sorted(int(n) for n in scan)
        for ax, key in ((ax_s, "max_sic_summary"), (ax_a, "auc_summary")):
            med, lo, hi = (np.array([scan[str(n)][key][k] for n in ns]) for k in ("median", "lo", "hi"))
            ax.plot(ns, med, marker=marker, color=color, ls=ls, label=label)
            ax.fill_between(ns, lo, hi, color=color, alpha=0.2, lw=0)
    ax_s.axhline(1.0, color="gray", ls=":", lw=1)
    ax_a.axhline(0.5, color="gray", ls=":", lw=1)
    for ax, name in ((ax_s, "max SIC"), (ax_a, "AUC")):
        ax.set_xlabel("injected signal events in the SR data")
        ax.set_ylabel(name)
        ax.legend(frameon=False, fontsize=9)
    any_m = next(iter(v for v in res["scan"].values() if v))
    nb = next(iter(any_m.values()))["n_data_background"]
    plotting.label_plot(ax_s, f"{nb} SR background in data; median, 68% band over inits; stand-in data")
    plotting.label_plot(ax_a, f"SIC needs >= {res.get('min_background', 10)} background events; CPU demo scale")
    return plotting.save(fig, _stem(run, "lhco_fig7_scan", out))


FIGURES = {f.__name__: f for f in (lhco_fig4_jets, lhco_fig5_particles, lhco_fig6_sic_roc,
                                   lhco_fig7_scan)}


def figures(run) -> list[str]:
    """Stage ``figures``: every figure of the run (``Run`` or run folder)."""
    return [p for fn in FIGURES.values() for p in fn(run)]


def cli(name, argv=None):
    """Command line of one figure (used by plots/<name>.py)."""
    options = [(("--data-dir",), {"default": None, "help": "prepared data (default: from "
                                  "RUN/run_info.json, else RUN/data)"})]
    if name == "lhco_fig6_sic_roc":
        options.append((("--injection",), {"type": int, "default": None, "help": "default: the largest"}))
    plotting.figure_cli(FIGURES[name], name, "lhco_fullphase", argv, options)
