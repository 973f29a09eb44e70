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
   Spot budget (energy-proportional): a (sub-)shower of energy E gets n = ``em_per_gev`` x E depth spots in
   expectation (randomised integer rounding, :func:`em.spot_counts`; at least ``em_min``), each split into a core
   ring and an inner-tail ring of ``em_core`` antithetic sub-spots and ``em_lateral`` - 1 outer tail sub-spots in
   fixed strata of the radial CDF (exact importance weights; :mod:`pcloud.sim.em`). Depth strata are
   equal-probability strata of a *fixed* proposal (:func:`em.proposal_bounds`); showers are processed in bins of
   similar counts (:data:`em.SPOT_LADDER`, padded with zero-weight spots; a loop over ~10-15 bins, not over showers).
   The spots estimate the mean energy per cell; the physics of a single shower is added on top
   (:mod:`pcloud.sim.fluctuations`): the dense body fluctuates with GFlash-like quanta, every sub-spot passes the
   soft-deposit roulette (occupancy), and far deposits (:mod:`pcloud.sim.halo`: albedo, deep tail; for hadrons
   backsplash, halo and evaporation neutrons) are compound Poisson points emitted from the shower's own profile.
   Photons convert into a Bethe-Heitler pair (two sub-showers on the photon's line); the pi0-like sub-showers of
   hadrons get their own tilted *secondary lines* (:meth:`_SpotSink.register_lines`). The hadronic component works
   like the EM one (``had_per_gev``, ``had_lateral``). Each MIP track step is split into an on-axis part and
   delta-ray sub-spots and wanders by multiple scattering (:func:`_track_block`).
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
from . import fluctuations as _fl
from . import hadronic as _had
from . import halo as _halo
from .media import DepthMedia, depth_media
from .pi0 import decay_pi0, orthonormal_basis

DEPOSIT_MODES = ("total", "visible")
#: Default spot budgets. ``em_per_gev`` / ``had_per_gev``: expected *depth* spots per GeV of a (sub-)shower's
#: deposited energy (EM shower; hadronic non-EM component after the invisible share), randomised-rounded onto
#: :data:`pcloud.sim.em.SPOT_LADDER` (:func:`pcloud.sim.em.spot_counts`), at least ``em_min`` per EM (sub-)shower;
#: ``em_core``: sub-spots of the core and inner-tail rings; ``em_lateral`` / ``had_lateral``: tail sub-spots per depth
#: spot (EM: the inner-tail ring plus ``em_lateral`` - 1 outer strata); ``em`` / ``had`` > 0: a *fixed* number of
#: depth spots per shower instead (the pre-2026 sampling; not energy-proportional); ``track``: MIP track steps;
#: ``track_lateral``: delta-ray sub-spots per step (0 = all on the axis). Since the fluctuations and the occupancy
#: come from physical quanta (:mod:`pcloud.sim.fluctuations`), the budget only sets the precision of the mean
#: profiles (``em_per_gev`` 1.2-2.5 moves the CaloGAN card medians by < 3%, sparsity1 by 4%; datasets/SIMULATION.md).
DEFAULT_SPOTS = {"em_per_gev": 1.2, "em_min": 4, "em_core": 4, "had_per_gev": 2.5, "em_lateral": 6, "had_lateral": 4,
                 "em": 0, "had": 0, "track": 24, "track_lateral": 2}
#: Largest number of sub-spots handled in one rectangular block (memory bound; showers of a group are processed in
#: chunks of at most this many sub-spots).
MAX_BLOCK_SPOTS = 1_500_000
#: Shape s of the per-quantum energy law of the visible-mode sampling fluctuations (compound Poisson, see
#: :func:`_fluctuate`): 1 = exponential.
SAMPLING_QUANTUM_SHAPE = 1.0
#: Fraction of a MIP's mean energy loss carried by delta rays that leave the track's neighbourhood, and their radial
#: scale (Moliere radii). Bethe's delta-ray spectrum d2N/dTdx ~ 1/T^2 (PDG Review, "Passage of particles through
#: matter", sec. 34.2.5) puts (1/2) ln(T_max/T_cut) of the mean loss's logarithmic bracket L ~ 13-15 (Pb,
#: beta gamma ~ 10-100) above T_cut. Deltas below ~5 MeV stop within ~2 mm of the Pb/LAr mixture (CSDA ranges,
#: PDG/ESTAR) and stay in the track's cell (even in 5 mm strips); above T_cut = 5 MeV, with T_max ~ 1-3 GeV, the
#: share is ~ 2.8/15 ~ 0.18 (it was 0.25 with T_cut = 1 MeV, which split the MIP track of a pion on the CaloGAN
#: strip boundary too evenly: E_ratio_0 of pi+ 0.81 of Geant4's median, now 0.87). Harder deltas shower within
#: ~R_M; the law 2 r R^2/(r^2+R^2)^2 with R = 0.15 R_M (median ~5 mm) and its 1/r^3 tail spans both (approximate).
DELTA_RAY_FRACTION = 0.18
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


def _gather_rows(table, rows):
    """``table[..., rows]`` for a per-line table (..., L) and point rows (K,). Points of one line are usually
    adjacent (emitted shower by shower): for non-decreasing ``rows`` the gather is a ``np.repeat`` of the used line
    range by its counts (sequential copies, ~2-3x faster than a random-access take)."""
    rows = np.asarray(rows)
    if rows.size > 64 and rows.ndim == 1 and not np.any(rows[1:] < rows[:-1]):
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        return np.repeat(table[..., lo:hi], np.bincount(rows - lo, minlength=hi - lo), axis=-1)
    return np.take(table, rows, axis=-1)


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
        # edges behind the start (s < 0, a particle starting inside the material) keep their negative path length in
        # s_full, so that backward deposits (albedo) find their segment; depths in X0 / lambda count from s = 0
        self.s_full = np.where(reach[:, None], s, 0.0)
        self.s_range = np.ascontiguousarray(self.s_full[:, [0, -1]].T)     # (2, lines): first and last edge
        s = np.maximum(self.s_full, 0.0)
        self.s_edges = s
        ds = np.diff(s, axis=1)
        zero = np.zeros((s.shape[0], 1))
        self.cum = {"x0": np.concatenate([zero, np.cumsum(ds / media.x0_mm, axis=1)], axis=1),
                    "lam": np.concatenate([zero, np.cumsum(ds / media.lambda_mm, axis=1)], axis=1),
                    "lpi": np.concatenate([zero, np.cumsum(ds / media.lambda_pi_mm, axis=1)], axis=1)}
        self.unit = {"x0": media.x0_mm, "lam": media.lambda_mm, "lpi": media.lambda_pi_mm}
        self.e1, self.e2 = orthonormal_basis(direction)
        self.n_segments = media.n_segments
        #: index of this object's first line among all lines of an event batch (secondary lines, e.g. the pi0 photons
        #: of hadron showers, are appended after the particles' own lines; see :meth:`_SpotSink.register_lines`)
        self.base = 0
        self.geometry = geometry
        self.media = media
        self.window_eta = window_eta

    def invert(self, rows, q, which: str):
        """Path length s (mm) and segment index at cumulative depth ``q`` (X0 or lambda_I) along lines ``rows``.
        Beyond the last edge the segment is -1 (and s is 0)."""
        unit = self.unit[which]
        if self.n_segments == 1:
            hi = self.cum[which][rows, 1].reshape((-1,) + (1,) * (np.ndim(q) - 1))
            inside = (q >= 0) & (q < hi)
            lo = self.s_edges[rows, 0].reshape(hi.shape)
            return np.where(inside, lo + q * unit[0], 0.0), np.where(inside, 0, -1)
        cum = self.cum[which][rows]
        se = self.s_edges[rows]
        s = np.zeros(q.shape)
        seg = np.full(q.shape, -1, dtype=np.int64)
        for k in range(self.n_segments):
            lo = cum[:, k:k + 1]
            m = (q >= lo) & (q < cum[:, k + 1:k + 2])
            s = np.where(m, se[:, k:k + 1] + (q - lo) * unit[k], s)
            seg[m] = k
        return s, seg

    def segment_of(self, rows, s):
        """Segment index (-1 outside) at path length ``s`` (K,) along lines ``rows`` (K,) (one line per point)."""
        if self.n_segments == 1:
            lo, hi = _gather_rows(self.s_range, rows)
            return np.where((s >= lo) & (s < hi), 0, -1)
        return self.segment_at(rows, s[:, None])[:, 0]

    def segment_at(self, rows, s):
        se = self.s_full[rows]
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

    def positions(self, rows, s, r_mm, phi, dtype=np.float64, xy: bool = False):
        """Positions (mm) of spots at path length ``s`` and radius ``r_mm``/azimuth ``phi`` around lines ``rows``
        (M,); the spot arrays broadcast against each other with M leading (e.g. s (M, n, 1), r (M, n, L)).
        ``dtype`` float32 (table-driven xy lookup): the axis points are computed in float64 and the lateral offsets
        added in float32 (0.1 mm resolution at 2 m, far below any cell size)."""
        if np.ndim(s) == 1 and np.ndim(rows) == 1 and np.size(rows) == np.size(s) and np.size(rows) > 1:
            return self._positions_flat(rows, s, r_mm, phi, dtype, xy)
        nd = max(np.ndim(s), np.ndim(r_mm))
        col = (slice(None),) + (None,) * (nd - 1)
        o, d, e1, e2 = self.origin[rows], self.direction[rows], self.e1[rows], self.e2[rows]
        if xy:       # Cartesian lateral offsets (u1, u2) along (e1, e2)
            c, sn = np.asarray(r_mm, dtype=dtype), np.asarray(phi, dtype=dtype)
        else:
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

    def _positions_flat(self, rows, s, r_mm, phi, dtype, xy: bool = False):
        """:meth:`positions` for one line per point (K,): one gather from a packed (13, lines) table of origin,
        direction, e1, e2 and the window shear, in ``dtype`` (float32 for the table-driven xy lookup: 1e-4 mm at
        2 m)."""
        key = np.dtype(dtype).str
        packed = self.__dict__.setdefault("_packed", {})
        if key not in packed:
            shear = self.sinh_eta[:, None] * np.ones((len(self.origin), 1))
            packed[key] = np.ascontiguousarray(np.concatenate(
                [self.origin, self.direction, self.e1, self.e2, shear], axis=1).T.astype(dtype))
        t = _gather_rows(packed[key], rows)
        if xy:                       # lateral offsets given along (e1, e2)
            c, sn = np.asarray(r_mm, dtype=dtype), np.asarray(phi, dtype=dtype)
        else:
            ph = np.asarray(phi, dtype=np.float32)
            r = np.asarray(r_mm, dtype=dtype)
            c = np.cos(ph).astype(dtype, copy=False)
            c *= r
            sn = np.sin(ph).astype(dtype, copy=False)
            sn *= r
        s = np.asarray(s, dtype=dtype)
        out = []
        for k in range(3):
            v = s * t[3 + k]
            v += t[k]
            v += c * t[6 + k]
            v += sn * t[9 + k]
            out.append(v)
        x, y, z = out
        if self.shear:
            y = y - z * t[12]
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


def _take_broadcast(a, flat_index, shape):
    """``np.broadcast_to(a, shape).ravel()[flat_index]`` without materialising the broadcast: when ``a`` only varies
    along leading axes (trailing axes of size 1, the layout of per-depth-spot and per-line arrays), the index into
    ``a`` is ``flat_index // (size of the broadcast trailing block)``."""
    a = np.asarray(a)
    if a.shape == shape:
        return a.ravel()[flat_index]
    full = (1,) * (len(shape) - a.ndim) + a.shape
    lead = len(full)
    while lead > 0 and full[lead - 1] == 1:
        lead -= 1
    if full[:lead] == tuple(shape[:lead]):
        block = int(np.prod(shape[lead:], dtype=np.int64))
        return a.ravel()[flat_index // block]
    return np.broadcast_to(a, shape).ravel()[flat_index]


class _SpotSink:
    """Locates blocks of spots in cells as they are produced and keeps (line, cell, energy) of those inside."""

    def __init__(self, media: DepthMedia, visible: bool, rng, locate, owner=None):
        self.owner_parts = [np.zeros(0, np.int64) if owner is None else np.asarray(owner, np.int64)]
        self.n_lines = self.owner_parts[0].size
        self.media = media
        self.visible = visible
        self.rng = rng
        self.locate = locate
        self.fast = isinstance(locate, _XYLocator)
        self.blocks = []
        self.pads = {k: _pad(getattr(media, k)) for k in ("f_em", "f_mip", "a_em", "a_had")}

    def add(self, lines: _Lines, rows, s, seg, r_mm, phi, e_total, kind: str, xy: bool = False):
        """kind: 'em', 'had' or 'track'. Spot arrays have M (lines) leading and broadcast against each other
        (e.g. s, seg (M, n, 1) per depth spot and r_mm, phi, e_total (M, n, L) per sub-spot). ``xy``: ``r_mm`` and
        ``phi`` are Cartesian lateral offsets (mm) along the line's (e1, e2) instead."""
        x, y, z = lines.positions(rows, s, r_mm, phi, np.float32 if self.fast else np.float64, xy)
        shape = x.shape
        cell = self.locate(x.ravel(), y.ravel(), z.ravel())
        ok = ((seg >= 0) & (e_total > 0)).ravel() if np.shape(seg) == shape and np.shape(e_total) == shape \
            else np.broadcast_to((seg >= 0) & (e_total > 0), shape).ravel()
        keep = np.nonzero(ok & (cell >= 0))[0]
        rows = rows.reshape((-1,) + (1,) * (len(shape) - 1))
        seg, e_total, rows = (_take_broadcast(a, keep, shape) for a in (seg, e_total, rows))
        cell = cell[keep]
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
        self.blocks.append((rows + lines.base if lines.base else rows, cell, e_total, e_vis, kind == "em"))

    def register_lines(self, lines: _Lines, parent_rows, parent_lines: _Lines):
        """Give ``lines`` (secondary lines, one per entry of ``parent_rows``) global line indices after all lines
        registered so far, owned by the owners of the parent lines ``parent_rows`` of ``parent_lines``."""
        owner = np.concatenate(self.owner_parts)
        lines.base = self.n_lines
        self.owner_parts.append(owner[np.asarray(parent_rows) + parent_lines.base])
        self.n_lines += np.size(parent_rows)

    @property
    def owner(self) -> np.ndarray:
        return np.concatenate(self.owner_parts)


def _groups(energy, per_gev: float, fixed: int, n_sub: int, rng, n_min: int = 1):
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
    n = np.maximum(_em.spot_counts(energy, per_gev, rng), int(n_min))
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
    """EM (sub-)showers of ``energy`` (GeV) starting at cumulative depth ``start_q`` (X0) along ``lines`` ``rows``.

    Photons (``photon``) convert after an exponential depth into an e+e- pair sharing their energy (Bethe-Heitler,
    :func:`pcloud.sim.em.pair_share`); each lepton is an independent sub-shower on the photon's line. Spot budget per
    :func:`_groups` (``em_per_gev`` depth spots per GeV, at least ``em_min``), each depth spot split into
    ``em_core`` antithetic core sub-spots and ``em_lateral`` tail sub-spots (:func:`pcloud.sim.em.em_spots`) and
    :data:`pcloud.sim.halo.HALO_PER_SPOT` halo photons (:mod:`pcloud.sim.halo`). Core energies fluctuate with the
    GFlash-like quanta of :func:`pcloud.sim.fluctuations.quantise`, tail and halo energies through the soft-deposit
    roulette (:func:`pcloud.sim.fluctuations.roulette`). Visible mode uses GFlash's sampling-calorimeter
    parametrisation of the longitudinal and radial profiles. ``shower``: optional per-line overrides for
    :func:`pcloud.sim.em.em_spots` (a photon with a ``start_x0`` override is one e-like shower from there)."""
    med = sink.media
    k = spots["em_lateral"]
    n_core = spots["em_core"] if k > 0 else 1
    photon = np.broadcast_to(np.asarray(photon, dtype=bool), rows.shape)
    if shower is None and photon.any():
        ip, ie = np.nonzero(photon)[0], np.nonzero(~photon)[0]
        t_conv = _em.conversion_depth(ip.size, rng)
        x = _em.pair_share(ip.size, rng)
        rows = np.concatenate([rows[ie], rows[ip], rows[ip]])
        energy = np.concatenate([energy[ie], x * energy[ip], (1.0 - x) * energy[ip]])
        start_q = np.concatenate([start_q[ie], start_q[ip] + t_conv, start_q[ip] + t_conv])
        photon = np.zeros(rows.size, dtype=bool)
    pops = [p for p in _halo.EM_FAR if p.fraction > 0] if k > 0 else []
    gas = _halo.EM_NEUTRONS if k > 0 and _halo.EM_NEUTRONS.per_gev > 0 else None
    for idx, n_depth in _groups(energy, spots["em_per_gev"], spots["em"], 2 * n_core + k, rng, spots["em_min"]):
        r_g, e_g = rows[idx], energy[idx]
        seg0 = lines.invert(r_g, start_q[idx][:, None], "x0")[1][:, 0]
        seg0 = np.where(seg0 < 0, med.n_segments - 1, seg0)
        sh = None if shower is None else {key: np.asarray(v)[idx] for key, v in shower.items()}
        sampling = (med.fs[seg0], med.ehat[seg0]) if sink.visible else None
        sp = _em.em_spots(e_g, med.z_eff[seg0], med.ec_mev[seg0], n_depth, rng, photon=photon[idx], n_lateral=k,
                          shower=sh, repeat_depth=False, n_core=n_core, sampling=sampling)
        n_sub = sp["n_sub"]
        m = e_g.size
        # sub-spots of a depth spot share its depth: invert once per depth spot, broadcast over (M, n, n_sub)
        t_depth = sp["t_x0"] if k > 0 else sp["t_x0"][:, ::n_sub]
        s, seg = lines.invert(r_g, start_q[idx][:, None] + t_depth, "x0")
        s, seg = s[..., None], seg[..., None]
        sub = (m, -1, n_sub)
        r_mm = sp["r_rm"].reshape(sub) * _pad(med.moliere_mm).astype(sp["r_rm"].dtype)[seg]  # float32 sub-spots
        w = sp["weight"]
        if k == 0:
            e_spot = e_g[:, None, None] * (w.reshape(sub) if w.ndim == 2 else w.reshape(1, -1, n_sub))
        else:
            # far deposits first (their Poisson counts fix their energy); the GFlash spots get the rest exactly
            n_far, e_far = _far_counts(pops, e_g, rng)
            n_neu = np.minimum(rng.poisson(gas.per_gev * e_g), gas.max_per_shower) if gas else np.zeros(m, int)
            e_far = e_far + (n_neu * gas.steps * gas.deposit_gev if gas else 0.0)
            over = e_far > e_g                       # (sub-)showers too soft for their far deposits keep none
            if over.any():
                n_far = [(np.where(over, 0, n), sz[~np.repeat(over, n)]) for n, sz in n_far]
                n_neu = np.where(over, 0, n_neu)
                e_far = np.where(over, 0.0, e_far)
            target = e_g - e_far
            e_shape = e_g if sh is None or "shape_energy_gev" not in sh else np.asarray(sh["shape_energy_gev"])
            ratio = _fl.spot_energy_ratio(t_depth - sp["start_x0"][:, None], sp["alpha"][:, None],
                                          sp["tmax_x0"][:, None], med.z_eff[seg0][:, None], sink.visible)
            q_core = _fl.core_quantum_gev(e_shape[:, None], med.z_eff[seg0][:, None], ratio)[..., None]
            main = (w.reshape(sub) * target[:, None, None]).astype(np.float32)    # weights are (M, S) here
            nq = 2 * n_core            # core ring and inner tail ring: the dense body of the shower
            main[..., :nq] = _fl.quantise(main[..., :nq], q_core, rng)
            kept = _fl.roulette(main, _fl.SOFT_QUANTUM_GEV, rng)
            got = kept.sum(axis=(1, 2), dtype=np.float64)
            lost = (got <= 0) & (target > 0)   # a very soft sub-shower lost every spot: keep it unfluctuated
            if lost.any():
                kept[lost] = main[lost]
                got[lost] = kept[lost].sum(axis=(1, 2), dtype=np.float64)
            scale = np.where(got > 0, target / np.where(got > 0, got, 1.0), 0.0).astype(np.float32)
            e_spot = kept * scale[:, None, None]
        sink.add(lines, r_g, s, seg, r_mm, sp["phi"].reshape(sub), e_spot, "em")
        if k > 0:
            s2, seg2, w2 = s[..., 0], seg[..., 0], e_spot.sum(axis=2)
            for pop, (n, sizes) in zip(pops, n_far):
                i, s_e, seg_e = _spot_emission(s2, seg2, w2, n, rng)
                _far_points(sink, lines, r_g[i], s_e, seg_e, pop, sizes, rng)
            if gas:
                i, s_e, seg_e = _spot_emission(s2, seg2, w2, n_neu, rng)
                _neutron_points(sink, lines, r_g[i], s_e, seg_e, gas, rng)



def _far_counts(pops, energy, rng):
    """Far deposits of (sub-)showers ``energy`` (M,) for each population: Poisson(fraction E / quantum) deposits of
    exponential size (mean = the quantum; a compound Poisson law). Returns ([(counts (M,), sizes (K,) grouped by
    shower in order)], energy per shower (M,))."""
    out, total = [], np.zeros(np.size(energy))
    for pop in pops:
        lam = pop.fraction * np.asarray(energy) / pop.quantum_gev
        q = np.where(lam > pop.max_count, pop.fraction * np.asarray(energy) / pop.max_count, pop.quantum_gev)
        n = rng.poisson(np.minimum(lam, pop.max_count))
        x = rng.standard_exponential(int(n.sum()), dtype=np.float32)
        # per-shower sums of the exponential variates from the running sum at each shower's last deposit
        cum = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
        total += q * np.diff(cum[np.concatenate([[0], np.cumsum(n)])])
        if np.all(q == pop.quantum_gev):
            x *= np.float32(pop.quantum_gev)
        else:
            x *= np.repeat(q.astype(np.float32), n)
        out.append((n, x))
    return out, total


def _spot_emission(s_depth, seg_depth, w_depth, n, rng):
    """Emission points of ``n`` (per shower, (M,)) far deposits or neutrons, drawn from the shower's own
    longitudinal profile: its depth spots (exact importance-sampled strata of it) are picked by systematic sampling
    with probabilities proportional to their energies ``w_depth`` (M, n_depth) (one uniform offset per shower,
    point k at probability (k + U) / n). Returns flat arrays (K,): block row index, path length s and segment."""
    m, nd = w_depth.shape
    cum = np.cumsum(w_depth, axis=1)
    tot = cum[:, -1:]
    cum = np.where(tot > 0, cum / np.where(tot > 0, tot, 1.0), 1.0)
    c = np.floor(cum * n[:, None] + rng.random((m, 1)))             # points at or below each spot's upper edge
    c[:, -1] = n                                                     # exactly n per shower
    counts = np.diff(np.concatenate([np.zeros((m, 1)), np.minimum(c, n[:, None])], axis=1), axis=1)
    counts = np.maximum(counts, 0).astype(np.int64)
    flat = counts.ravel()
    return (np.repeat(np.arange(m), counts.sum(axis=1)), np.repeat(s_depth.ravel(), flat),
            np.repeat(seg_depth.ravel(), flat))


def _far_points(sink: _SpotSink, lines: _Lines, rows, s, seg, pop, sizes, rng, kind="em"):
    """Far deposits of one population (:class:`pcloud.sim.halo.FarDeposits`) from emission points (line ``rows``,
    path length ``s``, segment ``seg``; flat (K,) each), one deposit of energy ``sizes`` (K,) per point."""
    k = s.size
    if k == 0:
        return
    att = sink.media.att_mm
    dz, u1, u2 = _halo.far_offsets(k, att[0] if np.all(att == att[0]) else _pad(att)[seg], pop, rng)
    s_h = s + dz
    if lines.n_segments == 1:
        # one medium: a deposit in a cell is in it (the axis depth s_h of a displaced point does not decide that)
        seg_h = seg
    else:
        seg_h = np.where(seg >= 0, lines.segment_of(rows, s_h), -1)
    sink.add(lines, rows, s_h, seg_h, u1, u2, sizes, kind, xy=True)


def _neutron_points(sink: _SpotSink, lines: _Lines, rows, s, seg, gas, rng, kind="em"):
    """Neutron random walks (:class:`pcloud.sim.halo.NeutronGas`) from emission points (line ``rows``, ``s``,
    ``seg``; flat (K,) each, one neutron per point), ``gas.deposit_gev`` per scatter (the caller takes that energy
    from its shower)."""
    k = s.size
    if k == 0:
        return
    if gas.box_lambda > 0:
        dz, u1, u2 = _halo.neutron_box((k,), gas.steps, _pad(sink.media.lambda_mm)[seg] * gas.box_lambda, rng)
    else:
        dz, u1, u2 = _halo.neutron_walks((k,), gas.steps, _pad(sink.media.lambda_mm)[seg] * gas.step_lambda, rng)
    # the scatters of a neutron share its line: (K, steps) blocks broadcast the line's frame over the steps
    s_n = s[:, None] + dz
    if lines.n_segments == 1:        # one medium: a deposit located in a cell is in it (see _far_points)
        seg_n = seg[:, None]
    else:
        seg_n = np.where(seg[:, None] >= 0, lines.segment_at(rows, s_n), -1)
    sink.add(lines, rows, s_n, seg_n, u1, u2, np.float64(gas.deposit_gev), kind, xy=True)


def _track_block(sink: _SpotSink, lines: _Lines, rows, s_stop, charged, energy, n_track: int, rng=None,
                 n_delta: int = 0):
    """MIP ionisation from the front entry to s_stop; returns the energy lost (GeV) per line.

    ``n_track`` equal steps along the line, each with mean dE/dx of its segment, displaced from the line by multiple
    scattering (a Gaussian random walk of the direction with Highland's width, p = E; needs ``rng``). With
    ``n_delta`` > 0 (needs ``rng``)
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
    # multiple scattering: the track wanders off the line (Highland's theta_0 per step, PDG Review eq. 34.15);
    # a straight track on a cell boundary (the public CaloGAN beam at x = y = 0) shares its energy between the cells
    if rng is not None:
        step = (length / n_track)[:, None]
        x_rad = step / _pad(sink.media.x0_mm)[seg]
        theta0 = 0.0136 / np.maximum(energy, 1e-3)[:, None] * np.sqrt(x_rad) * (
            1.0 + 0.038 * np.log(np.maximum(x_rad, 1e-6)))
        theta0 = np.where(seg >= 0, np.maximum(theta0, 0.0), 0.0)
        kicks = rng.standard_normal((2,) + s.shape) * theta0
        ang = np.cumsum(kicks, axis=2)
        off = (np.cumsum(ang, axis=2) - 0.5 * ang) * step          # lateral offsets at the step midpoints (mm)
        ox, oy = off[0], off[1]
    else:
        ox = oy = np.zeros_like(s)
    if n_delta > 0 and rng is not None:
        lb = _em.lateral_bounds(n_delta)
        w = np.concatenate([[1.0 - DELTA_RAY_FRACTION], DELTA_RAY_FRACTION * np.diff(lb)])
        r_delta = _em.stratified_lateral(np.full(s.shape, DELTA_RAY_RADIUS_RM), lb, rng, u_max=0.999)
        r_rm = np.concatenate([np.zeros(s.shape + (1,)), r_delta], axis=2)
        s, seg = s[..., None], seg[..., None]
        r_mm = r_rm * _pad(sink.media.moliere_mm)[seg]
        phi = rng.random(r_mm.shape) * (2.0 * np.pi)
        px, py = r_mm * np.cos(phi) + ox[..., None], r_mm * np.sin(phi) + oy[..., None]
        sink.add(lines, rows, s, seg, np.hypot(px, py), np.arctan2(py, px), e[..., None] * w, "track")
    else:
        sink.add(lines, rows, s, seg, np.hypot(ox, oy), np.arctan2(oy, ox), e, "track")
    return loss * scale


def _pi0_showers(sink: _SpotSink, lines: _Lines, rows, q_int, e_em, a_b, d_b, n_spots: dict, rng):
    """The EM component of hadron showers as a few photon-like sub-showers (:func:`pcloud.sim.hadronic.pi0_split`):
    energy shares, production depths (the first at the interaction at lambda_I depth ``q_int``, the others along
    the Bock profile of shape ``a_b`` and rate ``d_b``) and directions tilted by p_T / E from the hadron's line.
    Each gets its own (secondary) line owned by the hadron's particle."""
    e_sub, x_lam, theta, parent = _had.pi0_split(e_em, a_b, d_b, rng)
    s, seg = lines.invert(rows[parent], (q_int[parent] + x_lam)[:, None], "lam")
    s, ok = s[:, 0], seg[:, 0] >= 0                     # produced beyond the back: leaks
    if not ok.any():
        return
    e_sub, theta, parent, s = e_sub[ok], theta[ok], parent[ok], s[ok]
    r = rows[parent]
    point = lines.origin[r] + s[:, None] * lines.direction[r]
    phi = rng.uniform(0.0, 2.0 * np.pi, r.size)
    tilt = np.cos(phi)[:, None] * lines.e1[r] + np.sin(phi)[:, None] * lines.e2[r]
    direction = np.cos(theta)[:, None] * lines.direction[r] + np.sin(theta)[:, None] * tilt
    sec = _Lines(lines.geometry, lines.media, point, direction, lines.window_eta[r])
    sink.register_lines(sec, r, lines)
    _em_block(sink, sec, np.arange(r.size), e_sub, True, np.zeros(r.size), n_spots, rng)


def _hadron_block(sink: _SpotSink, lines: _Lines, rows, energy, charged, pion, n_spots: dict, rng):
    """Hadrons (:mod:`pcloud.sim.hadronic`): MIP track to the first inelastic interaction (exponential in the pion
    interaction length for pions, the nuclear one otherwise), then an EM part (one photon-like sub-shower, converted
    into a pair) and the non-EM part: invisible energy, far deposits (backsplash, halo), evaporation neutrons and the
    Bock-profile hadronic spots, which get the rest of the visible energy exactly."""
    m = rows.size
    x_int = rng.exponential(1.0, m)
    s_pi, seg_pi = lines.invert(rows, x_int[:, None], "lpi")
    s_nu, seg_nu = lines.invert(rows, x_int[:, None], "lam")
    s_int = np.where(pion, s_pi[:, 0], s_nu[:, 0])
    interacts = np.where(pion, seg_pi[:, 0], seg_nu[:, 0]) >= 0
    s_stop = np.where(interacts, s_int, lines.s_edges[rows, -1])
    loss = _track_block(sink, lines, rows, s_stop, charged, energy, n_spots["track"], rng,
                        n_spots["track_lateral"])
    e_int = np.where(interacts, np.maximum(energy - loss, 0.0), 0.0)
    f_em = _had.sample_em_fraction(e_int, rng)
    e_em = f_em * e_int
    e_h = e_int - e_em
    f_inv = _had.sample_invisible_fraction(m, rng)
    q_int = lines.depth_at(rows, s_int, "lam")          # lambda_I depth of the interaction: start of the profile
    a_b, d_b = _had.bock_parameters(np.maximum(e_h, 1e-3))
    sel = np.nonzero(e_em > 0)[0]
    if sel.size:
        _pi0_showers(sink, lines, rows[sel], q_int[sel], e_em[sel], a_b[sel], d_b[sel], n_spots, rng)
    sel = np.nonzero(e_h > 0)[0]
    if sel.size == 0:
        return {"interacts": interacts, "f_em": f_em, "e_int": e_int, "f_inv": f_inv}
    k = n_spots["had_lateral"]
    e_vis = e_h * (1.0 - f_inv)                         # visible (not invisible) energy of the non-EM component
    # far deposits and neutrons first (Poisson counts fix their energy); the hadronic spots get the rest exactly
    pops = [p for p in _had.HAD_FAR if p.fraction > 0]
    gas = _had.HAD_NEUTRONS
    n_far, e_far = _far_counts(pops, np.where(e_h > 0, e_vis, 0.0), rng)
    n_neu = np.where(e_h > 0, np.minimum(rng.poisson(gas.per_gev * f_inv * e_h),
                                         gas.max_per_shower // max(gas.steps, 1)), 0)
    e_far = e_far + n_neu * gas.steps * gas.deposit_gev
    over = e_far > e_vis
    n_far = [(np.where(over, 0, n), sz[~np.repeat(over, n)]) for n, sz in n_far]
    n_neu = np.where(over, 0, n_neu)
    e_dep = e_vis - np.where(over, 0.0, e_far)

    def emission(n, depth=_had.NUCLEAR_DEPTH_LAMBDA):
        i = np.repeat(np.arange(m), n)
        x = rng.standard_exponential(i.size) * depth
        s_e, seg_e = lines.invert(rows[i], (q_int[i] + x)[:, None], "lam")
        return rows[i], s_e[:, 0], seg_e[:, 0]

    for p, (n, sizes) in zip(pops, n_far):
        _far_points(sink, lines, *emission(n), p, sizes, rng, "had")
    _neutron_points(sink, lines, *emission(n_neu, _had.NEUTRON_DEPTH_LAMBDA), gas, rng, "had")
    for idx, n_depth in _groups(e_dep[sel], n_spots["had_per_gev"], n_spots["had"], max(k, 1), rng):
        g = sel[idx]
        hs = _had.hadronic_spots(e_h[g], n_depth, rng, n_lateral=k)
        n_sub = max(k, 1)
        sub = (g.size, -1, n_sub)
        s, seg = lines.invert(rows[g], q_int[g][:, None] + hs["x_lambda"][:, ::n_sub], "lam")
        s, seg = s[..., None], seg[..., None]
        r_mm = hs["r_lambda"].reshape(sub) * _pad(sink.media.lambda_mm)[seg]
        w = hs["weight"]
        e_spot = e_dep[g][:, None, None] * (w.reshape(sub) if w.ndim == 2 else w.reshape(1, -1, n_sub))
        kept = _fl.roulette(e_spot, _fl.SOFT_QUANTUM_GEV, rng)
        got = kept.sum(axis=(1, 2))
        lost = (got <= 0) & (e_dep[g] > 0)
        if lost.any():
            kept[lost] = e_spot[lost]
            got[lost] = kept[lost].sum(axis=(1, 2))
        e_spot = kept * np.where(got > 0, e_dep[g] / np.where(got > 0, got, 1.0), 0.0)[:, None, None]
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
        elif int(v) != v or v < (1 if key in ("track", "em_core", "em_min") else 0):
            bad[key] = v
    if bad:
        raise ValueError(f"n_spots: expected em_per_gev/had_per_gev > 0 (depth spots per GeV), track, em_core, "
                         f"em_min >= 1 and "
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
    sink = _SpotSink(media, mode == "visible", rng, _cached(geometry)[2], owner)

    n_e, n_p, n_h = i_em.size, i_pi0.size, i_had.size
    r_em = np.arange(n_e + 2 * n_p)
    if r_em.size:
        photon = np.concatenate([pdg[i_em] == 22, np.ones(2 * n_p, dtype=bool)])
        _em_block(sink, lines, r_em, l_energy[r_em], photon, np.zeros(r_em.size), spots_n, rng)
    r_had = np.arange(n_e + 2 * n_p, n_e + 2 * n_p + n_h)
    if r_had.size:
        charged = np.isin(apdg[i_had], list(_had.CHARGED_HADRONS)).astype(np.float64)
        pion = np.isin(apdg[i_had], list(_had.PIONS))
        _hadron_block(sink, lines, r_had, l_energy[r_had], charged, pion, spots_n, rng)
    r_mu = np.arange(n_e + 2 * n_p + n_h, owner.size)
    if r_mu.size:
        _track_block(sink, lines, r_mu, lines.s_edges[r_mu, -1], np.ones(r_mu.size), l_energy[r_mu],
                     spots_n["track"], rng, spots_n["track_lateral"])

    if sink.blocks:
        rows = np.concatenate([b[0] for b in sink.blocks])
        e_tot = np.concatenate([b[2] for b in sink.blocks])
        owner = sink.owner
        identity = owner.size == p and np.array_equal(owner, np.arange(p))    # one line per particle
        spots = {"particle": rows if identity else owner[rows], "cell": np.concatenate([b[1] for b in sink.blocks]),
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
