"""Event displays of point clouds: a 3D view plus one 2D panel per calorimeter section.

The 3D panel shows every point at its physical position (mm), marker area and colour by log10(energy / GeV).
The 2D panels show, per section, the energy summed over the section's layers in its own cell grid
(x-y in mm for Cartesian sections, eta-phi for projective ones, r-alpha drawn in x-y), so the cell granularity
is visible. Track points (type 1/2) are drawn as crosses.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

CELL = 0


def _np(event, key, default=None):
    try:
        return np.asarray(event[key])
    except (KeyError, ValueError, AttributeError):
        if default is None:
            raise
        return default


def _point_columns(event) -> dict:
    """Per-point columns of one cloud event (or its ``points``): energy, type, x, y, z, cell_id and the cell mask."""
    fields = getattr(event, "fields", [])
    if "points" in fields:
        event = event["points"]
    energy = _np(event, "energy").astype(float)
    ptype = _np(event, "type", np.zeros(energy.size, int))
    x, y, z = (_np(event, k).astype(float) for k in ("x", "y", "z"))
    cell_id = _np(event, "cell_id", np.full(energy.size, -1)).astype(np.int64)
    return {"points": event, "energy": energy, "type": ptype, "x": x, "y": y, "z": z, "cell_id": cell_id,
            "is_cell": (ptype == CELL) & (cell_id >= 0)}


def _sections_to_show(geometry, pts: dict) -> list[int]:
    """Sections that get a 2D panel: all, or the six with most energy when the geometry has more."""
    n_sec = len(geometry.sections)
    show_secs = [i for i in range(n_sec)]
    if n_sec > 6:  # keep the figure readable: the six sections with most energy
        is_cell, energy = pts["is_cell"], pts["energy"]
        sec_e = np.bincount(geometry.cells["section"][pts["cell_id"][is_cell]], weights=energy[is_cell],
                            minlength=n_sec)
        show_secs = sorted(np.argsort(sec_e)[::-1][:6].tolist())
    return show_secs


def _draw_3d(fig, nrows: int, ncols: int, geometry, pts: dict) -> None:
    """The 3D panel: cells with positive energy by log10(E), track points as red crosses."""
    energy, is_cell, x, y, z = pts["energy"], pts["is_cell"], pts["x"], pts["y"], pts["z"]
    ax = fig.add_subplot(nrows, ncols, 1, projection="3d")
    e_pos = np.clip(energy, 1e-6, None)
    cm = is_cell & (energy > 0)
    if cm.any():
        sc = ax.scatter(z[cm], x[cm], y[cm], c=np.log10(e_pos[cm]), s=4 + 40 * (e_pos[cm] / e_pos[cm].max()),
                        cmap="viridis", alpha=0.8, linewidths=0)
        fig.colorbar(sc, ax=ax, shrink=0.6, pad=0.1, label="log10(E / GeV)")
    tm = pts["type"] != CELL
    if tm.any():
        ax.scatter(z[tm], x[tm], y[tm], marker="x", c="red", s=30, label="track points")
        ax.legend(loc="upper left", fontsize=7)
    ax.set_xlabel("z (mm)" if geometry.frame == "local" else "z (mm)")
    ax.set_ylabel("x (mm)")
    ax.set_zlabel("y (mm)")
    ax.set_title(f"3D view: {int(is_cell.sum())} cells, {energy[is_cell].sum():.3g} GeV", fontsize=9)


def _section_image(geometry, si: int, pts: dict) -> np.ndarray:
    """Energy of the section's cells summed over its layers, (n_u, n_v)."""
    s, cells, cell_id, energy = geometry.sections[si], geometry.cells, pts["cell_id"], pts["energy"]
    m = pts["is_cell"] & (cells["section"][np.clip(cell_id, 0, None)] == si)
    img = np.zeros((s.n_u, s.n_v))
    np.add.at(img, (cells["iu"][cell_id[m]], cells["iv"][cell_id[m]]), energy[m])
    return img


