"""Multi-particle events in the ATLAS-like barrel: truth particles, tracks, cell energies and per-cell truth.

This is the input side of the particle-flow studies of seed 002 (JetPointNet): events with a few charged and neutral
hadrons whose showers overlap, tracks for the charged ones extrapolated to every calorimeter layer, noisy cell
energies, and the energy each truth particle deposited in each cell (EM and non-EM parts).

Generators
----------
* Built-in guns (default, no Pythia), :func:`generate_gun`:
  ``rho+ / rho- -> pi+- pi0`` (rho(770): Breit-Wigner mass m = 775 MeV, Gamma = 149 MeV, PDG 2024) and
  ``Delta -> N pi`` (Delta(1232): m = 1232 MeV, Gamma = 117 MeV, PDG 2024) with the isospin (Clebsch-Gordan)
  branching fractions Delta++ -> p pi+ (1), Delta+ -> p pi0 (2/3) / n pi+ (1/3), Delta0 -> n pi0 (2/3) / p pi- (1/3),
  Delta- -> n pi- (1). The mass is drawn from a Breit-Wigner (Cauchy) truncated to [threshold, m + 5 Gamma];
  the two-body decay is isotropic in the parent rest frame (momentum p* of PDG "Kinematics" eq. 50.x) and boosted
  to the lab. pi0 are kept as truth particles; their decay to two photons is done by the shower deposit function.
  Parents: energy uniform (or log-uniform) in ``energy_gev``, eta and phi uniform; with several parents per event
  the 2nd, 3rd... parent is placed at DeltaR uniform in ``[dr_min, dr_max]`` from the first, in a uniformly random
  direction of the (eta, phi) plane.
* Optional Pythia8 (``pythia8mc``, imported lazily): :func:`generate_pythia` for Z/gamma* -> tau tau (hadronic tau
  decays by default; taus are the parents) and QCD dijets (pT-hat range), final-state particles in |eta| < 1.4,
  pi0 undecayed, K0S/hyperons decayed by Pythia only before the calorimeter front; :func:`generate_pythia_events`
  adds :func:`simulate_events`.

Nucleons: a proton is a charged hadron with a track that showers like a pi+ (the fast simulation has one charged
hadron shower model); a neutron is a neutral hadron without a track. Baryon number is conserved in the shower, so
a nucleon can only deposit its *kinetic* energy: nucleons are passed to the deposit function with E - m.
The deposit function showers every hadron with its pion parametrisation (see :func:`shower_pdg`).

Tracks and deposits
-------------------
Charged particles with true pT > ``track_pt_min_gev`` (0.5 GeV, the ATLAS particle-flow track selection,
Eur. Phys. J. C 77 (2017) 466) get a track: helix in B = 2 T (:mod:`pcloud.sim.tracks`), the crossing with every
layer's mid radius, measured pT with the ID resolution, chi2 and ndf. Track eta/phi at the perigee are the true
ones (angular resolution neglected). Charged particles that loop before the calorimeter front (2R < r_front)
deposit nothing in the calorimeter. The shower of a charged particle starts at its helix crossing of the front
surface with the local helix direction; neutral particles start at their vertex (the deposit function propagates
them straight to the front).

Cell energies and the noise window
----------------------------------
Cell energy = sum of the truth deposits + Gaussian electronic noise (``noise_sigma_gev`` of the cell's section).
Noise is only simulated in a *window*: in every layer, all cells whose centre lies within DeltaR < ``window_dr``
(default 0.4) of the point where some final-state particle of energy >= ``window_e_min_gev`` (default 0: all)
crosses that layer (helix for charged, straight line for neutral particles), plus every cell with a deposit.
Generator events with many soft particles (Pythia dijets: ~100 particles below 1 GeV) would otherwise open windows
over most of the calorimeter; ``generate_pythia_events`` therefore uses ``window_e_min_gev=1``. Cells outside the
window are absent (zero, no noise); this
mirrors the DeltaR-cut training samples of seed 002 and keeps events sparse. Events are processed in chunks of
``chunk_events`` (vectorised over all particles and cells of a chunk); no dense n_cells array is allocated per event.

Output layout (:class:`TrackCellEvents`)
----------------------------------------
Flat arrays with offsets (CSR): the rows of event i are ``offsets[i]:offsets[i + 1]``.

=================  ===========================================================================================
group              arrays
=================  ===========================================================================================
particles (N_P)    ``particle_event, particle_pdg, particle_charge, particle_mass_gev, particle_energy_gev,
                   particle_px_gev, particle_py_gev, particle_pz_gev, particle_pt_gev, particle_eta,
                   particle_phi, particle_vertex_mm (N_P, 3), particle_parent`` (row in the parent arrays, -1
                   none); ``particle_offsets``. Final-state particles only (pi0 counted as final).
parents (N_R)      ``parent_event, parent_pdg, parent_mass_gev, parent_energy_gev, parent_eta, parent_phi``
tracks (N_T)       ``track_event, track_particle`` (global particle row), ``track_pt_gev`` (measured),
                   ``track_p_gev, track_eta, track_phi, track_charge`` (measured), ``track_true_pt_gev,
                   track_chi2, track_ndf``; per layer (N_T, L): ``track_layer_eta, track_layer_phi,
                   track_layer_x_mm, track_layer_y_mm, track_layer_z_mm, track_layer_reached``; ``layer_names``;
                   ``track_offsets``.
cells (N_C)        ``cell_event, cell_id`` (flat geometry index), ``cell_energy_gev`` (with noise),
                   ``cell_true_energy_gev`` (sum of deposits), ``cell_noise_sigma_gev``; ``cell_offsets``.
                   Sorted by (event, cell_id).
hits (N_H)         per (cell, particle) truth: ``hit_cell`` (row in the cell arrays), ``hit_particle`` (global
                   particle row), ``hit_energy_gev, hit_energy_em_gev`` (EM = from EM sub-showers incl. pi0
                   photons; non-EM = total - EM). Sorted by cell row.
=================  ===========================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry.base import wrap_phi
from . import tracks as trk

# ---------------------------------------------------------------------------------------------- constants (PDG 2024)
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

_BARYONS = {2212, 2112, 3122, 3112, 3222, 3312, 3322, 3334}
_NEUTRINOS = {12, 14, 16}


def shower_pdg(pdg) -> np.ndarray:
    """PDG id handed to the shower deposit function for each truth particle (0 = not showered).

    e, mu, gamma, pi0 and every hadron (|pdg| > 100) are passed as they are: the deposit function
    (:func:`pcloud.sim.deposit.deposit_particles`) showers all hadrons with its pion parametrisation, charged ones
    (pi+-, K+-, p, ...) with a MIP track before the first interaction and neutral ones (n, K0L, ...) without.
    So a proton showers like a pi+ (and has a track), a neutron like a neutral pion-like hadron without a track.
    Neutrinos and anything else return 0.
    """
    pdg = np.asarray(pdg, dtype=np.int64)
    a = np.abs(pdg)
    keep = np.isin(a, [11, 13, 22, 111]) | ((a > 100) & ~np.isin(a, list(_NEUTRINOS)))
    return np.where(keep, pdg, 0).astype(np.int64)


def _charge_of(pdg: np.ndarray) -> np.ndarray:
    missing = {int(p) for p in np.unique(pdg)} - set(PDG_CHARGE)
    if missing:
        raise ValueError(f"charge of PDG ids {sorted(missing)} unknown; known: {sorted(PDG_CHARGE)}")
    lut_keys = np.array(sorted(PDG_CHARGE))
    lut_vals = np.array([PDG_CHARGE[k] for k in lut_keys])
    return lut_vals[np.searchsorted(lut_keys, pdg)] if pdg.size else np.zeros(0, np.int64)


def _mass_of(pdg: np.ndarray) -> np.ndarray:
    keys = np.array(sorted(PDG_MASS))
    vals = np.array([PDG_MASS[k] for k in keys])
    missing = set(np.unique(pdg).tolist()) - set(PDG_MASS)
    if missing:
        raise ValueError(f"mass of PDG ids {sorted(missing)} unknown; known: {sorted(PDG_MASS)}")
    return vals[np.searchsorted(keys, pdg)] if pdg.size else np.zeros(0)


# ---------------------------------------------------------------------------------------------- truth particles
@dataclass
class TruthParticles:
    """Final-state truth particles of ``n_events`` events (flat, sorted by event) and their parents.

    Momenta in GeV, vertices in mm (collider frame). ``parent`` is a row of the parent arrays or -1.
    """

    n_events: int
    event: np.ndarray
    pdg: np.ndarray
    px_gev: np.ndarray
    py_gev: np.ndarray
    pz_gev: np.ndarray
    energy_gev: np.ndarray
    vertex_mm: np.ndarray
    parent: np.ndarray
    parent_event: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    parent_pdg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    parent_mass_gev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent_energy_gev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent_eta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent_phi: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        n = len(self.event)
        for k in ("pdg", "px_gev", "py_gev", "pz_gev", "energy_gev", "parent"):
            if len(getattr(self, k)) != n:
                raise ValueError(f"TruthParticles: {k!r} has length {len(getattr(self, k))}, expected {n}")
        self.vertex_mm = np.asarray(self.vertex_mm, dtype=np.float64).reshape(n, 3)
        if n and np.any(np.diff(self.event) < 0):
            raise ValueError("TruthParticles: particles must be sorted by event")
        if n and (self.event.min() < 0 or self.event.max() >= self.n_events):
            raise ValueError(f"TruthParticles: event indices must be in [0, {self.n_events}), found "
                             f"[{self.event.min()}, {self.event.max()}]")


def _breit_wigner(rng, n, mass, width, lo, hi):
    """Cauchy (non-relativistic Breit-Wigner) masses truncated to [lo, hi] by inverse-CDF sampling."""
    a = np.arctan(2 * (lo - mass) / width)
    b = np.arctan(2 * (hi - mass) / width)
    return mass + 0.5 * width * np.tan(rng.uniform(a, b, n))


def two_body_momentum_gev(m_parent, m1, m2):
    """Daughter momentum in the parent rest frame (PDG "Kinematics", two-body decay):
    p* = sqrt((M^2 - (m1 + m2)^2) (M^2 - (m1 - m2)^2)) / (2 M)."""
    M = np.asarray(m_parent, dtype=np.float64)
    arg = (M ** 2 - (m1 + m2) ** 2) * (M ** 2 - (m1 - m2) ** 2)
    if np.any(arg < 0):
        raise ValueError("two_body_momentum_gev: parent mass below the decay threshold")
    return np.sqrt(arg) / (2 * M)


def boost(p4_rest: np.ndarray, p4_parent: np.ndarray) -> np.ndarray:
    """Lorentz-boost four-vectors (..., 4) = (E, px, py, pz) from the parent rest frame to the frame where the parent
    has four-momentum ``p4_parent``. beta = p/E, gamma = E/M; p' = p + [(gamma-1)(p.n) + gamma beta E] n,
    E' = gamma (E + beta.p)."""
    E, p = p4_parent[..., 0], p4_parent[..., 1:]
    M = np.sqrt(np.maximum(E ** 2 - np.sum(p ** 2, axis=-1), 0.0))
    pn = np.linalg.norm(p, axis=-1)
    n = np.divide(p, pn[..., None], out=np.zeros_like(p), where=pn[..., None] > 0)
    gamma = E / M
    beta = pn / E
    e_r, p_r = p4_rest[..., 0], p4_rest[..., 1:]
    p_par = np.sum(p_r * n, axis=-1)
    p_lab = p_r + ((gamma - 1) * p_par + gamma * beta * e_r)[..., None] * n
    e_lab = gamma * (e_r + beta * p_par)
    return np.concatenate([e_lab[..., None], p_lab], axis=-1)


