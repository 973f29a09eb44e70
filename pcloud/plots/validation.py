"""Validation figures (``pcloud validate``): one PNG per quantity, reference and pcloud overlaid per particle, in
the style of the CaloGAN papers' comparison plots (Paganini, de Oliveira, Nachman, PRD 97 (2018) 014021, Figs. 5-8):
filled reference histograms with pcloud drawn as lines on the same bins.

Against a card (quantiles only) the reference is shown as its p16-p84 band (shaded) and median (solid line) over
pcloud's histogram, with pcloud's own median and band as dashed lines. Against files both histograms are drawn.
"""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..validation.quantities import CALOGAN_WINDOWS, QUANTITIES  # noqa: E402

COLORS = {"e+": "C0", "e-": "C0", "gamma": "C1", "pi+": "C2", "pi-": "C2", "pi0": "C3"}
LABELS = {"e+": r"$e^+$", "e-": r"$e^-$", "gamma": r"$\gamma$", "pi+": r"$\pi^+$", "pi-": r"$\pi^-$",
          "pi0": r"$\pi^0$"}


def _bins(quantity: str, values: list[np.ndarray], marks: list[float]):
    """60 bins over the data (0.5-99.5% quantiles) and the reference marks, inside the CaloGAN figure range of the
    quantity (log-spaced where that figure is); the sparsities use the CaloGAN figure's 19 bins on [0, 1]."""
    lo_w, hi_w, log = CALOGAN_WINDOWS.get(quantity, (-np.inf, np.inf, False))
    if quantity.startswith("sparsity"):
        return np.linspace(0.0, 1.0, 20), False      # the CaloGAN figure's bins (fractions of few-hundred cells)
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if finite.size:
        inside = finite[(finite >= lo_w) & (finite <= hi_w)]
        finite = inside if inside.size else finite
    pts = list(np.percentile(finite, [0.5, 99.5])) if finite.size else []
    pts += [m for m in marks if np.isfinite(m)]
    if not pts:
        pts = [0.0, 1.0]
    lo, hi = max(min(pts), lo_w), min(max(pts), hi_w)
    if log:
        lo = max(lo, 1e-3 if lo_w <= 0 else lo_w)
        lo, hi = lo / 1.3, hi * 1.3
        lo, hi = max(lo, lo_w), min(hi, hi_w)
        return np.logspace(np.log10(lo), np.log10(max(hi, lo * 1.01)), 60), True
    pad = 0.05 * (hi - lo) if hi > lo else 0.5 * abs(lo) + 1e-3
    lo, hi = max(lo - pad, lo_w), min(hi + pad, hi_w)
    return np.linspace(lo, hi, 60), False


