"""Material along a particle's line of flight, as the fast simulation needs it.

:func:`depth_media` turns :meth:`Geometry.material_profile` into per-segment arrays that the shower code indexes:
radiation length X0, interaction length lambda_I, Moliere radius R_M (all mm), effective atomic number Z, critical
energy E_c (MeV), mean MIP loss dE/dx (MeV/mm), EM and MIP sampling fractions and the EM / hadronic sampling
(stochastic) terms. Dead material between sections (``section == -1``) is aluminium-like and has no readout.

Effective Z of a stack: mass-weighted mean Z of its layers, the rule GFlash uses for mixtures (Grindhammer &
Peters, hep-ex/0001020, sec. 2.2: Z_eff = sum_i w_i Z_i with mass fractions w_i). Compound Z values are mass-weighted
over their elements (PbWO4: 0.455 Pb + 0.404 W + 0.141 O -> 68.4; polystyrene C8H8 -> 5.6).

EM sampling fraction (visible mode): f_em = f_mip * (e/mip). The e/mip ratio of a sampling calorimeter falls with the
absorber Z because soft photons are absorbed photoelectrically in the high-Z plates (transition effect; Wigmans,
"Calorimetry", 2nd ed., sec. 3.2 and Fig. 3.9: e/mip ~ 0.6 for Pb, ~0.65 for W, ~0.85 for Fe). We use the linear
approximation e/mip = clip(1 - 0.0049 Z_abs, 0.55, 1.0), labelled as approximate.

Hadronic sampling term: a_h = 11.5% sqrt(Delta E_mip [MeV]), with Delta E_mip the energy a MIP loses in one sampling
layer (absorber + active) (Wigmans, "Calorimetry", sec. 4.7, after Drews et al., NIM A290 (1990) 335); e.g. 21% for
2 mm Pb / 4 mm LAr, 56% for 20 mm Fe / 3 mm scintillator. The EM analogue c sqrt(d/f) is :func:`em_sampling_term`
(c = 2.7% as :attr:`Stack.sampling_term`; 4.0% for silicon sensors, calibrated on the CALICE Si/W test beam).
Homogeneous stacks use the photostatistics term of the geometry
(``geometry.info["stochastic_term"]``, default :data:`pcloud.geometry.cms.STOCHASTIC_TERM`) for both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.base import Geometry
from ..geometry.materials import ALUMINIUM, Material, Stack

#: Mass-weighted atomic numbers (PDG atomic and nuclear properties; compounds weighted by element mass fraction).
ATOMIC_Z = {"Pb": 82.0, "LAr": 18.0, "W": 74.0, "Si": 14.0, "Fe": 26.0, "polystyrene": 5.6, "PbWO4": 68.4,
            "Al": 13.0}

#: Hadronic sampling-fluctuation coefficient (Wigmans, sec. 4.7): a_h = 0.115 sqrt(Delta E_mip / MeV).
HADRON_SAMPLING_COEFF = 0.115

#: Minimum of the total photon mass attenuation coefficient mu/rho (cm^2/g), reached at a few MeV (Pb ~3.5 MeV,
#: Fe ~10 MeV, light elements ~20-50 MeV) where Compton scattering gives way to pair production: these photons are
#: the most penetrating component of an EM shower, and set the slope of its deep and far tails (PDG Review,
#: "Passage of particles through matter", sec. 34.4 and Fig. 34.16; values read from NIST XCOM, Berger & Hubbell,
#: +-3%; compounds by mass fractions).
MU_RHO_MIN_CM2_G = {"Pb": 0.0419, "W": 0.0404, "Fe": 0.0299, "Si": 0.0218, "LAr": 0.0236, "Al": 0.0216,
                    "polystyrene": 0.0155, "PbWO4": 0.0391}

#: Nuclear interaction length of charged pions relative to the nuclear (proton) one, lambda_pi / lambda_I. PDG atomic
#: and nuclear properties: Pb 226.2 / 199.6 g cm^-2 = 1.133. For the other materials the empirical law
#: lambda_pi / lambda_I = 1 + 0.83 A^(-1/3), which reproduces the PDG ratios of C, Al, Fe and Pb within ~2%
#: (pi-nucleus inelastic cross sections are smaller than p-nucleus ones, the more so for light nuclei).
ATOMIC_A = {"Pb": 207.2, "LAr": 39.95, "W": 183.84, "Si": 28.09, "Fe": 55.85, "polystyrene": 11.0, "PbWO4": 151.8,
            "Al": 26.98}


def pion_lambda_ratio(m: Material) -> float:
    """lambda_pi / lambda_I of a material (see :data:`ATOMIC_A`)."""
    if m.name == "Pb":
        return 226.2 / 199.6
    try:
        a = ATOMIC_A[m.name]
    except KeyError:
        raise ValueError(f"pcloud.sim.media: no mass number known for material {m.name!r}; known: "
                         f"{sorted(ATOMIC_A)}") from None
    return 1.0 + 0.83 * a ** (-1.0 / 3.0)


def _layers(stack: Stack):
    out = [(stack.active, stack.active_mm)]
    if stack.absorber is not None:
        out.append((stack.absorber, stack.absorber_mm))
    return out


def stack_pion_lambda_mm(stack: Stack) -> float:
    """Pion interaction length (mm) of a stack: harmonic mean over its layers (gaps count as vacuum)."""
    inv = sum(t / (m.lambda_i_mm * pion_lambda_ratio(m)) for m, t in _layers(stack))
    return stack.pitch_mm / inv


def stack_attenuation_mm(stack: Stack) -> float:
    """Attenuation length (mm) of the most penetrating photons in a stack, 1 / sum_j (v_j rho_j (mu/rho)_min,j)."""
    try:
        mu = sum(t * m.density_g_cm3 * MU_RHO_MIN_CM2_G[m.name] for m, t in _layers(stack)) / stack.pitch_mm
    except KeyError as err:
        raise ValueError(f"pcloud.sim.media: no photon attenuation known for material {err.args[0]!r}; known: "
                         f"{sorted(MU_RHO_MIN_CM2_G)}") from None
    return 10.0 / mu          # mu in 1/cm


def sampling_parameters(stack: Stack) -> tuple[float, float]:
    """GFlash sampling-structure parameters (Grindhammer & Peters, hep-ex/0001020, sec. 5): F_s = X0_eff / pitch and
    ehat = 1 / (1 + 0.007 (Z_absorber - Z_active)); (inf, 1) for a homogeneous stack (no sampling corrections)."""
    if stack.absorber is None:
        return float("inf"), 1.0
    fs = stack.x0_mm / stack.pitch_mm
    ehat = 1.0 / (1.0 + 0.007 * (material_z(stack.absorber) - material_z(stack.active)))
    return fs, ehat


def material_z(m: Material) -> float:
    try:
        return ATOMIC_Z[m.name]
    except KeyError:
        raise ValueError(f"pcloud.sim.media: no atomic number known for material {m.name!r}; "
                         f"known: {sorted(ATOMIC_Z)}") from None


def stack_z_eff(stack: Stack) -> float:
    """Mass-weighted effective Z of a stack (GFlash rule for mixtures)."""
    w = stack.active.density_g_cm3 * stack.active_mm
    zw = w * material_z(stack.active)
    if stack.absorber is not None:
        wa = stack.absorber.density_g_cm3 * stack.absorber_mm
        w += wa
        zw += wa * material_z(stack.absorber)
    return zw / w


def e_over_mip(stack: Stack) -> float:
    """Approximate e/mip of a sampling stack (1 for homogeneous); see the module docstring."""
    if stack.absorber is None:
        return 1.0
    return float(np.clip(1.0 - 0.0049 * material_z(stack.absorber), 0.55, 1.0))


#: Coefficient c of the EM sampling term a = c sqrt(d / f_mip) (d: active layer thickness in mm, f_mip: MIP sampling
#: fraction; PDG Review, "Calorimetry", after Wigmans): 2.7% for liquid, gaseous and scintillator gaps. Thin silicon
#: sensors sample worse (Landau-dominated 0.5 mm layers, path-length fluctuations): the CALICE Si/W prototype
#: (0.525 mm Si, W 1.4/2.8/4.2 mm) measured a = 16.6% (CALICE, NIM A 608 (2009) 372), i.e. c = 4.1% with its
#: middle W thickness (sqrt(d/f) = 4.06): silicon uses c = 4.0%.
EM_SAMPLING_COEFF = {"Si": 0.040}
EM_SAMPLING_COEFF_DEFAULT = 0.027


def em_sampling_term(stack: Stack) -> float:
    """EM stochastic term a (GeV^1/2) = c sqrt(d / f_mip) of a sampling stack (:data:`EM_SAMPLING_COEFF`); 0 for
    homogeneous stacks (their photostatistics term is set by the geometry)."""
    if stack.absorber is None:
        return 0.0
    c = EM_SAMPLING_COEFF.get(stack.active.name, EM_SAMPLING_COEFF_DEFAULT)
    return c * (stack.active_mm / stack.sampling_fraction_mip) ** 0.5


def hadron_sampling_term(stack: Stack) -> float:
    """a_h (GeV^1/2) = 0.115 sqrt(Delta E_mip / MeV), Delta E_mip = MIP loss in one absorber + active layer."""
    de_mip_mev = stack.dedx_mip_mev_per_mm * stack.pitch_mm
    return HADRON_SAMPLING_COEFF * de_mip_mev ** 0.5


def em_sampling_fraction(stack: Stack) -> float:
    """Fraction of an EM shower's energy deposited in the active layers: f_mip * e/mip (1 for homogeneous)."""
    return stack.sampling_fraction_mip * e_over_mip(stack)


