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
2 mm Pb / 4 mm LAr, 56% for 20 mm Fe / 3 mm scintillator. The EM analogue 2.7% sqrt(d/f) is
:attr:`Stack.sampling_term`. Homogeneous stacks use the photostatistics term of the geometry
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
            row = dict(z=material_z(ALUMINIUM), f_em=0.0, f_mip=0.0, a_em=0.0, a_had=0.0)
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
                a = st.sampling_term
                a_h = hadron_sampling_term(st)
            row = dict(z=stack_z_eff(st), f_em=em_sampling_fraction(st), f_mip=st.sampling_fraction_mip,
                       a_em=a, a_had=a_h)
        row.update(x0=prof["x0_mm"][k], lam=prof["lambda_mm"][k], rm=prof["moliere_mm"][k],
                   ec=st.ec_mev if si >= 0 else ALUMINIUM.ec_mev, dedx=st.dedx_mip_mev_per_mm, sec=int(si),
                   lo=prof["edges_mm"][k], hi=prof["edges_mm"][k + 1])
        key = tuple(round(float(row[q]), 9) for q in ("x0", "lam", "rm", "z", "f_em", "a_em", "dedx"))
        if merge and rows and rows[-1]["sec"] >= 0 and row["sec"] >= 0 and rows[-1]["key"] == key:
            rows[-1]["hi"] = row["hi"]
            continue
        row["key"] = key
        rows.append(row)
    col = lambda q: np.array([r[q] for r in rows], dtype=np.float64)  # noqa: E731
    edges = np.array([rows[0]["lo"]] + [r["hi"] for r in rows])
    return DepthMedia(edges_mm=edges, x0_mm=col("x0"), lambda_mm=col("lam"), moliere_mm=col("rm"), z_eff=col("z"),
                      ec_mev=col("ec"), dedx_mev_per_mm=col("dedx"), f_em=col("f_em"), f_mip=col("f_mip"),
                      a_em=col("a_em"), a_had=col("a_had"), section=np.array([r["sec"] for r in rows], np.int64))
