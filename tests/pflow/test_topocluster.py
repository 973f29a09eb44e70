"""Topo-clustering (4/2/0) on hand-built cell patterns of the ATLAS-like geometry."""
import numpy as np
import pytest

from pcloud.pflow.topocluster import cell_neighbours, expected_noise_seeds, topo_cluster


def cid(g, name, iu, iv, layer=0):
    si = g.section_names.index(name)
    s = g.sections[si]
    return int(g.section_offsets[si] + (layer * s.n_u + iu) * s.n_v + iv)


def run(g, cells, **kw):
    """cells: {flat id: significance}; energies = significance * sigma of the cell; one event."""
    ids = np.array(sorted(cells))
    sig = g.cells["noise_sigma_gev"][ids]
    e = np.array([cells[i] for i in ids]) * sig
    return ids, topo_cluster(g, np.zeros(ids.size, np.int64), ids, e, **kw)


def members(cl, ids, k):
    return set(ids[cl.cells_of(k)].tolist())


def test_neighbour_graph(atlas):
    nb = cell_neighbours(atlas)
    assert (nb != nb.T).nnz == 0 and nb.diagonal().sum() == 0
    deg = np.diff(nb.indptr)
    # interior cells: 8 in-layer + overlapping cells of the layers before/after (granularities of atlas.py)
    expected = {"EMB1": 8 + 4, "EMB2": 8 + 8 + 1, "EMB3": 8 + 2 + 1, "TileBar0": 8 + 8 + 1, "TileBar1": 8 + 1 + 1,
                "TileBar2": 8 + 2}
    for name, d in expected.items():
        assert deg[cid(atlas, name, 10, 5)] == d, name
    # phi wraps around
    assert nb[cid(atlas, "EMB2", 100, 0), cid(atlas, "EMB2", 100, 255)]
    assert nb[cid(atlas, "EMB2", 100, 0), cid(atlas, "EMB2", 101, 255)]
    # EMB2 cell (eta bin 100) overlaps EMB1 eta bins 800..807 in the same phi quarter, EMB3 bin 50
    assert nb[cid(atlas, "EMB2", 100, 8), cid(atlas, "EMB1", 807, 2)]
    assert not nb[cid(atlas, "EMB2", 100, 8), cid(atlas, "EMB1", 808, 2)]
    assert nb[cid(atlas, "EMB2", 100, 8), cid(atlas, "EMB3", 50, 8)]
    assert not nb[cid(atlas, "EMB2", 100, 8), cid(atlas, "TileBar0", 25, 2)]  # not adjacent layers


def test_two_separate_seeds_two_clusters_with_perimeter(atlas):
    a, b = cid(atlas, "EMB2", 40, 10), cid(atlas, "EMB2", 60, 10)
    cells = {a: 6.0, b: 4.5, cid(atlas, "EMB2", 41, 10): 0.5, cid(atlas, "EMB2", 43, 10): 0.5,
             cid(atlas, "EMB2", 60, 11): 1.5}
    ids, cl = run(atlas, cells)
    assert len(cl) == 2
    assert members(cl, ids, 0) == {a, cid(atlas, "EMB2", 41, 10)}      # perimeter 0.5 sigma attached
    assert members(cl, ids, 1) == {b, cid(atlas, "EMB2", 60, 11)}
    assert cid(atlas, "EMB2", 43, 10) not in members(cl, ids, 0)       # not adjacent to a > 2 sigma cell
    # energy ordering and sums
    assert cl.energy_gev[0] > cl.energy_gev[1]
    np.testing.assert_allclose(cl.energy_gev[0], (6.0 + 0.5) * 0.030)
    roles = dict(zip(ids.tolist(), cl.cell_role.tolist()))
    assert roles[a] == 1 and roles[cid(atlas, "EMB2", 41, 10)] == 3


