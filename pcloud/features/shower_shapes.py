"""Shower-shape variables computed from dense images (:class:`pcloud.core.showers.ShowerImages`), vectorised over showers.

Two sets are available through :func:`shower_shapes`:

``"calogan20"``
    The 1-D shower shapes of Paganini et al., seed 004 Table 2 (the inputs of the shower-shape FCN, seed 004
    §3.1.1). They are defined per longitudinal layer i; for the CaloGAN geometry (3 layers) there are exactly 20
    columns, in the order and with the names of the table::

        E_0 E_1 E_2  E_tot  f_0 f_1 f_2  E_ratio_0 E_ratio_1 E_ratio_2  d  l_d  s_d  sigma_sd
        sigma_0 sigma_1 sigma_2  sparsity_0 sparsity_1 sparsity_2

    Any other geometry is handled by letting i run over its *global* layers (``geometry.layer_section`` maps a
    global layer to its section), giving ``6 * n_layers + 5`` columns with the same name pattern (``E_12``...).

    ==============  =====================================================================  ==============
    name            definition (I_i: pixel energies of layer i, GeV)                       unit
    ==============  =====================================================================  ==============
    E_i             sum_pixels I_i                                                         GeV
    E_tot           sum_i E_i (every section, so HCAL included for CLIC / ATLAS)          GeV
    f_i             E_i / E_tot                                                            1
    E_ratio_i       (I_i,(1) - I_i,(2)) / (I_i,(1) + I_i,(2)), the two largest pixels      1
    d               max{i : max(I_i) > threshold}, deepest layer with a hit                layer index
    l_d             sum_i i * E_i                                                          GeV * layer
    s_d             l_d / E_tot                                                            layer index
    sigma_sd        sqrt(sum_i i^2 E_i / E_tot - s_d^2)                                    layer index
    sigma_i         energy-weighted standard deviation of the cell index across layer i    cells
    sparsity_i      fraction of the pixels of layer i with I > threshold                   1
    ==============  =====================================================================  ==============

    ``sigma_i`` is in units of cell numbers, as Table 2 states. Choice (``lateral_axis``): by default ("fine") it is
    taken along the layer's finer direction, i.e. the axis with more cells (ties -> u): for CaloGAN that is v (96
    cells of 5 mm) in layer 0 and u in layers 1 (12 x 12) and 2 (12 x 6). ``"u"`` / ``"v"`` force one axis and
    ``"both"`` returns sqrt(sigma_u^2 + sigma_v^2). Note that the public CaloGAN analysis code measures the width
    along u ("eta") in mm; use ``lateral_axis="u"`` and multiply by the cell size to compare with it.

``"all"``
    ``calogan20`` (generalised) followed by, per section ``S`` (names from the geometry: ``ECAL``, ``layer_0``...):
    ``E_S`` (GeV), ``R9_S``, ``mean_depth_mm_S``, ``rms_depth_mm_S``, ``mean_x_mm_S``, ``mean_y_mm_S``,
    ``rms_x_mm_S``, ``rms_y_mm_S``, ``rms_xy_mm_S``; then the same moments of the whole shower without suffix
    (``mean_depth_mm`` ... ``rms_xy_mm``). These are the seed 001 features (Appendix C: R9; Appendix D: total
    ECAL/HCAL energy, mean z of the ECAL/HCAL shower, RMS in x of the ECAL shower, RMS in (x, y) of the HCAL shower).

    * ``R9_S``: fraction of the section's energy inside the 3 x 3 window of its (u, v) projection (summed over the
      section's layers) centred on the barycentre cell, the cell whose index is nearest to the energy-weighted mean
      cell index (seed 001 App. C). Cells of the window that fall outside the grid are simply missing.
    * Moments are energy-weighted over cells, in mm, from the cell centres of the geometry: depth = cell depth along
      the depth axis (local z, or r for ``etaphi``); lateral x, y = local x, y for ``xy`` and ``ralpha`` grids.
      For ``etaphi`` grids x = r * (phi - phi_ref) (the azimuthal arc, phi_ref = energy-weighted circular mean of
      the event's phi, so showers across phi = +-pi are not split) and y = r * sinh(eta) (position along the beam).
      RMS = sqrt(<q^2> - <q>^2); rms_xy = sqrt(rms_x^2 + rms_y^2).

Empty showers and negative energies (no NaN or inf is ever returned):
    where E_tot <= 0: f_i = 0, s_d = 0, sigma_sd = 0; where E_i <= 0 (E_S <= 0): sigma_i = 0 (moments of S = 0,
    R9_S = 0); where the two leading pixels sum to <= 0: E_ratio_i = 0; a shower with no pixel above ``threshold``
    has d = 0 (the convention of the CaloGAN code, which cannot tell "empty" from "layer 0 only"); negative
    variances from negative (noise) cells are clipped to 0. Ratios may leave [0, 1] when cells are negative.
"""
from __future__ import annotations

