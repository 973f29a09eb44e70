"""Charged-particle tracks: helix in a uniform solenoid field, extrapolation to calorimeter layers, ID resolution.

Physics (all vectorised over tracks and layers):

* Helix radius (PDG Review of Particle Physics, "Kinematics", section 50 / "Passage of particles through matter" —
  the momentum of a particle of charge q e in a field B: p_T [GeV] = 0.3 |q| B [T] R [m]), so
  ``R_mm = 1000 * pT_GeV / (0.3 * B_T * |q|)``. We use the exact constant 0.299792458.
* Bending sense: the Lorentz force F = q v x B with B along +z turns a positive particle clockwise seen from +z
  (its azimuth of motion *decreases*), a negative one anticlockwise. With h = sign(q) (B > 0) the motion is
  ``phi(a) = phi0 - h a`` after turning angle a; the transverse arc length is ``R a`` and ``z = z0 + R a cot(theta)``.
* A helix starting inside a cylinder of radius r reaches it only if the circle of the projected motion crosses it;
  for a track from the beam axis that means ``2 R >= r`` (otherwise it "loops": no point, flagged by ``reached``).
  The first crossing along the motion is returned.
* Inner-detector resolution, ATLAS design (ATLAS Collaboration, JINST 3 (2008) S08003, Table 1.1):
  sigma(pT)/pT = 0.05% pT[GeV] (+) 1%, i.e. in curvature sigma(q/pT) = a (+) b/pT with a = 5e-4 GeV^-1, b = 0.01.
  The measured curvature q/pT is Gaussian around the true one (so the charge can flip at very high pT).
* Track-fit quality: the number of degrees of freedom is drawn uniformly in ``ndf_range`` (10-20, typical of a
  silicon+TRT fit) and chi2 from a chi-square distribution with ndf degrees of freedom (a correct fit);
  chi2/ndf therefore has mean 1 and variance 2/ndf.

Geometry frame: collider coordinates in mm (x, y transverse, z along the beam), as used by the ``atlas`` geometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Solenoid field of the ATLAS inner detector (T), along +z.
B_FIELD_T = 2.0
#: p_T [GeV] = C * |q| * B [T] * R [m] (PDG); C = c / 1e9 in GeV / (T m).
GEV_PER_T_M = 0.299792458
#: ATLAS ID design resolution sigma(q/pT) = a (+) b / pT (JINST 3 (2008) S08003, Table 1.1).
PT_RES_A_PER_GEV = 5e-4
PT_RES_B = 0.01
#: Value written for "no extrapolated point" by the ATLAS MLTree ntuples (anything <= -1e5 means missing).
NO_POINT = -999999999.0



def helix_radius_mm(pt_gev, charge, b_field_t: float = B_FIELD_T) -> np.ndarray:
    """Radius of curvature (mm) of the transverse projection: R = pT / (0.3 |q| B) (PDG, section 50).

    Neutral particles (charge 0) or a zero field give ``inf``.
    """
    pt = np.asarray(pt_gev, dtype=np.float64)
    q = np.abs(np.asarray(charge, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return np.where(q * abs(b_field_t) > 0, 1000.0 * pt / (GEV_PER_T_M * np.maximum(q, 1e-300) * abs(b_field_t)),
                        np.inf) * np.ones_like(pt)


def _helix_arrays(origin_mm, momentum_gev, charge, radius_mm) -> tuple:
    """Validated float64 inputs of :func:`propagate_to_radius`: origins (P, 3), momenta (P, 3), charges (P,),
    radii (1, L)."""
    o = np.atleast_2d(np.asarray(origin_mm, dtype=np.float64))
    p = np.atleast_2d(np.asarray(momentum_gev, dtype=np.float64))
    q = np.asarray(charge, dtype=np.float64).reshape(-1)
    r = np.asarray(radius_mm, dtype=np.float64).reshape(1, -1)
    if o.shape != p.shape or o.shape[1] != 3 or q.size != o.shape[0]:
        raise ValueError(f"propagate_to_radius: origin_mm and momentum_gev must be (P, 3) and charge (P,); found "
                         f"{o.shape}, {p.shape}, {q.shape}")
    return o, p, q, r


def _chord_crossing(x0, y0, r0sq, phi0, R, h, r, big, pt) -> tuple:
    """Crossing for a large radius (R >= 100 r, incl. neutrals with R = inf) in chord form, by fixed-point
    iteration: (x, y, transverse path, direction azimuth, reached), each (P, L).

    After turning angle a = 2 theta the chord has length u = 2 R sin(theta) and direction rotated by -h theta, so
    |o + u (cos(theta) d - h sin(theta) n)|^2 = r^2 with d = (cos phi0, sin phi0), n = (-sin phi0, cos phi0):
    u^2 + 2 u beta + |o|^2 - r^2 = 0, beta = cos(theta) o.d - h sin(theta) o.n. Each iteration gains a factor
    ~ r / R, and the form has no cancellation for R >> r (unlike the circle-intersection formula).
    """
    cphi, sphi = np.cos(phi0), np.sin(phi0)
    b_d = x0 * cphi + y0 * sphi
    b_n = -x0 * sphi + y0 * cphi
    h0 = np.where(np.isfinite(R), h, 0.0)
    Rb = np.where(big & np.isfinite(R), R, np.inf)
    theta = np.zeros(np.broadcast_shapes(R.shape, r.shape))
    for _ in range(12):
        beta = np.cos(theta) * b_d - h0 * np.sin(theta) * b_n
        disc = beta ** 2 + r ** 2 - r0sq
        u = -beta + np.sqrt(np.maximum(disc, 0.0))
        theta = np.arcsin(np.clip(u / (2 * Rb), -1, 1))
    ok_big = (disc >= 0) & (r0sq <= r ** 2) & (pt[:, None] > 0)
    xb = x0 + u * (np.cos(theta) * cphi + h0 * np.sin(theta) * sphi)
    yb = y0 + u * (np.cos(theta) * sphi - h0 * np.sin(theta) * cphi)
    sb = np.where(np.isfinite(Rb), 2 * np.where(np.isfinite(Rb), Rb, 0.0) * theta, u)
    return xb, yb, sb, phi0 - h0 * 2 * theta, ok_big


def _circle_crossing(x0, y0, r0sq, phi0, R, h, r, curved) -> tuple:
    """Crossing for a small radius, intersecting the helix circle with the cylinder: (x, y, transverse path,
    direction azimuth, reached), each (P, L). Centre c = o_T + h R (sin phi0, -cos phi0); the point at turning
    angle a is c + R u(beta0 - h a)."""
    cphi, sphi = np.cos(phi0), np.sin(phi0)
    Rs = np.where(curved, R, 1.0)
    hs = np.where(h == 0, 1.0, h)
    cx = x0 + hs * Rs * sphi
    cy = y0 - hs * Rs * cphi
    D = np.hypot(cx, cy)
    gamma = np.arctan2(cy, cx)
    beta0 = np.arctan2(y0 - cy, x0 - cx)
    k = np.divide(r ** 2 - D ** 2 - Rs ** 2, 2 * Rs * np.maximum(D, 1e-300))
    ok_helix = (np.abs(k) <= 1) & (r0sq <= r ** 2) & curved
    acos = np.arccos(np.clip(k, -1, 1))
    two_pi = 2 * np.pi
    a1 = np.mod(hs * (beta0 - (gamma + acos)), two_pi)
    a2 = np.mod(hs * (beta0 - (gamma - acos)), two_pi)
    a1 = np.where(a1 > two_pi - 1e-9, 0.0, a1)  # a start exactly on the cylinder is its own crossing
    a2 = np.where(a2 > two_pi - 1e-9, 0.0, a2)
    a = np.minimum(a1, a2)
    bb = beta0 - hs * a
    return cx + Rs * np.cos(bb), cy + Rs * np.sin(bb), Rs * a, phi0 - hs * a, ok_helix


def _crossing_fields(x, y, z, reached, phi_dir, s_T, cot, p, pt, ptot) -> dict:
    """The output dict of :func:`propagate_to_radius` (NaN where the cylinder is not reached)."""
    nan = np.nan
    x, y, z = (np.where(reached, v, nan) for v in (x, y, z))
    rt = np.hypot(x, y)
    eta = np.arcsinh(z / rt)
    phi = np.arctan2(y, x)
    sin_t = np.divide(pt, ptot, out=np.zeros_like(pt), where=ptot > 0)[:, None]
    cos_t = np.divide(p[:, 2], ptot, out=np.zeros_like(pt), where=ptot > 0)[:, None]
    direction = np.stack(np.broadcast_arrays(sin_t * np.cos(phi_dir), sin_t * np.sin(phi_dir), cos_t), axis=-1)
    direction = np.where(reached[..., None], direction, nan)
    path = np.where(reached, s_T * np.sqrt(1 + np.nan_to_num(cot) ** 2), nan)
    return {"x": x, "y": y, "z": z, "eta": eta, "phi": np.mod(phi + np.pi, 2 * np.pi) - np.pi, "reached": reached,
            "direction": direction, "path_mm": path}


def propagate_to_radius(origin_mm, momentum_gev, charge, radius_mm, b_field_t: float = B_FIELD_T) -> dict:
    """First crossing of helices with cylinders r = ``radius_mm`` around the beam axis.

    Parameters
    ----------
    origin_mm: (P, 3) production points (mm); momentum_gev: (P, 3) momenta (GeV); charge: (P,) in units of e.
    radius_mm: (L,) cylinder radii (mm). b_field_t: solenoid field along +z (T).

    Returns a dict of (P, L) arrays: ``x, y, z`` (mm), ``eta, phi`` of the crossing point, ``reached`` (bool; False
    when the helix loops inside the cylinder, or the particle starts outside it, or pT = 0), ``direction`` (P, L, 3)
    unit momentum direction at the crossing, ``path_mm`` 3D path length. Coordinates of unreached points are NaN.
    """
    o, p, q, r = _helix_arrays(origin_mm, momentum_gev, charge, radius_mm)
    pt = np.hypot(p[:, 0], p[:, 1])
    ptot = np.linalg.norm(p, axis=1)
    phi0 = np.arctan2(p[:, 1], p[:, 0])[:, None]
    cot = np.divide(p[:, 2], pt, out=np.full(pt.shape, np.nan), where=pt > 0)[:, None]
    R = helix_radius_mm(pt, q, b_field_t)[:, None]
    x0, y0, z0 = o[:, 0:1], o[:, 1:2], o[:, 2:3]
    r0sq = x0 ** 2 + y0 ** 2
    h = (np.sign(q) * np.sign(b_field_t))[:, None]
    # two forms of the same crossing: the chord form for large radii, the circle intersection for small ones
    big = ~(np.isfinite(R) & (R < 100.0 * r))
    xb, yb, sb, phi_b, ok_big = _chord_crossing(x0, y0, r0sq, phi0, R, h, r, big, pt)
    curved = ~big
    xs, ys, ss, phi_s, ok_helix = _circle_crossing(x0, y0, r0sq, phi0, R, h, r, curved)
    s_T = np.where(curved, ss, sb)
    reached = np.where(curved, ok_helix, ok_big)
    phi_dir = np.where(curved, phi_s, phi_b)
    z = z0 + s_T * cot
    return _crossing_fields(np.where(curved, xs, xb), np.where(curved, ys, yb), z, reached, phi_dir, s_T, cot, p, pt,
                            ptot)


def layer_mid_radii_mm(geometry) -> tuple[list[str], np.ndarray]:
    """Names and mid radii (mm) of every layer of an ``etaphi`` (collider-frame) geometry."""
    if geometry.frame != "collider":
        raise ValueError(f"geometry {geometry.name!r}: track extrapolation needs a collider-frame (etaphi) geometry, "
                         f"found frame {geometry.frame!r}")
    names, radii = [], []
    for s in geometry.sections:
        mids = 0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1])
        for i, m in enumerate(mids):
            names.append(s.layer_names[i] if s.layer_names else (s.name if s.n_layers == 1 else f"{s.name}_{i}"))
            radii.append(m)
    return names, np.asarray(radii)


@dataclass
class LayerExtrapolation:
    """Per-track, per-layer extrapolated points. Arrays (T, L); ``reached`` False means "no point" (NaN coords):
    the helix loops before the layer or the point lies outside the layer's eta acceptance."""

    layer_names: list[str]
    radius_mm: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray
    reached: np.ndarray


