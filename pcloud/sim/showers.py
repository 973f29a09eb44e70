"""Single-particle shower samples from the parametrised fast simulation (dense images or sparse cells).

:func:`simulate_showers` returns :class:`pcloud.core.showers.ShowerImages` (dense per-section images, GeV) for the small
geometries (calogan, clic, cms); :func:`simulate_sparse` returns (event, cell, energy) triplets for any geometry
(atlas included). Both are reproducible for a given ``seed`` and ``chunk_size``.

Noise policy: ``noise=None`` switches electronic noise on exactly for geometries with a section whose
``noise_sigma_gev > 0`` (cms, atlas). Dense images get noise in every cell and negative cells are kept; the
point-cloud threshold removes them. Sparse output adds noise to cells with deposits and draws noise-only cells with
|E| > ``noise_threshold_sigma`` sigma (:func:`pcloud.sim.deposit.sparse_noise`), so it is exact for point-cloud
thresholds |E| > t sigma with t >= ``noise_threshold_sigma``.
"""
from __future__ import annotations

import numpy as np

from ..geometry import Geometry, get_geometry
from ..core.showers import ShowerImages
from ..core.particles import particle_pdg
from .deposit import DEPOSIT_MODES, _simulate_spots, add_noise, sparse_noise
from .gun import particle_gun
from .media import em_sampling_fraction

#: Geometries with more cells than this are refused by :func:`simulate_showers` (dense images too large).
MAX_DENSE_CELLS = 100_000
#: Above this many (event, cell) entries per chunk, dense images are filled from unique keys instead of bincount.
DENSE_BINCOUNT_LIMIT = 4_000_000
SIMULATOR = ("pcloud.sim parametrised fast simulation (GFlash-style EM, Groom/Bock-style hadronic); "
             "NOT Geant4")


def _geometry(geometry) -> Geometry:
    if isinstance(geometry, Geometry):
        return geometry
    return get_geometry(str(geometry))


def _noise_on(geometry: Geometry, noise) -> bool:
    has = any(s.noise_sigma_gev > 0 for s in geometry.sections)
    return has if noise is None else bool(noise) and has


def _chunks(geometry, particle, n, energy_gev, spectrum, mode, seed, chunk_size, gun_options):
    if mode not in DEPOSIT_MODES:
        raise ValueError(f"simulate: mode must be one of {DEPOSIT_MODES}, got {mode!r}")
    if int(n) < 1:
        raise ValueError(f"simulate: n must be >= 1, got {n}")
    if int(chunk_size) < 1:
        raise ValueError(f"simulate: chunk_size must be >= 1, got {chunk_size}")
    if spectrum == "given" and np.shape(energy_gev) != (int(n),):
        raise ValueError(f"simulate: spectrum='given' needs energy_gev with one value per shower ({int(n)}), "
                         f"got shape {np.shape(energy_gev)}")
    n_spots = gun_options.pop("n_spots", None)
    rng = np.random.default_rng(seed)
    for start in range(0, int(n), int(chunk_size)):
        c = min(int(chunk_size), int(n) - start)
        e_chunk = np.asarray(energy_gev)[start:start + c] if spectrum == "given" else energy_gev
        g = particle_gun(geometry, particle, c, rng, e_chunk, spectrum, **gun_options)
        spots, extras = _simulate_spots(geometry, g["pdg"], g["energy_gev"], g["origin_mm"], g["direction"], rng,
                                        mode, n_spots, g["window_eta"])
        truth = dict(g["truth"])
        # total mode: the callers sum their per-cell energies instead (same numbers, one pass over the spots less)
        truth["deposited_gev"] = (np.bincount(spots["particle"], weights=spots["energy_total_gev"], minlength=c)
                                  if mode == "visible" else None)
        if particle_pdg(particle) == 111:
            truth.update(extras)
        yield start, c, spots, truth, rng


def _meta(geometry, particle, n, energy_gev, spectrum, mode, noise_on, seed, gun_options):
    return {"simulator": SIMULATOR, "geometry": geometry.name, "particle": particle_pdg(particle), "n": int(n),
            "energy_gev": ([float(np.min(energy_gev)), float(np.max(energy_gev))] if spectrum == "given"
                           else energy_gev), "spectrum": spectrum, "mode": mode, "noise": noise_on, "seed": seed,
            "gun_options": dict(gun_options),
            "em_sampling_fraction": {s.name: (em_sampling_fraction(s.stack) if mode == "visible" else 1.0)
                                     for s in geometry.sections}}


