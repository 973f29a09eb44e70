"""The built-in decay gun of the particle-flow events (no Pythia needed).

``rho+ / rho- -> pi+- pi0`` (rho(770): Breit-Wigner mass m = 775 MeV, Gamma = 149 MeV, PDG 2024) and
``Delta -> N pi`` (Delta(1232): m = 1232 MeV, Gamma = 117 MeV, PDG 2024) with the isospin (Clebsch-Gordan)
branching fractions Delta++ -> p pi+ (1), Delta+ -> p pi0 (2/3) / n pi+ (1/3), Delta0 -> n pi0 (2/3) / p pi- (1/3),
Delta- -> n pi- (1). The mass is drawn from a Breit-Wigner (Cauchy) truncated to [threshold, m + 5 Gamma];
the two-body decay is isotropic in the parent rest frame (momentum p* of PDG "Kinematics") and boosted
to the lab. pi0 are kept as truth particles; their decay to two photons is done by the shower deposit function.
Parents: energy uniform (or log-uniform) in ``energy_gev``, eta and phi uniform; with several parents per event
the 2nd, 3rd... parent is placed at DeltaR uniform in ``[dr_min, dr_max]`` from the first, in a uniformly random
direction of the (eta, phi) plane.
"""
from __future__ import annotations

import numpy as np

from ..core.events import TruthParticles
from ..core.particles import DELTA_MASS_GEV, DELTA_WIDTH_GEV, RHO_MASS_GEV, RHO_WIDTH_GEV, mass_of
from ..geometry.base import wrap_phi
from .kinematics import boost, breit_wigner, etaphi_to_p, two_body_momentum_gev

#: Parents of the built-in gun: pdg id, mass, width, decay channels ((daughter1, daughter2), probability).
PARENTS = {
    "rho+": (213, RHO_MASS_GEV, RHO_WIDTH_GEV, (((211, 111), 1.0),)),
    "rho-": (-213, RHO_MASS_GEV, RHO_WIDTH_GEV, (((-211, 111), 1.0),)),
    "delta++": (2224, DELTA_MASS_GEV, DELTA_WIDTH_GEV, (((2212, 211), 1.0),)),
    "delta+": (2214, DELTA_MASS_GEV, DELTA_WIDTH_GEV, (((2212, 111), 2 / 3), ((2112, 211), 1 / 3))),
    "delta0": (2114, DELTA_MASS_GEV, DELTA_WIDTH_GEV, (((2112, 111), 2 / 3), ((2212, -211), 1 / 3))),
    "delta-": (1114, DELTA_MASS_GEV, DELTA_WIDTH_GEV, (((2112, -211), 1.0),)),
}
#: Shorthands drawing one of several parents with equal probability.
PARENT_GROUPS = {"rho": ("rho+", "rho-"), "delta": ("delta++", "delta+")}


def _resolve_parents(parent) -> tuple[str, ...]:
    names = (parent,) if isinstance(parent, str) else tuple(parent)
    out = []
    for nme in names:
        key = str(nme).lower().replace("δ", "delta").replace("ρ", "rho")
        if key in PARENT_GROUPS:
            out.extend(PARENT_GROUPS[key])
        elif key in PARENTS:
            out.append(key)
        else:
            raise ValueError(f"unknown gun parent {nme!r}; known: {sorted(PARENTS)} and groups {sorted(PARENT_GROUPS)}")
    return tuple(out)


def _gun_ranges(n_events: int, parent, n_parents, energy_gev, dr) -> tuple:
    """Validated arguments of :func:`generate_gun`: (parent names, (min, max) parents, energy range, DeltaR range)."""
    if n_events < 1:
        raise ValueError(f"generate_gun: n_events must be >= 1, found {n_events}")
    names = _resolve_parents(parent)
    lo_n, hi_n = (n_parents, n_parents) if np.isscalar(n_parents) else tuple(n_parents)
    if not (1 <= lo_n <= hi_n):
        raise ValueError(f"generate_gun: n_parents must be >= 1 (or a range 1 <= min <= max), found {n_parents}")
    e_lo, e_hi = energy_gev
    if not (0 < e_lo <= e_hi):
        raise ValueError(f"generate_gun: energy_gev must be 0 < min <= max, found {energy_gev}")
    dr_lo, dr_hi = dr
    if not (0 <= dr_lo <= dr_hi):
        raise ValueError(f"generate_gun: dr must be 0 <= min <= max, found {dr}")
    return names, (lo_n, hi_n), (e_lo, e_hi), (dr_lo, dr_hi)


