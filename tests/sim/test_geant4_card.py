"""The fast simulation against Geant4: the public CaloGAN data set's per-shower distributions (the card copied into
pcloud/validation/data/calogan_geant4.json, digitised from hep-lbdl/CaloGAN analysis/analysis.ipynb).

Goal (issue "Showers as Geant4 makes them"): in the reference configuration (beam at the origin along the axis,
1-100 GeV flat, total deposited energy) every median of the card within 10% for e+ and gamma (20% for medians below
0.01) and 20% for pi+, and every p16-p84 band overlapping. This test fails when the simulation drifts away from
the card (e.g. the pre-2026-12 simulation: E_ratio_0 3.2x, sigma_0 0.68x, pi+ sparsities 0.2-0.5x).
"""
import numpy as np
import pytest

from pcloud.sim import simulate_showers
from pcloud.validation.compare import compare_card
from pcloud.validation.quantities import calogan_quantities
from pcloud.validation.reference import load_card

N = 3000


@pytest.fixture(scope="module")
def rows(calogan):
    card = load_card("calogan-geant4")
    values, energies = {}, {}
    for k, p in enumerate(card.particles):
        s = simulate_showers(calogan, p, N, energy_gev=card.energy_gev, spectrum=card.spectrum, mode=card.mode,
                             seed=100 + k)
        values[p], energies[p] = calogan_quantities(s), s.truth["energy_gev"]
    return compare_card(card, values, energies)


@pytest.mark.parametrize("particle", ["e+", "gamma", "pi+"])
def test_every_card_quantity_within_the_goal(rows, particle):
    mine = [r for r in rows if r["particle"] == particle]
    assert len(mine) == 13
    failed = [(r["quantity"], round(r["median_ratio"], 3) if np.isfinite(r["median_ratio"]) else r.get("ratios"),
               r.get("band_overlap")) for r in mine if not r["passed"]]
    assert not failed, failed


def test_tolerances_are_the_goals(rows):
    for r in rows:
        small = "median" in r["reference"] and abs(r["reference"]["median"]) < 0.01
        want = 0.2 if small or r["particle"] == "pi+" else 0.1
        assert r["tolerance"] == want, r["quantity"]
