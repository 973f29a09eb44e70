"""MLTree ROOT I/O: round trip of simulated events, the reading policies, sentinels and bad files."""
import awkward as ak
import numpy as np
import pytest
import uproot

from pcloud.io.errors import FormatError
from pcloud.io.mltree import LAYERS, NO_POINT, read_mltree, write_mltree
from pcloud.pflow.topocluster import topo_cluster_events
from pcloud.sim.events import generate_events


@pytest.fixture(scope="module")
def simulated(atlas, deposit_fn):
    rng = np.random.default_rng(21)
    ev = generate_events(atlas, 6, rng, deposit_fn=deposit_fn, parent=["rho", "delta"], energy_gev=(10, 40),
                         n_parents=(1, 2), dr=(0.1, 0.3), eta=(-0.9, 0.9))
    return ev, topo_cluster_events(atlas, ev)


@pytest.mark.parametrize("container", ["ttree", "rntuple"])
def test_round_trip(tmp_path, atlas, simulated, container):
    ev, cl = simulated
    path = write_mltree(tmp_path / f"ev_{container}.root", ev, cl, atlas, container=container)
    with uproot.open(path) as f:
        t = f["EventTree"]
        assert t.num_entries == ev.n_events
        for b in ("trackPt", "trackEta_EMB1", "trackPhi_TileBar2", "cluster_cell_ID", "truthPartPdgId"):
            assert b in t.keys()
        if container == "rntuple":  # exact MLTree nesting
            arr = t.arrays(["cluster_cell_ID", "cluster_cell_hitsTruthE"])
            assert str(ak.type(arr["cluster_cell_ID"])).endswith("var * var * uint64")
            assert str(ak.type(arr["cluster_cell_hitsTruthE"])).endswith("var * var * var * float32")
        geo = f["CellGeo"].arrays()
        assert len(geo) == 1 and len(geo["cell_geo_ID"][0]) == atlas.n_cells
    d = read_mltree(path)
    assert d.meta["missing_branches"] == [] and d.meta["has_cell_truth"]
    r, rc = d.events, d.clusters
    f32 = dict(rtol=2e-7, atol=1e-6)
    # clusters: same count, energies, positions, memberships (as cell ids)
    np.testing.assert_array_equal(rc.event, cl.event)
    np.testing.assert_allclose(rc.energy_gev, cl.energy_gev, **f32)
    np.testing.assert_allclose(rc.eta, cl.eta, **f32)
    np.testing.assert_array_equal(rc.n_cells, cl.n_cells)
    np.testing.assert_array_equal(r.cells["id"][rc.members], ev.cells["id"][cl.members])
    # cells: exactly the clustered cells, energies and noise (CellGeo sigma, MeV on file)
    sel = np.nonzero(cl.cell_cluster >= 0)[0]
    np.testing.assert_array_equal(r.cells["event"], ev.cells["event"][sel])
    np.testing.assert_array_equal(r.cells["id"], ev.cells["id"][sel])
    np.testing.assert_allclose(r.cells["energy_gev"], ev.cells["energy_gev"][sel], **f32)
    np.testing.assert_allclose(r.cells["noise_sigma_gev"], ev.cells["noise_sigma_gev"][sel], rtol=1e-6)
    # per-cell truth of those cells (particle, total and EM energy)
    keep = np.isin(ev.hits["cell"], sel)
    h0 = {k: v[keep] for k, v in ev.hits.items()}
    h0["cell"] = np.searchsorted(sel, h0["cell"])
    o0 = np.lexsort((h0["particle"], h0["cell"]))
    o1 = np.lexsort((r.hits["particle"], r.hits["cell"]))
    np.testing.assert_array_equal(r.hits["cell"][o1], h0["cell"][o0])
    np.testing.assert_array_equal(r.hits["particle"][o1], h0["particle"][o0])
    np.testing.assert_allclose(r.hits["energy_gev"][o1], h0["energy_gev"][o0], **f32)
    np.testing.assert_allclose(r.hits["energy_em_gev"][o1], h0["energy_em_gev"][o0], **f32)
    # tracks and truth particles
    for k in ("event", "particle", "ndf", "charge"):
        np.testing.assert_array_equal(r.tracks[k], ev.tracks[k])
    for k in ("pt_gev", "p_gev", "eta", "phi", "chi2", "layer_eta", "layer_phi"):
        np.testing.assert_allclose(r.tracks[k], ev.tracks[k], **f32)
    np.testing.assert_array_equal(r.tracks["layer_reached"], ev.tracks["layer_reached"])
    np.testing.assert_array_equal(r.particles["pdg"], ev.particles["pdg"])
    for k in ("pt_gev", "energy_gev", "eta", "phi"):
        np.testing.assert_allclose(r.particles[k], ev.particles[k], **f32)


