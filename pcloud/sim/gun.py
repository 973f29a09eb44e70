"""Single-particle gun with geometry-specific defaults.

Energies: ``spectrum="uniform"`` (flat in [lo, hi] GeV), ``"log"`` / ``"log-uniform"`` (flat in ln E), or a scalar
``energy_gev`` for a fixed energy.

Directions and entry points (all positions in the geometry frame, mm; the simulation frame of local geometries is
the window-at-eta-0 local frame, see :mod:`pcloud.sim.deposit`):

- CaloGAN-like (``info["gun"]["max_angle_deg"]``): directions isotropic in a cone of half-angle ``max_angle_deg``
  around local z, entry point on the front face displaced uniformly by +-``max_displacement_mm`` in x and y.
  Default: 0 and 0, the beam of the public CaloGAN data set (at x = y = 0, the corner of four layer-1 cells, along
  the calorimeter axis; hep-lbdl/CaloGAN ``generation/cfg/run2.mac``). ``spread=True`` applies the geometry's
  ``info["gun"]["spread"]`` preset instead: <= 5 deg and +-50 mm, the angle/position variant of seed 004 (App. A)
  used by the angle-regression benchmark. Collider angles from eqs. A.4/A.5: theta = arccos(p_y / p),
  phi = atan2(p_x, p_z).
- CLIC-like (``info["gun"]["theta_range_rad"]``): polar angle uniform in ``theta_range_rad`` (default
  [1.047, 2.094]), from the origin, phi = 0; the window is centred on the particle, so ``window_eta`` =
  -ln tan(theta/2) and the particle enters the window centre at normal *window* incidence (the window cells are
  projective, the physical incidence angle on the layers is 90 deg - theta).
- Collider-frame geometries: from the origin at eta uniform in ``eta_range`` and phi uniform in ``phi_range``;
  defaults atlas (-1.2, 1.2) x (-pi, pi), otherwise the central cell of the window (+-half a cell).
"""
from __future__ import annotations

import numpy as np

from ..geometry.base import Geometry
from ..core.particles import particle_pdg

SPECTRA = ("uniform", "log", "log-uniform", "given")


def sample_energies(n: int, energy_gev, spectrum: str, rng) -> np.ndarray:
    """Energies (GeV): fixed (scalar), uniform or log-uniform in (lo, hi), or ``spectrum="given"`` with one energy per
    particle in ``energy_gev`` (used to give two classes the same spectrum)."""
    if spectrum == "given":
        e = np.asarray(energy_gev, dtype=np.float64)
        if e.shape != (n,) or not np.all(e > 0):
            raise ValueError(f"gun: spectrum='given' needs energy_gev as {n} positive values, got shape {e.shape}"
                             f"{'' if e.shape != (n,) else ' with non-positive entries'}")
        return e
    if np.ndim(energy_gev) == 0:
        e = float(energy_gev)
        if not e > 0:
            raise ValueError(f"gun: energy_gev must be > 0, got {energy_gev!r}")
        return np.full(n, e)
    lo, hi = (float(x) for x in energy_gev)
    if not (0 < lo <= hi):
        raise ValueError(f"gun: energy_gev range must satisfy 0 < lo <= hi, got {energy_gev!r}")
    if spectrum == "uniform":
        return rng.uniform(lo, hi, n)
    if spectrum in ("log", "log-uniform"):
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    raise ValueError(f"gun: spectrum must be one of {SPECTRA}, got {spectrum!r}")


def _unit_from_angles(theta, phi):
    st = np.sin(theta)
    return np.stack([st * np.cos(phi), st * np.sin(phi), np.cos(theta)], axis=1)