def quantity_figure(quantity: str, rows: list[dict], pcloud: dict, path, reference: dict | None = None,
                    definition: str = "", title: str = "") -> str:
    """Write the figure of one ``quantity``: a panel per particle of ``rows`` (comparison rows of
    :mod:`pcloud.validation.compare`). ``pcloud``/``reference``: {particle: (N,) values} (reference None for a
    card: its quantiles are taken from the rows)."""
    parts = [r["particle"] for r in rows]
    fig, axes = plt.subplots(1, len(parts), figsize=(4.6 * len(parts), 3.9), squeeze=False)
    vals = [np.asarray(pcloud[p], dtype=np.float64) for p in parts]
    if reference is not None:
        vals += [np.asarray(reference[p], dtype=np.float64) for p in parts if p in reference]
    marks = [r["reference"][k] for r in rows if r.get("reference") for k in ("p16", "median", "p84", "mean")
             if k in r["reference"]]
    bins, log = _bins(quantity, vals, marks)
    for ax, row in zip(axes[0], rows):
        p = row["particle"]
        c = COLORS.get(p, "C4")
        v = np.asarray(pcloud[p], dtype=np.float64)
        v = v[np.isfinite(v)]
        if reference is not None and p in reference:
            r = np.asarray(reference[p], dtype=np.float64)
            r = r[np.isfinite(r)]
            ax.hist(r, bins=bins, density=True, histtype="stepfilled", alpha=0.25, color=c,
                    label=f"reference {LABELS.get(p, p)}")
        ax.hist(v, bins=bins, density=True, histtype="step", lw=2, color=c, label=f"pcloud {LABELS.get(p, p)}")
        ref = row.get("reference") or {}
        pc = row.get("pcloud") or {}
        if reference is None and all(k in ref for k in ("p16", "median", "p84")):
            ax.axvspan(ref["p16"], ref["p84"], color="k", alpha=0.12, label="Geant4 p16-p84")
            ax.axvline(ref["median"], color="k", lw=2, label="Geant4 median")
        if all(k in pc for k in ("p16", "median", "p84")):
            ax.axvline(pc["median"], color=c, ls="--", lw=1.5, label="pcloud median")
            for k in ("p16", "p84"):
                ax.axvline(pc[k], color=c, ls=":", lw=1)
        if reference is None and "mean" in ref and "median" not in ref:
            ax.axvline(ref["mean"], color="k", lw=2, label="Geant4 mean")
            if "mean" in pc:
                ax.axvline(pc["mean"], color=c, ls="--", lw=1.5, label="pcloud mean")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(f"{quantity} [{QUANTITIES.get(quantity, '1')}]")
        verdict = "pass" if row.get("passed") else "FAIL"
        ratio = row.get("median_ratio")
        extra = f", median ratio {ratio:.2f}" if ratio is not None and np.isfinite(ratio) else ""
        frac = row.get("fraction_in_window")
        if frac is not None and frac < 0.99:
            extra += f"\n({100 * frac:.0f}% of pcloud showers inside the CaloGAN figure range)"
        ax.set_title(f"{LABELS.get(p, p)}: {verdict}{extra}", fontsize=10)
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="best", frameon=False)
    if definition or title:
        fig.suptitle((title + ": " if title else "") + definition, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def summary_figure(rows: list[dict], path) -> str:
    """Median ratio pcloud / reference of every row with its tolerance band, one marker per particle."""
    quantities = [q for q in QUANTITIES if any(r["quantity"] == q for r in rows)]
    parts = list(dict.fromkeys(r["particle"] for r in rows))
    fig, ax = plt.subplots(figsize=(8.5, 0.38 * len(quantities) + 1.5))
    for j, p in enumerate(parts):
        ys, xs, ok = [], [], []
        for i, q in enumerate(quantities):
            for r in rows:
                if r["quantity"] == q and r["particle"] == p:
                    ratio = r.get("median_ratio")
                    if ratio is None or not np.isfinite(ratio):
                        ratios = [v for v in (r.get("ratios") or {}).values() if np.isfinite(v)]
                        ratio = ratios[0] if ratios else np.nan
                    ys.append(i + (j - (len(parts) - 1) / 2) * 0.22)
                    xs.append(ratio)
                    ok.append(r["passed"])
        xs, ys, ok = np.array(xs, float), np.array(ys, float), np.array(ok, bool)
        c = COLORS.get(p, "C4")
        if ok.any():
            ax.scatter(np.clip(xs[ok], 0.3, 3), ys[ok], color=c, marker="o", label=f"{p} pass")
        if (~ok).any():
            ax.scatter(np.clip(xs[~ok], 0.3, 3), ys[~ok], color=c, marker="x", s=60, label=f"{p} fail")
    ax.axvline(1.0, color="k", lw=1)
    for t in (0.1, 0.2):
        ax.axvspan(1 - t, 1 + t, color="0.5", alpha=0.08)
    ax.set_yticks(range(len(quantities)))
    ax.set_yticklabels(quantities)
    ax.set_xscale("log")
    ax.set_xlabel("pcloud / reference (median; mean where only a mean is given)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=len(parts), loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
