"""Per-shower quantities of the CaloGAN Geant4 comparison, computed exactly as the CaloGAN authors compute them.

Source of the definitions: the public analysis code of the CaloGAN data set (hep-lbdl/CaloGAN,
``analysis/feats1d.py`` and the figures of ``analysis/analysis.ipynb``; Paganini, de Oliveira, Nachman,
PRL 120 (2018) 042003 and PRD 97 (2018) 014021). Images are the three CaloGAN layers (layer 0: 3 x 96, layer 1:
12 x 12, layer 2: 12 x 6 cells; pcloud holds them as (N, 1, nx, ny) in GeV, the files as (N, nx, ny) in MeV).
With E_i the summed energy of layer i and E_tot = E_0 + E_1 + E_2:

====================  ===============================================================================  ========
name                  definition                                                                       unit
====================  ===============================================================================  ========
``f0, f1, f2``        E_i / E_tot                                                                      1
``sparsity0..2``      fraction of the cells of layer i with E > 0 (no threshold)                      1
``shower_depth``      s_d = (E_1 + 2 E_2) / E_tot (layer index weighted)                               layer
``depth_width``       sqrt((E_1 + 4 E_2) / E_tot - s_d^2)                                              layer
``sigma0_mm``         energy-weighted RMS of the *first image axis* (x, "eta") of layer 0, with the    mm
                      cell centres of ``linspace(-240, 240, n + 1)`` (layer 0: -160, 0, 160 mm)
``sigma1_mm``         same for layer 1 (centres -220, -180, ..., 220 mm)                               mm
``eratio0, eratio1``  (E_max1 - E_max2) / (E_max1 + E_max2) of the two hottest cells of layer i         1
                      (a tie gives 0, a single hot cell 1)
``total_energy``      E_tot / E_incident (both GeV)                                                    1
====================  ===============================================================================  ========

Undefined values are NaN, never silently 0: ``f_i``, ``shower_depth``, ``depth_width`` where E_tot <= 0;
``sigma_i`` and ``eratio_i`` where layer i is empty (feats1d's epsilon would give 0 there, the notebook's
``eratio`` 0/0 = NaN; both fall outside the histograms the reference was read from, see below);
``total_energy_over_E`` where the incident energy is unknown.

Histogram windows (:data:`CALOGAN_WINDOWS`). The Geant4 card (``calogan_geant4.json``) was digitised from the
*figures* of ``analysis.ipynb``, whose histograms have fixed ranges; values outside a figure's range are not in it
(np.histogram drops them), so the card's quantiles are those of the distribution *inside* the window. Example: a
pi+ that does not interact leaves f2 = E_2/E_tot ~ 0.09 (MIP), outside the f2 figure's 0..0.008 range; the card's
pi+ f2 median 0.0041 describes interacting pions only. :func:`window_mask` applies the same cut to pcloud's showers
when comparing with a card; real files are compared on the full distributions (both sides computed here).
"""
from __future__ import annotations

import numpy as np

from ..core.showers import ShowerImages

#: Layer names of the CaloGAN geometry, in order.
LAYERS = ("layer_0", "layer_1", "layer_2")
#: Half width of the CaloGAN layers (mm): feats1d places the cell centres on linspace(-240, 240, n + 1).
HALF_WIDTH_MM = 240.0

#: Quantities of the comparison, in report order, with their unit.
QUANTITIES = {
    "f0": "1", "f1": "1", "f2": "1",
    "sparsity0": "1", "sparsity1": "1", "sparsity2": "1",
    "shower_depth": "layer", "depth_width": "layer",
    "sigma0_mm": "mm", "sigma1_mm": "mm",
    "eratio0": "1", "eratio1": "1",
    "total_energy_over_E": "1",
}