import numpy as np

from ..geometry.base import wrap_phi
from ..core.showers import ShowerImages

FEATURE_SETS = ("calogan20", "all")
LATERAL_AXES = ("fine", "u", "v", "both")
MOMENT_NAMES = ("mean_depth_mm", "rms_depth_mm", "mean_x_mm", "mean_y_mm", "rms_x_mm", "rms_y_mm", "rms_xy_mm")


# ---------------------------------------------------------------------------------------------------- names
def calogan20_names(n_layers: int) -> list[str]:
    """Column names of the Table 2 set for ``n_layers`` global layers (20 names for 3 layers)."""
    r = range(n_layers)
    return ([f"E_{i}" for i in r] + ["E_tot"] + [f"f_{i}" for i in r] + [f"E_ratio_{i}" for i in r]
            + ["d", "l_d", "s_d", "sigma_sd"] + [f"sigma_{i}" for i in r] + [f"sparsity_{i}" for i in r])


def feature_names(geometry, set: str = "calogan20") -> list[str]:  # noqa: A002 - name fixed by the API
    """Names of the columns :func:`shower_shapes` returns for ``geometry`` and ``set``."""
    _check_set(set)
    names = calogan20_names(geometry.n_layers)
    if set == "all":
        for s in geometry.sections:
            names += [f"E_{s.name}", f"R9_{s.name}"] + [f"{m}_{s.name}" for m in MOMENT_NAMES]
        names += list(MOMENT_NAMES)
    return names


def feature_unit(name: str) -> str:
    """Unit of a feature column: ``GeV``, ``mm``, ``layer``, ``cells``, ``GeV*layer`` or ``1`` (dimensionless)."""
    if name.startswith("E_ratio") or name.startswith(("f_", "sparsity_", "R9")):
        return "1"
    if name.startswith("E_"):
        return "GeV"
    if name == "l_d":
        return "GeV*layer"
    if name in ("d", "s_d", "sigma_sd"):
        return "layer"
    if name.startswith("sigma_"):
        return "cells"
    if "_mm" in name:
        return "mm"
    raise KeyError(f"feature_unit: unknown feature name {name!r}")