def particle_gun(geometry: Geometry, particle, n: int, rng, energy_gev=(1.0, 100.0), spectrum="uniform",
                 **options) -> dict:
    """Draw ``n`` particles. Returns a dict with ``pdg`` (n,), ``energy_gev``, ``origin_mm`` (n,3), ``direction``
    (n,3), ``window_eta`` (n,) for :func:`pcloud.sim.deposit.deposit_particles`, and ``truth`` (the per-shower truth
    keys of :mod:`pcloud.core.showers` known at generation time).

    options: ``max_angle_deg``, ``max_displacement_mm`` (cone guns); ``spread`` (bool: the geometry's spread
    preset, ``info["gun"]["spread"]``; explicit options win over it); ``theta_range_rad`` (CLIC-like);
    ``eta_range``, ``phi_range`` (collider frame).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"gun: n must be >= 0, got {n}")
    pdg = particle_pdg(particle)
    energy = sample_energies(n, energy_gev, spectrum, rng)
    gun = dict(geometry.info.get("gun", {}))
    known = {"max_angle_deg", "max_displacement_mm", "theta_range_rad", "eta_range", "phi_range", "spread"}
    bad = set(options) - known
    if bad:
        raise ValueError(f"gun: unknown options {sorted(bad)}; known: {sorted(known)}")
    options = dict(options)
    preset = gun.pop("spread", None)
    if options.pop("spread", False):
        if preset is None:
            raise ValueError(f"gun: geometry {geometry.name!r} has no 'spread' preset (info['gun']['spread'])")
        gun.update(preset)
    gun.update(options)
    front = float(geometry.sections[0].layer_edges_mm[0])
    window_eta = np.zeros(n)
    if geometry.frame == "collider":
        if geometry.name == "atlas":
            eta_rng, phi_rng = (-1.2, 1.2), (-np.pi, np.pi)
        else:
            s0 = geometry.sections[0]
            du = float(np.diff(s0.u_edges).min()) / 2
            dv = float(np.diff(s0.v_edges).min()) / 2
            uc, vc = float(s0.u_edges.mean()), float(s0.v_edges.mean())
            eta_rng, phi_rng = (uc - du, uc + du), (vc - dv, vc + dv)
        eta_rng = tuple(gun.get("eta_range", eta_rng))
        phi_rng = tuple(gun.get("phi_range", phi_rng))
        eta = rng.uniform(*eta_rng, n)
        phi = rng.uniform(*phi_rng, n)
        theta = 2.0 * np.arctan(np.exp(-eta))
        direction = _unit_from_angles(theta, phi)
        origin = np.zeros((n, 3))
        entry = direction * (front / np.sin(theta))[:, None]
    elif "theta_range_rad" in gun:
        lo, hi = gun["theta_range_rad"]
        if not (0 < lo <= hi < np.pi):
            raise ValueError(f"gun: theta_range_rad must be within (0, pi), got {gun['theta_range_rad']}")
        theta = rng.uniform(lo, hi, n)
        phi = np.zeros(n)
        # local frame (window at eta 0): x_L = y_C, y_L = z_C, z_L = x_C (seed 004 eq. 1)
        direction = np.stack([np.zeros(n), np.cos(theta), np.sin(theta)], axis=1)
        origin = np.zeros((n, 3))
        window_eta = -np.log(np.tan(theta / 2.0))
        entry = np.stack([np.zeros(n), np.zeros(n), np.full(n, front)], axis=1)  # sheared window frame
    else:
        max_angle = np.deg2rad(float(gun.get("max_angle_deg", 5.0)))
        disp = float(gun.get("max_displacement_mm", 50.0))
        cos_t = rng.uniform(np.cos(max_angle), 1.0, n)          # isotropic inside the cone
        sin_t = np.sqrt(1.0 - cos_t**2)
        phi_l = rng.uniform(0.0, 2.0 * np.pi, n)
        direction = np.stack([sin_t * np.cos(phi_l), sin_t * np.sin(phi_l), cos_t], axis=1)
        origin = np.stack([rng.uniform(-disp, disp, n), rng.uniform(-disp, disp, n), np.full(n, front)], axis=1)
        entry = origin.copy()
        theta = np.arccos(np.clip(direction[:, 1], -1, 1))       # seed 004 eq. A.4
        phi = np.arctan2(direction[:, 0], direction[:, 2])       # eq. A.5
    truth = {"pdg": np.full(n, pdg, dtype=np.int32), "energy_gev": energy, "theta_rad": theta, "phi_rad": phi,
             "entry_x_mm": entry[:, 0], "entry_y_mm": entry[:, 1], "entry_z_mm": entry[:, 2],
             "window_eta": window_eta}
    return {"pdg": np.full(n, pdg, dtype=np.int64), "energy_gev": energy, "origin_mm": origin,
            "direction": direction, "window_eta": window_eta, "truth": truth}
