"""EM shower laws (PDG review "Passage of particles through matter", GFlash), measured on the simulation's spots and cells.

Laws (PDG Review, "Passage of particles through matter", sec. 34.5): t_max = ln(E/E_c) + C with C = -0.5 (e),
+0.5 (gamma); ~90% of the energy inside one Moliere radius; 95% containment depth ~ t_max + 0.08 Z + 9.6 X0.
"""
import numpy as np
import pytest

from pcloud.geometry.calogan import PB_LAR
from pcloud.sim import deposit_particles, em
from pcloud.sim.deposit import DEFAULT_SPOTS
from pcloud.sim.media import depth_media, stack_z_eff

from simhelpers import beam, block_geometry

ENERGIES = np.array([2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0])


def _peak(t, w=None):
    """Depth of the maximum of the mean profile: smoothed 0.25 X0 histogram (spot energy weights ``w``), parabola
    through the top."""
    h, edges = np.histogram(t, bins=np.arange(0.0, 40.0, 0.25), weights=w)
    c = 0.5 * (edges[1:] + edges[:-1])
    hs = np.convolve(h, np.ones(5) / 5, mode="same")
    i = int(np.argmax(hs))
    sl = slice(max(i - 6, 0), i + 7)
    p = np.polyfit(c[sl], hs[sl], 2)
    return -p[1] / (2 * p[0])


@pytest.fixture(scope="module")
def calogan_medium(calogan):
    m = depth_media(calogan)
    return float(m.z_eff[0]), float(m.ec_mev[0])


def _w(sp):
    return np.broadcast_to(sp["weight"], sp["t_x0"].shape).ravel()


N_PROFILE = 1000


@pytest.fixture(scope="module")
def profiles(calogan_medium):
    """Spots as the production sampling draws them: energy-proportional depth-spot counts per shower (at least
    ``em_min``; padded rectangular block), core and tail rings and importance-sampled lateral sub-spots. 1000 showers
    per point: a converted photon (Bethe-Heitler pair, two lepton sub-showers) has a flatter maximum, and with 300
    showers the fitted peak of its mean profile scattered by +-0.7 X0 at 2 GeV (measured over seeds 11-13)."""
    z, ec = calogan_medium
    rng = np.random.default_rng(11)
    out = {}
    for photon in (False, True):
        out[photon] = [em.em_spots(np.full(N_PROFILE, e), z, ec,
                                   np.maximum(em.spot_counts(np.full(N_PROFILE, e), DEFAULT_SPOTS["em_per_gev"], rng),
                                              DEFAULT_SPOTS["em_min"]), rng,
                                   photon=photon, n_lateral=DEFAULT_SPOTS["em_lateral"],
                                   n_core=DEFAULT_SPOTS["em_core"])
                       for e in ENERGIES]
    return out


@pytest.mark.parametrize("photon,c_law", [(False, -0.5), (True, 0.5)])
def test_shower_max_follows_ln_e(profiles, calogan_medium, photon, c_law):
    _, ec = calogan_medium
    ln_y = np.log(ENERGIES * 1000.0 / ec)
    tmax = np.array([_peak(sp["t_x0"].ravel(), _w(sp)) for sp in profiles[photon]])
    slope, intercept = np.polyfit(ln_y, tmax, 1)
    assert abs(slope - 1.0) < 0.15, (slope, tmax)
    c = np.mean(tmax - ln_y)
    assert abs(c - c_law) < 0.5, (c, tmax)


def test_photons_deeper_than_electrons(profiles):
    ds = []
    for sp_e, sp_g in zip(profiles[False], profiles[True]):
        d = _peak(sp_g["t_x0"].ravel(), _w(sp_g)) - _peak(sp_e["t_x0"].ravel(), _w(sp_e))
        assert 0.4 < d < 2.0, d        # mean conversion depth 9/7 X0
        ds.append(d)
    # the law's offsets C_gamma - C_e = +0.5 - (-0.5) = 1 X0 (PDG sec. 34.5); averaged over the energies
    assert 0.7 < np.mean(ds) < 1.6, ds
    # the conversion depth itself is exponential with mean 9/7 X0
    start = np.concatenate([sp["start_x0"] for sp in profiles[True]])
    assert abs(start.mean() - 9 / 7) < 0.1
    assert np.all(np.concatenate([sp["start_x0"] for sp in profiles[False]]) == 0)


def test_ninety_percent_within_one_moliere_radius(profiles):
    for sp in profiles[False]:
        frac = np.sum((sp["r_rm"] < 1.0) * sp["weight"]) / np.sum(np.ones_like(sp["r_rm"]) * sp["weight"])
        assert 0.85 <= frac <= 0.95, frac


