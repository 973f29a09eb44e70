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
        """Flat cell index of each position (mm, geometry frame); -1 outside every cell. Vectorised."""
        x, y, z = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                      np.asarray(z, dtype=np.float64))
        shape = x.shape
        x, y, z = x.ravel(), y.ravel(), z.ravel()
        return self._locate_flat(x, y, z).reshape(shape)

    def _locate_flat(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = self.depth_of(x, y, z)
        gl = np.searchsorted(self.layer_fronts_mm, d, side="right") - 1
        inside = (gl >= 0) & (d < self.layer_backs_mm[np.clip(gl, 0, None)])
        out = np.full(d.shape, -1, dtype=np.int64)
        if not inside.any():
            return out
        sec = np.where(inside, self.layer_section[np.clip(gl, 0, None)], -1)
        for si in np.unique(sec[sec >= 0]):
            s = self.sections[si]
            m = np.nonzero(sec == si)[0]
            if s.kind == "xy":
                u, v = x[m], y[m]
            elif s.kind == "etaphi":
                rt = np.hypot(x[m], y[m])
                u, v = np.arcsinh(z[m] / np.maximum(rt, 1e-9)), np.arctan2(y[m], x[m])
            else:
                u, v = np.hypot(x[m], y[m]), np.arctan2(y[m], x[m])
            if s.v_periodic:
                period = s.v_edges[-1] - s.v_edges[0]
                v = s.v_edges[0] + np.mod(v - s.v_edges[0], period)
            iu = _bin_index(s.u_edges, u)
            iv = _bin_index(s.v_edges, v)
            ok = (iu >= 0) & (iv >= 0)
            lay = gl[m] - self.layer_offsets[si]
            flat = self.section_offsets[si] + (lay * s.n_u + iu) * s.n_v + iv
            out[m[ok]] = flat[ok]
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


def _bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the bin holding each value (-1 outside). Uses arithmetic for uniform bins, searchsorted otherwise."""
    n = edges.size - 1
    widths = np.diff(edges)
    if np.allclose(widths, widths[0], rtol=1e-9, atol=0):
        i = np.floor((values - edges[0]) / widths[0]).astype(np.int64)
    else:
        i = np.searchsorted(edges, values, side="right") - 1
    return np.where((i >= 0) & (i < n) & (values >= edges[0]) & (values < edges[-1]), i, -1)
