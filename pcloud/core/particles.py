"""Particles: names, PDG ids, masses and charges (PDG 2024, "Review of Particle Physics", tables of particle
properties). The one home of pcloud's particle tables: the simulation, the readers and the benchmarks look here.

Masses in GeV, charges in units of e.
"""
from __future__ import annotations

import numpy as np

PARTICLES = {"e-": 11, "e+": -11, "gamma": 22, "pi0": 111, "pi+": 211, "pi-": -211}
PDG_NAMES = {v: k for k, v in PARTICLES.items()}


def particle_pdg(name_or_pdg) -> int:
    """PDG id from a name (``e+``, ``gamma``/``photon``/``γ``, ``pi0``/``π0``, ``pi+``...) or an int."""
    if isinstance(name_or_pdg, (int, np.integer)):
        return int(name_or_pdg)
    s = str(name_or_pdg).strip().lower().replace("π", "pi").replace("γ", "gamma")
    if s.lstrip("+-").isdigit():
        return int(s)
    s = {"photon": "gamma", "g": "gamma", "electron": "e-", "positron": "e+"}.get(s, s)
    if s not in PARTICLES:
        raise ValueError(f"unknown particle {name_or_pdg!r}; known: {sorted(PARTICLES)}")
    return PARTICLES[s]


# masses (GeV) and widths of the particles and resonances pcloud generates
M_PI_CHARGED = 0.13957039
M_PI0 = 0.1349768
M_PROTON = 0.93827209
M_NEUTRON = 0.93956542
RHO_MASS_GEV, RHO_WIDTH_GEV = 0.775, 0.149
DELTA_MASS_GEV, DELTA_WIDTH_GEV = 1.232, 0.117

PDG_MASS = {211: M_PI_CHARGED, -211: M_PI_CHARGED, 111: M_PI0, 2212: M_PROTON, -2212: M_PROTON,
            2112: M_NEUTRON, -2112: M_NEUTRON, 22: 0.0, 11: 0.000511, -11: 0.000511, 13: 0.10566, -13: 0.10566,
            321: 0.493677, -321: 0.493677, 130: 0.497611, 310: 0.497611,
            # long-lived hyperons (c tau 2.4-8.7 cm) that can reach the calorimeter undecayed in Pythia events
            3122: 1.115683, -3122: 1.115683, 3222: 1.18937, -3222: 1.18937, 3112: 1.197449, -3112: 1.197449,
            3322: 1.31486, -3322: 1.31486, 3312: 1.32171, -3312: 1.32171, 3334: 1.67245, -3334: 1.67245}
PDG_CHARGE = {211: 1, -211: -1, 111: 0, 2212: 1, -2212: -1, 2112: 0, -2112: 0, 22: 0, 11: -1, -11: 1, 13: -1,
              -13: 1, 321: 1, -321: -1, 130: 0, 310: 0,
              3122: 0, -3122: 0, 3222: 1, -3222: -1, 3112: -1, -3112: 1, 3322: 0, -3322: 0, 3312: -1, -3312: 1,
              3334: -1, -3334: 1}


#: Baryons: baryon number is conserved in a shower, so a baryon can deposit only its kinetic energy E - m.
BARYONS = frozenset({2212, 2112, 3122, 3112, 3222, 3312, 3322, 3334})
NEUTRINOS = frozenset({12, 14, 16})


def charge_of(pdg, unknown: int | None = None) -> np.ndarray:
    """Electric charge (units of e) of each PDG id. Ids outside :data:`PDG_CHARGE` raise a ValueError naming them,
    or get ``unknown`` when it is given (readers of foreign files use 0)."""
    pdg = np.asarray(pdg, dtype=np.int64)
    keys = np.array(sorted(PDG_CHARGE))
    vals = np.array([PDG_CHARGE[k] for k in keys])
    if not pdg.size:
        return np.zeros(0, np.int64)
    j = np.clip(np.searchsorted(keys, pdg), 0, keys.size - 1)
    known = keys[j] == pdg
    if not known.all():
        if unknown is None:
            missing = sorted({int(p) for p in np.unique(pdg[~known])})
            raise ValueError(f"charge of PDG ids {missing} unknown; known: {sorted(PDG_CHARGE)}")
        return np.where(known, vals[j], unknown).astype(np.int64)
    return vals[j].astype(np.int64)


def mass_of(pdg) -> np.ndarray:
    """Mass (GeV) of each PDG id; ids outside :data:`PDG_MASS` raise a ValueError naming them."""
    pdg = np.asarray(pdg, dtype=np.int64)
    keys = np.array(sorted(PDG_MASS))
    vals = np.array([PDG_MASS[k] for k in keys])
    missing = set(np.unique(pdg).tolist()) - set(PDG_MASS)
    if missing:
        raise ValueError(f"mass of PDG ids {sorted(missing)} unknown; known: {sorted(PDG_MASS)}")
    return vals[np.searchsorted(keys, pdg)] if pdg.size else np.zeros(0)