def _etaphi_to_p(p, eta, phi):
    pt = p / np.cosh(eta)
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)


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


def generate_gun(n_events: int, rng: np.random.Generator, parent="rho", energy_gev=(10.0, 100.0),
                 log_energy: bool = False, eta=(-1.0, 1.0), phi=(-np.pi, np.pi), n_parents=1,
                 dr=(0.1, 0.4), vertex_sigma_z_mm: float = 0.0) -> TruthParticles:
    """Built-in particle gun: ``n_parents`` (int, or (min, max) drawn uniformly per event) decaying parents per event.

    ``parent``: a name of :data:`PARENTS` (``rho+, rho-, delta++, delta+, delta0, delta-``), a group (``rho``,
    ``delta``) or a list of those, drawn with equal probability per parent. ``energy_gev``: parent energy range
    (uniform, or uniform in log E with ``log_energy``). The first parent's eta, phi are uniform in the ranges; later
    parents sit at DeltaR uniform in ``dr`` from it. Vertex: (0, 0, z) with z ~ N(0, vertex_sigma_z_mm).
    """
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
    # decay channel per parent
    ch1 = np.zeros(R, np.int64)
    ch2 = np.zeros(R, np.int64)
    u = rng.random(R)
    for k, nme in enumerate(names):  # loop over parent species (a handful), not over parents
        sel = kind == k
        cum = 0.0
        for (d1, d2), prob in PARENTS[nme][3]:
            take = sel & (u >= cum) & (u < cum + prob + (1e-12 if cum + prob >= 1 - 1e-9 else 0))
            ch1[take], ch2[take] = d1, d2
            cum += prob
    m1, m2 = _mass_of(ch1), _mass_of(ch2)
    thr = m1 + m2
    M = _breit_wigner(rng, R, mass0, width, thr + 1e-6, mass0 + 5 * width)
    if log_energy:
        E = np.exp(rng.uniform(np.log(e_lo), np.log(e_hi), R))
    else:
        E = rng.uniform(e_lo, e_hi, R)
    E = np.maximum(E, M * 1.000001)
    eta1 = rng.uniform(*eta, R)
    phi1 = rng.uniform(*phi, R)
    d = rng.uniform(dr_lo, dr_hi, R)
    alpha = rng.uniform(0, 2 * np.pi, R)
    eta_p = np.where(is_first, eta1, eta1[first[ev]] + d * np.cos(alpha))
    phi_p = np.where(is_first, phi1, phi1[first[ev]] + d * np.sin(alpha))
    phi_p = wrap_phi(phi_p)
    P = np.sqrt(E ** 2 - M ** 2)
    p4_par = np.concatenate([E[:, None], _etaphi_to_p(P, eta_p, phi_p)], axis=1)

    pstar = two_body_momentum_gev(M, m1, m2)
    cos_t = rng.uniform(-1, 1, R)
    phi_s = rng.uniform(-np.pi, np.pi, R)
    sin_t = np.sqrt(1 - cos_t ** 2)
    nvec = np.stack([sin_t * np.cos(phi_s), sin_t * np.sin(phi_s), cos_t], axis=1)
    d1 = np.concatenate([np.sqrt(pstar ** 2 + m1 ** 2)[:, None], pstar[:, None] * nvec], axis=1)
    d2 = np.concatenate([np.sqrt(pstar ** 2 + m2 ** 2)[:, None], -pstar[:, None] * nvec], axis=1)
    lab = boost(np.stack([d1, d2], axis=1), p4_par[:, None, :])  # (R, 2, 4)

    zv = rng.normal(0, vertex_sigma_z_mm, R) if vertex_sigma_z_mm > 0 else np.zeros(R)
    pid = np.stack([ch1, ch2], axis=1).reshape(-1)
    lab = lab.reshape(-1, 4)
    vtx = np.zeros((2 * R, 3))
    vtx[:, 2] = np.repeat(zv, 2)
    return TruthParticles(
        n_events=n_events, event=np.repeat(ev, 2).astype(np.int64), pdg=pid.astype(np.int64),
        px_gev=lab[:, 1], py_gev=lab[:, 2], pz_gev=lab[:, 3], energy_gev=lab[:, 0], vertex_mm=vtx,
        parent=np.repeat(np.arange(R), 2).astype(np.int64), parent_event=ev.astype(np.int64),
        parent_pdg=pdg_par.astype(np.int64), parent_mass_gev=M, parent_energy_gev=E, parent_eta=eta_p,
        parent_phi=phi_p)


