"""Fig. 5: ROC of top vs QCD — unsupervised (left); density ratio log p_top − log p_QCD and the
supervised classifier (right)."""
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pad_figs as F  # noqa: E402
from shared import metrics, plotting  # noqa: E402


def main(argv=None):
    a = F.parse(__doc__, "fig5_roc", argv)
    curves = plotting.load_predictions(os.path.join(a.run, "predictions", "roc_top.npz"))
    fig, axes = plotting.figure(ncols=2)
    panels = [("unsupervised", axes[0], "Unsupervised (QCD-trained, $-\\log p/N$)"),
              ("density_ratio", axes[1], "Density ratio vs classifier")]
    for prefix, ax, title in panels:
        for name, (lab, sc) in curves.items():
            if not (name.startswith(prefix) or (prefix == "density_ratio" and name == "classifier")):
                continue
            fpr, tpr, _ = metrics.roc(lab, sc)
            obj = name.split("_")[-1]
            color = plotting.COLORS["classifier"] if name == "classifier" else plotting.COLORS[obj]
            ax.plot(tpr, fpr, color=color, ls=F.OBJ_STYLE.get(obj, "-"),
                    label=f"{name.replace('_', ' ')} (AUC {metrics.auc(lab, sc):.3f})")
        ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
        ax.set_xlabel(r"True positive rate $\epsilon_s$ (top)")
        ax.set_ylabel(r"False positive rate $\epsilon_b$ (QCD)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(frameon=False, fontsize=11, loc="upper left")
        plotting.label_plot(ax, title)
    return plotting.save(fig, a.out)


if __name__ == "__main__":
    print(main())
