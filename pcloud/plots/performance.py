"""Performance plots of the singles benchmark: ROC/rejection, resolution, accuracy vs E and eta, discriminant
correlation and compute cost vs occupancy. Every function writes one PNG and returns its path."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..metrics import classification as mc  # noqa: E402
from ..metrics.regression import resolution_function  # noqa: E402

STYLE = {"pointnet": ("C0", "-"), "dgcnn": ("C1", "-"), "dense_fcn": ("C2", "--"), "cnn3d": ("C3", "--"),
         "multistream_cnn": ("C4", "--"), "densenet": ("C5", "--"), "upsample_cnn": ("C6", "--"),
         "ss_fcn": ("k", ":"), "ss_gbt": ("0.5", ":"), "linear": ("k", ":"), "tree_regression": ("0.5", ":")}


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _style(name):
    return STYLE.get(name, ("C9", "-."))


def rejection_plot(task_name: str, task: dict, raw: dict, path: Path) -> str:
    label = raw["_test_label"]
    sig = label == 0
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    lo = min(task["models"][next(iter(task["models"]))].get("rejection", {"0.5": 0}).keys(), key=float, default="0.5")
    x_lo = max(0.0, float(lo) - 0.1)
    for name, score in raw["_scores"].items():
        if score is None:
            continue
        roc = mc.roc_curve(sig, score)
        m = (roc.tpr >= x_lo) & (roc.fpr > 0)
        c, ls = _style(name)
        ax.plot(roc.tpr[m], 1.0 / roc.fpr[m], color=c, ls=ls, label=f"{name} (AUC {task['models'][name]['auc']:.3f})")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, 1.0)
    ax.set_xlabel(f"{task['classes'][0]} efficiency (signal)")
    ax.set_ylabel(f"{task['classes'][1]} rejection 1/FPR")
    ax.set_title(f"{task_name}: {task['description']}", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, path)


def resolution_plot(task_name: str, task: dict, path: Path) -> str:
    groups = list(task["classes"])
    fig, axes = plt.subplots(2, len(groups), figsize=(5.2 * len(groups), 7.2), sharex=True, squeeze=False)
    for j, grp in enumerate(groups):
        axr, axb = axes[0, j], axes[1, j]
        for name, m in task["models"].items():
            en = m.get("energy", {}).get(grp)
            if not en:
                continue
            c, ls = _style(name)
            e = np.asarray(en["e_true_mean"], float)
            r = np.asarray(en["resolution"], float)
            re = np.asarray(en["resolution_err"], float)
            fit = en.get("fit", {})
            lab = name
            if "a" in fit:
                lab += f": a={fit['a']:.3f} b={fit['b']:.3f} c={fit['c']:.2f}"
                ee = np.linspace(np.nanmin(e), np.nanmax(e), 100)
                axr.plot(ee, resolution_function(ee, fit["a"], fit["b"], fit["c"]), color=c, ls=ls, lw=1)
            axr.errorbar(e, r, re, color=c, fmt="o", ms=3, label=lab)
            axb.plot(e, en["bias"], color=c, ls=ls, marker="o", ms=3, label=name)
        axr.set_ylabel("resolution sigma(E)/E")
        axr.set_title(f"{task_name}: {grp}", fontsize=9)
        axr.legend(fontsize=6)
        axr.grid(alpha=0.3)
        axb.axhline(0, color="k", lw=0.5)
        axb.set_xlabel("true energy (GeV)")
        axb.set_ylabel("relative bias (median)")
        axb.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_plot(task_name: str, task: dict, path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, ax, xl in (("accuracy_vs_energy", axes[0], "true energy (GeV)"), ("accuracy_vs_eta", axes[1], "eta")):
        for name, m in task["models"].items():
            d = m.get(key)
            if not d or "accuracy" not in d:
                continue
            c, ls = _style(name)
            x = np.asarray(d.get("x_mean", d.get("x", [])), float)
            ax.errorbar(x, d["accuracy"], d.get("accuracy_err"), color=c, ls=ls, marker="o", ms=3, label=name)
        ax.set_xlabel(xl)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{task_name}: accuracy vs energy", fontsize=9)
    axes[1].set_title(f"{task_name}: accuracy vs eta", fontsize=9)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def discriminant_2d(task_name: str, task: dict, raw: dict, point_model: str, ref: str, path: Path) -> str:
    """2D histogram of the point model's vs the shower-shape model's signal score (seed 004 Fig. 2)."""
    label = raw["_test_label"]
    a, b = raw["_scores"][point_model], raw["_scores"][ref]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    for k, ax in enumerate(axes):
        m = label == k
        # log colour scale: confidently classified events pile up in one corner bin and would hide the rest
        h = ax.hist2d(b[m], a[m], bins=25, range=[[0, 1], [0, 1]], cmin=1, cmap="viridis",
                      norm=matplotlib.colors.LogNorm())
        fig.colorbar(h[3], ax=ax, label="events (log scale)")
        ax.set_xlabel(f"{ref}: P({task['classes'][0]})")
        ax.set_ylabel(f"{point_model}: P({task['classes'][0]})")
        ax.set_title(f"true {task['classes'][k]} ({int(m.sum())} test events)", fontsize=9)
    fig.suptitle(f"{task_name}: discriminant of {point_model} vs {ref}", fontsize=10)
    return _save(fig, path)


def occupancy_plot(occ: dict, path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    scan = occ["threshold_scan"]
    names = sorted({n for r in scan for n in r["models"]})
    for name in names:
        c, ls = _style(name)
        eps = [r["models"][name]["events_per_s"] for r in scan if name in r["models"]]
        mem = [r["models"][name]["peak_memory_mb"] for r in scan if name in r["models"]]
        xs = [r["points_per_event_mean"] for r in scan if name in r["models"]]
        axes[0].plot(xs, eps, color=c, ls=ls, marker="o", ms=3, label=name)
        axes[1].plot(xs, mem, color=c, ls=ls, marker="o", ms=3, label=name)
    for ax, yl in ((axes[0], "inference events/s"), (axes[1], "peak tensor memory per 128 events (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
        ax.set_xlabel("mean points per event (CaloGAN e+, thresholds " +
                      ", ".join(f"{r['threshold_mev']:g}" for r in scan) + " MeV)")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle("Sparse vs dense inference cost vs occupancy (dense models do not depend on it)", fontsize=10)
    return _save(fig, path)


def singles_plots(results: dict, raw: dict, out: Path) -> list[str]:
    out = Path(out)
    paths = []
    for name, task in results["tasks"].items():
        r = raw.get(name, {})
        if any(v is not None for v in r.get("_scores", {}).values()) and len(task["classes"]) == 2:
            paths.append(rejection_plot(name, task, r, out / f"rejection_{name}.png"))
        if task["kind"] in ("id", "id+energy"):
            paths.append(accuracy_plot(name, task, out / f"accuracy_{name}.png"))
        if task["kind"] == "id+energy":
            paths.append(resolution_plot(name, task, out / f"resolution_{name}.png"))
        if name == "e_vs_gamma" and "ss_fcn" in r.get("_scores", {}):
            pm = max((m for m in ("pointnet", "dgcnn") if r["_scores"].get(m) is not None),
                     key=lambda m: task["models"][m]["auc"], default=None)
            if pm:
                paths.append(discriminant_2d(name, task, r, pm, "ss_fcn", out / f"discriminant_{name}.png"))
    if results.get("occupancy"):
        paths.append(occupancy_plot(results["occupancy"], out / "compute_vs_occupancy.png"))
    return paths