# ---------------------------------------------------------------------------------------------- Pythia8 (optional)
PYTHIA_MISSING = ("Pythia8 event generation needs the optional package 'pythia8mc' (the Pythia 8 Python "
                  "bindings), which is not installed. Install it with: pip install 'pythia8mc==8.317.2' "
                  "(or pip install 'pcloud[pythia]'); the built-in guns (generate_gun) need no extra package.")


def _import_pythia():
    try:
        import pythia8mc  # noqa: F401
    except ImportError as err:
        raise ImportError(PYTHIA_MISSING) from err
    return pythia8mc


PYTHIA_PROCESSES = {
    # Z/gamma* -> tau tau (m_hat > 60 GeV); Z/gamma* decays through the Z (23) decay table in Pythia
    "tau": ["WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 15", "PhaseSpace:mHatMin = 60."],
    # QCD 2 -> 2 (all HardQCD channels), pT-hat range set from the arguments
    "dijet": ["HardQCD:all = on"],
}
#: Tau decay choices: "hadronic" switches off the tau decay channels with an e or mu (B(tau -> had nu) = 64.8 %,
#: PDG 2024); "all" keeps Pythia's full tau decay table.
PYTHIA_TAU_DECAYS = {"hadronic": ["15:offIfAny = 11 13"], "all": []}
#: Pythia's largest reproducible seed (Random:seed; 0 would mean a time-based seed).
PYTHIA_SEED_MAX = 900_000_000