def simulate_showers(geometry, particle, n, energy_gev=(1.0, 100.0), spectrum="uniform", mode="total", noise=None,
                     seed=None, chunk_size=2000, **gun_options) -> ShowerImages:
    """Simulate ``n`` single-particle showers as dense images (GeV, float32).

    geometry: :class:`Geometry` or name (calogan, clic, cms; atlas is too large, use :func:`simulate_sparse`).
    particle: name (``e+``, ``gamma``, ``pi0``, ``pi+``...) or PDG id. energy_gev: (lo, hi) or a fixed value.
    spectrum: ``uniform`` or ``log``. mode: ``total`` or ``visible``. noise: None (geometry default), True, False.
    gun_options: see :func:`pcloud.sim.gun.particle_gun`; also ``n_spots`` (see ``deposit_particles``).
    Truth: the keys of :mod:`pcloud.core.showers` (``deposited_gev`` = total-mode energy in cells before sampling/noise).
    """
    geometry = _geometry(geometry)
    if geometry.n_cells > MAX_DENSE_CELLS:
        raise ValueError(f"simulate_showers: geometry {geometry.name!r} has {geometry.n_cells} cells; dense images "
                         f"of that size are too big (limit {MAX_DENSE_CELLS}). Use "
                         f"pcloud.sim.simulate_sparse(...), which returns (truth, event_index, cell, energy_gev).")
    noise_on = _noise_on(geometry, noise)
    opts = dict(gun_options)
    flat = np.zeros((int(n), geometry.n_cells), dtype=np.float32)
    truths = []
    for start, c, spots, truth, rng in _chunks(geometry, particle, n, energy_gev, spectrum, mode, seed, chunk_size,
                                               opts):
        key = spots["particle"] * geometry.n_cells + spots["cell"]
        if c * geometry.n_cells <= DENSE_BINCOUNT_LIMIT:
            img = np.bincount(key, weights=spots["energy_gev"], minlength=c * geometry.n_cells)
        else:  # large windows (clic): sum only occupied cells, no (c, n_cells) float64 temporary
            uniq, inv = np.unique(key, return_inverse=True)
            img = np.zeros(c * geometry.n_cells, dtype=np.float32)
            img[uniq] = np.bincount(inv, weights=spots["energy_gev"], minlength=uniq.size)
        img = img.reshape(c, geometry.n_cells)
        if truth["deposited_gev"] is None:
            truth["deposited_gev"] = img.sum(axis=1, dtype=np.float64)
        if noise_on:
            img = add_noise(geometry, img, rng)
        flat[start:start + c] = img
        truths.append(truth)
    truth = {k: np.concatenate([t[k] for t in truths]) for k in truths[0]}
    truth["event_number"] = np.arange(int(n), dtype=np.int64)
    return ShowerImages(geometry, {k: v for k, v in geometry.unflatten_images(flat).items()}, truth,
                        _meta(geometry, particle, n, energy_gev, spectrum, mode, noise_on, seed, gun_options))


def simulate_sparse(geometry, particle, n, energy_gev=(1.0, 100.0), spectrum="uniform", mode="total", noise=None,
                    seed=None, chunk_size=2000, noise_threshold_sigma=2.0, **gun_options):
    """Simulate ``n`` showers on any geometry, returning sparse cells.

    Returns ``(truth, event_index, cell, energy_gev)``: truth dict as :func:`simulate_showers` (plus a ``meta``-free
    layout), and three (K,) arrays sorted by (event, cell): event index (int64), flat cell index (int64), energy (GeV,
    float64). See the module docstring for the noise policy.
    """
    geometry = _geometry(geometry)
    noise_on = _noise_on(geometry, noise)
    opts = dict(gun_options)
    truths, ev_l, cell_l, e_l = [], [], [], []
    nc = np.int64(geometry.n_cells)
    for start, c, spots, truth, rng in _chunks(geometry, particle, n, energy_gev, spectrum, mode, seed, chunk_size,
                                               opts):
        key = spots["particle"] * nc + spots["cell"]
        uniq, inv = np.unique(key, return_inverse=True)
        e = np.bincount(inv, weights=spots["energy_gev"], minlength=uniq.size)
        ev, cell = uniq // nc, uniq % nc
        if truth["deposited_gev"] is None:
            truth["deposited_gev"] = np.bincount(ev, weights=e, minlength=c)
        if noise_on:
            e = add_noise(geometry, e, rng, cell=cell)
            nev, ncell, ne = sparse_noise(geometry, c, rng, noise_threshold_sigma)
            nkey = nev * nc + ncell
            fresh = ~np.isin(nkey, uniq, assume_unique=True)
            key_all = np.concatenate([uniq, nkey[fresh]])
            order = np.argsort(key_all, kind="stable")
            e = np.concatenate([e, ne[fresh]])[order]
            ev, cell = key_all[order] // nc, key_all[order] % nc
        ev_l.append(ev + start), cell_l.append(cell), e_l.append(e)
        truths.append(truth)
    truth = {k: np.concatenate([t[k] for t in truths]) for k in truths[0]}
    truth["event_number"] = np.arange(int(n), dtype=np.int64)
    return truth, np.concatenate(ev_l), np.concatenate(cell_l), np.concatenate(e_l)
