"""Particle-flow benchmark plots: metrics vs environment, attributed-energy response, truth-vs-prediction display.

* :func:`plot_metrics_vs_dr`: per method, focal-track F1, energy-weighted accuracy, soft IoU, median response
  E_pred/E_true and its robust width in bins of DeltaR from the track to the nearest other truth particle (``by_dr``
  of :func:`pcloud.metrics.particle_flow.evaluate_attribution`), and the neutral energy recovered per event bin
  (``by_event_dr``).
* :func:`plot_response`: per-track E_attributed / E_true histograms, one line per method.
* :func:`plot_event_attribution`: eta-phi maps of EMB2 and TileBar0 cells of one event, coloured by the dominant
  track (grey: neutral), truth on the top row and one row per prediction; tracks marked at their extrapolated point
  in that layer (crosses), neutral truth particles as open circles.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from ..geometry.base import wrap_phi  # noqa: E402

_TRACK_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
                  "tab:olive", "tab:cyan")


def _xbins(by_dr: dict):
    names = list(by_dr)
    return names, np.arange(len(names))


def plot_metrics_vs_dr(results: dict, path, title: str = "metrics vs DeltaR to the nearest other particle") -> str:
    """``results``: {method: evaluate_attribution(...) dict with ``by_dr`` (and ``by_event_dr``)}. Saves a 2x3 PNG
    at ``path``: per-track focal F1, energy-weighted accuracy, soft IoU, response and resolution vs the track's
    DeltaR, and the neutral energy recovered vs the event's densest-track DeltaR."""
    panels = (("by_dr", "f1", "focal-track F1 (macro)"),
              ("by_dr", "energy_weighted_accuracy", "energy-weighted accuracy (track cells)"),
              ("by_dr", "soft_iou", "per-track soft IoU (energy)"),
              ("by_dr", "response_median", "median E_pred / E_true"),
              ("by_dr", "resolution", "robust width of E_pred / E_true"),
              ("by_event_dr", "neutral_energy_recovered", "neutral energy recovered (events)"))
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    names = None
    for m, (method, r) in enumerate(results.items()):
        style = "-" if "iterative" in method or "oracle" in method else "--"
        for ax, (group, key, label) in zip(axes.ravel(), panels):
            by = r.get(group) or {}
            if not by:
                continue
            names, x = _xbins(by)
            y = np.array([np.nan if by[n].get(key) is None else by[n][key] for n in names], float)
            ax.plot(x + 0.02 * (m - len(results) / 2), y, style, marker="o", ms=4, label=method,
                    color=plt.cm.tab20(m % 20))  # distinct colours for up to 20 methods
            ax.set_ylabel(label)
    for i, ax in enumerate(axes.ravel()):
        if names is not None:
            ax.set_xticks(np.arange(len(names)))
            ax.set_xticklabels(names)
        ax.set_xlabel("DeltaR(event's densest track, nearest other particle)" if i == 5 else
                      "DeltaR(track, nearest other particle)")
        ax.axvline(1.5, color="0.5", lw=0.8, ls=":")  # the DeltaR = 0.1 edge of the default bins
        ax.grid(alpha=0.3)
    for ax in (axes[1, 0], axes[1, 2]):
        ax.axhline(1.0, color="k", lw=0.8)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle(title + " (dotted: DeltaR = 0.1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def plot_response(per_track: dict, path, min_true_gev: float = 0.5, bins=None, ncols: int = 4) -> str:
    """``per_track``: {method: (e_true_gev, e_pred_gev)} arrays. One panel per method: histogram of E_pred / E_true
    (tracks with E_true > ``min_true_gev``; under/overflow in the first/last bin), median and robust width quoted."""
    from ..metrics.regression import robust_width

    bins = np.linspace(0, 3, 61) if bins is None else np.asarray(bins)
    items = list(per_track.items())
    ncols = max(1, min(ncols, len(items)))  # no empty panels when fewer models than columns
    nrows = max(1, int(np.ceil(len(items) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), sharex=True, squeeze=False)
    for ax, (method, (et, ep)) in zip(axes.ravel(), items):
        et, ep = np.asarray(et, float), np.asarray(ep, float)
        m = et > min_true_gev
        if m.any():
            r = ep[m] / et[m]
            ax.hist(np.clip(r, bins[0], bins[-1] - 1e-9), bins=bins, histtype="stepfilled", alpha=0.6)
            ax.text(0.97, 0.95, f"median {np.median(r):.2f}\nwidth {robust_width(r):.2f}\n{m.sum()} tracks",
                    transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(method, fontsize=9)
        ax.set_ylabel("tracks", fontsize=8)
    for ax in axes.ravel()[len(items):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("E_attributed / E_true")
    fig.suptitle(f"per-track attributed-energy response (E_true > {min_true_gev:g} GeV; last bin: overflow)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def _event_window(events, event: int, geometry, layers):
    c0, c1 = events.cell_offsets[event], events.cell_offsets[event + 1]
    rows = np.arange(c0, c1)
    cid = events.cells["id"][rows]
    lay = np.asarray(geometry.cells["layer"])[cid]
    return rows, cid, lay


def plot_event_attribution(events, geometry, labels: dict, event: int, path, layers=("EMB2", "TileBar0"),
                           min_significance: float = 2.0, half_width: float = 0.45) -> str:
    """Truth vs predictions for one event (see the module docstring).

    ``labels``: {row title: per-cell-row dominant track (-1 neutral)} for all cells of ``events`` (e.g. from
    :meth:`Attribution.dominant_track`); the first entry is drawn first (put the truth there). Cells with
    E <= ``min_significance`` x noise sigma are not drawn (the noise window would bury the showers); marker area
    grows with log energy.
    """
    rows, cid, lay = _event_window(events, event, geometry, layers)
    e = events.cells["energy_gev"][rows]
    sig = events.cells["noise_sigma_gev"][rows]
    t0, t1 = events.track_offsets[event], events.track_offsets[event + 1]
    trk = np.arange(t0, t1)
    names = list(events.layer_names)
    li = [names.index(n) for n in layers]
    p0, p1 = events.particle_offsets[event], events.particle_offsets[event + 1]
    neutral = np.arange(p0, p1)[events.particles["charge"][p0:p1] == 0]
    # centre of the display: energy-weighted centroid in the first layer (or the first track)
    ce = np.asarray(geometry.cells["eta"])[cid]
    cp = np.asarray(geometry.cells["phi"])[cid]
    w = np.clip(e, 0, None)
    if trk.size and np.isfinite(events.tracks["layer_eta"][t0, li[0]]):
        eta0, phi0 = events.tracks["layer_eta"][t0, li[0]], events.tracks["layer_phi"][t0, li[0]]
    else:
        eta0 = float(np.sum(w * ce) / max(w.sum(), 1e-12))
        phi0 = float(np.arctan2(np.sum(w * np.sin(cp)), np.sum(w * np.cos(cp))))
    dphi = wrap_phi(cp - phi0)
    cmap = ListedColormap(["lightgrey"] + [_TRACK_COLOURS[i % len(_TRACK_COLOURS)] for i in range(max(trk.size, 1))])
    fig, axes = plt.subplots(len(labels), len(layers), figsize=(4.6 * len(layers), 4.0 * len(labels)),
                             squeeze=False)
    for r, (title, lab) in enumerate(labels.items()):
        lab_ev = np.asarray(lab)[rows]
        cidx = np.where(lab_ev >= 0, lab_ev - t0 + 1, 0)
        for c, (lname, l_i) in enumerate(zip(layers, li)):
            ax = axes[r, c]
            m = (lay == l_i) & (e > min_significance * sig) & (np.abs(ce - eta0) < half_width) & \
                (np.abs(dphi) < half_width)
            size = 6 + 30 * np.log10(1 + np.clip(e[m], 0, None) / 0.05)
            ax.scatter(ce[m], phi0 + dphi[m], c=cidx[m], cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, s=size,
                       marker="s", edgecolors="none")
            for k, t in enumerate(trk):
                te, tp = events.tracks["layer_eta"][t, l_i], events.tracks["layer_phi"][t, l_i]
                if np.isfinite(te):
                    tp = phi0 + wrap_phi(tp - phi0)
                    ax.plot(te, tp, "x", color="k", ms=11, mew=2.5)
                    ax.plot(te, tp, "x", color=_TRACK_COLOURS[k % len(_TRACK_COLOURS)], ms=9, mew=1.5)
                    ax.annotate(f"{k}: {events.tracks['pt_gev'][t]:.0f} GeV", (te, tp), fontsize=6,
                                xytext=(4, 4), textcoords="offset points")
            for p in neutral:
                pe, pp = events.particles["eta"][p], events.particles["phi"][p]
                pp = phi0 + wrap_phi(pp - phi0)
                ax.plot(pe, pp, "o", mfc="none", color="k", ms=10)
            ax.set_xlim(eta0 - half_width, eta0 + half_width)
            ax.set_ylim(phi0 - half_width, phi0 + half_width)
            ax.set_xlabel("eta")
            ax.set_ylabel("phi [rad]")
            ax.set_title(f"{title}: {lname}", fontsize=9)
    fig.suptitle(f"event {event}: cells above {min_significance:g} sigma coloured by dominant track (grey: neutral); "
                 f"x tracks (pT), o neutral particles", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def plot_learning_curves(training: dict, path, ncols: int = 3) -> str:
    """Learning curves of the benchmark's models: per model (``training[name]["seeds"]``: one entry per training
    seed with its ``history``), the training loss (dashed) and the validation loss (solid) per epoch, one colour per
    seed; the epoch of the best validation loss marked. Saves a PNG at ``path``."""
    items = [(n, t) for n, t in training.items() if (t.get("seeds") or [t])[0].get("history")]
    if not items:
        return ""
    ncols = max(1, min(ncols, len(items)))  # no empty panels when fewer models than columns
    nrows = max(1, int(np.ceil(len(items) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (name, t) in zip(axes.ravel(), items):
        for i, run in enumerate(t.get("seeds") or [t]):
            h = run.get("history") or []
            ep = [r["epoch"] for r in h]
            c = plt.cm.tab10(i % 10)
            ax.plot(ep, [r["train_loss"] for r in h], "--", color=c, lw=1)
            ax.plot(ep, [r["val_loss"] for r in h], "-", marker="o", ms=3, color=c,
                    label=f"seed {run.get('seed', i)}")
            b = run.get("best_epoch")
            if b is not None and 0 <= b < len(h):
                ax.plot([b], [h[b]["val_loss"]], "*", ms=10, color=c)
        ax.set_title(f"{name} ({t.get('model')}, loss {t.get('loss')})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (dashed: train, solid: val)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(items):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