def pythia_settings(process: str, seed: int = 1, ecm_gev: float = 13000.0, pt_hat_min_gev: float = 20.0,
                    pt_hat_max_gev: float | None = None, tau_decays: str = "hadronic",
                    decay_radius_mm: float = 1500.0, decay_half_length_mm: float = 3000.0,
                    vertex_sigma_z_mm: float = 0.0, extra_settings=()) -> list[str]:
    """The Pythia8 ``readString`` settings of :func:`generate_pythia` (validated), in the order they are read.

    Decays: pi0 are not decayed (``111:mayDecay = off``; the shower deposit function decays them). Other unstable
    particles are decayed by Pythia only inside the cylinder r < ``decay_radius_mm``, |z| < ``decay_half_length_mm``
    (``ParticleDecays:limitCylinder``; default: the front of the ATLAS-like barrel calorimeter, r = 1500 mm,
    which covers |eta| < 1.4 up to |z| = 1500 mm sinh(1.4) = 2855 mm), so e.g. a K0S (c tau = 26.8 mm) or a Lambda
    (c tau = 78.9 mm) that reaches the calorimeter enters it undecayed, as in a full detector simulation.
    """
    if process not in PYTHIA_PROCESSES:
        raise ValueError(f"generate_pythia: unknown process {process!r}; known: {sorted(PYTHIA_PROCESSES)}")
    if tau_decays not in PYTHIA_TAU_DECAYS:
        raise ValueError(f"generate_pythia: tau_decays must be one of {sorted(PYTHIA_TAU_DECAYS)}, "
                         f"found {tau_decays!r}")
    if not (isinstance(seed, (int, np.integer)) and 1 <= int(seed) <= PYTHIA_SEED_MAX):
        raise ValueError(f"generate_pythia: seed must be an integer in [1, {PYTHIA_SEED_MAX}] (Pythia's "
                         f"Random:seed range), found {seed!r}")
    if not ecm_gev > 0:
        raise ValueError(f"generate_pythia: ecm_gev must be > 0, found {ecm_gev}")
    if not (pt_hat_min_gev >= 0 and (pt_hat_max_gev is None or pt_hat_max_gev > pt_hat_min_gev)):
        raise ValueError(f"generate_pythia: pT-hat range must be 0 <= pt_hat_min_gev < pt_hat_max_gev (or max None), "
                         f"found ({pt_hat_min_gev}, {pt_hat_max_gev})")
    if not (decay_radius_mm > 0 and decay_half_length_mm > 0):
        raise ValueError(f"generate_pythia: decay cylinder must have radius and half-length > 0, found "
                         f"({decay_radius_mm}, {decay_half_length_mm}) mm")
    if vertex_sigma_z_mm < 0:
        raise ValueError(f"generate_pythia: vertex_sigma_z_mm must be >= 0, found {vertex_sigma_z_mm}")
    s = [f"Beams:eCM = {float(ecm_gev)}", "Random:setSeed = on", f"Random:seed = {int(seed)}", "Print:quiet = on",
         "111:mayDecay = off", "ParticleDecays:limitCylinder = on", f"ParticleDecays:xyMax = {float(decay_radius_mm)}",
         f"ParticleDecays:zMax = {float(decay_half_length_mm)}", *PYTHIA_PROCESSES[process]]
    if process == "dijet":
        s += [f"PhaseSpace:pTHatMin = {float(pt_hat_min_gev)}",
              f"PhaseSpace:pTHatMax = {float(pt_hat_max_gev) if pt_hat_max_gev is not None else -1.0}"]
    s += PYTHIA_TAU_DECAYS[tau_decays]
    if vertex_sigma_z_mm > 0:
        s += ["Beams:allowVertexSpread = on", "Beams:sigmaVertexX = 0.", "Beams:sigmaVertexY = 0.",
              f"Beams:sigmaVertexZ = {float(vertex_sigma_z_mm)}"]
    return s + [str(x) for x in extra_settings]