def extrapolate_to_layers(geometry, origin_mm, momentum_gev, charge, b_field_t: float = B_FIELD_T,
                          require_acceptance: bool = True) -> LayerExtrapolation:
    """Helix crossing of each calorimeter layer's mid radius (``geometry.sections[*].layer_edges_mm``).

    With ``require_acceptance`` a point outside the layer's eta range is also "no point" (as Athena's calo
    extension gives no barrel-layer parameters for a track that enters the end-cap).
    """
    names, radii = layer_mid_radii_mm(geometry)
    out = propagate_to_radius(origin_mm, momentum_gev, charge, radii, b_field_t)
    reached = out["reached"].copy()
    if require_acceptance:
        lo = np.concatenate([np.full(s.n_layers, s.u_edges[0]) for s in geometry.sections])
        hi = np.concatenate([np.full(s.n_layers, s.u_edges[-1]) for s in geometry.sections])
        with np.errstate(invalid="ignore"):
            reached &= (out["eta"] >= lo) & (out["eta"] < hi)
    m = lambda v: np.where(reached, v, np.nan)  # noqa: E731
    return LayerExtrapolation(names, radii, m(out["eta"]), m(out["phi"]), m(out["x"]), m(out["y"]), m(out["z"]),
                              reached)


def smear_pt(pt_gev, charge, rng: np.random.Generator, a_per_gev: float = PT_RES_A_PER_GEV,
             b: float = PT_RES_B) -> tuple[np.ndarray, np.ndarray]:
    """Measured (pT [GeV], charge) from Gaussian smearing of the curvature q/pT with
    sigma(q/pT) = a (+) b / pT (ATLAS ID design, JINST 3 (2008) S08003). Returns (pt_meas_gev, charge_meas)."""
    pt = np.asarray(pt_gev, dtype=np.float64)
    q = np.sign(np.asarray(charge, dtype=np.float64))
    k = q / pt
    sigma = np.hypot(a_per_gev, b / pt)
    k_meas = k + sigma * rng.standard_normal(pt.shape)
    k_meas = np.where(k_meas == 0, 1e-12, k_meas)
    return 1.0 / np.abs(k_meas), np.sign(k_meas)


def draw_fit_quality(n: int, rng: np.random.Generator, ndf_range: tuple[int, int] = (10, 20)):
    """(chi2, ndf) per track: ndf uniform in ``ndf_range`` (inclusive), chi2 ~ chi-square(ndf)."""
    lo, hi = ndf_range
    if not (1 <= lo <= hi):
        raise ValueError(f"draw_fit_quality: ndf_range must be 1 <= lo <= hi, found {ndf_range}")
    ndf = rng.integers(lo, hi + 1, size=n)
    return rng.chisquare(ndf).astype(np.float64), ndf.astype(np.int64)
