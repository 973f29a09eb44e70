"""Energy-regression metrics: bias and resolution in bins, and the calorimeter resolution fit.

Per event the relative residual is r = (E_pred - E_true) / E_true. In each bin (of true energy by default, or of any
other variable such as eta):

* bias = centre of r: ``"median"`` (default, robust to tails) or ``"mean"``;
* resolution = width of r, i.e. sigma(Delta E) / E_true as in seed 001 eq. 3:

  - ``"robust"`` (default): half the central 68.27% interval, (q_84.13 - q_15.87) / 2, equal to sigma for a
    Gaussian and insensitive to tails;
  - ``"rms"``: the standard deviation;
  - ``"gauss"``: sigma of a Gaussian fitted (scipy ``curve_fit``, Poisson errors) to the histogram of r within
    +-2 sigma of the median, iterated twice from the robust width (the "Gaussian core").

Uncertainties (asymptotic, Gaussian r): mean sigma/sqrt(n); median sqrt(pi/2) sigma/sqrt(n); rms
sigma/sqrt(2(n-1)); robust width 0.962 sigma/sqrt(n) (variance of the difference of two sample quantiles,
p(1-2p)/(2 n f^2) with p = 0.1587 and f = phi(1)/sigma); Gaussian core: the fit's covariance.

The resolution fit (seed 001 eq. 3; PDG review "Calorimetry", eq. 34.x):
sigma/E = a/sqrt(E) (+) b (+) c/E = sqrt(a^2/E + b^2 + c^2/E^2), E in GeV, a (stochastic) in sqrt(GeV), b (constant)
dimensionless, c (noise) in GeV, all constrained to be >= 0.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit

P_LO, P_HI = 0.15865525393145707, 0.8413447460685429   # Phi(-1), Phi(+1)
ROBUST_ERR = 0.962       # sqrt(p (1 - 2p) / (2 phi(1)^2)), see module docstring
MEDIAN_ERR = np.sqrt(np.pi / 2)


def robust_width(r) -> float:
    """Half the central 68.27% interval of ``r`` (= sigma for a Gaussian)."""
    q = np.quantile(np.asarray(r, dtype=np.float64), [P_LO, P_HI])
    return float(0.5 * (q[1] - q[0]))


def _gauss(x, amp, mu, sigma):
    return amp * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def gaussian_core_fit(r, n_sigma: float = 2.0, n_iter: int = 2) -> dict[str, float]:
    """Fit a Gaussian to the core (+-``n_sigma``) of the distribution of ``r``; returns mu, sigma and their errors.

    Falls back to (median, robust width) with asymptotic errors when fewer than 20 events or the fit fails
    (``fit_ok`` False).
    """
    r = np.asarray(r, dtype=np.float64)
    n = r.size
    mu, sig = float(np.median(r)), robust_width(r)
    fallback = {"mu": mu, "sigma": sig, "mu_err": MEDIAN_ERR * sig / np.sqrt(max(n, 1)),
                "sigma_err": ROBUST_ERR * sig / np.sqrt(max(n, 1)), "fit_ok": False}
    if n < 20 or not sig > 0:
        return fallback
    out = fallback
    for _ in range(n_iter):
        sel = r[np.abs(r - mu) < n_sigma * sig]
        nb = int(np.clip(np.sqrt(sel.size), 8, 100))
        h, edges = np.histogram(sel, bins=nb, range=(mu - n_sigma * sig, mu + n_sigma * sig))
        x = 0.5 * (edges[1:] + edges[:-1])
        try:
            p, cov = curve_fit(_gauss, x, h, p0=(h.max(), mu, sig), sigma=np.sqrt(np.maximum(h, 1.0)),
                               absolute_sigma=True, bounds=([0, -np.inf, 1e-12], [np.inf, np.inf, np.inf]))
        except (RuntimeError, ValueError):
            return fallback
        if not np.all(np.isfinite(cov)):
            return fallback
        mu, sig = float(p[1]), float(p[2])
        out = {"mu": mu, "sigma": sig, "mu_err": float(np.sqrt(cov[1, 1])), "sigma_err": float(np.sqrt(cov[2, 2])),
               "fit_ok": True}
    return out


def binned_response(e_true, e_pred, bins, x=None, center: str = "median", width: str = "robust",
                    min_events: int = 10) -> dict[str, np.ndarray]:
    """Relative bias and resolution of ``e_pred`` in bins of ``x`` (default: the true energy).

    Parameters
    ----------
    e_true, e_pred: true and predicted energies (GeV), 1-D, e_true > 0.
    bins: bin edges of ``x`` (e.g. true energy in GeV, or eta).
    center: ``"median"`` or ``"mean"``; width: ``"robust"``, ``"rms"`` or ``"gauss"`` (see the module docstring).
    min_events: bins with fewer events get NaN bias/resolution.

    Returns
    -------
    dict of arrays, one entry per bin: ``x_mean`` (mean of x in the bin), ``e_true_mean`` (GeV), ``n``, ``bias``,
    ``bias_err``, ``resolution``, ``resolution_err`` (bias and resolution relative, i.e. of (E_pred - E_true)/E_true).
    """
    if center not in ("median", "mean"):
        raise ValueError(f"binned_response: center must be 'median' or 'mean', got {center!r}")
    if width not in ("robust", "rms", "gauss"):
        raise ValueError(f"binned_response: width must be 'robust', 'rms' or 'gauss', got {width!r}")
    et = np.asarray(e_true, dtype=np.float64)
    ep = np.asarray(e_pred, dtype=np.float64)
    if et.ndim != 1 or et.shape != ep.shape:
        raise ValueError(f"binned_response: e_true and e_pred must be 1-D of equal length, found {et.shape}, "
                         f"{ep.shape}")
    if np.any(~(et > 0)):
        raise ValueError("binned_response: e_true must be > 0 (relative residuals divide by it)")
    xv = et if x is None else np.asarray(x, dtype=np.float64)
    if xv.shape != et.shape:
        raise ValueError(f"binned_response: x must have shape {et.shape}, found {xv.shape}")
    edges = np.asarray(bins, dtype=np.float64)
    r = ep / et - 1.0
    ib = np.searchsorted(edges, xv, side="right") - 1
    ib[xv == edges[-1]] = edges.size - 2
    nb = edges.size - 1
    keys = ("x_mean", "e_true_mean", "n", "bias", "bias_err", "resolution", "resolution_err")
    out = {k: np.full(nb, np.nan) for k in keys}
    order = np.argsort(ib, kind="stable")
    starts = np.searchsorted(ib[order], np.arange(nb + 1))
    for k in range(nb):                                    # loop over bins, not events
        sel = order[starts[k]:starts[k + 1]]
        n = sel.size
        out["n"][k] = n
        if n == 0:
            continue
        out["x_mean"][k] = xv[sel].mean()
        out["e_true_mean"][k] = et[sel].mean()
        if n < min_events:
            continue
        rr = r[sel]
        sd = rr.std(ddof=1)
        rw = robust_width(rr)
        if center == "median":
            out["bias"][k], out["bias_err"][k] = np.median(rr), MEDIAN_ERR * rw / np.sqrt(n)
        else:
            out["bias"][k], out["bias_err"][k] = rr.mean(), sd / np.sqrt(n)
        if width == "robust":
            out["resolution"][k], out["resolution_err"][k] = rw, ROBUST_ERR * rw / np.sqrt(n)
        elif width == "rms":
            out["resolution"][k], out["resolution_err"][k] = sd, sd / np.sqrt(2 * (n - 1))
        else:
            f = gaussian_core_fit(rr)
            out["resolution"][k], out["resolution_err"][k] = f["sigma"], f["sigma_err"]
    out["n"] = out["n"].astype(np.int64)
    return out


def resolution_function(e_gev, a, b, c):
    """sigma/E = sqrt(a^2/E + b^2 + c^2/E^2) (stochastic (+) constant (+) noise), E in GeV."""
    e = np.asarray(e_gev, dtype=np.float64)
    return np.sqrt(a * a / e + b * b + c * c / (e * e))


def fit_resolution(e_gev, sigma_over_e, sigma_over_e_err=None, fix: dict | None = None,
                   p0=(0.1, 0.01, 0.1)) -> dict:
    """Fit sigma/E = a/sqrt(E) (+) b (+) c/E with a, b, c >= 0 (scipy ``curve_fit``, trust-region with bounds).

    Parameters
    ----------
    e_gev: energies (GeV) of the points (e.g. ``binned_response(...)["e_true_mean"]``).
    sigma_over_e, sigma_over_e_err: relative resolution and its uncertainty; NaN points are dropped. Without
        errors the points are weighted equally and the parameter errors are scaled by chi2/ndf.
    fix: optional values of parameters to hold fixed, e.g. ``{"c": 0.0}`` for a noise-free calorimeter.

    Returns
    -------
    dict with ``a``, ``b``, ``c`` (fixed ones included), ``a_err``, ``b_err``, ``c_err`` (0 for fixed), ``cov``
    (of the free parameters), ``chi2``, ``ndf``, ``free`` (names of the fitted parameters).
    """
    fix = dict(fix or {})
    bad = set(fix) - {"a", "b", "c"}
    if bad:
        raise ValueError(f"fit_resolution: fix may only name 'a', 'b', 'c', found {sorted(bad)}")
    e = np.asarray(e_gev, dtype=np.float64)
    y = np.asarray(sigma_over_e, dtype=np.float64)
    err = None if sigma_over_e_err is None else np.asarray(sigma_over_e_err, dtype=np.float64)
    ok = np.isfinite(e) & np.isfinite(y) & (e > 0)
    if err is not None:
        ok &= np.isfinite(err) & (err > 0)
    e, y = e[ok], y[ok]
    err = None if err is None else err[ok]
    free = [k for k in "abc" if k not in fix]
    if e.size <= len(free):
        raise ValueError(f"fit_resolution: {e.size} valid points for {len(free)} free parameters")
    start = dict(zip("abc", p0))

    def model(ev, *p):
        vals = dict(fix)
        vals.update(zip(free, p))
        return resolution_function(ev, vals["a"], vals["b"], vals["c"])

    p, cov = curve_fit(model, e, y, p0=[max(start[k], 1e-6) for k in free], sigma=err,
                       absolute_sigma=err is not None, bounds=(0.0, np.inf), max_nfev=10000)
    resid = (y - model(e, *p)) / (1.0 if err is None else err)
    out = {"chi2": float(np.sum(resid ** 2)), "ndf": int(e.size - len(free)), "cov": cov, "free": free}
    for k in "abc":
        if k in fix:
            out[k], out[f"{k}_err"] = float(fix[k]), 0.0
        else:
            j = free.index(k)
            out[k], out[f"{k}_err"] = float(p[j]), float(np.sqrt(cov[j, j]))
    return out


def accuracy_in_bins(y_true, y_pred, x, bins) -> dict[str, np.ndarray]:
    """Classification accuracy in bins of ``x`` (true energy in GeV, eta...), with the binomial error
    sqrt(p (1 - p) / n). ``y_pred`` may be class probabilities (N, K) (arg-maxed). Empty bins give NaN."""
    y = np.asarray(y_true)
    p = np.asarray(y_pred)
    if p.ndim == 2:
        p = np.argmax(p, axis=1)
    xv = np.asarray(x, dtype=np.float64)
    if not (y.shape == p.shape == xv.shape):
        raise ValueError(f"accuracy_in_bins: y_true {y.shape}, y_pred {p.shape} and x {xv.shape} must match")
    edges = np.asarray(bins, dtype=np.float64)
    nb = edges.size - 1
    ib = np.searchsorted(edges, xv, side="right") - 1
    ib[xv == edges[-1]] = nb - 1
    inside = (ib >= 0) & (ib < nb)
    n = np.bincount(ib[inside], minlength=nb).astype(np.float64)
    good = np.bincount(ib[inside], weights=(p == y)[inside].astype(np.float64), minlength=nb)
    sx = np.bincount(ib[inside], weights=xv[inside], minlength=nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = good / n
        return {"x_mean": sx / n, "n": n.astype(np.int64), "accuracy": acc,
                "accuracy_err": np.sqrt(acc * (1 - acc) / n)}