@dataclass
class DepthMedia:
    """Per-segment material along the depth axis (K segments, ``edges_mm`` has K+1 entries)."""

    edges_mm: np.ndarray
    x0_mm: np.ndarray
    lambda_mm: np.ndarray
    moliere_mm: np.ndarray
    z_eff: np.ndarray
    ec_mev: np.ndarray
    dedx_mev_per_mm: np.ndarray
    f_em: np.ndarray          # EM sampling fraction (0 for dead material)
    f_mip: np.ndarray         # MIP sampling fraction (0 for dead material)
    a_em: np.ndarray          # EM stochastic term (GeV^1/2)
    a_had: np.ndarray         # hadronic sampling term (GeV^1/2)
    section: np.ndarray       # section index, -1 for dead material
    lambda_pi_mm: np.ndarray = None   # pion interaction length (mm)
    att_mm: np.ndarray = None         # attenuation length of the most penetrating photons (mm)
    fs: np.ndarray = None             # GFlash F_s = X0 / pitch (inf: homogeneous or dead)
    ehat: np.ndarray = None           # GFlash ehat (1: homogeneous or dead)

    @property
    def n_segments(self) -> int:
        return self.x0_mm.size


def depth_media(geometry: Geometry, merge: bool = True) -> DepthMedia:
    """Material segments along the depth axis of ``geometry`` (from :meth:`Geometry.material_profile`).

    With ``merge`` adjacent segments of identical stacks (e.g. the three CaloGAN layers) are merged, which only
    speeds up the path mapping; ``section`` then holds the first section of a merged run.
    """
    prof = geometry.material_profile()
    default_a = float(geometry.info.get("stochastic_term", 0.0)) or None
    rows = []
    for k, si in enumerate(prof["section"]):
        if si < 0:
            st = Stack(active=ALUMINIUM, active_mm=1.0)
            row = dict(z=material_z(ALUMINIUM), f_em=0.0, f_mip=0.0, a_em=0.0, a_had=0.0,
                       lpi=st.lambda_i_mm * pion_lambda_ratio(ALUMINIUM), att=stack_attenuation_mm(st), fs=np.inf,
                       ehat=1.0)
        else:
            st = geometry.sections[si].stack
            if st.absorber is None:
                if default_a is None:
                    from ..geometry.cms import STOCHASTIC_TERM
                    a = STOCHASTIC_TERM
                else:
                    a = default_a
                a_h = a
            else:
                a = em_sampling_term(st)
                a_h = hadron_sampling_term(st)
            fs, ehat = sampling_parameters(st)
            row = dict(z=stack_z_eff(st), f_em=em_sampling_fraction(st), f_mip=st.sampling_fraction_mip,
                       a_em=a, a_had=a_h, lpi=stack_pion_lambda_mm(st), att=stack_attenuation_mm(st), fs=fs,
                       ehat=ehat)
        row.update(x0=prof["x0_mm"][k], lam=prof["lambda_mm"][k], rm=prof["moliere_mm"][k],
                   ec=st.ec_mev if si >= 0 else ALUMINIUM.ec_mev, dedx=st.dedx_mip_mev_per_mm, sec=int(si),
                   lo=prof["edges_mm"][k], hi=prof["edges_mm"][k + 1])
        key = tuple(round(float(row[q]), 9) for q in ("x0", "lam", "rm", "z", "f_em", "a_em", "dedx", "lpi", "att"))
        if merge and rows and rows[-1]["sec"] >= 0 and row["sec"] >= 0 and rows[-1]["key"] == key:
            rows[-1]["hi"] = row["hi"]
            continue
        row["key"] = key
        rows.append(row)
    col = lambda q: np.array([r[q] for r in rows], dtype=np.float64)  # noqa: E731
    edges = np.array([rows[0]["lo"]] + [r["hi"] for r in rows])
    return DepthMedia(edges_mm=edges, x0_mm=col("x0"), lambda_mm=col("lam"), moliere_mm=col("rm"), z_eff=col("z"),
                      ec_mev=col("ec"), dedx_mev_per_mm=col("dedx"), f_em=col("f_em"), f_mip=col("f_mip"),
                      a_em=col("a_em"), a_had=col("a_had"), section=np.array([r["sec"] for r in rows], np.int64),
                      lambda_pi_mm=col("lpi"), att_mm=col("att"), fs=col("fs"), ehat=col("ehat"))