def test_leading_truth_only(tmp_path, atlas, simulated):
    ev, cl = simulated
    d = read_mltree(write_mltree(tmp_path / "lead.root", ev, cl, atlas, max_truth_per_cell=1, write_cell_geo=False),
                    geometry=atlas)
    assert np.all(np.bincount(d.events.hits["cell"]) <= 1)
    # the kept contribution is the leading one of each cell
    sel = np.nonzero(cl.cell_cluster >= 0)[0]
    best = np.zeros(ev.cells["id"].size)
    np.maximum.at(best, ev.hits["cell"], ev.hits["energy_gev"])
    np.testing.assert_allclose(d.events.hits["energy_gev"], best[sel][d.events.hits["cell"]], rtol=2e-7)
    # no CellGeo: noise from the geometry, cluster positions from the file
    np.testing.assert_allclose(d.events.cells["noise_sigma_gev"], ev.cells["noise_sigma_gev"][sel])


def _hand_file(path, drop=(), hits_index=None, truth=True):
    """A small MLTree-like RNTuple with native nesting, one sentinel, a shared cell, a long hit list, a negative
    truth energy; ``drop`` removes branches."""
    f32 = lambda x: ak.values_astype(ak.Array(x), np.float32)  # noqa: E731
    i32 = lambda x: ak.values_astype(ak.Array(x), np.int32)  # noqa: E731
    d = {"trackPt": f32([[5.0, 3.0], []]), "trackEta": f32([[0.1, 0.2], []]), "trackPhi": f32([[0.5, 0.6], []]),
         "trackTruthParticleIndex": i32([[0, 1], []]),
         "cluster_cell_ID": ak.values_astype(ak.Array([[[5, 6], [6, 7]], []]), np.uint64),
         "cluster_cell_E": f32([[[1.0, 2.0], [2.5, 3.0]], []]),
         "cluster_E": f32([[3.0, 5.5], []]), "cluster_nCells": i32([[2, 2], []]),
         "cluster_cell_hitsTruthIndex": i32(hits_index or [[[[0], [0, 1], [1]], [[1], [1]]], []]),
         "cluster_cell_hitsTruthE": f32([[[[0.9], [1.5, -0.1], [7.0]], [[2.0], [2.9]]], []])}
    for lay in LAYERS[:-1]:  # TileBar2 branches absent
        d[f"trackEta_{lay}"] = f32([[NO_POINT if lay == "EMB1" else 0.1, 0.2], []])
        d[f"trackPhi_{lay}"] = f32([[NO_POINT if lay == "EMB1" else 0.5, 0.6], []])
    if truth:
        d.update({"truthPartPdgId": i32([[211, -211], []]), "truthPartPt": f32([[5.0, 3.0], []]),
                  "truthPartE": f32([[5.1, 3.1], []]), "truthPartEta": f32([[0.1, 0.2], []]),
                  "truthPartPhi": f32([[0.5, 0.6], []])})
    for k in drop:
        d.pop(k)
    with uproot.recreate(path) as f:
        f.mkrntuple("EventTree", d)
    return path


