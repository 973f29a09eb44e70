"""Energy deposits of particles in a geometry: the engine of pcloud's parametrised fast simulation.

This is a *parametrised fast simulation* (GFlash-style EM showers, Groom/Bock-style hadronic showers), not Geant4;
see :mod:`pcloud.sim` for the list of laws it reproduces and ``datasets/SIMULATION.md`` for measured numbers.

Pipeline for a batch of P particles (all arrays, no loop over particles, spots or cells):

1. Each particle (or each photon of a decayed pi0) defines a straight *line* (origin, unit direction). The depth-axis
   edges of the material segments (:func:`pcloud.sim.media.depth_media`) are converted to path lengths s along the
   line: s = (z_edge - z0)/d_z in local frames; in the collider frame the root of |o_T + s d_T| = r_edge. Cumulative
   X0 and lambda_I along the *path* follow, so inclined incidence and dead material (cryostat) are accounted for.
2. Shower spots are drawn in shower coordinates (depth in X0 or lambda_I from the shower start, radius in Moliere
   radii or lambda_I, azimuth), mapped back to path lengths by inverting the cumulative tables, and placed at
   origin + s d + r (cos phi e1 + sin phi e2), with r scaled by the Moliere radius (or lambda_I) of the segment
   where the spot lies.
   Spot budget (energy-proportional): a (sub-)shower of deposited energy E gets n = ``em_per_gev`` x E depth spots
   in expectation (randomised integer rounding, :func:`em.spot_counts`; at least one), each split into a core
   sub-spot and ``em_lateral`` tail sub-spots in fixed strata of the radial CDF refined towards large radii
   (importance sampling with exact, deterministic weights: energy conserved exactly, expectation values unchanged;
   :mod:`pcloud.sim.em`). Depth strata are equal-probability strata of a *fixed* proposal (:func:`em.proposal_bounds`),
   so the spot density anywhere is proportional to the energy: the two photons of a pi0 get together the spots of
   one photon of the pi0's energy, and an EM sub-shower of a hadron as many as its energy deserves (a fixed count
   per sub-shower made the number of non-zero cells count sub-showers). Showers are processed in bins of similar
   counts (:data:`em.SPOT_LADDER`, padded with zero-weight spots; a loop over ~10-15 bins, not over showers). The
   hadronic component works the same way (``had_per_gev``, ``had_lateral``). Each MIP track spot is split into an
   on-axis part and delta-ray sub-spots (:func:`_track_block`).
3. Spots are located in cells with :meth:`Geometry.locate` (spots in dead material, beyond the back or outside the
   window are lost: leakage) and summed per (particle, cell).

Energy modes: ``"total"`` deposits all energy (absorber + active, as the public CaloGAN files). ``"visible"``
deposits only the active-layer share: EM spots are scaled by the EM sampling fraction f_em of their stack and
fluctuated with a compound Poisson law of variance a^2 * e_spot (GeV^2) (:func:`_fluctuate`), so that summed over a
shower sigma/E = a/sqrt(E) with a = the stack's stochastic term (:attr:`Stack.sampling_term`; the photostatistics
term for homogeneous crystals); hadronic spots use the hadronic sampling term; MIP track spots are scaled by the MIP
sampling fraction. The law is infinitely divisible, so fluctuating per spot equals, in distribution, fluctuating the
summed energy of each cell (and sub-shower): visible cell energies and the number of empty cells (probability
exp(-E_cell/q), q = a^2/2) do not depend on the spot granularity.

Local-frame windows placed at pseudorapidity ``window_eta`` (CLIC-like): particles are simulated in the unsheared
local frame (a rotation of the collider frame, :meth:`Geometry.to_collider` with eta 0) and cell lookup uses
y_window = y - z sinh(window_eta), the inverse of the window shift of :meth:`Geometry.to_collider`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.base import Geometry
from . import em as _em
from . import hadronic as _had
from .media import DepthMedia, depth_media
from .pi0 import decay_pi0, orthonormal_basis

DEPOSIT_MODES = ("total", "visible")
#: Default spot budgets. ``em_per_gev`` / ``had_per_gev``: expected *depth* spots per GeV of a (sub-)shower's
#: deposited energy (EM shower; hadronic non-EM component after the invisible share), randomised-rounded onto
#: :data:`pcloud.sim.em.SPOT_LADDER` (:func:`pcloud.sim.em.spot_counts`), so a pi0's two photons get together as
#: many spots as one photon of the pi0's energy; ``em_lateral`` / ``had_lateral``: sub-spots per depth spot besides
#: the core (fixed, so the lateral proposal is the same for every shower); ``em`` / ``had`` > 0: a *fixed* number of
#: depth spots per shower instead (the pre-2026 sampling; not energy-proportional); ``track``: MIP track steps;
#: ``track_lateral``: delta-ray sub-spots per step (0 = all on the axis). Measured occupancy and speed:
#: datasets/SIMULATION.md.
DEFAULT_SPOTS = {"em_per_gev": 2.5, "had_per_gev": 2.5, "em_lateral": 12, "had_lateral": 4, "em": 0, "had": 0,
                 "track": 12, "track_lateral": 2}
#: Largest number of sub-spots handled in one rectangular block (memory bound; showers of a group are processed in
#: chunks of at most this many sub-spots).
MAX_BLOCK_SPOTS = 1_500_000
#: Shape s of the per-quantum energy law of the visible-mode sampling fluctuations (compound Poisson, see
#: :func:`_fluctuate`): 1 = exponential.
SAMPLING_QUANTUM_SHAPE = 1.0
#: Fraction of a MIP's mean energy loss carried by delta rays above T_cut = 1 MeV and their radial scale (Moliere
#: radii). Bethe's delta-ray spectrum d2N/dTdx ~ 1/T^2 (PDG Review, "Passage of particles through matter", sec.
#: 34.2.5) puts (1/2) ln(T_max/T_cut) of the mean loss's logarithmic bracket L ~ 13-15 (Pb, beta gamma ~ 10-100) above
#: T_cut: with T_max ~ 1-3 GeV that is ~ 4/15 ~ 0.25. The energy-weighted spectrum is flat in ln T: 1-10 MeV deltas
#: stop within ~1-10 mm of the Pb/LAr mixture (CSDA ranges 0.8-4.5 g/cm^2, PDG/ESTAR), harder ones shower within
#: ~R_M; the law 2 r R^2/(r^2+R^2)^2 with R = 0.15 R_M (median ~5 mm) and its 1/r^3 tail spans both (approximate).
DELTA_RAY_FRACTION = 0.25
DELTA_RAY_RADIUS_RM = 0.15
NEUTRINOS = frozenset({12, 14, 16})


@dataclass
class Deposits:
    """One row per (particle, cell) pair, summed over spots."""

    particle: np.ndarray       # int64 (K,) index into the input particle arrays
    cell: np.ndarray           # int64 (K,) flat cell index of the geometry
    energy_gev: np.ndarray     # float64 (K,) deposited energy (mode-dependent: total or visible)
    energy_em_gev: np.ndarray  # float64 (K,) part of it from EM sub-showers (e/gamma/pi0 component)

    def __len__(self) -> int:
        return int(self.particle.size)

    def per_particle(self, n_particles: int) -> np.ndarray:
        """Summed deposited energy (GeV) of each particle."""
        return np.bincount(self.particle, weights=self.energy_gev, minlength=n_particles)


# ---------------------------------------------------------------------------------------------------- media cache
_MEDIA_CACHE: dict[int, tuple] = {}


class _XYLocator:
    """Cell lookup for local-frame geometries whose sections are all ``xy`` grids with uniform u (x) and v (y) bins:
    the depth z selects an interval between sorted layer fronts/backs (gaps map to no cell), then
    flat = base + iu n_v + iv with iu = floor((x - u0)/du) from small per-interval tables, instead of
    :meth:`Geometry.locate`'s per-section masks (same result; tested against it in tests/sim). Works in the dtype
    of its inputs (float32 positions halve the memory traffic on the hot path)."""

    def __init__(self, geometry: Geometry):
        fronts = np.asarray(geometry.layer_fronts_mm, dtype=np.float64)
        backs = np.asarray(geometry.layer_backs_mm, dtype=np.float64)
        self.edges = np.unique(np.concatenate([fronts, backs]))
        n_int = self.edges.size + 1     # interval 0: before the first edge; i: [edges[i-1], edges[i]); last: behind
        u0, idu, v0, idv = (np.zeros(n_int) for _ in range(4))
        nu, nv, base = np.zeros(n_int, np.int64), np.ones(n_int, np.int64), np.zeros(n_int, np.int64)
        gl = 0
        for si, sec in enumerate(geometry.sections):
            du = (sec.u_edges[-1] - sec.u_edges[0]) / sec.n_u
            dv = (sec.v_edges[-1] - sec.v_edges[0]) / sec.n_v
            for lay in range(sec.n_layers):
                lo = np.searchsorted(self.edges, fronts[gl]) + 1
                hi = np.searchsorted(self.edges, backs[gl]) + 1
                # shifted origins: trunc((x - (u0 - du))/du) = floor((x - u0)/du) + 1 for x > u0 - du (else <= 0)
                u0[lo:hi], idu[lo:hi] = sec.u_edges[0] - du, 1.0 / du
                v0[lo:hi], idv[lo:hi] = sec.v_edges[0] - dv, 1.0 / dv
                nu[lo:hi], nv[lo:hi] = sec.n_u, sec.n_v
                base[lo:hi] = geometry.section_offsets[si] + lay * sec.n_u * sec.n_v
                gl += 1
        self.tables = {np.dtype(dt): (u0.astype(dt), idu.astype(dt), v0.astype(dt), idv.astype(dt))
                       for dt in (np.float32, np.float64)}
        self.nu, self.nv = nu.astype(np.uint32), nv.astype(np.uint32)
        self.nv64, self.base = nv, base - nv - 1          # flat = base' + iu' nv + iv' with iu' = iu + 1, iv' = iv + 1

    @staticmethod
    def applies(geometry: Geometry) -> bool:
        if geometry.frame != "local":
            return False
        for sec in geometry.sections:
            if sec.kind != "xy" or sec.v_periodic:
                return False
            for e in (np.asarray(sec.u_edges), np.asarray(sec.v_edges)):
                w = np.diff(e)
                if not np.allclose(w, w[0], rtol=1e-9, atol=0):
                    return False
        return True

    def __call__(self, x, y, z):
        x, y, z = (np.asarray(a) for a in (x, y, z))
        dt = np.dtype(np.float32) if x.dtype == np.float32 and y.dtype == np.float32 else np.dtype(np.float64)
        u0, idu, v0, idv = self.tables[dt]
        if self.edges.size <= 8:   # a few int8 comparisons beat searchsorted (bool -> intp adds are ~8x slower)
            edges = self.edges.astype(z.dtype) if z.dtype == np.float32 else self.edges
            k8 = (z >= edges[0]).view(np.int8).copy()
            for e in edges[1:]:
                k8 += (z >= e).view(np.int8)
            k = k8.astype(np.intp)
        else:
            k = np.searchsorted(self.edges, z, side="right")
        take = np.take
        # float -> int32 truncation; NaN/huge values give invalid indices (rejected below)
        with np.errstate(invalid="ignore"):
            iu = ((x - take(u0, k)) * take(idu, k)).astype(np.int32)
            iv = ((y - take(v0, k)) * take(idv, k)).astype(np.int32)
        ok = ((iu - 1).view(np.uint32) < take(self.nu, k)) & ((iv - 1).view(np.uint32) < take(self.nv, k))
        return np.where(ok, take(self.base, k) + iu.astype(np.int64) * take(self.nv64, k) + iv, -1)


def _cached(geometry: Geometry):
    hit = _MEDIA_CACHE.get(id(geometry))
    if hit is not None and hit[0] is geometry:
        return hit
    med = depth_media(geometry)
    loc = _XYLocator(geometry) if _XYLocator.applies(geometry) else geometry.locate
    if len(_MEDIA_CACHE) > 32:
        _MEDIA_CACHE.clear()
    _MEDIA_CACHE[id(geometry)] = (geometry, med, loc)
    return _MEDIA_CACHE[id(geometry)]


def _media(geometry: Geometry) -> DepthMedia:
    return _cached(geometry)[1]


def _pad(a: np.ndarray) -> np.ndarray:
    """Append a 0 so that index -1 (lost spot) reads 0."""
    return np.concatenate([a, [0.0]])


# ---------------------------------------------------------------------------------------------------- lines
class _Lines:
    """Straight lines through the depth segments; see the module docstring, step 1."""

    def __init__(self, geometry: Geometry, media: DepthMedia, origin, direction, window_eta):
        self.origin = origin
        self.direction = direction
        self.sinh_eta = np.sinh(window_eta)
        self.shear = geometry.frame == "local" and bool(np.any(window_eta != 0))
        edges = media.edges_mm
        if geometry.frame == "collider":
            dt2 = direction[:, 0] ** 2 + direction[:, 1] ** 2
            b = origin[:, 0] * direction[:, 0] + origin[:, 1] * direction[:, 1]
            c0 = origin[:, 0] ** 2 + origin[:, 1] ** 2
            reach = dt2 > 1e-12
            disc = np.maximum(b[:, None] ** 2 - dt2[:, None] * (c0[:, None] - edges[None, :] ** 2), 0.0)
            s = (-b[:, None] + np.sqrt(disc)) / np.where(reach, dt2, 1.0)[:, None]
        else:
            dz = direction[:, 2]
            reach = dz > 1e-12
            s = (edges[None, :] - origin[:, 2:3]) / np.where(reach, dz, 1.0)[:, None]
        s = np.where(reach[:, None], np.maximum(s, 0.0), 0.0)
        self.s_edges = s
        ds = np.diff(s, axis=1)
        zero = np.zeros((s.shape[0], 1))
        self.cum = {"x0": np.concatenate([zero, np.cumsum(ds / media.x0_mm, axis=1)], axis=1),
                    "lam": np.concatenate([zero, np.cumsum(ds / media.lambda_mm, axis=1)], axis=1)}
        self.unit = {"x0": media.x0_mm, "lam": media.lambda_mm}
        self.e1, self.e2 = orthonormal_basis(direction)
        self.n_segments = media.n_segments

    def invert(self, rows, q, which: str):
        """Path length s (mm) and segment index at cumulative depth ``q`` (X0 or lambda_I) along lines ``rows``.
        Beyond the last edge the segment is -1 (and s is 0)."""
        cum = self.cum[which][rows]
        se = self.s_edges[rows]
        unit = self.unit[which]
        s = np.zeros(q.shape)
        seg = np.full(q.shape, -1, dtype=np.int64)
        for k in range(self.n_segments):
            lo = cum[:, k:k + 1]
            m = (q >= lo) & (q < cum[:, k + 1:k + 2])
            s = np.where(m, se[:, k:k + 1] + (q - lo) * unit[k], s)
            seg[m] = k
        return s, seg

    def segment_at(self, rows, s):
        se = self.s_edges[rows]
        seg = np.full(s.shape, -1, dtype=np.int64)
        for k in range(self.n_segments):
            seg[(s >= se[:, k:k + 1]) & (s < se[:, k + 1:k + 2])] = k
        return seg

    def depth_at(self, rows, s, which: str):
        """Cumulative X0 / lambda_I along the line at path length s (M,)."""
        seg = self.segment_at(rows, s[:, None])[:, 0]
        last = np.where(seg < 0, self.n_segments - 1, seg)
        cum = self.cum[which][rows, last]
        se = self.s_edges[rows, last]
        return np.where(seg < 0, self.cum[which][rows, -1], cum + (s - se) / self.unit[which][last])

    def positions(self, rows, s, r_mm, phi, dtype=np.float64):
        """Positions (mm) of spots at path length ``s`` and radius ``r_mm``/azimuth ``phi`` around lines ``rows``
        (M,); the spot arrays broadcast against each other with M leading (e.g. s (M, n, 1), r (M, n, L)).
        ``dtype`` float32 (table-driven xy lookup): the axis points are computed in float64 and the lateral offsets
        added in float32 (0.1 mm resolution at 2 m, far below any cell size)."""
        nd = max(np.ndim(s), np.ndim(r_mm))
        col = (slice(None),) + (None,) * (nd - 1)
        o, d, e1, e2 = self.origin[rows], self.direction[rows], self.e1[rows], self.e2[rows]
        ph = np.asarray(phi, dtype=np.float32)   # float32 trig: ~20x faster, 1e-7 relative error
        r = np.asarray(r_mm, dtype=dtype)
        c, sn = np.cos(ph).astype(dtype, copy=False), np.sin(ph).astype(dtype, copy=False)
        c *= r
        sn *= r
        out = []
        for k in range(3):
            a = (o[:, k][col] + s * d[:, k][col]).astype(dtype, copy=False)
            v = c * e1[:, k].astype(dtype)[col]
            v += sn * e2[:, k].astype(dtype)[col]
            v += a
            out.append(v)
        x, y, z = out
        if self.shear:
            y = y - z * self.sinh_eta[rows].astype(dtype)[col]
        return x, y, z


# ---------------------------------------------------------------------------------------------------- spot blocks
def _fluctuate(e, a, rng):
    """Visible-mode sampling fluctuation of total-energy deposits ``e`` (GeV) with stochastic term ``a`` (GeV^1/2):
    a compound Poisson law, e' = theta * Gamma(s N) / s, N ~ Poisson(e / q), q = a^2 s/(s + 1), theta = q
    (s = :data:`SAMPLING_QUANTUM_SHAPE`): mean e, variance a^2 e, so summed over a shower sigma/E = a/sqrt(E).

    Physical picture: the active layers of a cell see N independent "sampling quanta" (charged tracks crossing a
    gap), each carrying on average q of total energy with an exponential-like spread (Landau-like gap deposits;
    Wigmans, "Calorimetry", sec. 4.7: sampling fluctuations are the fluctuations of the number of crossings).
    Two properties matter for the occupancy:

    - it is infinitely divisible with parameters linear in e: the sum of independent draws for spots e_1..e_k in a
      cell has exactly the law of one draw for e_1 + ... + e_k (Poisson and Gamma are additive). Fluctuating per
      spot is therefore identical in distribution to fluctuating the summed energy per cell (and sub-shower): the
      visible cell energies do not depend on how finely the energy was split into spots;
    - a cell is exactly empty with probability exp(-E_cell/q) (no crossing), a physical zero. The previous Gamma
      law (also infinitely divisible) never gives 0; its "zeros" were float underflows of Gamma(k << 1) draws, so
      the count of non-zero cells depended on the floating-point precision instead of on a physical scale.

    a = 0 leaves e unchanged."""
    a = np.asarray(a, dtype=np.float64)
    s = SAMPLING_QUANTUM_SHAPE
    on = a > 0
    q = np.where(on, a, 1.0) ** 2 * (s / (s + 1.0))
    n = rng.poisson(np.where(on, np.maximum(e, 0.0) / q, 0.0))
    g = rng.standard_gamma(n * s) / s if s != 1.0 else rng.standard_gamma(n.astype(np.float64))
    return np.where(on, q * g, e)


class _SpotSink:
    """Locates blocks of spots in cells as they are produced and keeps (line, cell, energy) of those inside."""

    def __init__(self, media: DepthMedia, visible: bool, rng, locate):
        self.media = media
        self.visible = visible
        self.rng = rng
        self.locate = locate
        self.fast = isinstance(locate, _XYLocator)
        self.blocks = []
        self.pads = {k: _pad(getattr(media, k)) for k in ("f_em", "f_mip", "a_em", "a_had")}

    def add(self, lines: _Lines, rows, s, seg, r_mm, phi, e_total, kind: str):
        """kind: 'em', 'had' or 'track'. Spot arrays have M (lines) leading and broadcast against each other
        (e.g. s, seg (M, n, 1) per depth spot and r_mm, phi, e_total (M, n, L) per sub-spot)."""
        x, y, z = lines.positions(rows, s, r_mm, phi, np.float32 if self.fast else np.float64)
        shape = x.shape
        cell = self.locate(x.ravel(), y.ravel(), z.ravel())
        ok = ((seg >= 0) & (e_total > 0)).ravel() if np.shape(seg) == shape and np.shape(e_total) == shape \
            else np.broadcast_to((seg >= 0) & (e_total > 0), shape).ravel()
        keep = np.nonzero(ok & (cell >= 0))[0]
        rows = rows.reshape((-1,) + (1,) * (len(shape) - 1))
        seg, e_total, rows = (np.broadcast_to(a, shape).ravel()[keep] if np.shape(a) != shape else a.ravel()[keep]
                              for a in (seg, e_total, rows))
        if self.visible:
            p = self.pads
            if kind == "em":
                e_vis = p["f_em"][seg] * _fluctuate(e_total, p["a_em"][seg], self.rng)
            elif kind == "had":
                e_vis = p["f_em"][seg] * _fluctuate(e_total, p["a_had"][seg], self.rng)
            else:
                e_vis = p["f_mip"][seg] * e_total
        else:
            e_vis = None
        self.blocks.append((rows, cell[keep], e_total, e_vis, kind == "em"))


def _groups(energy, per_gev: float, fixed: int, n_sub: int, rng):
    """Yield (index array, depth-spot counts) for rectangular blocks of (sub-)showers: energy-proportional counts
    (:func:`pcloud.sim.em.spot_counts`, ``per_gev`` depth spots per GeV; counts (M,) grouped by
    :data:`pcloud.sim.em.SPOT_LADDER` bin, padded inside a bin) or, with ``fixed`` > 0, that many for every shower
    (an int). Blocks hold at most :data:`MAX_BLOCK_SPOTS` sub-spots (``n_sub`` per depth spot). A loop over ~10-15
    bins (and memory chunks), never over showers."""
    m = np.size(energy)
    if m == 0:
        return
    if fixed > 0:
        step = max(1, MAX_BLOCK_SPOTS // (int(fixed) * n_sub))
        for c in range(0, m, step):
            yield np.arange(c, min(c + step, m)), int(fixed)
        return
    n = _em.spot_counts(energy, per_gev, rng)
    lad = _em.SPOT_LADDER
    if n.max() >= lad[-1]:
        raise ValueError(f"spot budget {n.max()} depth spots exceeds the ladder ({lad[-1]}): energy "
                         f"{np.max(energy):.4g} GeV x {per_gev} spots/GeV")
    b = np.searchsorted(lad, n, side="right")
    order = np.argsort(b, kind="stable")
    _, first = np.unique(b[order], return_index=True)
    for idx in np.split(order, first[1:]):
        step = max(1, MAX_BLOCK_SPOTS // (int(n[idx].max()) * n_sub))
        for c in range(0, idx.size, step):
            sel = idx[c:c + step]
            yield sel, n[sel]


def _em_block(sink: _SpotSink, lines: _Lines, rows, energy, photon, start_q, spots: dict, rng, shower=None):
    """EM (sub-)showers of ``energy`` (GeV) starting at cumulative depth ``start_q`` (X0) along ``lines`` ``rows``:
    spot budget per :func:`_groups` (energy-proportional by default), ``spots["em_lateral"]`` sub-spots;
    ``shower``: optional per-line overrides for :func:`pcloud.sim.em.em_spots`."""
    med = sink.media
    k = spots["em_lateral"]
    photon = np.broadcast_to(np.asarray(photon, dtype=bool), rows.shape)
    for idx, n_depth in _groups(energy, spots["em_per_gev"], spots["em"], k + 1, rng):
        r_g, e_g = rows[idx], energy[idx]
        seg0 = lines.invert(r_g, start_q[idx][:, None], "x0")[1][:, 0]
        seg0 = np.where(seg0 < 0, med.n_segments - 1, seg0)
        sh = None if shower is None else {key: np.asarray(v)[idx] for key, v in shower.items()}
        sp = _em.em_spots(e_g, med.z_eff[seg0], med.ec_mev[seg0], n_depth, rng, photon=photon[idx], n_lateral=k,
                          shower=sh, repeat_depth=False)
        n_sub = sp["n_sub"]
        m = e_g.size
        # sub-spots of a depth spot share its depth: invert once per depth spot, broadcast over (M, n, n_sub)
        t_depth = sp["t_x0"] if k > 0 else sp["t_x0"][:, ::n_sub]
        s, seg = lines.invert(r_g, start_q[idx][:, None] + t_depth, "x0")
        s, seg = s[..., None], seg[..., None]
        sub = (m, -1, n_sub)
        r_mm = sp["r_rm"].reshape(sub) * _pad(med.moliere_mm)[seg]
        w = sp["weight"]
        e_spot = e_g[:, None, None] * (w.reshape(sub) if w.ndim == 2 else w.reshape(1, -1, n_sub))
        sink.add(lines, r_g, s, seg, r_mm, sp["phi"].reshape(sub), e_spot, "em")


def _track_block(sink: _SpotSink, lines: _Lines, rows, s_stop, charged, energy, n_track: int, rng=None,
                 n_delta: int = 0):
    """MIP ionisation from the front entry to s_stop; returns the energy lost (GeV) per line.

    ``n_track`` equal steps along the line, each with mean dE/dx of its segment. With ``n_delta`` > 0 (needs ``rng``)
    a fraction :data:`DELTA_RAY_FRACTION` of each step's loss goes to ``n_delta`` delta-ray sub-spots in lateral
    strata of 2 r R^2/(r^2+R^2)^2, R = :data:`DELTA_RAY_RADIUS_RM` x the local Moliere radius (exact weights)."""
    s_front = lines.s_edges[rows, 0]
    length = np.maximum(s_stop - s_front, 0.0)
    frac = (np.arange(n_track) + 0.5) / n_track
    s = s_front[:, None] + frac[None, :] * length[:, None]
    seg = lines.segment_at(rows, s)
    e = _pad(sink.media.dedx_mev_per_mm)[seg] * (length / n_track)[:, None] * 1e-3 * charged[:, None]
    loss = e.sum(axis=1)  # includes dead material
    scale = np.where(loss > energy, energy / np.maximum(loss, 1e-300), 1.0)  # ranged out
    e = e * scale[:, None]
    if n_delta > 0 and rng is not None:
        lb = _em.lateral_bounds(n_delta)
        w = np.concatenate([[1.0 - DELTA_RAY_FRACTION], DELTA_RAY_FRACTION * np.diff(lb)])
        r_delta = _em.stratified_lateral(np.full(s.shape, DELTA_RAY_RADIUS_RM), lb, rng, u_max=0.999)
        r_rm = np.concatenate([np.zeros(s.shape + (1,)), r_delta], axis=2)
        s, seg = s[..., None], seg[..., None]
        r_mm = r_rm * _pad(sink.media.moliere_mm)[seg]
        phi = rng.random(r_mm.shape, dtype=np.float32) * np.float32(2.0 * np.pi)
        sink.add(lines, rows, s, seg, r_mm, phi, e[..., None] * w, "track")
    else:
        zeros = np.zeros_like(s)
        sink.add(lines, rows, s, seg, zeros, zeros, e, "track")
    return loss * scale


def _hadron_block(sink: _SpotSink, lines: _Lines, rows, energy, charged, n_spots: dict, rng):
    m = rows.size
    x_int = rng.exponential(1.0, m)
    s_int, seg_int = lines.invert(rows, x_int[:, None], "lam")
    s_int, interacts = s_int[:, 0], seg_int[:, 0] >= 0
    s_stop = np.where(interacts, s_int, lines.s_edges[rows, -1])
    loss = _track_block(sink, lines, rows, s_stop, charged, energy, n_spots["track"], rng,
                        n_spots["track_lateral"])
    e_int = np.where(interacts, np.maximum(energy - loss, 0.0), 0.0)
    f_em = _had.sample_em_fraction(e_int, rng)
    e_em = f_em * e_int
    e_h = e_int - e_em
    f_inv = _had.sample_invisible_fraction(m, rng)
    sel = e_em > 0
    if sel.any():
        q0 = lines.depth_at(rows[sel], s_int[sel], "x0")
        _em_block(sink, lines, rows[sel], e_em[sel], True, q0, n_spots, rng)
    sel = np.nonzero(e_h > 0)[0]
    k = n_spots["had_lateral"]
    e_dep = e_h * (1.0 - f_inv)     # deposited (not invisible) energy of the non-EM component sets its spot budget
    for idx, n_depth in (_groups(e_dep[sel], n_spots["had_per_gev"], n_spots["had"], max(k, 1), rng)
                         if sel.size else ()):
        g = sel[idx]
        hs = _had.hadronic_spots(e_h[g], n_depth, rng, n_lateral=k)
        n_sub = max(k, 1)
        sub = (g.size, -1, n_sub)
        s, seg = lines.invert(rows[g], x_int[g][:, None] + hs["x_lambda"][:, ::n_sub], "lam")
        s, seg = s[..., None], seg[..., None]
        r_mm = hs["r_lambda"].reshape(sub) * _pad(sink.media.lambda_mm)[seg]
        w = hs["weight"]
        e_spot = e_dep[g][:, None, None] * (w.reshape(sub) if w.ndim == 2 else w.reshape(1, -1, n_sub))
        sink.add(lines, rows[g], s, seg, r_mm, hs["phi"].reshape(sub), e_spot, "had")
    return {"interacts": interacts, "f_em": f_em, "e_int": e_int, "f_inv": f_inv}


# ---------------------------------------------------------------------------------------------------- driver
def _check_inputs(geometry, pdg, energy_gev, origin_mm, direction):
    pdg = np.asarray(pdg)
    if pdg.ndim != 1:
        raise ValueError(f"deposit_particles: pdg must be a 1-D array, found shape {pdg.shape}")
    p = pdg.size
    energy = np.asarray(energy_gev, dtype=np.float64)
    origin = np.asarray(origin_mm, dtype=np.float64)
    direction = np.asarray(direction, dtype=np.float64)
    if energy.shape != (p,):
        raise ValueError(f"deposit_particles: energy_gev must have shape ({p},) like pdg, found {energy.shape}")
    if origin.shape != (p, 3) or direction.shape != (p, 3):
        raise ValueError(f"deposit_particles: origin_mm and direction must have shape ({p}, 3), found "
                         f"{origin.shape} and {direction.shape}")
    if not np.all(np.isfinite(energy)) or np.any(energy < 0):
        raise ValueError("deposit_particles: energy_gev must be finite and >= 0")
    norm = np.linalg.norm(direction, axis=1)
    if p and not np.allclose(norm, 1.0, atol=1e-6):
        raise ValueError(f"deposit_particles: direction must be unit vectors; norms range {norm.min():.6g}.."
                         f"{norm.max():.6g}")
    apdg = np.abs(pdg.astype(np.int64))
    known = (apdg == 11) | (apdg == 13) | (apdg == 22) | (apdg > 100) | np.isin(apdg, list(NEUTRINOS))
    if not known.all():
        raise ValueError(f"deposit_particles: unsupported pdg ids {sorted(set(pdg[~known].tolist()))}; supported: "
                         "e+-, mu+-, gamma, pi0, hadrons (|pdg| > 100), neutrinos (no deposit)")
    return pdg.astype(np.int64), energy, origin, direction


def _spot_options(n_spots) -> dict:
    """Validated spot options: :data:`DEFAULT_SPOTS` updated by ``n_spots`` (dict, or an int = fixed EM depth
    spots per shower)."""
    spots_n = dict(DEFAULT_SPOTS)
    if isinstance(n_spots, dict):
        unknown = set(n_spots) - set(spots_n)
        if unknown:
            raise ValueError(f"n_spots: unknown keys {sorted(unknown)}; expected {sorted(spots_n)}")
        spots_n.update(n_spots)
    elif n_spots is not None:
        spots_n["em"] = int(n_spots)
    bad = {}
    for key, v in spots_n.items():
        if key.endswith("_per_gev"):
            if not (np.isfinite(v) and v > 0):
                bad[key] = v
        elif int(v) != v or v < (1 if key == "track" else 0):
            bad[key] = v
    if bad:
        raise ValueError(f"n_spots: expected em_per_gev/had_per_gev > 0 (depth spots per GeV), track >= 1 and "
                         f"em, had, *_lateral integers >= 0; got {bad}")
    return {k: (float(v) if k.endswith("_per_gev") else int(v)) for k, v in spots_n.items()}


def _simulate_spots(geometry: Geometry, pdg, energy_gev, origin_mm, direction, rng, mode="total", n_spots=None,
                    window_eta=0.0):
    """Spots of all particles, located in cells. Returns (spots dict, extras dict).

    spots: ``particle``, ``cell`` (only spots inside cells), ``energy_gev`` (mode), ``energy_total_gev``, ``em``.
    extras: per particle ``photon1_energy_gev``, ``photon2_energy_gev``, ``opening_angle_rad`` (NaN unless pi0).
    """
    if mode not in DEPOSIT_MODES:
        raise ValueError(f"deposit_particles: mode must be one of {DEPOSIT_MODES}, got {mode!r}")
    pdg, energy, origin, direction = _check_inputs(geometry, pdg, energy_gev, origin_mm, direction)
    spots_n = _spot_options(n_spots)
    p = pdg.size
    window_eta = np.broadcast_to(np.asarray(window_eta, dtype=np.float64), (p,))
    media = _media(geometry)
    apdg = np.abs(pdg)

    is_em = (apdg == 11) | (pdg == 22)
    is_pi0 = pdg == 111
    is_mu = apdg == 13
    is_had = (apdg > 100) & ~is_pi0
    i_em, i_pi0, i_mu, i_had = (np.nonzero(m)[0] for m in (is_em, is_pi0, is_mu, is_had))

    extras = {k: np.full(p, np.nan) for k in ("photon1_energy_gev", "photon2_energy_gev", "opening_angle_rad")}
    e1, e2, d1, d2, psi = decay_pi0(energy[i_pi0], direction[i_pi0], rng)
    hard = e1 >= e2
    extras["photon1_energy_gev"][i_pi0] = np.where(hard, e1, e2)
    extras["photon2_energy_gev"][i_pi0] = np.where(hard, e2, e1)
    extras["opening_angle_rad"][i_pi0] = psi

    # one line per e/gamma, two per pi0, one per hadron / muon
    owner = np.concatenate([i_em, i_pi0, i_pi0, i_had, i_mu])
    l_dir = np.concatenate([direction[i_em], d1, d2, direction[i_had], direction[i_mu]])
    l_energy = np.concatenate([energy[i_em], e1, e2, energy[i_had], energy[i_mu]])
    lines = _Lines(geometry, media, origin[owner], l_dir, window_eta[owner])
    sink = _SpotSink(media, mode == "visible", rng, _cached(geometry)[2])

    n_e, n_p, n_h = i_em.size, i_pi0.size, i_had.size
    r_em = np.arange(n_e + 2 * n_p)
    if r_em.size:
        photon = np.concatenate([pdg[i_em] == 22, np.ones(2 * n_p, dtype=bool)])
        _em_block(sink, lines, r_em, l_energy[r_em], photon, np.zeros(r_em.size), spots_n, rng)
    r_had = np.arange(n_e + 2 * n_p, n_e + 2 * n_p + n_h)
    if r_had.size:
        charged = np.isin(apdg[i_had], list(_had.CHARGED_HADRONS)).astype(np.float64)
        _hadron_block(sink, lines, r_had, l_energy[r_had], charged, spots_n, rng)
    r_mu = np.arange(n_e + 2 * n_p + n_h, owner.size)
    if r_mu.size:
        _track_block(sink, lines, r_mu, lines.s_edges[r_mu, -1], np.ones(r_mu.size), l_energy[r_mu],
                     spots_n["track"], rng, spots_n["track_lateral"])

    if sink.blocks:
        rows = np.concatenate([b[0] for b in sink.blocks])
        e_tot = np.concatenate([b[2] for b in sink.blocks])
        spots = {"particle": owner[rows], "cell": np.concatenate([b[1] for b in sink.blocks]),
                 "energy_gev": np.concatenate([b[3] for b in sink.blocks]) if mode == "visible" else e_tot,
                 "energy_total_gev": e_tot, "em": np.concatenate([np.full(b[0].size, b[4]) for b in sink.blocks])}
    else:
        spots = {"particle": np.zeros(0, np.int64), "cell": np.zeros(0, np.int64), "energy_gev": np.zeros(0),
                 "energy_total_gev": np.zeros(0), "em": np.zeros(0, bool)}
    return spots, extras


def deposit_particles(geometry, pdg, energy_gev, origin_mm, direction, rng, mode="total", n_spots=None,
                      window_eta=0.0) -> Deposits:
    """Simulate the calorimeter deposits of P particles and sum them per (particle, cell).

    Parameters
    ----------
    geometry: :class:`Geometry` or its name.
    pdg: (P,) PDG ids: e+- (11), gamma (22), pi0 (111, decayed here; both photons attributed to the pi0), charged and
        neutral hadrons (|pdg| > 100, pions parametrised), mu+- (13, MIP track only), neutrinos (no deposit).
    energy_gev: (P,) energies (GeV). origin_mm: (P,3) start points, direction: (P,3) unit vectors, in the geometry
        frame (local geometries: the window-at-eta-0 frame, see ``window_eta``). A particle starting before the
        calorimeter flies straight to the front surface (z = first front, or r = first front in the collider frame).
    rng: ``numpy.random.Generator``. mode: ``"total"`` or ``"visible"`` (see the module docstring).
    n_spots: dict with any of the keys of :data:`DEFAULT_SPOTS` (``em_per_gev``, ``had_per_gev``: depth spots per
        GeV of a sub-shower's deposited energy; ``em_lateral``, ``had_lateral``, ``track_lateral``: sub-spots per
        depth spot; ``em``, ``had`` > 0: a fixed depth-spot count per shower instead (not energy-proportional: the
        occupancy then counts sub-showers); ``track``: MIP steps; missing keys take the defaults), or an int (=
        ``{"em": n}``). ``{"em": 96, "em_lateral": 0, "had": 32, "had_lateral": 0, "track_lateral": 0}`` is the
        cheap pre-2026 sampling (low occupancy).
    window_eta: scalar or (P,): pseudorapidity of a local-frame window (cells are sheared as in
        :meth:`Geometry.to_collider`); ignored for collider-frame geometries.

    Only spots inside cells are kept (never a dense (P, n_cells) array), so it works for the 105k-cell atlas geometry.
    """
    if isinstance(geometry, str):
        from ..geometry import get_geometry
        geometry = get_geometry(geometry)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"deposit_particles: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    spots, _ = _simulate_spots(geometry, pdg, energy_gev, origin_mm, direction, rng, mode, n_spots, window_eta)
    return aggregate(spots, geometry.n_cells)


def deposit_em_showers(geometry, energy_gev, origin_mm, direction, rng, owner=None, photon=True, shower=None,
                       mode="total", n_spots=None, window_eta=0.0) -> Deposits:
    """Deposit L EM (sub-)showers along given lines and sum them per ``owner`` (default: one owner per line).

    energy_gev (L,) GeV; origin_mm, direction (L, 3) as in :func:`deposit_particles`; owner (L,) int >= 0 (lines with
    the same owner are summed, e.g. the two photons of a pi0); photon: bool or (L,) (conversion depth);
    shower: optional dict of (L,) overrides for :func:`pcloud.sim.em.em_spots` (``tmax_x0``, ``alpha``,
    ``start_x0``, ``shape_energy_gev``), e.g. to split one physical shower into two independent spot sets of
    budgets z E and (1 - z) E. Returns :class:`Deposits` indexed by owner."""
    if isinstance(geometry, str):
        from ..geometry import get_geometry
        geometry = get_geometry(geometry)
    if mode not in DEPOSIT_MODES:
        raise ValueError(f"deposit_em_showers: mode must be one of {DEPOSIT_MODES}, got {mode!r}")
    n = np.size(energy_gev)
    pdg, energy, origin, direction = _check_inputs(geometry, np.full(n, 22), energy_gev, origin_mm, direction)
    owner = np.arange(n) if owner is None else np.asarray(owner, dtype=np.int64)
    if owner.shape != (n,) or (n and owner.min() < 0):
        raise ValueError(f"deposit_em_showers: owner must be ({n},) non-negative ints, found shape {owner.shape}")
    if shower is not None:
        bad = {k: np.shape(v) for k, v in shower.items() if np.shape(v) != (n,)}
        if bad or set(shower) - {"tmax_x0", "alpha", "start_x0", "shape_energy_gev"}:
            raise ValueError(f"deposit_em_showers: shower must map tmax_x0/alpha/start_x0/shape_energy_gev to ({n},) "
                             f"arrays, found {dict((k, np.shape(v)) for k, v in shower.items())}")
    spots_n = _spot_options(n_spots)
    media = _media(geometry)
    we = np.broadcast_to(np.asarray(window_eta, dtype=np.float64), (n,))
    lines = _Lines(geometry, media, origin, direction, we)
    sink = _SpotSink(media, mode == "visible", rng, _cached(geometry)[2])
    _em_block(sink, lines, np.arange(n), energy, photon, np.zeros(n), spots_n, rng, shower)
    if not sink.blocks:
        return Deposits(*(np.zeros(0, np.int64),) * 2, np.zeros(0), np.zeros(0))
    rows = np.concatenate([b[0] for b in sink.blocks])
    e_tot = np.concatenate([b[2] for b in sink.blocks])
    e = np.concatenate([b[3] for b in sink.blocks]) if mode == "visible" else e_tot
    return aggregate({"particle": owner[rows], "cell": np.concatenate([b[1] for b in sink.blocks]),
                      "energy_gev": e, "em": np.ones(e.size, bool)}, geometry.n_cells)


def aggregate(spots: dict, n_cells: int) -> Deposits:
    """Sum located spots per (particle, cell) pair (sorted by particle, then cell)."""
    key = spots["particle"].astype(np.int64) * np.int64(n_cells) + spots["cell"]
    uniq, inv = np.unique(key, return_inverse=True)
    e = np.bincount(inv, weights=spots["energy_gev"], minlength=uniq.size)
    e_em = np.bincount(inv, weights=np.where(spots["em"], spots["energy_gev"], 0.0), minlength=uniq.size)
    return Deposits(particle=uniq // n_cells, cell=uniq % n_cells, energy_gev=e, energy_em_gev=e_em)


# ---------------------------------------------------------------------------------------------------- noise
def add_noise(geometry: Geometry, values, rng, cell=None, scale: float = 1.0) -> np.ndarray:
    """Add Gaussian electronic noise (sigma = ``noise_sigma_gev`` of each cell's section, times ``scale``).

    - ``cell is None``: ``values`` is a dense ``(..., n_cells)`` array of flat images; every cell gets noise.
    - otherwise ``values`` (K,) are energies of the flat cells ``cell`` (K,) (e.g. a sparse event); only those cells
      get noise (see :func:`sparse_noise` for the noise-only cells).

    Returns a new float64 array. Policy: negative noisy cells are kept (images stay unbiased); the point-cloud
    energy threshold downstream removes them.
    """
    sigma = geometry.cells["noise_sigma_gev"] * scale
    v = np.asarray(values, dtype=np.float64)
    if cell is None:
        if v.shape[-1:] != (geometry.n_cells,):
            raise ValueError(f"add_noise: expected flat images (..., {geometry.n_cells}) for geometry "
                             f"{geometry.name!r}, found {v.shape}")
        if not np.any(sigma > 0):
            return v.copy()
        return v + rng.standard_normal(v.shape) * sigma
    c = np.asarray(cell, dtype=np.int64)
    if c.shape != v.shape:
        raise ValueError(f"add_noise: cell and values must have the same shape, found {c.shape} and {v.shape}")
    if c.size and (c.min() < 0 or c.max() >= geometry.n_cells):
        raise ValueError(f"add_noise: cell indices must be in [0, {geometry.n_cells}), found {c.min()}..{c.max()}")
    return v + rng.standard_normal(v.shape) * sigma[c]


def sparse_noise(geometry: Geometry, n_events: int, rng, threshold_sigma: float = 2.0, scale: float = 1.0):
    """Noise-only cells with |noise| > ``threshold_sigma`` sigma, drawn without materialising dense events.

    Per section the count per event is Binomial(n_cells, p) with p = 2 (1 - Phi(t)); cells are uniform in the
    section (duplicates dropped) and values follow the Gaussian tail beyond t sigma with a random sign.
    Returns ``(event_index, cell, energy_gev)`` sorted by (event, cell).
    """
    from scipy.special import ndtr, ndtri

    t = float(threshold_sigma)
    if t < 0:
        raise ValueError(f"sparse_noise: threshold_sigma must be >= 0, got {t}")
    ev_l, cell_l, e_l = [], [], []
    p = 2.0 * (1.0 - ndtr(t))
    for si, s in enumerate(geometry.sections):
        sig = s.noise_sigma_gev * scale
        if sig <= 0:
            continue
        counts = rng.binomial(s.n_cells, p, n_events)
        tot = int(counts.sum())
        ev = np.repeat(np.arange(n_events, dtype=np.int64), counts)
        cell = geometry.section_offsets[si] + rng.integers(0, s.n_cells, tot)
        u = rng.uniform(ndtr(t), 1.0, tot)
        val = ndtri(u) * sig * np.where(rng.random(tot) < 0.5, -1.0, 1.0)
        ev_l.append(ev), cell_l.append(cell), e_l.append(val)
    if not ev_l:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    ev, cell, val = np.concatenate(ev_l), np.concatenate(cell_l), np.concatenate(e_l)
    key = ev * np.int64(geometry.n_cells) + cell
    uniq, first = np.unique(key, return_index=True)
    return uniq // geometry.n_cells, uniq % geometry.n_cells, val[first]