def generate_pythia(n_events: int, process: str = "dijet", seed: int = 1, ecm_gev: float = 13000.0,
                    pt_hat_min_gev: float = 20.0, pt_hat_max_gev: float | None = None, eta_max: float = 1.4,
                    tau_decays: str = "hadronic", decay_radius_mm: float = 1500.0,
                    decay_half_length_mm: float = 3000.0, vertex_sigma_z_mm: float = 0.0,
                    keep_neutrinos: bool = False, extra_settings=()) -> TruthParticles:
    """pp events at ``ecm_gev`` from Pythia8 (``pythia8mc``): ``process`` = ``"tau"`` (Z/gamma* -> tau tau, m > 60
    GeV, taus decayed by Pythia; ``tau_decays="hadronic"`` (default) or ``"all"``) or ``"dijet"`` (QCD 2 -> 2 with
    ``pt_hat_min_gev <= pT-hat < pt_hat_max_gev``; ``None``: no upper limit). Includes Pythia's default initial/final
    state showers, multiparton interactions and hadronisation; no pile-up.

    Kept: the final-state particles (Pythia ``isFinal``) with momentum |eta| < ``eta_max`` (default 1.4: the
    ATLAS-like barrel), except neutrinos (unless ``keep_neutrinos``, meant for conservation checks only:
    :func:`simulate_events` does not accept neutrinos). pi0 are final (not decayed). Decays: see
    :func:`pythia_settings`. Momenta in GeV and production vertices in mm, Pythia's units; the collision is at the
    origin unless ``vertex_sigma_z_mm`` > 0 (Gaussian beam spot in z).

    Parents: for ``"tau"`` every decaying tau (its last copy in the event record) is a parent row (pdg +-15, its
    mass, energy, eta, phi); its kept decay products (all generations) point to it, other particles have parent -1.
    ``"dijet"`` events have no parents.

    Reproducible: the same ``seed`` (1 ... 900 000 000, Pythia's ``Random:seed``) and settings give the same events.
    Raises ImportError with installation instructions when ``pythia8mc`` is missing, RuntimeError when a kept
    final-state species has no charge/mass in :data:`PDG_CHARGE` / :data:`PDG_MASS`.

    The generator is event-by-event (its Python loop over the event record is the cost of the bindings: a few
    ms per dijet event, comparable to the generation itself); everything after it is vectorised.
    """
    if n_events < 1:
        raise ValueError(f"generate_pythia: n_events must be >= 1, found {n_events}")
    if not eta_max > 0:
        raise ValueError(f"generate_pythia: eta_max must be > 0, found {eta_max}")
    settings = pythia_settings(process, seed=seed, ecm_gev=ecm_gev, pt_hat_min_gev=pt_hat_min_gev,
                               pt_hat_max_gev=pt_hat_max_gev, tau_decays=tau_decays, decay_radius_mm=decay_radius_mm,
                               decay_half_length_mm=decay_half_length_mm, vertex_sigma_z_mm=vertex_sigma_z_mm,
                               extra_settings=extra_settings)
    pythia8 = _import_pythia()
    py = pythia8.Pythia("", False)  # no banner
    for s in settings:
        if not py.readString(s):
            raise ValueError(f"generate_pythia: Pythia did not accept the setting {s!r}")
    if not py.init():
        raise RuntimeError(f"generate_pythia: Pythia initialisation failed for process {process!r} "
                           f"(settings: {settings})")
    names = ("event", "pdg", "px", "py", "pz", "e", "x", "y", "z", "parent")
    cols = {k: [] for k in names}
    par = {k: [] for k in ("event", "pdg", "m", "e", "eta", "phi")}
    accepted, failures = 0, 0
    with_taus = process == "tau"
    while accepted < n_events:  # the generator itself is event-by-event; outside any per-cell hot path
        if not py.next():
            failures += 1
            if failures > 20 + n_events // 10:
                raise RuntimeError(f"generate_pythia: Pythia failed to generate {failures} events "
                                   f"({accepted} accepted); check the settings {settings}")
            continue
        rec = py.event
        tau_of = {}
        if with_taus:
            for i in range(rec.size()):
                p = rec[i]
                if p.idAbs() == 15 and p.iBotCopyId() == i and not p.isFinal():
                    row = len(par["event"])
                    for k, v in zip(("event", "pdg", "m", "e", "eta", "phi"),
                                    (accepted, p.id(), p.m(), p.e(), p.eta(), p.phi())):
                        par[k].append(v)
                    for d in p.daughterListRecursive():
                        tau_of[int(d)] = row
        for i in range(rec.size()):
            p = rec[i]
            if not p.isFinal() or abs(p.eta()) >= eta_max:
                continue
            if not keep_neutrinos and p.idAbs() in _NEUTRINOS:
                continue
            for k, v in zip(names, (accepted, p.id(), p.px(), p.py(), p.pz(), p.e(), p.xProd(), p.yProd(),
                                    p.zProd(), tau_of.get(i, -1))):
                cols[k].append(v)
        accepted += 1
    a = {k: np.asarray(v, dtype=np.int64 if k in ("event", "pdg", "parent") else np.float64) for k, v in cols.items()}
    known = np.isin(a["pdg"], list(PDG_CHARGE)) | (keep_neutrinos & np.isin(np.abs(a["pdg"]), list(_NEUTRINOS)))
    if not known.all():
        ids, cnt = np.unique(a["pdg"][~known], return_counts=True)
        raise RuntimeError(f"generate_pythia: final-state PDG ids {dict(zip(ids.tolist(), cnt.tolist()))} "
                           f"(id: count) have no charge/mass in pcloud.sim.events.PDG_CHARGE/PDG_MASS; add them "
                           f"there or let Pythia decay them (decay_radius_mm)")
    p = {k: np.asarray(v, dtype=np.int64 if k in ("event", "pdg") else np.float64) for k, v in par.items()}
    return TruthParticles(
        n_events=n_events, event=a["event"], pdg=a["pdg"], px_gev=a["px"], py_gev=a["py"], pz_gev=a["pz"],
        energy_gev=a["e"], vertex_mm=np.stack([a["x"], a["y"], a["z"]], axis=1).reshape(-1, 3), parent=a["parent"],
        parent_event=p["event"], parent_pdg=p["pdg"], parent_mass_gev=p["m"], parent_energy_gev=p["e"],
        parent_eta=p["eta"], parent_phi=p["phi"])