def test_reading_policies(tmp_path):
    d = read_mltree(_hand_file(tmp_path / "hand.root"))
    ev, m = d.events, d.meta
    # shared cell 6 counted once, with the energy of its first occurrence
    assert ev.cells["id"].tolist() == [5, 6, 7] and ev.cells["energy_gev"].tolist() == [1.0, 2.0, 3.0]
    assert m["n_shared_cells"] == 1 and m["n_truncated_hit_lists"] == 1 and m["n_negative_truth"] == 1
    # hits: long list truncated, negative contribution dropped, shared cell truth from its first occurrence
    assert ev.hits["cell"].tolist() == [0, 1, 2]
    assert ev.hits["particle"].tolist() == [0, 0, 1]
    np.testing.assert_allclose(ev.hits["energy_gev"], [0.9, 1.5, 2.9], rtol=1e-6)
    assert np.isnan(ev.hits["energy_em_gev"]).all()        # no EM split in Athena files
    # clusters keep both memberships of the shared cell
    assert d.clusters.n_cells.tolist() == [2, 2] and d.clusters.members.tolist() == [0, 1, 1, 2]
    np.testing.assert_allclose(d.clusters.energy_gev, [3.0, 5.5])
    # sentinels and missing optional branches
    r = ev.tracks["layer_reached"]
    assert r[:, 0].tolist() == [False, True] and not r[:, 5].any() and r[:, 1:5].all()
    assert np.isnan(ev.tracks["layer_eta"][0, 0])
    assert np.isnan(ev.tracks["chi2"]).all() and (ev.tracks["ndf"] == -1).all()
    for b in ("trackEta_TileBar2", "trackChiSquared", "trackNumberDOF", "trackP"):
        assert b in m["missing_branches"]
    np.testing.assert_allclose(ev.tracks["p_gev"], [5.0 * np.cosh(0.1), 3.0 * np.cosh(0.2)], rtol=1e-6)
    assert np.isnan(ev.cells["noise_sigma_gev"]).all()      # no CellGeo, no geometry
    assert ev.particle_offsets.tolist() == [0, 2, 2] and ev.particles["charge"].tolist() == [1, -1]


def test_negative_truth_options(tmp_path):
    p = _hand_file(tmp_path / "neg.root")
    clip = read_mltree(p, negative_truth="clip").events.hits
    assert clip["particle"].tolist() == [0, 0, 1, 1] and clip["energy_gev"][2] == 0.0
    keep = read_mltree(p, negative_truth="keep").events.hits
    assert keep["energy_gev"][2] == pytest.approx(-0.1)
    with pytest.raises(FormatError, match="hitsTruthE.*negative"):
        read_mltree(p, negative_truth="error")
    with pytest.raises(ValueError, match="negative_truth"):
        read_mltree(p, negative_truth="ignore")


def test_missing_truth_particles_get_placeholders(tmp_path):
    d = read_mltree(_hand_file(tmp_path / "notruth.root", truth=False))
    assert "truthPartPdgId" in d.meta["missing_branches"]
    assert d.events.particle_offsets.tolist() == [0, 2, 2]
    assert (d.events.particles["pdg"] == 0).all() and np.isnan(d.events.particles["pt_gev"]).all()


def test_missing_hits_means_no_cell_truth(tmp_path):
    d = read_mltree(_hand_file(tmp_path / "nohits.root", drop=("cluster_cell_hitsTruthIndex",
                                                               "cluster_cell_hitsTruthE")))
    assert not d.meta["has_cell_truth"] and d.events.hits["cell"].size == 0
    assert np.isnan(d.events.cells["true_energy_gev"]).all()
    with pytest.raises(FormatError, match="both or neither"):
        read_mltree(_hand_file(tmp_path / "half.root", drop=("cluster_cell_hitsTruthE",)))


@pytest.mark.parametrize("branch", ["trackPt", "cluster_cell_ID"])
def test_missing_required_branch(tmp_path, branch):
    with pytest.raises(FormatError, match=branch):
        read_mltree(_hand_file(tmp_path / "req.root", drop=(branch,)))


def test_bad_truth_index_and_bad_files(tmp_path):
    bad = [[[[0], [0, 5], [1]], [[1], [1]]], []]
    with pytest.raises(FormatError, match=r"nTruthPart"):
        read_mltree(_hand_file(tmp_path / "idx.root", hits_index=bad))
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"not a root file at all")
    with pytest.raises(FormatError, match="ROOT file"):
        read_mltree(junk)
    other = tmp_path / "other.root"
    with uproot.recreate(other) as f:
        f["Other"] = {"x": np.arange(3)}
    with pytest.raises(FormatError, match="EventTree"):
        read_mltree(other)
