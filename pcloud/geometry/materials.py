"""Material constants and mixture rules for sampling calorimeters.

All constants are taken from the PDG "Atomic and nuclear properties of materials" tables
(pdg.lbl.gov/AtomicNuclearProperties, values as quoted in the PDG Review of Particle Physics 2024):
radiation length X0, Moliere radius R_M, nuclear interaction length lambda_I, critical energy E_c (for e-,
Rossi definition) and the minimum ionisation loss dE/dx|min.

Mixture rules (PDG Review, "Passage of particles through matter", sections 34.4.2 and 34.5):
for a stack of layers with *volume* fractions v_j the effective lengths combine harmonically,

    1/X0_eff = sum_j v_j / X0_j,   1/R_M,eff = sum_j v_j / R_M,j,   1/lambda_eff = sum_j v_j / lambda_j,

(these are the mass-weighted sums of the PDG written per unit length) and the effective critical energy follows from
R_M = X0 E_s / E_c with the scale energy E_s = 21.2052 MeV, i.e. E_c,eff = E_s X0_eff / R_M,eff.

The minimum-ionising-particle sampling fraction of a stack is
f_mip = (dE/dx_active * t_active) / sum_j (dE/dx_j * t_j) (Wigmans, "Calorimetry", 2nd ed., ch. 3).
"""
from __future__ import annotations

from dataclasses import dataclass

#: Scale energy E_s = m_e c^2 sqrt(4 pi / alpha) in MeV (PDG eq. 34.37).
ES_MEV = 21.2052


@dataclass(frozen=True)
class Material:
    """A homogeneous material. Lengths in mm, energies in MeV, dE/dx in MeV/mm."""

    name: str
    density_g_cm3: float
    x0_mm: float
    moliere_mm: float
    lambda_i_mm: float
    ec_mev: float
    dedx_mip_mev_per_mm: float


# PDG values. dE/dx|min in MeV cm^2/g times density, converted to MeV/mm.
LEAD = Material("Pb", 11.35, 5.612, 16.02, 175.9, 7.43, 1.122 * 11.35 / 10.0)
LAR = Material("LAr", 1.396, 140.0, 90.43, 857.7, 32.84, 1.519 * 1.396 / 10.0)
TUNGSTEN = Material("W", 19.3, 3.504, 9.327, 99.46, 7.97, 1.145 * 19.3 / 10.0)
SILICON = Material("Si", 2.329, 93.70, 49.44, 465.2, 40.19, 1.664 * 2.329 / 10.0)
IRON = Material("Fe", 7.874, 17.57, 17.19, 167.7, 21.68, 1.451 * 7.874 / 10.0)
POLYSTYRENE = Material("polystyrene", 1.060, 413.1, 94.1, 770.7, 93.11, 2.052 * 1.060 / 10.0)
PBWO4 = Material("PbWO4", 8.300, 8.903, 19.59, 207.7, 9.64, 1.229 * 8.300 / 10.0)
ALUMINIUM = Material("Al", 2.699, 88.97, 44.19, 397.0, 42.70, 1.615 * 2.699 / 10.0)

MATERIALS = {m.name: m for m in (LEAD, LAR, TUNGSTEN, SILICON, IRON, POLYSTYRENE, PBWO4, ALUMINIUM)}


@dataclass(frozen=True)
class Stack:
    """A repeating absorber/active sampling structure (or a homogeneous block when ``absorber`` is None).

    ``gap_mm`` is passive space without material (readout, air) that only stretches the pitch.
    """

    active: Material
    active_mm: float
    absorber: Material | None = None
    absorber_mm: float = 0.0
    gap_mm: float = 0.0

    @property
    def pitch_mm(self) -> float:
        return self.active_mm + self.absorber_mm + self.gap_mm

    def _harmonic(self, attr: str) -> float:
        inv = self.active_mm / getattr(self.active, attr)
        if self.absorber is not None:
            inv += self.absorber_mm / getattr(self.absorber, attr)
        return self.pitch_mm / inv

    @property
    def x0_mm(self) -> float:
        """Effective radiation length (mm)."""
        return self._harmonic("x0_mm")

    @property
    def moliere_mm(self) -> float:
        """Effective Moliere radius (mm)."""
        return self._harmonic("moliere_mm")

    @property
    def lambda_i_mm(self) -> float:
        """Effective nuclear interaction length (mm)."""
        return self._harmonic("lambda_i_mm")

    @property
    def ec_mev(self) -> float:
        """Effective critical energy (MeV), E_c = E_s X0 / R_M."""
        return ES_MEV * self.x0_mm / self.moliere_mm

    @property
    def dedx_mip_mev_per_mm(self) -> float:
        """Mean MIP energy loss per mm of stack (MeV/mm)."""
        e = self.active.dedx_mip_mev_per_mm * self.active_mm
        if self.absorber is not None:
            e += self.absorber.dedx_mip_mev_per_mm * self.absorber_mm
        return e / self.pitch_mm

    @property
    def sampling_fraction_mip(self) -> float:
        """Fraction of a MIP's energy loss that is in the active material (1 for homogeneous)."""
        if self.absorber is None:
            return 1.0
        a = self.active.dedx_mip_mev_per_mm * self.active_mm
        return a / (a + self.absorber.dedx_mip_mev_per_mm * self.absorber_mm)

    @property
    def sampling_term(self) -> float:
        """Stochastic term a of sigma/E = a/sqrt(E[GeV]) for EM showers.

        Homogeneous blocks get 0 here (their photostatistics term is set by the simulation). For sampling
        calorimeters the PDG Review (section 35.2.4 / eq. 35.x, after Wigmans) gives
        a ~= 2.7% * sqrt(d / f_samp) with d the active layer thickness in mm and f_samp the MIP sampling fraction.
        """
        if self.absorber is None:
            return 0.0
        return 0.027 * (self.active_mm / self.sampling_fraction_mip) ** 0.5

    def describe(self) -> dict:
        return {
            "active": self.active.name,
            "active_mm": self.active_mm,
            "absorber": None if self.absorber is None else self.absorber.name,
            "absorber_mm": self.absorber_mm,
            "gap_mm": self.gap_mm,
            "x0_mm": round(self.x0_mm, 4),
            "moliere_mm": round(self.moliere_mm, 4),
            "lambda_i_mm": round(self.lambda_i_mm, 4),
            "ec_mev": round(self.ec_mev, 4),
            "sampling_fraction_mip": round(self.sampling_fraction_mip, 5),
            "sampling_term": round(self.sampling_term, 5),
        }