#: noise windows of Pythia events open around final-state particles above this energy (GeV; module docstring)
PYTHIA_WINDOW_E_MIN_GEV = 1.0


def generate_pythia_events(geometry, n_events: int, rng: np.random.Generator, process: str = "dijet",
                           deposit_fn=None, sim_kwargs=None, **pythia_kwargs) -> TrackCellEvents:
    """:func:`generate_pythia` (``process`` and keyword arguments, e.g. ``seed``) followed by
    :func:`simulate_events` with ``rng`` (tracks, deposits, noise; noise windows around particles above
    ``PYTHIA_WINDOW_E_MIN_GEV`` unless ``sim_kwargs`` says otherwise)."""
    if pythia_kwargs.get("keep_neutrinos"):
        raise ValueError("generate_pythia_events: keep_neutrinos=True is for generator checks only; "
                         "simulate_events does not take neutrinos")
    truth = generate_pythia(n_events, process, **pythia_kwargs)
    events = simulate_events(geometry, truth, rng, deposit_fn=deposit_fn,
                             **{"window_e_min_gev": PYTHIA_WINDOW_E_MIN_GEV, **(sim_kwargs or {})})
    events.meta["generator"] = f"pythia8 {process}"
    return events


# ---------------------------------------------------------------------------------------------- the event container
def offsets_from_index(event: np.ndarray, n_events: int) -> np.ndarray:
    """CSR offsets (n_events + 1) of rows sorted by event index."""
    return np.searchsorted(np.asarray(event), np.arange(n_events + 1), side="left").astype(np.int64)


@dataclass
class TrackCellEvents:
    """Events of truth particles, tracks, cells and per-cell truth as flat arrays; see the module docstring."""

    n_events: int
    geometry_name: str
    layer_names: list
    particles: dict
    parents: dict
    tracks: dict
    cells: dict
    hits: dict
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.particle_offsets = offsets_from_index(self.particles["event"], self.n_events)
        self.track_offsets = offsets_from_index(self.tracks["event"], self.n_events)
        self.cell_offsets = offsets_from_index(self.cells["event"], self.n_events)
        for name, group in (("particles", self.particles), ("tracks", self.tracks), ("cells", self.cells),
                            ("hits", self.hits), ("parents", self.parents)):
            lens = {k: len(v) for k, v in group.items()}
            if len(set(lens.values())) > 1:
                raise ValueError(f"TrackCellEvents: arrays of {name!r} differ in length: {lens}")
        if self.cells["event"].size and np.any(np.diff(self.cells["event"] * (1 << 32) + self.cells["id"]) <= 0):
            raise ValueError("TrackCellEvents: cells must be sorted by (event, id) without duplicates")

    def __len__(self) -> int:
        return self.n_events

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def event(self, i: int) -> dict:
        """A view of event ``i``: dicts of the particle, track and cell rows (hits keep global rows)."""
        if not 0 <= i < self.n_events:
            raise IndexError(f"event {i} out of range [0, {self.n_events})")
        sl = lambda off: slice(off[i], off[i + 1])  # noqa: E731
        c0, c1 = self.cell_offsets[i], self.cell_offsets[i + 1]
        hm = (self.hits["cell"] >= c0) & (self.hits["cell"] < c1)
        return {"particles": {k: v[sl(self.particle_offsets)] for k, v in self.particles.items()},
                "tracks": {k: v[sl(self.track_offsets)] for k, v in self.tracks.items()},
                "cells": {k: v[sl(self.cell_offsets)] for k, v in self.cells.items()},
                "hits": {k: v[hm] for k, v in self.hits.items()}}


# ---------------------------------------------------------------------------------------------- simulation
def _default_deposit():
    try:
        from .deposit import deposit_particles
    except ImportError as err:  # pragma: no cover - the shower module is developed alongside
        raise ImportError("pcloud.sim.deposit.deposit_particles is not available; pass deposit_fn=") from err
    return deposit_particles


