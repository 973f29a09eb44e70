"""Optional Pythia8 event generation (``pythia8mc``, imported lazily): Z/gamma* -> tau tau (hadronic tau decays by
default; taus are the parents) and QCD dijets (pT-hat range), final-state particles in |eta| < 1.4, pi0 undecayed,
K0S/hyperons decayed by Pythia only before the calorimeter front. :func:`generate_pythia_events` adds
:func:`pcloud.sim.events.simulate_events`.
"""
from __future__ import annotations

import numpy as np

from ..core.events import TrackCellEvents, TruthParticles
from ..core.particles import NEUTRINOS, PDG_CHARGE
from .events import simulate_events

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


_FINAL_COLUMNS = ("event", "pdg", "px", "py", "pz", "e", "x", "y", "z", "parent")
_PARENT_COLUMNS = ("event", "pdg", "m", "e", "eta", "phi")


def _start_pythia(settings: list[str], process: str):
    """A Pythia instance that has read ``settings`` and is initialised (no banner)."""
    pythia8 = _import_pythia()
    py = pythia8.Pythia("", False)  # no banner
    for s in settings:
        if not py.readString(s):
            raise ValueError(f"generate_pythia: Pythia did not accept the setting {s!r}")
    if not py.init():
        raise RuntimeError(f"generate_pythia: Pythia initialisation failed for process {process!r} "
                           f"(settings: {settings})")
    return py


def _read_taus(rec, event: int, par: dict) -> dict:
    """Append every decaying tau (its last copy) of the event record to ``par``; returns {record index of each of
    its decay products (all generations): parent row}."""
    tau_of = {}
    for i in range(rec.size()):
        p = rec[i]
        if p.idAbs() == 15 and p.iBotCopyId() == i and not p.isFinal():
            row = len(par["event"])
            for k, v in zip(_PARENT_COLUMNS, (event, p.id(), p.m(), p.e(), p.eta(), p.phi())):
                par[k].append(v)
            for d in p.daughterListRecursive():
                tau_of[int(d)] = row
    return tau_of


def _read_final_state(rec, event: int, tau_of: dict, cols: dict, eta_max: float, keep_neutrinos: bool) -> None:
    """Append the kept final-state particles of the event record to ``cols`` (|eta| < eta_max, no neutrinos unless
    ``keep_neutrinos``)."""
    for i in range(rec.size()):
        p = rec[i]
        if not p.isFinal() or abs(p.eta()) >= eta_max:
            continue
        if not keep_neutrinos and p.idAbs() in NEUTRINOS:
            continue
        for k, v in zip(_FINAL_COLUMNS, (event, p.id(), p.px(), p.py(), p.pz(), p.e(), p.xProd(), p.yProd(),
                                         p.zProd(), tau_of.get(i, -1))):
            cols[k].append(v)


def _truth_from_columns(n_events: int, cols: dict, par: dict, keep_neutrinos: bool) -> TruthParticles:
    """Arrays of the collected columns as :class:`TruthParticles`; raises when a kept species has no charge/mass."""
    a = {k: np.asarray(v, dtype=np.int64 if k in ("event", "pdg", "parent") else np.float64) for k, v in cols.items()}
    known = np.isin(a["pdg"], list(PDG_CHARGE)) | (keep_neutrinos & np.isin(np.abs(a["pdg"]), list(NEUTRINOS)))
    if not known.all():
        ids, cnt = np.unique(a["pdg"][~known], return_counts=True)
        raise RuntimeError(f"generate_pythia: final-state PDG ids {dict(zip(ids.tolist(), cnt.tolist()))} "
                           f"(id: count) have no charge/mass in pcloud.core.particles.PDG_CHARGE/PDG_MASS; add them "
                           f"there or let Pythia decay them (decay_radius_mm)")
    p = {k: np.asarray(v, dtype=np.int64 if k in ("event", "pdg") else np.float64) for k, v in par.items()}
    return TruthParticles(
        n_events=n_events, event=a["event"], pdg=a["pdg"], px_gev=a["px"], py_gev=a["py"], pz_gev=a["pz"],
        energy_gev=a["e"], vertex_mm=np.stack([a["x"], a["y"], a["z"]], axis=1).reshape(-1, 3), parent=a["parent"],
        parent_event=p["event"], parent_pdg=p["pdg"], parent_mass_gev=p["m"], parent_energy_gev=p["e"],
        parent_eta=p["eta"], parent_phi=p["phi"])


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
    py = _start_pythia(settings, process)
    cols = {k: [] for k in _FINAL_COLUMNS}
    par = {k: [] for k in _PARENT_COLUMNS}
    accepted, failures = 0, 0
    while accepted < n_events:  # the generator itself is event-by-event; outside any per-cell hot path
        if not py.next():
            failures += 1
            if failures > 20 + n_events // 10:
                raise RuntimeError(f"generate_pythia: Pythia failed to generate {failures} events "
                                   f"({accepted} accepted); check the settings {settings}")
            continue
        rec = py.event
        tau_of = _read_taus(rec, accepted, par) if process == "tau" else {}
        _read_final_state(rec, accepted, tau_of, cols, eta_max, keep_neutrinos)
        accepted += 1
    return _truth_from_columns(n_events, cols, par, keep_neutrinos)


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