# ---------------------------------------------------------------------------------------------------- main entry
def shower_shapes(showers: ShowerImages, set: str = "calogan20", *,  # noqa: A002 - name fixed by the API
                  lateral_axis: str = "fine", threshold_gev: float = 0.0,
                  max_chunk_values: int = 1 << 24) -> tuple[np.ndarray, list[str]]:
    """Shower-shape features of every shower.

    Parameters
    ----------
    showers: the images (GeV) and their geometry.
    set: ``"calogan20"`` (seed 004 Table 2, generalised to any number of layers) or ``"all"`` (adds R9, section
        energies and longitudinal/lateral moments in mm, seed 001 App. C/D). See the module docstring.
    lateral_axis: axis of ``sigma_i`` (cell units): ``"fine"`` (more cells, ties -> u), ``"u"``, ``"v"``, ``"both"``.
    threshold_gev: a pixel counts as hit (for ``d`` and ``sparsity_i``) when its energy is > this value.
    max_chunk_values: showers are processed in chunks of at most this many pixel values (memory bound).

    Returns
    -------
    ``(X, names)``: ``X`` float64 of shape ``(N, F)``, finite everywhere; ``names`` the F column names.
    """
    if not isinstance(showers, ShowerImages):
        raise TypeError(f"shower_shapes: expected a pcloud.core.showers.ShowerImages, found {type(showers).__name__}")
    _check_set(set)
    if lateral_axis not in LATERAL_AXES:
        raise ValueError(f"shower_shapes: lateral_axis must be one of {LATERAL_AXES}, got {lateral_axis!r}")
    g = showers.geometry
    names = feature_names(g, set)
    n = showers.n_events
    out = np.empty((n, len(names)), dtype=np.float64)
    per_event = max(1, sum(s.n_cells for s in g.sections))
    chunk = max(1, int(max_chunk_values) // per_event)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        imgs = [np.asarray(showers.images[s.name][a:b], dtype=np.float64) for s in g.sections]
        for s, im in zip(g.sections, imgs):
            if not np.all(np.isfinite(im)):
                raise ValueError(f"shower_shapes: image of section {s.name!r} holds NaN or inf (events {a}..{b - 1})")
        cols = _calogan20(g, imgs, lateral_axis, threshold_gev)
        if set == "all":
            cols += _section_features(g, imgs)
        out[a:b] = np.stack(cols, axis=1)
    if not np.all(np.isfinite(out)):  # pragma: no cover - guarded by construction
        bad = [names[j] for j in np.nonzero(~np.isfinite(out).all(axis=0))[0]]
        raise FloatingPointError(f"shower_shapes: non-finite values in {bad}")
    return out, names


def energy_regression_features(showers: ShowerImages) -> tuple[np.ndarray, list[str]]:
    """The summary inputs of the seed 001 (App. D) tree energy regression, for any geometry.

    Columns: ``E_S`` for every section; ``mean_depth_mm_S`` for every section with more than one layer; the whole
    shower's ``mean_depth_mm`` and ``rms_depth_mm``; ``rms_x_mm`` of the first section (the ECAL) and
    ``rms_xy_mm`` of every later section (the HCAL). For CLIC this is exactly E_ECAL, E_HCAL, mean z of ECAL and
    HCAL, RMS x of ECAL, RMS (x, y) of HCAL, plus the two global longitudinal moments.
    """
    x, names = shower_shapes(showers, "all")
    g = showers.geometry
    want = [f"E_{s.name}" for s in g.sections]
    want += [f"mean_depth_mm_{s.name}" for s in g.sections if s.n_layers > 1]
    want += ["mean_depth_mm", "rms_depth_mm", f"rms_x_mm_{g.sections[0].name}"]
    want += [f"rms_xy_mm_{s.name}" for s in g.sections[1:]]
    idx = [names.index(w) for w in want]
    return x[:, idx], want


def section_sums(showers: ShowerImages) -> tuple[np.ndarray, list[str]]:
    """Energy per section ``(N, n_sections)`` in GeV and the names ``E_<section>`` (inputs of the linear fit)."""
    e = showers.section_energy()
    names = [s.name for s in showers.geometry.sections]
    return np.stack([np.asarray(e[k], dtype=np.float64) for k in names], axis=1), [f"E_{k}" for k in names]


# ---------------------------------------------------------------------------------------------------- internals
def _check_set(set_name):
    if set_name not in FEATURE_SETS:
        raise ValueError(f"shower_shapes: set must be one of {FEATURE_SETS}, got {set_name!r}")


def _safe_div(num, den):
    """num / den where den > 0, else 0."""
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def _axis_moments(proj: np.ndarray, periodic: bool):
    """Energy-weighted mean and variance of the cell index along the last axis of ``proj`` (N, n).

    Periodic axes are unwrapped around the hottest bin so that a shower across the seam is contiguous; the mean is
    then returned in [0, n) modulo n. Returns ``(energy, mean_index, variance)``; mean/variance are 0 where the
    energy is <= 0.
    """
    n = proj.shape[1]
    idx = np.arange(n, dtype=np.float64)
    e = proj.sum(axis=1)
    if periodic:
        ref = np.argmax(proj, axis=1).astype(np.float64)[:, None]
        rel = np.mod(idx[None, :] - ref + n // 2, n) - n // 2
        m_rel = _safe_div((proj * rel).sum(axis=1), e)
        var = _safe_div((proj * rel ** 2).sum(axis=1), e) - m_rel ** 2
        mean = np.mod(ref[:, 0] + m_rel, n)
    else:
        mean = _safe_div(proj @ idx, e)
        var = _safe_div(proj @ (idx ** 2), e) - mean ** 2
    return e, np.where(e > 0, mean, 0.0), np.where(e > 0, np.clip(var, 0.0, None), 0.0)


def _calogan20(g, imgs, lateral_axis, thr) -> list[np.ndarray]:
    e_l, ratio_l, hit_l, sigma_l, sparse_l = [], [], [], [], []
    for s, im in zip(g.sections, imgs):
        nu, nv = s.n_u, s.n_v
        for lay in range(s.n_layers):
            a = im[:, lay]                                   # (N, U, V)
            flat = a.reshape(a.shape[0], -1)
            e = flat.sum(axis=1)
            e_l.append(e)
            if flat.shape[1] >= 2:
                top = np.partition(flat, flat.shape[1] - 2, axis=1)[:, -2:]
                i1, i2 = top[:, 1], top[:, 0]
            else:
                i1, i2 = flat[:, 0], np.zeros_like(e)
            ratio_l.append(_safe_div(i1 - i2, i1 + i2))
            above = flat > thr
            hit_l.append(above.any(axis=1))
            sparse_l.append(above.mean(axis=1))
            axis = lateral_axis
            if axis == "fine":
                axis = "u" if nu >= nv else "v"
            var = np.zeros_like(e)
            if axis in ("u", "both"):
                var = var + _axis_moments(a.sum(axis=2), periodic=False)[2]
            if axis in ("v", "both"):
                var = var + _axis_moments(a.sum(axis=1), periodic=s.v_periodic)[2]
            # sigma from the layer projection; zero where the layer energy is <= 0 (handled in _axis_moments)
            sigma_l.append(np.sqrt(var))
    E = np.stack(e_l, axis=1)                                # (N, L)
    L = E.shape[1]
    layer = np.arange(L, dtype=np.float64)
    e_tot = E.sum(axis=1)
    f = _safe_div(E, e_tot[:, None])
    hit = np.stack(hit_l, axis=1)
    d = np.where(hit.any(axis=1), L - 1 - np.argmax(hit[:, ::-1], axis=1), 0).astype(np.float64)
    l_d = E @ layer
    s_d = _safe_div(l_d, e_tot)
    var_sd = _safe_div(E @ layer ** 2, e_tot) - s_d ** 2
    sigma_sd = np.where(e_tot > 0, np.sqrt(np.clip(var_sd, 0.0, None)), 0.0)
    return ([E[:, i] for i in range(L)] + [e_tot] + [f[:, i] for i in range(L)] + ratio_l
            + [d, l_d, s_d, sigma_sd] + sigma_l + sparse_l)


def _lateral_coords(s, ref_phi):
    """Lateral x, y (mm) of the cells of section ``s``, broadcastable to (N, L, U, V); see the module docstring."""
    uc = 0.5 * (s.u_edges[1:] + s.u_edges[:-1])
    vc = 0.5 * (s.v_edges[1:] + s.v_edges[:-1])
    depth = 0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1])
    if s.kind == "xy":
        return uc[None, None, :, None], vc[None, None, None, :]
    if s.kind == "ralpha":
        return ((uc[:, None] * np.cos(vc)[None, :])[None, None],
                (uc[:, None] * np.sin(vc)[None, :])[None, None])
    dphi = wrap_phi(vc[None, :] - ref_phi[:, None])       # (N, V)
    x = depth[None, :, None, None] * dphi[:, None, None, :]
    y = depth[None, :, None, None] * np.sinh(uc)[None, None, :, None]
    return x, y