def _window_offsets(section, window_dr: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer (du, dv) cell offsets whose centre lies within DeltaR < window_dr of a cell centre (uniform grids)."""
    deta = float(np.min(np.diff(section.u_edges)))
    dphi = float(np.min(np.diff(section.v_edges)))
    ku = int(np.ceil(window_dr / deta))
    kv = int(np.ceil(window_dr / dphi))
    du, dv = np.meshgrid(np.arange(-ku, ku + 1), np.arange(-kv, kv + 1), indexing="ij")
    keep = (du * deta) ** 2 + (dv * dphi) ** 2 < window_dr ** 2
    return du[keep].astype(np.int64), dv[keep].astype(np.int64)


def _window_cells(geometry, ev: np.ndarray, eta: np.ndarray, phi: np.ndarray, reached: np.ndarray,
                  window_dr: float) -> np.ndarray:
    """Keys event * n_cells + flat cell of the noise window (see module docstring). eta/phi/reached: (P, L)."""
    keys = []
    n_cells = geometry.n_cells
    gl = 0
    for si, s in enumerate(geometry.sections):
        du, dv = _window_offsets(s, window_dr)
        for lay in range(s.n_layers):
            m = reached[:, gl]
            gl += 1
            if not m.any():
                continue
            e_c, p_c, ev_c = eta[m, gl - 1], phi[m, gl - 1], ev[m]
            iu = np.searchsorted(s.u_edges, e_c, side="right") - 1
            v = s.v_edges[0] + np.mod(p_c - s.v_edges[0], s.v_edges[-1] - s.v_edges[0]) if s.v_periodic else p_c
            iv = np.searchsorted(s.v_edges, v, side="right") - 1
            # centres outside the layer still contribute the in-range part of their window
            iu = np.clip(iu, -len(du), s.n_u + len(du))
            U = iu[:, None] + du[None, :]
            V = iv[:, None] + dv[None, :]
            if s.v_periodic:
                V = np.mod(V, s.n_v)
            ok = (U >= 0) & (U < s.n_u) & (V >= 0) & (V < s.n_v)
            flat = geometry.section_offsets[si] + (lay * s.n_u + U) * s.n_v + V
            keys.append((ev_c[:, None] * n_cells + flat)[ok])
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


def simulate_events(geometry, truth: TruthParticles, rng: np.random.Generator, deposit_fn=None,
                    deposit_mode: str = "total", window_dr: float = 0.4, b_field_t: float = trk.B_FIELD_T,
                    track_pt_min_gev: float = 0.5, track_eta_max: float = 2.5, noise: bool = True,
                    chunk_events: int = 256, window_e_min_gev: float = 0.0) -> TrackCellEvents:
    """Tracks, cell energies and per-cell truth for the events of ``truth`` in a collider-frame geometry.

    ``deposit_fn`` defaults to :func:`pcloud.sim.deposit.deposit_particles` (same signature). See the module
    docstring for the physics, the noise window and the output layout.
    """
    if geometry.frame != "collider":
        raise ValueError(f"simulate_events: geometry {geometry.name!r} is not a collider-frame (etaphi) geometry")
    if window_dr <= 0:
        raise ValueError(f"simulate_events: window_dr must be > 0, found {window_dr}")
    if not window_e_min_gev >= 0:
        raise ValueError(f"simulate_events: window_e_min_gev must be >= 0 GeV, found {window_e_min_gev}")
    deposit_fn = deposit_fn or _default_deposit()
    n_ev = truth.n_events
    n_cells = geometry.n_cells
    layer_names, radii = trk.layer_mid_radii_mm(geometry)
    r_front = float(geometry.sections[0].layer_edges_mm[0])
    noise_sigma = geometry.cells["noise_sigma_gev"]

    pdg = truth.pdg
    charge = _charge_of(pdg)
    mass = _mass_of(pdg)
    p3 = np.stack([truth.px_gev, truth.py_gev, truth.pz_gev], axis=1)
    pt = np.hypot(p3[:, 0], p3[:, 1])
    ptot = np.linalg.norm(p3, axis=1)
    eta = np.arcsinh(np.divide(p3[:, 2], pt, out=np.full(pt.shape, np.inf), where=pt > 0))
    phi = np.arctan2(p3[:, 1], p3[:, 0])

    # ---- tracks (all events at once: a few per event)
    is_trk = (charge != 0) & (pt > track_pt_min_gev) & (np.abs(eta) < track_eta_max)
    ti = np.nonzero(is_trk)[0]
    ext = trk.extrapolate_to_layers(geometry, truth.vertex_mm[ti], p3[ti], charge[ti], b_field_t)
    pt_meas, q_meas = trk.smear_pt(pt[ti], charge[ti], rng)
    chi2, ndf = trk.draw_fit_quality(ti.size, rng)
    tracks = {"event": truth.event[ti], "particle": ti.astype(np.int64), "pt_gev": pt_meas,
              "p_gev": pt_meas * np.cosh(eta[ti]), "eta": eta[ti], "phi": phi[ti], "charge": q_meas.astype(np.int64),
              "true_pt_gev": pt[ti], "chi2": chi2, "ndf": ndf, "layer_eta": ext.eta, "layer_phi": ext.phi,
              "layer_x_mm": ext.x_mm, "layer_y_mm": ext.y_mm, "layer_z_mm": ext.z_mm, "layer_reached": ext.reached}

    # ---- calorimeter entry of every particle: helix (charged) or straight line (neutral) to the front surface
    front = trk.propagate_to_radius(truth.vertex_mm, p3, charge, [r_front], b_field_t)
    at_layers = trk.propagate_to_radius(truth.vertex_mm, p3, charge, radii, b_field_t)
    sp = shower_pdg(pdg)
    e_dep = np.where(np.isin(np.abs(pdg), list(_BARYONS)), truth.energy_gev - mass, truth.energy_gev)
    charged = charge != 0
    showers = (sp != 0) & (e_dep > 0) & np.where(charged, front["reached"][:, 0], True)
    origin = np.where(charged[:, None], np.nan_to_num(np.stack([front["x"][:, 0], front["y"][:, 0],
                                                                front["z"][:, 0]], axis=1)), truth.vertex_mm)
    direction = np.where(charged[:, None], np.nan_to_num(front["direction"][:, 0]),
                         p3 / np.maximum(ptot, 1e-300)[:, None])

    cell_parts, hit_parts = [], []
    off = offsets_from_index(truth.event, n_ev)
    for c0 in range(0, n_ev, chunk_events):  # chunks of events, vectorised inside
        c1 = min(n_ev, c0 + chunk_events)
        rows = np.arange(off[c0], off[c1])
        srows = rows[showers[rows]]
        if srows.size:
            dep = deposit_fn(geometry, sp[srows], e_dep[srows], origin[srows], direction[srows], rng,
                             mode=deposit_mode)
            h_part = srows[np.asarray(dep.particle, dtype=np.int64)]
            h_cell = np.asarray(dep.cell, dtype=np.int64)
            ok = (h_cell >= 0) & (h_cell < n_cells)
            h_part, h_cell = h_part[ok], h_cell[ok]
            h_e = np.asarray(dep.energy_gev, dtype=np.float64)[ok]
            h_em = np.asarray(dep.energy_em_gev, dtype=np.float64)[ok]
        else:
            h_part = h_cell = np.zeros(0, np.int64)
            h_e = h_em = np.zeros(0)
        h_key = truth.event[h_part] * n_cells + h_cell
        w_rows = rows[np.any(at_layers["reached"][rows], axis=1) & (truth.energy_gev[rows] >= window_e_min_gev)]
        win = _window_cells(geometry, truth.event[w_rows], at_layers["eta"][w_rows], at_layers["phi"][w_rows],
                            at_layers["reached"][w_rows], window_dr) if noise else np.zeros(0, np.int64)
        keys = np.unique(np.concatenate([h_key, win]))
        # combine hits of the same (particle, cell) (the deposit function sums already; be safe)
        order = np.lexsort((h_part, h_key))
        h_key, h_part, h_e, h_em = h_key[order], h_part[order], h_e[order], h_em[order]
        if h_key.size:
            new = np.concatenate([[True], (np.diff(h_key) != 0) | (np.diff(h_part) != 0)])
            grp = np.cumsum(new) - 1
            h_e = np.bincount(grp, h_e)
            h_em = np.bincount(grp, h_em)
            h_key, h_part = h_key[new], h_part[new]
        h_row = np.searchsorted(keys, h_key)
        true_e = np.bincount(h_row, h_e, minlength=keys.size)
        cid = keys % n_cells
        sig = noise_sigma[cid]
        meas = true_e + (sig * rng.standard_normal(keys.size) if noise else 0.0)
        cell_parts.append((keys // n_cells, cid, meas, true_e, sig))
        hit_parts.append((h_row, h_part, h_e, h_em))

    base = np.cumsum([0] + [len(c[0]) for c in cell_parts])
    cells = {"event": np.concatenate([c[0] for c in cell_parts]).astype(np.int64),
             "id": np.concatenate([c[1] for c in cell_parts]).astype(np.int64),
             "energy_gev": np.concatenate([c[2] for c in cell_parts]),
             "true_energy_gev": np.concatenate([c[3] for c in cell_parts]),
             "noise_sigma_gev": np.concatenate([c[4] for c in cell_parts])}
    hits = {"cell": np.concatenate([h[0] + b for h, b in zip(hit_parts, base)]).astype(np.int64),
            "particle": np.concatenate([h[1] for h in hit_parts]).astype(np.int64),
            "energy_gev": np.concatenate([h[2] for h in hit_parts]),
            "energy_em_gev": np.concatenate([h[3] for h in hit_parts])}
    particles = {"event": truth.event, "pdg": pdg, "charge": charge, "mass_gev": mass,
                 "energy_gev": truth.energy_gev, "px_gev": p3[:, 0], "py_gev": p3[:, 1], "pz_gev": p3[:, 2],
                 "pt_gev": pt, "eta": eta, "phi": phi, "vertex_mm": truth.vertex_mm, "parent": truth.parent,
                 "showered": showers}
    parents = {"event": truth.parent_event, "pdg": truth.parent_pdg, "mass_gev": truth.parent_mass_gev,
               "energy_gev": truth.parent_energy_gev, "eta": truth.parent_eta, "phi": truth.parent_phi}
    meta = {"deposit_mode": deposit_mode, "window_dr": window_dr, "b_field_t": b_field_t,
            "track_pt_min_gev": track_pt_min_gev, "noise": noise, "window_e_min_gev": window_e_min_gev,
            "simulation": "pcloud parametrised fast simulation (not Geant4)"}
    return TrackCellEvents(n_events=n_ev, geometry_name=geometry.name, layer_names=list(layer_names),
                           particles=particles, parents=parents, tracks=tracks, cells=cells, hits=hits, meta=meta)


def generate_events(geometry, n_events: int, rng: np.random.Generator, deposit_fn=None, sim_kwargs=None,
                    **gun_kwargs) -> TrackCellEvents:
    """Built-in gun (:func:`generate_gun` keyword arguments) followed by :func:`simulate_events`."""
    truth = generate_gun(n_events, rng, **gun_kwargs)
    return simulate_events(geometry, truth, rng, deposit_fn=deposit_fn, **(sim_kwargs or {}))