#: Ranges of the analysis.ipynb histograms (hep-lbdl/CaloGAN; the notebook cell that draws each figure):
#: (lo, hi, log-scale x axis). sparsity: linspace(0, 1, 20) (cell 51); f0: linspace(0, 0.4) (cell 64); f1:
#: linspace(0, 1) (cell 66); f2: linspace(0, 0.008) (cell 68); s_d: linspace(0.4, 2) (cell 73); sigma_sd:
#: linspace(0, 0.9) (cell 75); sigma_0: logspace(0, 3) (cell 78); sigma_1: logspace(0, 2) (cell 79); E_ratio:
#: linspace(0, 1) (cells 83-84); E_tot: linspace(0, 120) GeV (cell 57).
CALOGAN_WINDOWS = {
    "f0": (0.0, 0.4, False), "f1": (0.0, 1.0, False), "f2": (0.0, 0.008, False),
    "sparsity0": (0.0, 1.0, False), "sparsity1": (0.0, 1.0, False), "sparsity2": (0.0, 1.0, False),
    "shower_depth": (0.4, 2.0, False), "depth_width": (0.0, 0.9, False),
    "sigma0_mm": (1.0, 1000.0, True), "sigma1_mm": (1.0, 100.0, True),
    "eratio0": (0.0, 1.0, False), "eratio1": (0.0, 1.0, False),
    "total_energy_over_E": (0.0, 1.2, False),
}


def _div(num, den):
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def _layer_stack(showers: ShowerImages) -> list[np.ndarray]:
    g = showers.geometry
    names = [s.name for s in g.sections]
    if names != list(LAYERS) or [s.n_layers for s in g.sections] != [1, 1, 1]:
        raise ValueError(f"CaloGAN quantities need the calogan geometry (sections {list(LAYERS)}, one layer each); "
                         f"found geometry {g.name!r} with sections {names}")
    return [np.asarray(showers.images[k][:, 0], dtype=np.float64) for k in LAYERS]   # (N, nx, ny) each, GeV


def lateral_width_mm(image: np.ndarray) -> np.ndarray:
    """Energy-weighted RMS (mm) along the first image axis of (N, nx, ny) images, cell centres of
    ``linspace(-240, 240, nx + 1)`` (feats1d ``layer_lateral_width``); NaN for an empty layer. Negative variances from
    round-off are clipped to 0."""
    nx = image.shape[1]
    edges = np.linspace(-HALF_WIDTH_MM, HALF_WIDTH_MM, nx + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    proj = image.sum(axis=2)                                  # (N, nx)
    e = proj.sum(axis=1)
    mean = _div(proj @ centres, e)
    var = _div(proj @ centres ** 2, e) - mean ** 2
    return np.sqrt(np.clip(var, 0.0, None))


def eratio(image: np.ndarray) -> np.ndarray:
    """(E_max1 - E_max2) / (E_max1 + E_max2) of the two largest cells of each (N, ...) image; NaN when both are 0."""
    flat = image.reshape(image.shape[0], -1)
    top = np.partition(flat, flat.shape[1] - 2, axis=1)[:, -2:]
    a, b = top[:, 1], top[:, 0]
    return _div(a - b, a + b)


def calogan_quantities(showers: ShowerImages) -> dict[str, np.ndarray]:
    """All :data:`QUANTITIES` of every shower, vectorised; see the module docstring. Returns {name: (N,) float64}."""
    l0, l1, l2 = _layer_stack(showers)
    e = [a.sum(axis=(1, 2)) for a in (l0, l1, l2)]
    e_tot = e[0] + e[1] + e[2]
    sd = _div(e[1] + 2.0 * e[2], e_tot)
    var_d = _div(e[1] + 4.0 * e[2], e_tot) - sd ** 2
    out = {f"f{i}": _div(e[i], e_tot) for i in range(3)}
    out.update({f"sparsity{i}": (a > 0).mean(axis=(1, 2)) for i, a in enumerate((l0, l1, l2))})
    out["shower_depth"] = sd
    out["depth_width"] = np.sqrt(np.clip(var_d, 0.0, None))
    out["sigma0_mm"] = lateral_width_mm(l0)
    out["sigma1_mm"] = lateral_width_mm(l1)
    out["eratio0"] = eratio(l0)
    out["eratio1"] = eratio(l1)
    e_in = showers.truth.get("energy_gev")
    if e_in is None:
        out["total_energy_over_E"] = np.full(e_tot.shape, np.nan)
    else:
        out["total_energy_over_E"] = _div(e_tot, np.asarray(e_in, dtype=np.float64).reshape(-1))
    return {k: out[k] for k in QUANTITIES}


def window_mask(name: str, values: np.ndarray) -> np.ndarray:
    """True where ``values`` of quantity ``name`` are finite and inside its CaloGAN figure range
    (:data:`CALOGAN_WINDOWS`, closed interval as np.histogram's last bin)."""
    lo, hi, _ = CALOGAN_WINDOWS[name]
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v >= lo) & (v <= hi)