def test_two_sigma_bridge_merges_but_perimeter_does_not(atlas):
    s1, s2 = cid(atlas, "EMB2", 40, 10), cid(atlas, "EMB2", 44, 10)
    bridge = [cid(atlas, "EMB2", i, 10) for i in (41, 42, 43)]
    ids, cl = run(atlas, {s1: 5.0, s2: 5.0, **{c: 3.0 for c in bridge}})
    assert len(cl) == 1 and members(cl, ids, 0) == {s1, s2, *bridge}
    # same pattern with one bridge cell below 2 sigma: two clusters; that cell joins only one of them
    weak = {s1: 5.0, s2: 7.0, bridge[0]: 3.0, bridge[1]: 1.0, bridge[2]: 3.5}
    ids, cl = run(atlas, weak)
    assert len(cl) == 2
    assert members(cl, ids, 0) == {s2, bridge[2], bridge[1]}   # most significant > 2 sigma neighbour: 3.5 > 3
    assert members(cl, ids, 1) == {s1, bridge[0]}


def test_growth_across_layers_and_phi_wrap(atlas):
    seed = cid(atlas, "EMB2", 100, 0)
    cells = {seed: 8.0, cid(atlas, "EMB2", 100, 255): 2.5, cid(atlas, "EMB3", 50, 255): 2.5,
             cid(atlas, "TileBar0", 25, 63): 0.7, cid(atlas, "TileBar0", 25, 30): 0.7}
    ids, cl = run(atlas, cells)
    assert len(cl) == 1
    assert members(cl, ids, 0) == {seed, cid(atlas, "EMB2", 100, 255), cid(atlas, "EMB3", 50, 255),
                                   cid(atlas, "TileBar0", 25, 63)}
    # energy-weighted centroid: all cells near phi = +-pi -> |phi| close to pi, eta of the cells
    assert abs(cl.phi[0]) > np.pi - 0.05
    assert cl.eta[0] == pytest.approx(atlas.cells["eta"][seed], abs=0.05)


def test_negative_seeds_and_thresholds(atlas):
    seed = cid(atlas, "EMB2", 70, 70)
    ids, cl = run(atlas, {seed: -5.0})
    assert len(cl) == 1                         # |E| > 4 sigma
    ids, cl = run(atlas, {seed: -5.0}, use_abs=False)
    assert len(cl) == 0
    ids, cl = run(atlas, {seed: 3.9})
    assert len(cl) == 0                         # no seed
    with pytest.raises(ValueError, match="thresholds"):
        run(atlas, {seed: 5.0}, seed_sigma=2.0, grow_sigma=4.0)
    with pytest.raises(ValueError, match="duplicate"):
        topo_cluster(atlas, [0, 0], [seed, seed], [1.0, 1.0])


def test_events_are_independent(atlas):
    seed = cid(atlas, "EMB2", 70, 70)
    nbr = cid(atlas, "EMB2", 71, 70)
    # the same cells in two events: event 1's 3-sigma cell must not join event 0's cluster
    e = np.array([5.0, 0.0, 0.0, 3.0]) * 0.030
    cl = topo_cluster(atlas, [0, 0, 1, 1], [seed, nbr, seed, nbr], e, n_events=3)
    assert len(cl) == 1 and cl.event.tolist() == [0] and cl.offsets.tolist() == [0, 1, 1, 1]


def test_noise_only_cluster_rate(atlas):
    rng = np.random.default_rng(11)
    n = atlas.n_cells
    ev = np.repeat(np.arange(3), n)
    ids = np.tile(np.arange(n), 3)
    e = rng.standard_normal(3 * n) * atlas.cells["noise_sigma_gev"][ids]
    cl = topo_cluster(atlas, ev, ids, e)
    n_seeds = int((np.abs(e) / atlas.cells["noise_sigma_gev"][ids] > 4).sum())
    mu = expected_noise_seeds(3 * n)
    assert mu == pytest.approx(3 * n * 6.334e-5, rel=1e-3)
    # isolated noise seeds rarely touch: clusters ~ seeds ~ Poisson(mu)
    assert abs(n_seeds - mu) < 4 * np.sqrt(mu)
    assert 0.8 * n_seeds <= len(cl) <= n_seeds
