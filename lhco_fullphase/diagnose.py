"""Which observables give the generated background away? Generated vs true events, no signal.

    python -m lhco_fullphase.diagnose --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--generator diffusion|flow_matching] [--region sb|sr|both] [--data-dir DIR]

For every observable below (per jet, leading jet = j0, particles pT-ordered) a small
gradient-boosted tree classifier (scikit-learn) is trained on that one observable with 5-fold
cross-validation; its AUC says how well the observable alone separates generated from true
events (0.5 = not at all). One more classifier on all observables together gives a (much
stronger than the transformer of the scan, at demo scale) upper view. Same event sets as the
generation-quality check: SB = ``generated/<generator>/sb.h5`` vs the ``sb_val`` events it was
generated at, SR = ``generated/<generator>/sr.h5`` vs ``idealized_bkg`` (both must have been made
with the current settings). Then the generated-sample metrics (W1, FPD, KPD with their
truth-vs-truth baselines; ``shared.sample_metrics``, settings ``sample_metrics``) of the classify
stage's metrics unit — read from ``OUT/sample_metrics/<generator>_<region>.json`` when made with
the current settings, else computed and written there. Prints both tables, writes
``OUT/diagnose/<generator>_<region>.json`` (the observables; ``sample_metrics`` = the views).
Default: every generator of the run, both regions.
"""
from __future__ import annotations

import numpy as np

from lhco_fullphase import artifacts
from lhco_fullphase.events import dijet_mass, particle_centroid, sort_by_pt, stored_mass_fraction, wrap_phi


def observables(arrays):
    """Dict name -> (N,) of event observables (jets and particles reordered by pT first)."""
    jets, p, m = sort_by_pt(arrays["jets"], arrays["particles"], arrays["mask"])
    mf = m.astype(np.float64)
    pt = p[..., 0] * mf
    dr = np.hypot(p[..., 1], p[..., 2]) * mf
    cen = particle_centroid(p, m)
    frac = stored_mass_fraction(p, m, jets[..., 3] / jets[..., 0])
    out = {"mjj_jets/mjj": dijet_mass(jets) / np.asarray(arrays["mjj"], np.float64),
           "deta_jj": np.abs(jets[:, 0, 1] - jets[:, 1, 1]),
           "dphi_jj": np.abs(wrap_phi(jets[:, 0, 2] - jets[:, 1, 2])),
           "pt_j1/pt_j0": jets[:, 1, 0] / jets[:, 0, 0]}
    for k in range(2):
        j = f"j{k}_"
        out.update({j + "pt/mjj": jets[:, k, 0] / arrays["mjj"], j + "eta": jets[:, k, 1],
                    j + "m/mjj": jets[:, k, 3] / arrays["mjj"], j + "n": jets[:, k, 4],
                    j + "sum_pt_rel": pt[:, k].sum(-1), j + "centroid_deta": cen[0][:, k],
                    j + "centroid_dphi": cen[1][:, k], j + "m_stored/m": frac[:, k],
                    j + "girth": (pt[:, k] * dr[:, k]).sum(-1), j + "pt_rel_1": pt[:, k, 0],
                    j + "pt_rel_2": pt[:, k, 1], j + "pt_rel_5": pt[:, k, 4] if p.shape[2] > 4 else pt[:, k, -1],
                    j + "dr_1": dr[:, k, 0]})
    return out


def _cv_auc(x, y, seed, **kw):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits
    clf = HistGradientBoostingClassifier(random_state=seed, **kw)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    # one OpenMP thread: these fits are tiny, and on a busy machine the thread pool's start-up
    # and spinning cost far more than the fit (measured: 5.4 s vs 0.14 s per observable, 80
    # events, 2 loaded cores); the result does not depend on the thread count
    with threadpool_limits(limits=1, user_api="openmp"):
        return float(roc_auc_score(y, cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]))


def diagnose(run, region, seed=0, generator="diffusion"):
    """Per-observable and all-observable cross-validated AUCs (generated vs true) of
    ``generator`` in ``region``, and its sample metrics (``sample_metrics``: {view: metrics})."""
    from lhco_fullphase.classify import quality_events, sample_metrics_of
    from shared.io import atomic_write_json
    gen, true = quality_events(run, generator, region)
    og, ot = observables(gen), observables(true)
    y = np.r_[np.zeros(len(gen["mjj"])), np.ones(len(true["mjj"]))]
    rows = []
    for name in og:
        x = np.r_[og[name], ot[name]][:, None]
        q = lambda v: [float(a) for a in np.quantile(v, [0.05, 0.5, 0.95])]  # noqa: E731
        rows.append({"observable": name, "auc": _cv_auc(x, y, seed, max_iter=50, max_leaf_nodes=8),
                     "generated_q05_50_95": q(og[name]), "true_q05_50_95": q(ot[name])})
    rows.sort(key=lambda r: -abs(r["auc"] - 0.5))
    names = list(og)
    x_all = np.r_[np.stack([og[n] for n in names], 1), np.stack([ot[n] for n in names], 1)]
    res = {"generator": generator, "region": region, "n_generated": int(len(gen["mjj"])),
           "n_true": int(len(true["mjj"])),
           "auc_all": _cv_auc(x_all, y, seed, max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                              early_stopping=True),
           "observables": rows,
           "sample_metrics": sample_metrics_of(run, generator, region)["views"]}
    atomic_write_json(artifacts.diagnose_path(run.out, generator, region), res)
    return res


def format_table(res):
    """The observables' AUCs and quantiles, then the sample metrics of each view (markdown)."""
    from shared.sample_metrics import metrics_table
    lines = [f"{res.get('generator', 'diffusion')} {res['region']}: {res['n_generated']} generated vs "
             f"{res['n_true']} true; AUC of all observables together {res['auc_all']:.3f}",
             f"{'observable':18s} {'AUC':>6s}   generated 5/50/95 %          true 5/50/95 %"]
    fmt = lambda v: " ".join(f"{a:8.4g}" for a in v)  # noqa: E731
    for r in res["observables"]:
        lines.append(f"{r['observable']:18s} {r['auc']:6.3f}   {fmt(r['generated_q05_50_95'])}   "
                     f"{fmt(r['true_q05_50_95'])}")
    for view, m in (res.get("sample_metrics") or {}).items():
        lines += ["", metrics_table(m, f"sample metrics, jets {view}")]
    return "\n".join(lines)


def main(argv=None):
    from lhco_fullphase.schema import GENERATORS, REGIONS, SCHEMA
    from lhco_fullphase.train import generators
    from shared.cli import parser
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--region", default="both", choices=REGIONS + ("both",))
    p.add_argument("--generator", default=None, choices=GENERATORS,
                   help="default: every generator of the run")
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA, save_config_as=None)
    for g in ([args.generator] if args.generator else generators(run)):
        for r in (("sb", "sr") if args.region == "both" else (args.region,)):
            print(format_table(diagnose(run, r, generator=g)))
            print()


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