def test_longitudinal_containment(profiles, calogan_medium):
    """95% depth vs the PDG rule t_max + 0.08 Z + 9.6. GFlash's single-Gamma profile has no deep low-energy-photon
    tail, so it is ~5 X0 shorter at Z ~ 69 (datasets/SIMULATION.md); we require the rule's E-dependence (L95 - t_max
    constant within 2 X0) and agreement within 6.5 X0."""
    z, _ = calogan_medium
    diffs = []
    for sp in profiles[False]:
        t = sp["t_x0"]
        w = np.broadcast_to(sp["weight"], t.shape).ravel()
        order = np.argsort(t.ravel())
        cum = np.cumsum(w[order]) / w.sum()
        l95 = t.ravel()[order][np.searchsorted(cum, 0.95)]
        tmax = _peak(t.ravel(), w)
        rule = tmax + 0.08 * z + 9.6
        assert abs(l95 - rule) < 6.5, (l95, rule)
        diffs.append(l95 - tmax)
    assert np.ptp(diffs) < 2.0, diffs


def test_profile_in_cells_clic_like_layers():
    """Cell-level check: 1-X0 layers of W/Si; the layer of maximum moves by ~ln(10) X0 from 10 to 100 GeV."""
    from pcloud.geometry.clic import SI_W
    g = block_geometry(SI_W, 40 * SI_W.pitch_mm, n_layers=40, n_cells=4)
    rng = np.random.default_rng(5)
    peaks = []
    for e in (10.0, 100.0):
        o, d = beam(300)
        dep = deposit_particles(g, np.full(300, 11), np.full(300, e), o, d, rng)
        layer = g.cells["layer"][dep.cell]
        prof = np.bincount(layer, weights=dep.energy_gev, minlength=40)
        i = int(np.argmax(prof))
        p = np.polyfit(np.arange(i - 2, i + 3), prof[i - 2:i + 3], 2)
        peaks.append(-p[1] / (2 * p[0]) * SI_W.pitch_mm / SI_W.x0_mm)
    assert abs((peaks[1] - peaks[0]) - np.log(10.0)) < 0.7, peaks
    ec = SI_W.ec_mev
    assert abs(peaks[1] + 0.5 - (np.log(100e3 / ec) - 0.5)) < 1.0, peaks  # layer centre vs front: +0.5 X0


def test_inclined_incidence_scales_depth():
    """A shower at 60 deg to the depth axis reaches half the depth (path in X0 is what the profile fixes)."""
    g = block_geometry(PB_LAR, 2000.0, n_layers=200, n_cells=2)
    rng = np.random.default_rng(3)
    mean_z = []
    for direction in ((0, 0, 1), (np.sin(np.pi / 3), 0, np.cos(np.pi / 3))):
        o, d = beam(200, z0=0.0, direction=direction)
        dep = deposit_particles(g, np.full(200, 11), np.full(200, 20.0), o, d, rng)
        mean_z.append(np.average(g.cells["z"][dep.cell], weights=dep.energy_gev))
    assert abs(mean_z[1] / mean_z[0] - 0.5) < 0.04, mean_z


def test_effective_z_of_calogan_stack():
    # mass-weighted: (2*11.35*82 + 4*1.396*18) / (2*11.35 + 4*1.396)
    assert stack_z_eff(PB_LAR) == pytest.approx((22.7 * 82 + 5.584 * 18) / (22.7 + 5.584), rel=1e-9)


def test_gflash_median_parameters():
    """Hand-computed GFlash medians at y = E/E_c = e^8: T = 8 - 0.812, alpha = 0.81 + (0.458 + 2.26/Z) 8."""
    ec = 10.0
    e = ec * np.exp(8.0) / 1000.0
    tmax, alpha = em.longitudinal_parameters(e, 50.0, ec)
    assert tmax == pytest.approx(8 - 0.812)
    assert alpha == pytest.approx(0.81 + (0.458 + 2.26 / 50) * 8)


def test_parameter_correlation():
    rng = np.random.default_rng(0)
    e = np.full(20000, 50.0)
    tmax, alpha = em.longitudinal_parameters(e, 70.0, 9.0, rng)
    ln_y = np.log(50e3 / 9.0)
    r = np.corrcoef(np.log(tmax), np.log(alpha))[0, 1]
    assert abs(r - (0.705 - 0.023 * ln_y)) < 0.03
    assert np.std(np.log(tmax)) == pytest.approx(1 / (-1.4 + 1.26 * ln_y), rel=0.05)


def test_gamma_quantile_table():
    from scipy.special import gammaincinv
    a = np.array([0.5, 1.3, 3.0, 7.5, 30.0])[:, None]
    u = np.array([0.02, 0.3, 0.5, 0.8, 0.99])[None, :]
    assert np.allclose(em.gamma_quantile(a, u), gammaincinv(a, u), rtol=0.01)
    b = em.strata(96)
    assert b[0] == 0 and b[-1] == pytest.approx(1.0) and np.all(np.diff(b) > 0) and b.size == 97
