"""Segmented calorimeter geometry: sections of regular cell grids stacked in depth.

A :class:`Geometry` is an ordered list of :class:`Section` objects. A section is a block of ``n_layers`` longitudinal
layers that share one transverse grid of ``n_u x n_v`` cells, so its images have shape ``(N, n_layers, n_u, n_v)``.
Three kinds of transverse grid exist:

``"xy"``      Cartesian cells; u = x, v = y in mm; depth axis z (mm). (CaloGAN, CLIC windows, CMS crystals.)
``"etaphi"``  projective cells in pseudorapidity and azimuth; depth axis is the transverse radius r (mm) (ATLAS).
``"ralpha"``  polar bins (radius r in mm, angle alpha in rad) around the shower axis; depth axis z (CaloChallenge).

Every cell has a *flat* index: sections in order, inside a section C order over (layer, u, v). Images can therefore
be flattened to ``(N, n_cells)`` and point clouds refer to cells by flat index.

Frames: for ``"xy"`` and ``"ralpha"`` geometries positions are given in the detector's local frame (z along the
depth axis, i.e. the radial direction of a collider). :meth:`Geometry.to_collider` maps them to collider
coordinates (z along the beam) following the CaloGAN convention of Paganini et al. (seed 004, eq. 1):
x_collider = z_local, y_collider = x_local, z_collider = y_local (+ a shift that centres a window at pseudorapidity
eta0, see :meth:`Geometry.to_collider`). ``"etaphi"`` geometries use collider coordinates directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .materials import Stack

GRID_KINDS = ("xy", "etaphi", "ralpha")


def wrap_phi(dphi):
    """Azimuth difference(s) wrapped into [-pi, pi) (rad); the one helper used wherever phi differences are taken."""
    return np.mod(np.asarray(dphi, dtype=np.float64) + np.pi, 2 * np.pi) - np.pi


@dataclass
class Section:
    """One block of layers sharing a transverse grid.

    Parameters
    ----------
    name: section name, also the key of its image (``"layer_0"``, ``"ECAL"``, ``"EMB2"``...).
    kind: one of ``"xy"``, ``"etaphi"``, ``"ralpha"``.
    layer_edges_mm: ``n_layers + 1`` increasing depths (z or r, mm) of the layer boundaries.
    u_edges, v_edges: bin edges of the transverse grid (mm for xy; eta / rad for etaphi; mm / rad for ralpha).
    stack: sampling structure (material) of the section.
    noise_sigma_gev: Gaussian electronic noise per cell (GeV), 0 for none.
    v_periodic: True when v is an azimuth that wraps around (etaphi full-phi, ralpha).
    """

    name: str
    kind: str
    layer_edges_mm: np.ndarray
    u_edges: np.ndarray
    v_edges: np.ndarray
    stack: Stack
    noise_sigma_gev: float = 0.0
    v_periodic: bool = False
    layer_names: list[str] | None = None

    def __post_init__(self):
        if self.kind not in GRID_KINDS:
            raise ValueError(f"section {self.name!r}: kind must be one of {GRID_KINDS}, got {self.kind!r}")
        self.layer_edges_mm = np.asarray(self.layer_edges_mm, dtype=np.float64)
        self.u_edges = np.asarray(self.u_edges, dtype=np.float64)
        self.v_edges = np.asarray(self.v_edges, dtype=np.float64)
        for label, e in (("layer_edges_mm", self.layer_edges_mm), ("u_edges", self.u_edges), ("v_edges", self.v_edges)):
            if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
                raise ValueError(f"section {self.name!r}: {label} must be >= 2 strictly increasing values")

    @property
    def n_layers(self) -> int:
        return self.layer_edges_mm.size - 1

    @property
    def n_u(self) -> int:
        return self.u_edges.size - 1

    @property
    def n_v(self) -> int:
        return self.v_edges.size - 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape of one event: (n_layers, n_u, n_v)."""
        return (self.n_layers, self.n_u, self.n_v)

    @property
    def n_cells(self) -> int:
        return self.n_layers * self.n_u * self.n_v

    @property
    def depth_mm(self) -> float:
        return float(self.layer_edges_mm[-1] - self.layer_edges_mm[0])

    def layer_depth_x0(self) -> np.ndarray:
        """Thickness of each layer in radiation lengths (along the depth axis)."""
        return np.diff(self.layer_edges_mm) / self.stack.x0_mm

    def layer_depth_lambda(self) -> np.ndarray:
        """Thickness of each layer in nuclear interaction lengths."""
        return np.diff(self.layer_edges_mm) / self.stack.lambda_i_mm

    def describe(self) -> dict:
        du = np.diff(self.u_edges)
        dv = np.diff(self.v_edges)
        unit_u, unit_v = {"xy": ("mm", "mm"), "etaphi": ("eta", "rad"), "ralpha": ("mm", "rad")}[self.kind]
        layers = []
        for i in range(self.n_layers):
            d = float(self.layer_edges_mm[i + 1] - self.layer_edges_mm[i])
            layers.append({
                "name": self.layer_names[i] if self.layer_names else f"{self.name}_{i}",
                "front_mm": float(self.layer_edges_mm[i]),
                "depth_mm": d,
                "depth_x0": d / self.stack.x0_mm,
                "depth_lambda": d / self.stack.lambda_i_mm,
            })
        uniform = lambda d: float(d[0]) if np.allclose(d, d[0]) else [float(x) for x in d]  # noqa: E731
        return {
            "name": self.name,
            "kind": self.kind,
            "n_layers": self.n_layers,
            "n_cells_u": self.n_u,
            "n_cells_v": self.n_v,
            "n_cells": self.n_cells,
            "cell_size_u": uniform(du),
            "cell_size_v": uniform(dv),
            "cell_size_units": [unit_u, unit_v],
            "u_range": [float(self.u_edges[0]), float(self.u_edges[-1])],
            "v_range": [float(self.v_edges[0]), float(self.v_edges[-1])],
            "front_mm": float(self.layer_edges_mm[0]),
            "depth_mm": self.depth_mm,
            "depth_x0": self.depth_mm / self.stack.x0_mm,
            "depth_lambda": self.depth_mm / self.stack.lambda_i_mm,
            "noise_sigma_gev": self.noise_sigma_gev,
            "material": self.stack.describe(),
            "layers": layers,
        }


