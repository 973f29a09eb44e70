"""Cell occupancy must follow the deposited energy, not the number of (sub-)showers (the pre-fix artifact).

Before the fix every EM (sub-)shower got a fixed 48 depth spots x (1 + K(E)) sub-spots, so a pi0 (two photons) had
about twice the spots of a photon of the same energy and ~1.2-1.8x its non-zero cells (per-layer sparsity alone
separated collinear gamma / pi0 at CLIC with AUC ~1). Now the spot budget of each sub-shower is proportional to its
energy (:func:`pcloud.sim.em.spot_counts`) with a fixed proposal shape, and the visible-mode fluctuation is an
infinitely divisible compound Poisson law (:func:`pcloud.sim.deposit._fluctuate`).

Collinear limit: one physical shower of energy E (shared GFlash parameters T, alpha, conversion depth) deposited
either through one spot set of budget ~E or through two independent spot sets of budgets ~zE and ~(1-z)E on the
same axis (:func:`pcloud.sim.deposit.deposit_em_showers`). The physics is identical, so every observable must agree.
"""
import numpy as np
import pytest
from scipy import stats

from pcloud.geometry import get_geometry
from pcloud.sim import em, particle_gun
from pcloud.sim.deposit import _fluctuate, deposit_em_showers
from pcloud.sim.media import depth_media

N_SHOWERS = 300
#: Layer groups compared on clic (ECAL 25 layers in thirds, HCAL 60 layers in halves).
CLIC_GROUPS = [(0, 8), (8, 16), (16, 25), (25, 55), (55, 85)]


def _physical_showers(g, energy, rng):
    """Per-shower GFlash parameters of photons of ``energy`` starting in the first segment (drawn once)."""
    med = depth_media(g)
    tmax, alpha = em.longitudinal_parameters(energy, med.z_eff[0], med.ec_mev[0], rng)
    start = rng.exponential(em.CONVERSION_X0, energy.size)
    return {"tmax_x0": tmax, "alpha": alpha, "start_x0": start, "shape_energy_gev": energy}


def _occupancy(g, dep, n):
    """(n, n_groups) non-zero cells per layer group and (n,) summed energy."""
    layer = g.cells["layer"]
    groups = [(k, k + 1) for k in range(3)] if g.name == "calogan" else CLIC_GROUPS
    nz = dep.energy_gev > 0
    lay = layer[dep.cell[nz]]
    counts = np.stack([np.bincount(dep.particle[nz][(lay >= a) & (lay < b)], minlength=n) for a, b in groups], 1)
    return counts, dep.per_particle(n)


def collinear_split(name, energy_gev, mode, seed, n=N_SHOWERS, split=True):
    """Occupancy and energy of ``n`` photon showers of ``energy_gev`` deposited as one spot set (split=False) or as
    two spot sets with energy shares z, 1 - z (z uniform in [0, 1], as a fast pi0) on the same axis."""
    g = get_geometry(name)
    rng = np.random.default_rng(seed)
    gun = particle_gun(g, "gamma", n, rng, energy_gev=energy_gev)
    e = gun["energy_gev"]
    sh = _physical_showers(g, e, rng)
    if not split:
        dep = deposit_em_showers(g, e, gun["origin_mm"], gun["direction"], rng, shower=sh, mode=mode,
                                 window_eta=gun["window_eta"])
        return _occupancy(g, dep, n)
    z = rng.uniform(0.0, 1.0, n)
    two = lambda a: np.concatenate([a, a])                       # noqa: E731
    dep = deposit_em_showers(g, np.concatenate([z * e, (1 - z) * e]), two(gun["origin_mm"]), two(gun["direction"]),
                             rng, owner=two(np.arange(n)), shower={k: two(v) for k, v in sh.items()}, mode=mode,
                             window_eta=two(gun["window_eta"]))
    return _occupancy(g, dep, n)


@pytest.mark.parametrize("name,energy", [("calogan", 20.0), ("clic", 100.0)])
@pytest.mark.parametrize("mode", ["total", "visible"])
def test_collinear_pair_occupancy_equals_single_photon(name, energy, mode):
    c1, e1 = collinear_split(name, energy, mode, seed=11, split=False)
    c2, e2 = collinear_split(name, energy, mode, seed=12, split=True)
    # KS at p > 0.001: the 4 cases hold 24 KS tests, so p > 0.01 failed by chance in ~20% of random streams (energy
    # p = 0.0055 for clic visible after a change of the far-deposit quanta; 8 other seed pairs gave p 0.08-0.97);
    # the artifact this guards against is far stronger (a 10% occupancy shift of the clic ECAL groups: p < 3e-5)
    for k in range(c1.shape[1]):
        m1, m2 = c1[:, k].mean(), c2[:, k].mean()
        se = np.hypot(c1[:, k].std(), c2[:, k].std()) / np.sqrt(len(c1))
        # within 4%, or 3 standard errors for sparse groups (a few cells: calogan layer 2)
        assert abs(m2 - m1) <= max(0.04 * m1, 3 * se), (name, mode, k, m1, m2, se)
        assert stats.ks_2samp(c1[:, k], c2[:, k]).pvalue > 0.001, (name, mode, k, m1, m2)
    assert abs(e2.mean() / e1.mean() - 1) < 0.02
    assert stats.ks_2samp(e1, e2).pvalue > 0.001


