"""The single-particle benchmark tasks (issue "singles", item 6) and the data sets they are measured on.

Each task fixes a geometry, the particle classes, the energy range and the selection that makes the task hard,
following the seed papers:

=====================  =======  ==============================  =====================================================
task                   geom     classes                         selection / source
=====================  =======  ==============================  =====================================================
``e_vs_gamma``         calogan  e+ | gamma                      seed 004 (CaloGAN geometry), 1-100 GeV
``e_vs_pi``            calogan  e+ | pi+                        seed 004
``gamma_vs_pi0``       clic     gamma | pi0                     pi0 opening angle < 0.01 rad (seed 001 section 2)
``e_vs_pi_clic``       clic     e- | pi+-                       HCAL/ECAL energy ratio < 0.1 (seed 001 section 2)
``e_gamma_pi``         cms      e- | gamma | pi-                50 GeV particle gun (seed 003), three classes
``gamma_angles``       calogan  gamma                           regression of theta, phi, x0, y0 (seed 004 section 4)
=====================  =======  ==============================  =====================================================

The CLIC tasks are trained jointly for ID and energy (seed 001), so they also give the energy regression of e, gamma,
pi0 and pi+- (resolution per particle type). Working points for rejection follow seed 004 (e+/gamma: 60-99% e+
efficiency; e+/pi+: 96-99.99%).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...core.showers import ShowerImages
from ...core.particles import particle_pdg


def _hcal_over_ecal_below(limit: float) -> Callable[[ShowerImages], np.ndarray]:
    def select(showers: ShowerImages) -> np.ndarray:
        e = showers.section_energy()
        ecal, hcal = e["ECAL"].astype(np.float64), e["HCAL"].astype(np.float64)
        return (ecal > 0) & (hcal < limit * ecal)
    select.__doc__ = f"HCAL/ECAL < {limit} (seed 001 e/pi filter)"
    return select


def _opening_angle_below(limit_rad: float) -> Callable[[ShowerImages], np.ndarray]:
    def select(showers: ShowerImages) -> np.ndarray:
        oa = showers.truth.get("opening_angle_rad")
        if oa is None:  # photons, electrons: no decay, always pass
            return np.ones(showers.n_events, dtype=bool)
        oa = np.asarray(oa, dtype=np.float64)
        return ~(oa >= limit_rad)  # NaN (no decay) passes
    select.__doc__ = f"pi0 opening angle < {limit_rad} rad (seed 001 gamma/pi0 filter)"
    return select


@dataclass
class SinglesTask:
    name: str
    geometry: str
    #: one list of particle names per class (a class may mix particles, e.g. pi+ and pi-)
    classes: list[list[str]]
    class_names: list[str]
    energy_gev: tuple[float, float]
    kind: str  # "id", "id+energy" or "regression"
    description: str
    spectrum: str = "uniform"
    selection: Callable[[ShowerImages], np.ndarray] | None = None
    working_points: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 0.99)
    regression_targets: tuple[str, ...] = ()
    geometry_kwargs: dict = field(default_factory=dict)
    #: shower-shape set of the classical baselines (seed 004's 20 variables where they are defined as in the paper)
    shape_set: str = "all"
    #: class whose *selected* energy spectrum the other classes are generated with (None: every class is drawn from
    #: ``energy_gev`` independently). A selection that depends on energy (pi0 opening angle, pion HCAL/ECAL) would
    #: otherwise let a classifier separate the classes by energy alone.
    match_energy_to: int | None = None
    #: showers of a task made from the user's files (``pcloud bench singles --data``); None: simulated
    showers: ShowerImages | None = field(default=None, repr=False)
    #: particle-gun options of :func:`pcloud.sim.gun.particle_gun` (e.g. ``{"spread": True}``: the CaloGAN seed-004
    #: angle/position variant, <= 5 deg and +-5 cm; the calogan default gun is the public data set's beam at the
    #: origin along the axis)
    gun_options: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def selection_text(self) -> str:
        return (self.selection.__doc__ or "custom") if self.selection else "none"


TASKS: dict[str, SinglesTask] = {t.name: t for t in (
    SinglesTask("e_vs_gamma", "calogan", [["e+"], ["gamma"]], ["e+", "gamma"], (1.0, 100.0), "id",
                "e+ vs gamma in the CaloGAN-like Pb/LAr calorimeter (seed 004 Table 3)",
                working_points=(0.6, 0.7, 0.8, 0.9, 0.99), shape_set="calogan20", gun_options={"spread": True}),
    SinglesTask("e_vs_pi", "calogan", [["e+"], ["pi+"]], ["e+", "pi+"], (1.0, 100.0), "id",
                "e+ vs pi+ in the CaloGAN-like calorimeter (seed 004 Table 4)",
                working_points=(0.96, 0.97, 0.98, 0.99, 0.9999), shape_set="calogan20", gun_options={"spread": True}),
    SinglesTask("gamma_vs_pi0", "clic", [["gamma"], ["pi0"]], ["gamma", "pi0"], (10.0, 510.0), "id+energy",
                "gamma vs pi0 with opening angle < 0.01 rad, CLIC-like ECAL+HCAL, joint ID + energy (seed 001)",
                selection=_opening_angle_below(0.01), working_points=(0.5, 0.7, 0.8, 0.9, 0.95), match_energy_to=1),
    SinglesTask("e_vs_pi_clic", "clic", [["e-"], ["pi+", "pi-"]], ["e-", "pi+-"], (10.0, 510.0), "id+energy",
                "e vs pi+- with HCAL/ECAL < 0.1, CLIC-like, joint ID + energy (seed 001)",
                selection=_hcal_over_ecal_below(0.1), working_points=(0.9, 0.95, 0.98, 0.99, 0.995),
                match_energy_to=1),
    SinglesTask("e_gamma_pi", "cms", [["e-"], ["gamma"], ["pi-"]], ["e-", "gamma", "pi-"], (50.0, 50.0), "id",
                "e / gamma / pi- three-class ID with PbWO4 crystals at 50 GeV (seed 003)", working_points=()),
    SinglesTask("gamma_angles", "calogan", [["gamma"]], ["gamma"], (1.0, 100.0), "regression",
                "photon incidence angles and entry point from the calorimeter image (seed 004 section 4)",
                regression_targets=("theta_rad", "phi_rad", "entry_x_mm", "entry_y_mm"), working_points=(),
                gun_options={"spread": True}),
)}


def em_scale(showers: ShowerImages) -> ShowerImages:
    """Calibrate visible (active-layer) cell energies to the EM scale: divide each section by the EM sampling
    fraction of its stack (f_mip * e/mip, :func:`pcloud.sim.media.em_sampling_fraction`), as calorimeters do with
    test-beam electrons (Wigmans, "Calorimetry", ch. 3). An electron's calibrated energy then estimates its true
    energy; hadrons stay below it (e/h > 1)."""
    from ...sim.media import em_sampling_fraction

    g = showers.geometry
    images = {s.name: (showers.images[s.name] / np.float32(em_sampling_fraction(s.stack))).astype(np.float32)
              for s in g.sections}
    out = ShowerImages(g, images, dict(showers.truth), dict(showers.meta))
    out.meta["energy_scale"] = "EM scale (visible energy / EM sampling fraction)"
    return out


def build_dataset(task: SinglesTask, n_per_class: int, seed: int, mode: str = "total",
                  max_rounds: int = 8, max_per_round: int = 60000, log=print, chunk: int = 4096) -> ShowerImages:
    """Simulate ``n_per_class`` selected showers per class (over-generating where the selection rejects).

    Truth gains ``label`` (class index) and unique ``event_number`` values. A class that still lacks events after
    ``max_rounds`` rounds is used with what it has (logged). Visible-mode images are calibrated to the EM scale
    (:func:`em_scale`).

    Where the task has a selection, showers are simulated in chunks of at most ``chunk`` and selected chunk by
    chunk, so memory is bounded by ``chunk`` dense images plus the kept events (the CLIC pion selection
    HCAL/ECAL < 0.1 keeps ~1% of the pions: one 60 000-shower round of unselected CLIC images would be 5.5 GB).
    A request of at most ``chunk`` showers is one simulation call with the round's seed, as without chunking.
    """
    from ...geometry import get_geometry
    from ...sim.showers import simulate_showers

    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"build_dataset: chunk must be a positive int (showers per simulation call), found {chunk!r}")
    g = get_geometry(task.geometry, **task.geometry_kwargs)
    rng = np.random.default_rng(seed)
    order = list(range(task.n_classes))
    if task.match_energy_to is not None:
        order.remove(task.match_energy_to)
        order.insert(0, task.match_energy_to)
    parts: dict[int, ShowerImages] = {}
    ref_energies = None
    for label in order:
        particles = task.classes[label]
        got, have, rounds, acc = [], 0, 0, 1.0
        while have < n_per_class and rounds < max_rounds:
            need = n_per_class - have
            batch = []
            for p in particles:
                n_try = max(64, -(-need // len(particles)))
                if rounds:  # grow the request by the observed acceptance (+30% margin)
                    n_try = int(min(max_per_round, max(n_try, 1.3 * n_try / acc)))
                if ref_energies is None:
                    e_kw = dict(energy_gev=task.energy_gev, spectrum=task.spectrum)
                else:
                    e_kw = dict(energy_gev=rng.choice(ref_energies, n_try), spectrum="given")
                round_seed = int(rng.integers(2**31))
                step = n_try if (task.selection is None or n_try <= chunk) else chunk
                chunk_rng = np.random.default_rng(round_seed)  # seeds of the chunks when there are several
                for start in range(0, n_try, step):
                    stop = min(n_try, start + step)
                    kw = e_kw if e_kw["spectrum"] != "given" else \
                        dict(e_kw, energy_gev=e_kw["energy_gev"][start:stop])
                    s = simulate_showers(g, p, stop - start, mode=mode, **kw, **task.gun_options,
                                         seed=round_seed if step == n_try else int(chunk_rng.integers(2**31)))
                    if mode == "visible":
                        s = em_scale(s)
                    keep = task.selection(s) if task.selection else np.ones(s.n_events, bool)
                    batch.append((s.select(np.nonzero(keep)[0]) if not keep.all() else s, s.n_events))
            n_made = sum(n for _, n in batch)
            sh = ShowerImages.concatenate([b for b, _ in batch])
            acc = max(sh.n_events / max(n_made, 1), 1e-3)
            got.append(sh)
            have += sh.n_events
            rounds += 1
        cls = ShowerImages.concatenate(got)
        if cls.n_events > n_per_class:
            cls = cls.select(np.sort(rng.choice(cls.n_events, n_per_class, replace=False)))
        if cls.n_events < n_per_class:
            log(f"  [{task.name}] class {task.class_names[label]}: only {cls.n_events} of {n_per_class} events "
                f"passed the selection after {rounds} rounds")
        cls.truth["label"] = np.full(cls.n_events, label, dtype=np.int64)
        cls.truth["pdg"] = np.asarray(cls.truth.get("pdg", np.full(cls.n_events, particle_pdg(particles[0]))),
                                      dtype=np.int64)
        parts[label] = cls
        if label == task.match_energy_to:
            ref_energies = np.asarray(cls.truth["energy_gev"], dtype=np.float64)
    parts = [parts[k] for k in range(task.n_classes)]
    data = ShowerImages.concatenate(parts)
    data.truth["event_number"] = np.arange(data.n_events, dtype=np.int64) + 1_000_000 * (seed % 1000)
    data.meta.update({"task": task.name, "selection": task.selection_text, "mode": mode})
    return data


def data_task(specs, xml=None, max_per_class: int | None = None, log=print) -> SinglesTask:
    """The identification task of the user's files (``pcloud bench singles --data FILE:LABEL ...``): classes in the
    order given (class 0 is the signal), events read through :func:`pcloud.pipeline.inputs.load_showers` (at most
    ``max_per_class`` per class), energies as stored (no EM-scale calibration: give calibrated files)."""
    from ...pipeline.inputs import load_showers, parse_data_specs, resolve_classes

    inputs = parse_data_specs(specs, xml=xml)
    classes = resolve_classes(inputs, None, xml=xml)
    if len(classes) < 2:
        raise ValueError(f"bench singles --data: need at least two classes, the files hold {classes}; give each "
                         f"file's class as FILE:LABEL")
    showers = load_showers(inputs, classes, xml=xml, max_per_class=max_per_class)
    counts = np.bincount(showers.truth["label"], minlength=len(classes))
    log(f"  [data] {showers.n_events} events from {len(inputs)} file(s): "
        + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)))
    e = np.asarray(showers.truth.get("energy_gev", np.zeros(showers.n_events)), np.float64)
    g = showers.geometry
    return SinglesTask(name="data", geometry=g.name, classes=[[c] for c in classes], class_names=list(classes),
                       energy_gev=(float(np.nanmin(e)), float(np.nanmax(e))) if e.size else (0.0, 1.0),
                       kind="id", description=f"{' vs '.join(classes)} from {', '.join(str(i.path) for i in inputs)}",
                       working_points=(0.6, 0.7, 0.8, 0.9, 0.99) if len(classes) == 2 else (),
                       shape_set="calogan20" if g.name == "calogan" else "all", showers=showers)