def _moments(sums):
    e, ed, ed2, ex, ex2, ey, ey2 = sums
    md, mx, my = _safe_div(ed, e), _safe_div(ex, e), _safe_div(ey, e)
    rd = np.sqrt(np.clip(_safe_div(ed2, e) - md ** 2, 0, None))
    rx = np.sqrt(np.clip(_safe_div(ex2, e) - mx ** 2, 0, None))
    ry = np.sqrt(np.clip(_safe_div(ey2, e) - my ** 2, 0, None))
    ok = e > 0
    return [np.where(ok, v, 0.0) for v in (md, rd, mx, my, rx, ry, np.hypot(rx, ry))]


def _r9(s, im):
    proj = im.sum(axis=1)                                    # (N, U, V)
    e, mu, _ = _axis_moments(proj.sum(axis=2), periodic=False)
    _, mv, _ = _axis_moments(proj.sum(axis=1), periodic=s.v_periodic)
    cu = np.clip(np.rint(mu), 0, s.n_u - 1)
    cv = np.mod(np.rint(mv), s.n_v) if s.v_periodic else np.clip(np.rint(mv), 0, s.n_v - 1)
    iu = np.arange(s.n_u)[None, :]
    iv = np.arange(s.n_v)[None, :]
    win_u = (np.abs(iu - cu[:, None]) <= 1).astype(np.float64)
    dv = iv - cv[:, None]
    if s.v_periodic:
        dv = np.mod(dv + s.n_v // 2, s.n_v) - s.n_v // 2
    win_v = (np.abs(dv) <= 1).astype(np.float64)
    inside = np.einsum("nuv,nu,nv->n", proj, win_u, win_v)
    return _safe_div(inside, e)


def _section_features(g, imgs) -> list[np.ndarray]:
    n = imgs[0].shape[0]
    ref_phi = np.zeros(n)
    if any(s.kind == "etaphi" for s in g.sections):
        c = np.zeros(n)
        sn = np.zeros(n)
        for s, im in zip(g.sections, imgs):
            if s.kind == "etaphi":
                pv = im.sum(axis=(1, 2))                     # (N, V)
                vc = 0.5 * (s.v_edges[1:] + s.v_edges[:-1])
                c += pv @ np.cos(vc)
                sn += pv @ np.sin(vc)
        ref_phi = np.arctan2(sn, c)
    cols, total = [], [np.zeros(n) for _ in range(7)]
    for s, im in zip(g.sections, imgs):
        depth = 0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1])
        x, y = _lateral_coords(s, ref_phi)
        el = im.sum(axis=(2, 3))                             # (N, L)
        sums = [el.sum(axis=1), el @ depth, el @ depth ** 2,
                (im * x).sum(axis=(1, 2, 3)), (im * x ** 2).sum(axis=(1, 2, 3)),
                (im * y).sum(axis=(1, 2, 3)), (im * y ** 2).sum(axis=(1, 2, 3))]
        total = [t + v for t, v in zip(total, sums)]
        cols += [sums[0], _r9(s, im)] + _moments(sums)
    return cols + _moments(total)