def test_gamma_pi0_not_separated_by_sparsity_at_small_opening_angle():
    """gamma vs pi0 (opening angle < 0.01 rad, energy-matched spectra, clic, visible, EM scale; the seed-001 task):
    the per-layer sparsity must not separate them the way it did when the spot count followed the number of
    sub-showers (AUC 1.00 before the fix; 0.61 measured after with 600 per class, GBT on the 85 sparsities)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from pcloud.bench.singles.tasks import TASKS, build_dataset
    from pcloud.features.shower_shapes import shower_shapes

    d = build_dataset(TASKS["gamma_vs_pi0"], 200, 2, mode="visible", log=lambda *a: None)
    x, names = shower_shapes(d, "all")
    y = d.truth["label"]
    sparsity = [i for i, nm in enumerate(names) if str(nm).startswith("sparsity_")]
    assert len(sparsity) == 85
    clf = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    p = cross_val_predict(clf, x[:, sparsity], y, cv=3, method="predict_proba")[:, 1]
    auc = roc_auc_score(y, p)
    assert auc < 0.8, auc
    n_nz = sum((d.images[s.name] > 0).reshape(d.n_events, -1).sum(1) for s in d.geometry.sections)
    auc_count = roc_auc_score(y, n_nz)
    assert 0.35 < auc_count < 0.65, auc_count         # total occupancy alone: no separation (1.00 before)


def test_spot_counts_are_energy_proportional_and_additive():
    rng = np.random.default_rng(5)
    e = np.full(200_000, 37.3)
    n = em.spot_counts(e, 2.5, rng)
    assert set(np.unique(n)) <= {93, 94} and n.mean() == pytest.approx(2.5 * 37.3, rel=2e-3)
    z = rng.uniform(0, 1, e.size)
    pair = em.spot_counts(z * e, 2.5, rng) + em.spot_counts((1 - z) * e, 2.5, rng)
    # E[n(zE)] + E[n((1-z)E)] = E[n(E)] except for the one-spot floor of sub-showers below 1/2.5 GeV
    assert pair.mean() == pytest.approx(n.mean(), rel=0.01)
    assert np.all(em.spot_counts(np.array([0.0, 1e-3]), 2.5, rng) == 1)


def test_proposal_density_does_not_depend_on_the_spot_count():
    """Strata of the fixed proposal: the expected number of spots in any probability interval is n (G(u2)-G(u1)),
    so two spot sets of n1 + n2 spots cover the profile like one of n1 + n2 spots; weights sum to 1."""
    for kind in ("em", "had"):
        for n in (1, 3, 17, 250):
            b = em.proposal_bounds(n, kind)
            assert b[0] == 0 and b[-1] == 1 and np.all(np.diff(b) > 0)
            g = em.proposal_cdf(b, **({} if kind == "em" else dict(front_share=0.0, front_min=1.0,
                                                                    tail_share=em.HAD_TAIL_SHARE,
                                                                    tail_min=em.HAD_TAIL_MIN)))
            assert np.allclose(g, np.arange(n + 1) / n, atol=2e-4)
    p = em.padded_bounds(np.array([3, 5, 3]))
    assert p.shape == (3, 6) and np.allclose(p[0, 4:], 1.0) and np.allclose(p[1], em.proposal_bounds(5))
    sp = em.em_spots(np.array([1.0, 30.0, 300.0]), 69.4, 9.31, np.array([2, 75, 750]), np.random.default_rng(1),
                     n_lateral=12)
    assert sp["weight"].shape == (3, 750 * 13)
    assert np.allclose(sp["weight"].sum(1), 1.0, atol=1e-12) and np.all(sp["weight"] >= 0)
    assert (sp["weight"][0] > 0).sum() <= 2 * 13        # padding carries no energy


def test_visible_fluctuation_is_infinitely_divisible_with_a_physical_zero():
    """Compound Poisson sampling law: mean e, variance a^2 e, P(0) = exp(-e/q) with q = a^2/2, and fluctuating k
    spots separately gives the same law as fluctuating their sum (no dependence on the spot granularity)."""
    rng = np.random.default_rng(3)
    a, e, n = 0.108, 0.02, 200_000
    v = _fluctuate(np.full(n, e), np.full(n, a), rng)
    assert v.mean() == pytest.approx(e, rel=0.01)
    assert v.var() == pytest.approx(a**2 * e, rel=0.03)
    assert (v == 0).mean() == pytest.approx(np.exp(-e / (a**2 / 2)), abs=0.005)
    split = _fluctuate(np.full((n // 10, 8), e / 8), np.full((n // 10, 8), a), rng).sum(1)
    assert stats.ks_2samp(v[: n // 10], split).pvalue > 0.01
    assert (split == 0).mean() == pytest.approx((v == 0).mean(), abs=0.01)
    assert np.array_equal(_fluctuate(np.array([0.3]), np.array([0.0]), rng), [0.3])     # a = 0: no fluctuation