@dataclass
class Geometry:
    """An ordered list of sections; see the module docstring for frames and flat cell indices."""

    name: str
    sections: list[Section]
    description: str = ""
    #: ``"local"`` (xy / ralpha geometries, local frame) or ``"collider"`` (etaphi).
    frame: str = "local"
    #: Extra information (z0, beam conventions, default gun settings) shown by ``pcloud geometry``.
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        names = [s.name for s in self.sections]
        if len(set(names)) != len(names):
            raise ValueError(f"geometry {self.name!r}: duplicate section names {names}")
        kinds = {s.kind for s in self.sections}
        if ("etaphi" in kinds) and len(kinds) > 1:
            raise ValueError(f"geometry {self.name!r}: cannot mix etaphi sections with {kinds - {'etaphi'}}")
        self.frame = "collider" if kinds == {"etaphi"} else "local"
        fronts = [s.layer_edges_mm[0] for s in self.sections]
        if any(np.diff(fronts) < 0):
            raise ValueError(f"geometry {self.name!r}: sections must be ordered by depth")

    # ------------------------------------------------------------------ bookkeeping
    def section(self, name: str) -> Section:
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(f"geometry {self.name!r} has no section {name!r}; sections: {self.section_names}")

    @property
    def section_names(self) -> list[str]:
        return [s.name for s in self.sections]

    @cached_property
    def section_offsets(self) -> np.ndarray:
        """Flat index of the first cell of each section, plus the total at the end."""
        return np.concatenate([[0], np.cumsum([s.n_cells for s in self.sections])]).astype(np.int64)

    @property
    def n_cells(self) -> int:
        return int(self.section_offsets[-1])

    @cached_property
    def layer_offsets(self) -> np.ndarray:
        """Global index of the first layer of each section."""
        return np.concatenate([[0], np.cumsum([s.n_layers for s in self.sections])]).astype(np.int64)

    @property
    def n_layers(self) -> int:
        return int(self.layer_offsets[-1])

    @cached_property
    def layer_fronts_mm(self) -> np.ndarray:
        """Front depth of every global layer (mm along the depth axis)."""
        return np.concatenate([s.layer_edges_mm[:-1] for s in self.sections])

    @cached_property
    def layer_backs_mm(self) -> np.ndarray:
        return np.concatenate([s.layer_edges_mm[1:] for s in self.sections])

    @cached_property
    def layer_section(self) -> np.ndarray:
        """Section index of every global layer."""
        return np.concatenate([np.full(s.n_layers, i) for i, s in enumerate(self.sections)]).astype(np.int64)

    # ------------------------------------------------------------------ cell table
    @cached_property
    def cells(self) -> dict[str, np.ndarray]:
        """Per flat cell: ``section``, ``layer`` (global), ``iu``, ``iv``, centre ``u``, ``v``, ``depth_mm``,
        sizes ``du``, ``dv``, ``thickness_mm``, local/collider ``x, y, z`` (mm), ``eta``, ``phi`` (window at eta 0),
        ``noise_sigma_gev``. Arrays of length :attr:`n_cells`, computed once."""
        cols: dict[str, list] = {k: [] for k in ("section", "layer", "iu", "iv", "u", "v", "du", "dv",
                                                 "depth_mm", "thickness_mm", "noise_sigma_gev")}
        for si, s in enumerate(self.sections):
            lay, iu, iv = np.meshgrid(np.arange(s.n_layers), np.arange(s.n_u), np.arange(s.n_v), indexing="ij")
            lay, iu, iv = lay.ravel(), iu.ravel(), iv.ravel()
            uc = 0.5 * (s.u_edges[1:] + s.u_edges[:-1])
            vc = 0.5 * (s.v_edges[1:] + s.v_edges[:-1])
            dc = 0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1])
            cols["section"].append(np.full(lay.size, si))
            cols["layer"].append(lay + self.layer_offsets[si])
            cols["iu"].append(iu)
            cols["iv"].append(iv)
            cols["u"].append(uc[iu])
            cols["v"].append(vc[iv])
            cols["du"].append(np.diff(s.u_edges)[iu])
            cols["dv"].append(np.diff(s.v_edges)[iv])
            cols["depth_mm"].append(dc[lay])
            cols["thickness_mm"].append(np.diff(s.layer_edges_mm)[lay])
            cols["noise_sigma_gev"].append(np.full(lay.size, s.noise_sigma_gev))
        out = {k: np.concatenate(v) for k, v in cols.items()}
        for k in ("section", "layer", "iu", "iv"):
            out[k] = out[k].astype(np.int64)
        x, y, z = self.uvd_to_xyz(out["section"], out["u"], out["v"], out["depth_mm"])
        out["x"], out["y"], out["z"] = x, y, z
        eta, phi = self.xyz_to_etaphi(x, y, z)
        out["eta"], out["phi"] = eta, phi
        return out

    def uvd_to_xyz(self, section: np.ndarray, u: np.ndarray, v: np.ndarray, depth: np.ndarray):
        """Cell-grid coordinates (u, v, depth) to positions (mm) in the geometry's frame."""
        kinds = np.array([GRID_KINDS.index(s.kind) for s in self.sections])[section]
        x = np.where(kinds == 0, u, 0.0)
        y = np.where(kinds == 0, v, 0.0)
        z = np.array(depth, dtype=np.float64, copy=True)
        ep = kinds == 1
        if ep.any():  # etaphi: u = eta, v = phi, depth = r
            x = np.where(ep, depth * np.cos(v), x)
            y = np.where(ep, depth * np.sin(v), y)
            z = np.where(ep, depth * np.sinh(u), z)
        ra = kinds == 2
        if ra.any():  # ralpha: u = r, v = alpha
            x = np.where(ra, u * np.cos(v), x)
            y = np.where(ra, u * np.sin(v), y)
        return x, y, z

    def to_collider(self, x, y, z, window_eta=0.0):
        """Local-frame positions (mm) to collider coordinates (mm).

        Local frame (seed 004, eq. 1): x_C = z_L, y_C = x_L, z_C = y_L. A window centred at pseudorapidity
        ``window_eta`` is shifted along the beam so that its axis is projective: z_C += z_L * sinh(window_eta).
        Collider-frame geometries are returned unchanged.
        """
        if self.frame == "collider":
            return np.asarray(x), np.asarray(y), np.asarray(z)
        x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
        return z, x, y + z * np.sinh(window_eta)

    def xyz_to_etaphi(self, x, y, z, window_eta=0.0):
        """Pseudorapidity and azimuth of positions given in the geometry's frame."""
        xc, yc, zc = self.to_collider(x, y, z, window_eta)
        rt = np.hypot(xc, yc)
        return np.arcsinh(zc / np.maximum(rt, 1e-9)), np.arctan2(yc, xc)

    # ------------------------------------------------------------------ locating positions
    def depth_of(self, x, y, z) -> np.ndarray:
        """Depth-axis coordinate (mm) of frame positions: z for local frames, r = hypot(x, y) for collider."""
        if self.frame == "collider":
            return np.hypot(x, y)
        return np.asarray(z, dtype=np.float64)

    def locate(self, x, y, z) -> np.ndarray:
        """Flat cell index of each position (mm, geometry frame); -1 outside every cell. Vectorised.

        ``x, y, z`` are scalars or arrays broadcasting to one shape; the result has that shape (int64). A position
        belongs to the cell whose bins hold it with lower edges inclusive, ``[lo, hi)``, in depth (z, or
        r = sqrt(x^2 + y^2) for collider frames) and in (u, v): (x, y) for ``xy``, (eta, phi) with
        eta = asinh(z / r) and phi = atan2(y, x) for ``etaphi``, (r, alpha = atan2(y, x)) for ``ralpha``. Periodic
        azimuths are wrapped into the section's v range first. Non-finite positions give -1.

        Uniform bins are found arithmetically, floor((u - u0) / du), exactly as the reference per-section binning
        (``scripts/bench_locate.py``); positions
        within a few units of the last place (~1e-15 relative) of a bin edge may therefore land in the
        neighbouring bin compared with a search on the edge values (see :class:`_Locator` for the details).
        """
        x, y, z = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                      np.asarray(z, dtype=np.float64))
        shape = x.shape
        x, y, z = x.ravel(), y.ravel(), z.ravel()
        return self._locate_flat(x, y, z).reshape(shape)

    def cell_at(self, layer, u, v) -> np.ndarray:
        """Flat index of the cell of global layer ``layer`` whose (u, v) bins hold (u, v); -1 outside. Vectorised.

        (u, v) are the section's grid coordinates ((eta, phi) for ``etaphi``), bins ``[lo, hi)`` found on the edge
        values with ``searchsorted``; periodic azimuths are wrapped into the section's v range first. Used to map
        cells of another description of the same detector (e.g. ATLAS CellGeo centres) onto this geometry.
        """
        layer, u, v = np.broadcast_arrays(np.asarray(layer, np.int64), np.asarray(u, np.float64),
                                          np.asarray(v, np.float64))
        out = np.full(layer.shape, -1, np.int64)
        for si, s in enumerate(self.sections):
            lay0 = self.layer_offsets[si]
            m = (layer >= lay0) & (layer < lay0 + s.n_layers)
            if not m.any():
                continue
            uu, vv = u[m], v[m]
            if s.v_periodic:
                vv = s.v_edges[0] + np.mod(vv - s.v_edges[0], s.v_edges[-1] - s.v_edges[0])
            iu = np.searchsorted(s.u_edges, uu, side="right") - 1
            iv = np.searchsorted(s.v_edges, vv, side="right") - 1
            ok = (iu >= 0) & (iu < s.n_u) & (iv >= 0) & (iv < s.n_v) & np.isfinite(uu) & np.isfinite(vv)
            flat = self.section_offsets[si] + ((layer[m] - lay0) * s.n_u + iu) * s.n_v + iv
            out[m] = np.where(ok, flat, -1)
        return out

    @cached_property
    def _locator(self) -> "_Locator":
        """Per-layer lookup tables of :meth:`locate`, built on first use (the geometry is treated as immutable)."""
        return _Locator(self)

    def _locate_flat(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """1-D float64 positions to flat indices, in blocks of :data:`_LOCATE_CHUNK` so temporaries stay in cache."""
        out = np.empty(x.shape, dtype=np.int64)
        loc = self._locator
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for a in range(0, x.size, _LOCATE_CHUNK):
                b = a + _LOCATE_CHUNK
                loc(x[a:b], y[a:b], z[a:b], out[a:b])
        return out

    # ------------------------------------------------------------------ material along depth
    def material_profile(self) -> dict[str, np.ndarray]:
        """Piecewise material along the depth axis from the first front to the last back.

        Returns ``edges_mm`` (K+1), and per segment ``x0_mm``, ``lambda_mm``, ``moliere_mm``, ``section`` (-1 for
        dead material between sections, modelled as aluminium-like cryostat/support: X0 = 89 mm, lambda = 397 mm).
        """
        from .materials import ALUMINIUM

        edges, x0, lam, rm, sec = [float(self.sections[0].layer_edges_mm[0])], [], [], [], []
        for si, s in enumerate(self.sections):
            if s.layer_edges_mm[0] > edges[-1] + 1e-9:
                edges.append(float(s.layer_edges_mm[0]))
                x0.append(ALUMINIUM.x0_mm)
                lam.append(ALUMINIUM.lambda_i_mm)
                rm.append(ALUMINIUM.moliere_mm)
                sec.append(-1)
            edges.append(float(s.layer_edges_mm[-1]))
            x0.append(s.stack.x0_mm)
            lam.append(s.stack.lambda_i_mm)
            rm.append(s.stack.moliere_mm)
            sec.append(si)
        return {"edges_mm": np.array(edges), "x0_mm": np.array(x0), "lambda_mm": np.array(lam),
                "moliere_mm": np.array(rm), "section": np.array(sec, dtype=np.int64)}

    def total_depth(self) -> dict[str, float]:
        p = self.material_profile()
        w = np.diff(p["edges_mm"])
        return {"depth_mm": float(w.sum()), "depth_x0": float((w / p["x0_mm"]).sum()),
                "depth_lambda": float((w / p["lambda_mm"]).sum())}

    # ------------------------------------------------------------------ images
    def empty_images(self, n_events: int, dtype=np.float32) -> dict[str, np.ndarray]:
        return {s.name: np.zeros((n_events, *s.shape), dtype=dtype) for s in self.sections}

    def flatten_images(self, images: dict[str, np.ndarray]) -> np.ndarray:
        """Dict of per-section images ``(N, L, U, V)`` to one ``(N, n_cells)`` array in flat-index order."""
        parts = []
        n = None
        for s in self.sections:
            if s.name not in images:
                raise KeyError(f"geometry {self.name!r}: image for section {s.name!r} missing; got {sorted(images)}")
            a = np.asarray(images[s.name])
            if a.ndim == 3 and s.n_layers == 1:
                a = a[:, None]
            if a.shape[1:] != s.shape:
                raise ValueError(f"geometry {self.name!r}: section {s.name!r} expects images of shape (N, {s.shape})"
                                 f", found {a.shape}")
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"geometry {self.name!r}: section {s.name!r} has {a.shape[0]} events, expected {n}")
            parts.append(a.reshape(a.shape[0], -1))
        return np.concatenate(parts, axis=1)

    def unflatten_images(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`flatten_images`."""
        flat = np.asarray(flat)
        if flat.ndim != 2 or flat.shape[1] != self.n_cells:
            raise ValueError(f"geometry {self.name!r}: expected (N, {self.n_cells}) flat images, found {flat.shape}")
        return {s.name: flat[:, a:b].reshape(-1, *s.shape)
                for s, a, b in zip(self.sections, self.section_offsets[:-1], self.section_offsets[1:])}

    # ------------------------------------------------------------------ description
    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "frame": self.frame,
            "n_sections": len(self.sections),
            "n_layers": self.n_layers,
            "n_cells": self.n_cells,
            **self.total_depth(),
            "info": self.info,
            "sections": [s.describe() for s in self.sections],
        }


# ---------------------------------------------------------------------------------------------------- fast locate
#: Positions per block in :meth:`Geometry._locate_flat`: the ~10 temporaries of a block stay in cache (measured
#: on the 2-core dev machine: 16k-64k best, 1M blocks ~1.7x slower, 4k blocks ~1.4x slower from call overhead).
_LOCATE_CHUNK = 65536
#: Largest grid (cells per boundary array) of the exact table search; beyond it np.searchsorted is used.
_MAX_GRID_CELLS = 1 << 18
#: Layer boundaries up to this many are searched by counting comparisons (~0.2 ns per boundary and position).
_FEW_EDGES = 16


def _is_uniform(edges: np.ndarray) -> bool:
    """The uniformity test of the reference per-section binning (``scripts/bench_locate.py``) (bins found
    arithmetically when it holds)."""
    w = np.diff(edges)
    return bool(np.allclose(w, w[0], rtol=1e-9, atol=0))


def _scalar_or(a: np.ndarray):
    """One value when all entries are equal (no gather needed), else the array."""
    return a[0] if np.all(a == a[0]) else a


def _at(p, g):
    """Per-row parameter p (scalar or table) at row indices g."""
    return p if np.ndim(p) == 0 else p.take(g)


class _GridSearch:
    """Exact ``np.searchsorted(b_r, x, side="right")`` on several increasing boundary arrays ``b_r`` (one per row),
    for any mix of rows, in O(1) per value.

    Each row's range [b_0, b_n] is divided into M uniform grid cells of width h <= (smallest gap) / 3, and a table
    gives the count k of boundaries <= the lower end of each cell. A value's grid cell is found arithmetically;
    since at most one boundary lies between a value and the lower end of its (possibly off-by-one, through
    rounding) cell, the tabled k is off by at most one and one comparison with each neighbouring *actual*
    boundary makes it exact: for boundaries b_0 < ... < b_{n-1} the result k satisfies b_{k-1} <= x < b_k with
    b_{-1} = -inf and b_n = +inf, i.e. k = np.searchsorted(b, x, side="right") (+-inf included), except that NaN
    gives k = 0 instead of n. :meth:`build` returns ``None`` when a grid would exceed :data:`_MAX_GRID_CELLS`
    cells (callers then use ``np.searchsorted``).
    """

    @classmethod
    def build(cls, rows: list[np.ndarray]) -> "_GridSearch | None":
        self = cls()
        luts, bext, m, lo, scale, lut_off, b_off = [], [], [], [], [], [], []
        n_lut = n_b = 0
        for b in rows:
            span = float(b[-1] - b[0])
            cells = int(np.ceil(3.0 * span / float(np.diff(b).min()))) + 1
            if cells > _MAX_GRID_CELLS:
                return None
            sc = cells / span
            lut = np.empty(cells + 2, dtype=np.int64)
            lut[0] = 0                                                   # below the grid (and NaN)
            lut[1:-1] = np.searchsorted(b, b[0] + np.arange(cells) / sc, side="right")
            lut[-1] = b.size                                             # beyond the grid
            luts.append(lut)
            # bext[k] = b_{k-1}; the pads are never crossed (x < -inf and x >= NaN are always False, also for
            # x = +-inf), so k stays in [0, n]
            bext.append(np.concatenate([[-np.inf], b, [np.nan]]))
            m.append(cells)
            lo.append(b[0])
            scale.append(sc)
            lut_off.append(n_lut)
            b_off.append(n_b)
            n_lut += lut.size
            n_b += b.size + 2
        self.lut = np.concatenate(luts)
        self.bext = np.concatenate(bext)
        self.m1 = _scalar_or(np.asarray(m, dtype=np.float64) + 1.0)
        self.lo = _scalar_or(np.asarray(lo))
        self.scale = _scalar_or(np.asarray(scale))
        self.lut_off = _scalar_or(np.asarray(lut_off, dtype=np.int64))
        self.b_off = _scalar_or(np.asarray(b_off, dtype=np.int64))
        return self

    def __call__(self, g, x: np.ndarray) -> np.ndarray:
        t = (x - _at(self.lo, g)) * _at(self.scale, g)
        t += 1.0
        np.fmax(t, 0.0, out=t)                                           # NaN -> 0
        np.fmin(t, _at(self.m1, g), out=t)
        k = self.lut.take(t.astype(np.int64) + _at(self.lut_off, g))     # candidate, off by <= 1
        kb = k + _at(self.b_off, g)
        k += x >= self.bext.take(kb + 1)
        k -= x < self.bext.take(kb)
        return k


class _Axis:
    """Bin index along one transverse axis (u or v) for every row (global layer + 1; row 0 is unused padding).

    All rows uniform: i = floor((x - e_0) / (e_1 - e_0)), valid when 0 <= i < n and x < e_n, i.e. exactly
    the reference per-section binning (``scripts/bench_locate.py``). Otherwise an exact edge search for every row
    (:class:`_GridSearch`, or
    ``np.searchsorted`` per distinct edge array when the grid would be too large), which equals
    the reference per-section binning (``scripts/bench_locate.py``) for the non-uniform rows and differs for uniform
    rows of such an axis only for values
    within rounding (~1e-15 relative) of an edge.
    """

    def __init__(self, rows: list[np.ndarray]):
        self.n = _scalar_or(np.array([e.size - 1 for e in rows], dtype=np.int64))
        self.uniform = all(_is_uniform(e) for e in rows)
        if self.uniform:
            self.e0 = _scalar_or(np.array([e[0] for e in rows]))
            self.w0 = _scalar_or(np.array([e[1] - e[0] for e in rows]))
            self.e_hi = _scalar_or(np.array([e[-1] for e in rows]))
            self.nf = _scalar_or(np.array([e.size - 1.0 for e in rows]))
            return
        self.grid = _GridSearch.build(rows)
        if self.grid is None:                                            # one searchsorted per distinct edge array
            keys = [e.tobytes() for e in rows]
            uniq = list(dict.fromkeys(keys))
            self.group = np.array([uniq.index(k) for k in keys], dtype=np.int64)
            self.group_edges = [rows[keys.index(k)] for k in uniq]

    def __call__(self, g, x: np.ndarray):
        """(bin index, valid) of values x in rows g; the index is arbitrary where not valid."""
        if self.uniform:
            # t = (x - e0) / w0; floor(t) in [0, n) <=> 0 <= t < n, and floor = truncation for t >= 0
            t = x - _at(self.e0, g)
            t /= _at(self.w0, g)
            nf = _at(self.nf, g)
            ok = t >= 0.0
            ok &= t < nf
            ok &= x < _at(self.e_hi, g)
            np.clip(t, -1.0, nf, out=t)                                  # keeps the int cast in range
            return t.astype(np.int64), ok
        if self.grid is not None:
            i = self.grid(g, x) - 1
        elif len(self.group_edges) == 1:
            i = np.searchsorted(self.group_edges[0], x, side="right") - 1
        else:
            i = np.empty(x.shape, dtype=np.int64)
            grp = self.group.take(g)
            for gi, e in enumerate(self.group_edges):
                m = np.flatnonzero(grp == gi)
                i[m] = np.searchsorted(e, x[m], side="right") - 1
        return i, (i >= 0) & (i < _at(self.n, g))


class _Locator:
    """Tables of :meth:`Geometry.locate`, one row per global layer, used for all positions at once.

    1. depth d (z, or r = sqrt(x^2 + y^2) in the collider frame) -> global layer: an exact search over the sorted
       layer fronts and backs (counting comparisons, or :class:`_GridSearch`) and a table from "number of
       boundaries <= d" to layer (0 in gaps, before the front and beyond the back; else layer + 1);
    2. transverse coordinates computed once per position (no per-section loop): eta = asinh(z / max(r, 1e-9)),
       phi = atan2(y, x) for etaphi; r, alpha = atan2(y, x) for ralpha; x, y for xy;
    3. periodic azimuths wrapped into [v_0, v_0 + period) with one conditional add/subtract of the period (the
       same floating-point result as ``v_0 + np.mod(v - v_0, period)`` for atan2 values; np.mod otherwise);
    4. bin indices per axis from per-row parameters gathered by layer (:class:`_Axis`), and
       flat = section offset + ((layer in section) * n_u + i_u) * n_v + i_v.

    Differences from the per-section reference (``np.hypot`` depth and the reference per-section binning
    (``scripts/bench_locate.py``) per section): only
    for positions within a few ulp (~1e-15 relative) of a bin or layer edge, because r is computed as
    sqrt(x^2 + y^2) instead of hypot (1 ulp apart at most) and, for non-uniform axes that also have uniform rows,
    uniform rows use the edge search. Everything is float64: float32 eta/phi would move ~1e-7 relative and
    change the cell of ~1 position in 10^4 near edges, which is not worth the ~2 ns saved per position here.
    """

    def __init__(self, geometry: Geometry):
        secs = geometry.sections
        self.collider = geometry.frame == "collider"
        # ---- depth -> global layer
        fronts = np.asarray(geometry.layer_fronts_mm, dtype=np.float64)
        backs = np.asarray(geometry.layer_backs_mm, dtype=np.float64)
        bounds = np.unique(np.concatenate([fronts, backs]))
        self.bounds = bounds
        # layer (+1) of the slot [bounds[k-1], bounds[k]) by the reference rule: last front <= d, inside if d < back
        gl = np.searchsorted(fronts, bounds, side="right") - 1
        inside = (gl >= 0) & (bounds < backs[np.maximum(gl, 0)])
        self.row_of_k = np.concatenate([[0], np.where(inside, gl + 1, 0)]).astype(np.int64)
        self.few_bounds = bounds.size <= _FEW_EDGES
        self.depth_grid = None if self.few_bounds else _GridSearch.build([bounds])
        # ---- per-row (global layer + 1) tables; row 0 repeats row 1 so that equal rows collapse to scalars
        rows = [(si, lay) for si, s in enumerate(secs) for lay in range(s.n_layers)]
        rows = [rows[0]] + rows
        sec_of = [secs[si] for si, _ in rows]
        self.u = _Axis([s.u_edges for s in sec_of])
        self.v = _Axis([s.v_edges for s in sec_of])
        self.base = _scalar_or(np.array([geometry.section_offsets[si] + lay * secs[si].n_u * secs[si].n_v
                                         for si, lay in rows], dtype=np.int64))
        self.nv = _scalar_or(np.array([s.n_v for s in sec_of], dtype=np.int64))
        kinds = {s.kind for s in secs}
        self.polar = "ralpha" in kinds
        self.mixed = None
        if kinds == {"xy", "ralpha"}:
            self.mixed = np.array([s.kind == "ralpha" for s in sec_of])
        # ---- periodic wrap: v0 and period per row (0, 0 for non-periodic rows: the wrap is then the identity)
        per = [s.v_periodic for s in sec_of]
        self.wrap = any(per)
        if self.wrap:
            v0 = np.array([s.v_edges[0] if p else 0.0 for s, p in zip(sec_of, per)])
            period = np.array([s.v_edges[-1] - s.v_edges[0] if p else 0.0 for s, p in zip(sec_of, per)])
            # one add/subtract suffices when v - v0 stays in [-period, 2 period): atan2 values lie in [-pi, pi]
            p = np.array(per)
            angular = all(s.kind != "xy" for s, q in zip(sec_of, per) if q)
            lo_w, hi_w = -np.pi - v0[p], np.pi - v0[p]                  # range of v - v0 for periodic rows
            self.wrap_once = angular and bool(np.all((lo_w >= -period[p]) & (hi_w < 2 * period[p])))
            self.wrap_low = bool(np.any(lo_w < 0.0))                     # some v - v0 can be negative
            self.v0 = _scalar_or(v0)
            self.period = _scalar_or(period)
            self.periodic = _scalar_or(np.array(per))

    def _rows(self, d: np.ndarray) -> np.ndarray:
        """Row (global layer + 1, 0 outside every layer) of each depth."""
        if self.few_bounds:                                               # count boundaries <= d (int8)
            k = (d >= self.bounds[0]).view(np.int8)
            for b in self.bounds[1:]:
                k = k + (d >= b).view(np.int8)
        elif self.depth_grid is not None:
            k = self.depth_grid(0, d)
        else:                                                            # NaN sorts last: k = n, outside
            k = np.searchsorted(self.bounds, d, side="right")
        return self.row_of_k.take(k)

    def _wrap(self, g, v: np.ndarray) -> np.ndarray:
        v0, period = _at(self.v0, g), _at(self.period, g)
        if not self.wrap_once:
            return np.where(_at(self.periodic, g), v0 + np.mod(v - v0, period), v)
        w = v - v0
        if self.wrap_low:
            m = w < 0.0
            if m.any():
                w[m] += period if np.ndim(period) == 0 else period[m]
        m = w >= period
        if m.any():
            w[m] -= period if np.ndim(period) == 0 else period[m]
        w += v0
        return w

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, out: np.ndarray) -> None:
        if self.collider:
            r = x * x
            r += y * y
            np.sqrt(r, out=r)
            g = self._rows(r)
            np.maximum(r, 1e-9, out=r)
            u = np.divide(z, r, out=r)
            np.arcsinh(u, out=u)
            v = np.arctan2(y, x)
        else:
            g = self._rows(z)
            if self.polar:
                u = x * x
                u += y * y
                np.sqrt(u, out=u)
                v = np.arctan2(y, x)
                if self.mixed is not None:
                    m = self.mixed.take(g)
                    u = np.where(m, u, x)
                    v = np.where(m, v, y)
            else:
                u, v = x, y
        if self.wrap:
            v = self._wrap(g, v)
        iu, ok = self.u(g, u)
        iv, ok_v = self.v(g, v)
        ok &= ok_v
        ok &= g > 0
        iu *= _at(self.nv, g)
        iu += _at(self.base, g)
        iu += iv
        out[...] = np.where(ok, iu, -1)