def _draw_ralpha(a, s, img, norm):
    """Polar (r, alpha) section drawn in x-y; each angular bin subdivided so that rings with few (or one) alpha
    bins are drawn as round sectors."""
    sub = max(1, int(np.ceil(64 / s.n_v)))
    a_edges = np.concatenate([np.linspace(s.v_edges[i], s.v_edges[i + 1], sub + 1)[:-1] for i in range(s.n_v)]
                             + [s.v_edges[-1:]])
    r, al = np.meshgrid(s.u_edges, a_edges, indexing="ij")
    pc = a.pcolormesh(r * np.cos(al), r * np.sin(al), np.ma.masked_equal(np.repeat(img, sub, axis=1), 0),
                      norm=norm, cmap="viridis")
    a.set_xlabel("x (mm)")
    a.set_ylabel("y (mm)")
    a.set_aspect("equal")
    return pc


def _draw_grid(a, s, img, norm, has_energy: bool, zoom_etaphi: float, center_etaphi):
    """xy or eta-phi section in its own grid; eta-phi panels zoom on ``center_etaphi`` or the hottest cell."""
    pc = a.pcolormesh(s.u_edges, s.v_edges, np.ma.masked_equal(img, 0).T, norm=norm, cmap="viridis")
    if s.kind == "etaphi":
        a.set_xlabel("eta")
        a.set_ylabel("phi (rad)")
        if center_etaphi is not None:  # zoom on the incident direction
            uc, vc = center_etaphi
        elif has_energy:  # zoom on the hottest cell
            iu, iv = np.unravel_index(np.argmax(img), img.shape)
            uc = 0.5 * (s.u_edges[iu] + s.u_edges[iu + 1])
            vc = 0.5 * (s.v_edges[iv] + s.v_edges[iv + 1])
        if center_etaphi is not None or has_energy:
            a.set_xlim(uc - zoom_etaphi, uc + zoom_etaphi)
            a.set_ylim(vc - zoom_etaphi, vc + zoom_etaphi)
    else:
        a.set_xlabel("x (mm)")
        a.set_ylabel("y (mm)")
        a.set_aspect("equal")
    return pc


def _draw_section(fig, a, geometry, si: int, pts: dict, zoom_etaphi: float, center_etaphi) -> None:
    """One 2D panel: the section's summed energy (log colour scale), its title and the track points in it."""
    s = geometry.sections[si]
    img = _section_image(geometry, si, pts)
    pos = img[img > 0]
    norm = LogNorm(vmin=max(pos.min(), pos.max() * 1e-4), vmax=pos.max()) if pos.size else None
    if s.kind == "ralpha":
        pc = _draw_ralpha(a, s, img, norm)
    else:
        pc = _draw_grid(a, s, img, norm, pos.size > 0, zoom_etaphi, center_etaphi)
    if pos.size:
        fig.colorbar(pc, ax=a, shrink=0.8, label="E (GeV)")
    lay = f"{s.n_layers} layers summed" if s.n_layers > 1 else "1 layer"
    a.set_title(f"{s.name} ({s.n_u}x{s.n_v}, {lay}): {img.sum():.3g} GeV", fontsize=9)
    # track points projected on this section
    event, n = pts["points"], pts["energy"].size
    tmk = (pts["type"] != CELL) & (_np(event, "layer", np.full(n, -1)) >= geometry.layer_offsets[si]) & \
        (_np(event, "layer", np.full(n, -1)) < geometry.layer_offsets[si + 1])
    if tmk.any() and s.kind == "etaphi":
        a.scatter(_np(event, "eta")[tmk], _np(event, "phi")[tmk], marker="x", c="red", s=40)


def plot_event(event, geometry, path, title: str | None = None, zoom_etaphi: float = 0.4,
               center_etaphi: tuple[float, float] | None = None) -> str:
    """Draw one cloud event (a record of the pcloud schema, per-point fields under ``points``) and save a PNG."""
    pts = _point_columns(event)
    show_secs = _sections_to_show(geometry, pts)
    ncol = 1 + len(show_secs)
    ncols = min(ncol, 4)
    nrows = math.ceil(ncol / ncols)
    fig = plt.figure(figsize=(4.6 * ncols, 4.2 * nrows))
    _draw_3d(fig, nrows, ncols, geometry, pts)
    for k, si in enumerate(show_secs):
        _draw_section(fig, fig.add_subplot(nrows, ncols, k + 2), geometry, si, pts, zoom_etaphi, center_etaphi)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