def _decay_channels(names, kind: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Daughter pdg ids (d1, d2) of every parent from its species ``kind`` and a uniform number ``u``."""
    ch1 = np.zeros(kind.size, np.int64)
    ch2 = np.zeros(kind.size, np.int64)
    for k, nme in enumerate(names):  # loop over parent species (a handful), not over parents
        sel = kind == k
        cum = 0.0
        for (d1, d2), prob in PARENTS[nme][3]:
            take = sel & (u >= cum) & (u < cum + prob + (1e-12 if cum + prob >= 1 - 1e-9 else 0))
            ch1[take], ch2[take] = d1, d2
            cum += prob
    return ch1, ch2


def _parent_momenta(rng, ev, first, is_first, M, e_range, log_energy, eta, phi, dr_range):
    """Draw the parents' energy, eta, phi (later parents at DeltaR in ``dr_range`` from the first of their event);
    returns (E, eta, phi, four-momentum (R, 4))."""
    R = ev.size
    if log_energy:
        E = np.exp(rng.uniform(np.log(e_range[0]), np.log(e_range[1]), R))
    else:
        E = rng.uniform(e_range[0], e_range[1], R)
    E = np.maximum(E, M * 1.000001)
    eta1 = rng.uniform(*eta, R)
    phi1 = rng.uniform(*phi, R)
    d = rng.uniform(dr_range[0], dr_range[1], R)
    alpha = rng.uniform(0, 2 * np.pi, R)
    eta_p = np.where(is_first, eta1, eta1[first[ev]] + d * np.cos(alpha))
    phi_p = np.where(is_first, phi1, phi1[first[ev]] + d * np.sin(alpha))
    phi_p = wrap_phi(phi_p)
    P = np.sqrt(E ** 2 - M ** 2)
    return E, eta_p, phi_p, np.concatenate([E[:, None], etaphi_to_p(P, eta_p, phi_p)], axis=1)


def _two_body_decay(rng, M, m1, m2, p4_par) -> np.ndarray:
    """Isotropic two-body decays in the parent rest frame, boosted to the lab: daughter four-momenta (R, 2, 4)."""
    R = M.size
    pstar = two_body_momentum_gev(M, m1, m2)
    cos_t = rng.uniform(-1, 1, R)
    phi_s = rng.uniform(-np.pi, np.pi, R)
    sin_t = np.sqrt(1 - cos_t ** 2)
    nvec = np.stack([sin_t * np.cos(phi_s), sin_t * np.sin(phi_s), cos_t], axis=1)
    d1 = np.concatenate([np.sqrt(pstar ** 2 + m1 ** 2)[:, None], pstar[:, None] * nvec], axis=1)
    d2 = np.concatenate([np.sqrt(pstar ** 2 + m2 ** 2)[:, None], -pstar[:, None] * nvec], axis=1)
    return boost(np.stack([d1, d2], axis=1), p4_par[:, None, :])


def generate_gun(n_events: int, rng: np.random.Generator, parent="rho", energy_gev=(10.0, 100.0),
                 log_energy: bool = False, eta=(-1.0, 1.0), phi=(-np.pi, np.pi), n_parents=1,
                 dr=(0.1, 0.4), vertex_sigma_z_mm: float = 0.0) -> TruthParticles:
    """Built-in particle gun: ``n_parents`` (int, or (min, max) drawn uniformly per event) decaying parents per event.

    ``parent``: a name of :data:`PARENTS` (``rho+, rho-, delta++, delta+, delta0, delta-``), a group (``rho``,
    ``delta``) or a list of those, drawn with equal probability per parent. ``energy_gev``: parent energy range
    (uniform, or uniform in log E with ``log_energy``). The first parent's eta, phi are uniform in the ranges; later
    parents sit at DeltaR uniform in ``dr`` from it. Vertex: (0, 0, z) with z ~ N(0, vertex_sigma_z_mm).
    """
    names, (lo_n, hi_n), e_range, dr_range = _gun_ranges(n_events, parent, n_parents, energy_gev, dr)
    # the draws below keep their order (reproducible events for a given seed)
    npar = rng.integers(lo_n, hi_n + 1, size=n_events)
    ev = np.repeat(np.arange(n_events), npar)
    first = np.concatenate([[0], np.cumsum(npar)[:-1]])
    is_first = np.zeros(ev.size, bool)
    is_first[first] = True
    R = ev.size
    kind = rng.integers(0, len(names), size=R)
    pdg_par = np.array([PARENTS[n][0] for n in names])[kind]
    mass0 = np.array([PARENTS[n][1] for n in names])[kind]
    width = np.array([PARENTS[n][2] for n in names])[kind]
    ch1, ch2 = _decay_channels(names, kind, rng.random(R))
    m1, m2 = mass_of(ch1), mass_of(ch2)
    M = breit_wigner(rng, R, mass0, width, m1 + m2 + 1e-6, mass0 + 5 * width)
    E, eta_p, phi_p, p4_par = _parent_momenta(rng, ev, first, is_first, M, e_range, log_energy, eta, phi, dr_range)
    lab = _two_body_decay(rng, M, m1, m2, p4_par).reshape(-1, 4)  # (2 R, 4): daughters of parent 0, 1, ...
    zv = rng.normal(0, vertex_sigma_z_mm, R) if vertex_sigma_z_mm > 0 else np.zeros(R)
    vtx = np.zeros((2 * R, 3))
    vtx[:, 2] = np.repeat(zv, 2)
    return TruthParticles(
        n_events=n_events, event=np.repeat(ev, 2).astype(np.int64),
        pdg=np.stack([ch1, ch2], axis=1).reshape(-1).astype(np.int64),
        px_gev=lab[:, 1], py_gev=lab[:, 2], pz_gev=lab[:, 3], energy_gev=lab[:, 0], vertex_mm=vtx,
        parent=np.repeat(np.arange(R), 2).astype(np.int64), parent_event=ev.astype(np.int64),
        parent_pdg=pdg_par.astype(np.int64), parent_mass_gev=M, parent_energy_gev=E, parent_eta=eta_p,
        parent_phi=phi_p)
