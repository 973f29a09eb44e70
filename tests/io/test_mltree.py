"""MLTree ROOT I/O: files as Athena writes them (branches, types, nesting, units), the round trip of simulated events,
the reading of Athena-style files (shared cells, long hit lists, MeV truth, cell mapping) and bad input."""
import awkward as ak
import numpy as np
import pytest
import uproot

from helpers.mltree import athena_style_file, cell_geo_file, has_root
from pcloud.io.errors import FormatError
from pcloud.io.mltree import LAYERS, NO_POINT, TRACK_LAYERS, read_mltree, write_mltree, written_cell_mask
from pcloud.io.mltree.layout import CALO_SAMPLING, CELLGEO_BRANCHES, event_tree_branches
from pcloud.pflow.topocluster import topo_cluster_events
from pcloud.sim.events import generate_events

CONTAINERS = [pytest.param("ttree", marks=pytest.mark.skipif(not has_root(), reason="needs the root extra")),
              "rntuple"]
#: uproot's names of the C++ types MLTreeMaker books (checked on every written branch)
UPROOT_TYPES = {"int": "int32_t", "Long64_t": "int64_t", "unsigned int": "uint32_t", "float": "float",
                "unsigned long": "uint64_t", "unsigned short": "uint16_t"}


def _typename(branch) -> str:
    """uproot's type name of a TTree branch or RNTuple field (RNTuple spells std::int32_t)."""
    return branch.typename.replace("std::int", "int").replace("std::uint", "uint")


def _uproot_type(ctype: str, depth: int) -> str:
    inner = ctype
    for _ in range(ctype.count("vector<")):
        inner = inner[inner.index("<") + 1:inner.rindex(">")].strip()
    t = UPROOT_TYPES[inner]
    for _ in range(ctype.count("vector<") + (1 if depth == 1 else 0)):
        t = f"std::vector<{t}>"
    return t


@pytest.fixture(scope="module")
def simulated(atlas, deposit_fn):
    rng = np.random.default_rng(21)
    ev = generate_events(atlas, 6, rng, deposit_fn=deposit_fn, parent=["rho", "delta"], energy_gev=(10, 40),
                         n_parents=(1, 2), dr=(0.1, 0.3), eta=(-0.9, 0.9))
    return ev, topo_cluster_events(atlas, ev)


@pytest.mark.parametrize("container", CONTAINERS)
def test_written_layout_is_mltreemaker(tmp_path, atlas, simulated, container):
    ev, cl = simulated
    sub = np.linspace(-999.0, 5000.0, ev.tracks["event"].size)
    w = write_mltree(tmp_path / f"ev_{container}.root", ev, cl, atlas, container=container, subtracted_energy_mev=sub)
    with uproot.open(w) as f:
        assert {k.split(";")[0] for k in f.keys()} == {"EventTree", "CellGeo"}
        t = f["EventTree"]
        assert t.num_entries == ev.n_events
        for b in event_tree_branches():
            assert _typename(t[b.name]) == _uproot_type(b.ctype, b.depth), b.name
        g = f["CellGeo"]
        assert g.num_entries == 1
        for b in CELLGEO_BRANCHES:
            assert _typename(g[b.name]) == _uproot_type(b.ctype, b.depth), b.name
        a = t.arrays()
        geo = {k: g[k].array(library="np")[0] for k in g.keys()}
    # per cluster: cells, hit lists of the same length, <= cluster_nCells; truth increasing, MeV; cells >= 5 MeV
    n_id = ak.num(a.cluster_cell_ID, axis=2)
    for k in ("cluster_cell_E", "cluster_cell_hitsE_EM", "cluster_cell_hitsTruthIndex", "cluster_cell_hitsTruthE"):
        assert ak.all(ak.num(a[k], axis=2) == n_id), k
    assert ak.all(ak.num(a.cluster_cell_hitsTruthIndex, axis=3) == ak.num(a.cluster_cell_hitsTruthE, axis=3))
    assert ak.all(a.cluster_nCells >= n_id) and ak.any(a.cluster_nCells > n_id)
    assert ak.min(a.cluster_cell_E) >= 0.005
    he = a.cluster_cell_hitsTruthE
    assert ak.all(he[..., 1:] >= he[..., :-1])
    sel = written_cell_mask(ev, cl)
    mev = 1e3 * np.bincount(ev.hits["cell"], ev.hits["energy_gev"], minlength=sel.size)[sel]
    per_cell = ak.to_numpy(ak.flatten(ak.sum(he, axis=-1), axis=None))
    np.testing.assert_allclose(np.sort(per_cell), np.sort(mev), rtol=1e-5)
    ids = ak.flatten(a.cluster_cell_ID, axis=2)                    # event -> cells of all its clusters
    key = np.repeat(np.arange(len(ids)), ak.to_numpy(ak.num(ids))) * 2**32 + ak.to_numpy(ak.flatten(ids))
    assert np.unique(key).size == key.size                          # every cell once per event
    # tracks: every layer, the sentinel where pcloud has no layer or the track does not reach it
    assert ak.all(a.trackEta_EME2 == np.float32(NO_POINT)) and ak.all(a.trackPhi_PreSamplerB == np.float32(NO_POINT))
    reached = ev.tracks["layer_reached"][:, LAYERS.index("EMB2")]
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(a.trackEta_EMB2)) > -1e5, reached)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(a.trackSubtractedCaloEnergy)), sub, rtol=1e-6)
    # CellGeo: sorted ids, ATLAS sampling numbers, positive volumes adding up to the layer shells
    assert np.all(np.diff(geo["cell_geo_ID"].astype(np.int64)) > 0)
    assert set(np.unique(geo["cell_geo_sampling"]).tolist()) == {CALO_SAMPLING[x] for x in LAYERS}
    c = atlas.cells
    r0, r1 = c["depth_mm"] - c["thickness_mm"] / 2, c["depth_mm"] + c["thickness_mm"] / 2
    emb2 = c["layer"] == 1
    shell = 2 * np.pi * (r1[emb2][0] ** 3 - r0[emb2][0] ** 3) / 3 * 2 * np.sinh(1.4)
    assert geo["cell_geo_volume"][emb2].sum() == pytest.approx(shell, rel=1e-5)
    np.testing.assert_allclose(geo["cell_geo_sigma"], 1e3 * c["noise_sigma_gev"], rtol=1e-6)


@pytest.mark.parametrize("container", CONTAINERS)
def test_round_trip_maps_onto_itself(tmp_path, atlas, simulated, container):
    ev, cl = simulated
    w = write_mltree(tmp_path / f"rt_{container}.root", ev, cl, atlas, container=container)
    d = read_mltree(w)
    r, rc, m = d.events, d.clusters, d.meta
    assert m["missing_branches"] == [] and m["has_cell_truth"] and m["container"] == container
    cm = m["cell_mapping"]
    assert cm["mode"] == "cellgeo" and cm["n_mapped"] == cm["n_file_cells"] == w.n_cells
    assert cm["n_merged_into_shared_pcloud_cells"] == 0 and cm["energy_fraction_dropped"] == 0
    sel = np.nonzero(written_cell_mask(ev, cl))[0]
    assert w.n_cells_below_threshold == int((cl.cell_cluster >= 0).sum()) - sel.size - \
        int(np.isin(cl.cell_cluster, np.nonzero(cl.energy_gev < 0)[0]).sum())
    f32 = dict(rtol=2e-7, atol=1e-6)
    np.testing.assert_array_equal(r.cells["event"], ev.cells["event"][sel])
    np.testing.assert_array_equal(r.cells["id"], ev.cells["id"][sel])
    np.testing.assert_allclose(r.cells["energy_gev"], ev.cells["energy_gev"][sel], **f32)
    np.testing.assert_allclose(r.cells["noise_sigma_gev"], ev.cells["noise_sigma_gev"][sel], rtol=1e-6)
    # clusters (E >= 0 kept), memberships as cell ids
    keep = np.nonzero(cl.energy_gev >= 0)[0]
    np.testing.assert_array_equal(rc.event, cl.event[keep])
    np.testing.assert_allclose(rc.energy_gev, cl.energy_gev[keep], **f32)
    np.testing.assert_allclose(rc.eta, cl.eta[keep], **f32)
    np.testing.assert_array_equal(rc.meta["cluster_nCells"], cl.n_cells[keep])
    # per-cell truth: MeV on file, GeV back
    hk = np.isin(ev.hits["cell"], sel)
    h0 = {k: v[hk] for k, v in ev.hits.items()}
    h0["cell"] = np.searchsorted(sel, h0["cell"])
    o0, o1 = np.lexsort((h0["particle"], h0["cell"])), np.lexsort((r.hits["particle"], r.hits["cell"]))
    np.testing.assert_array_equal(r.hits["cell"][o1], h0["cell"][o0])
    np.testing.assert_array_equal(r.hits["particle"][o1], h0["particle"][o0])
    np.testing.assert_allclose(r.hits["energy_gev"][o1], h0["energy_gev"][o0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(r.hits["energy_em_gev"][o1], h0["energy_em_gev"][o0], rtol=1e-6, atol=1e-9)
    # tracks and truth particles; track points on the pcloud layer radius
    for k in ("event", "particle", "ndf", "charge"):
        np.testing.assert_array_equal(r.tracks[k], ev.tracks[k])
    for k in ("pt_gev", "p_gev", "eta", "phi", "chi2", "layer_eta", "layer_phi"):
        np.testing.assert_allclose(r.tracks[k], ev.tracks[k], **f32)
    np.testing.assert_array_equal(r.tracks["layer_reached"], ev.tracks["layer_reached"])
    rr = ev.tracks["layer_reached"]
    for k in ("layer_x_mm", "layer_y_mm", "layer_z_mm"):
        np.testing.assert_allclose(r.tracks[k][rr], ev.tracks[k][rr], rtol=1e-5, atol=0.05)
    np.testing.assert_array_equal(r.particles["pdg"], ev.particles["pdg"])
    for k in ("pt_gev", "energy_gev", "eta", "phi", "mass_gev"):
        np.testing.assert_allclose(r.particles[k], ev.particles[k], rtol=1e-6, atol=1e-6)


def test_leading_truth_only_and_no_cellgeo(tmp_path, atlas, simulated):
    ev, cl = simulated
    w = write_mltree(tmp_path / "lead.root", ev, cl, atlas, container="rntuple", max_truth_per_cell=1,
                     write_cell_geo=False)
    d = read_mltree(w, geometry=atlas)
    assert d.meta["cell_mapping"]["mode"] == "identity" and d.cell_geo is None
    assert np.all(np.bincount(d.events.hits["cell"]) <= 1)
    sel = np.nonzero(written_cell_mask(ev, cl))[0]
    best = np.zeros(ev.cells["id"].size)
    np.maximum.at(best, ev.hits["cell"], ev.hits["energy_gev"])
    np.testing.assert_allclose(d.events.hits["energy_gev"], best[sel][d.events.hits["cell"]], rtol=1e-6)
    np.testing.assert_allclose(d.events.cells["noise_sigma_gev"], ev.cells["noise_sigma_gev"][sel])


@pytest.mark.parametrize("container", CONTAINERS)
def test_empty_selections(tmp_path, atlas, simulated, container):
    from pcloud.core.events import select_events

    ev, _ = simulated
    for name, keep in (("none", np.zeros(ev.n_events, bool)), ("one", np.arange(ev.n_events) == 2)):
        sub = select_events(ev, keep)
        cl = topo_cluster_events(atlas, sub)
        w = write_mltree(tmp_path / f"{name}.root", sub, cl, atlas, container=container)
        d = read_mltree(w)
        assert d.events.n_events == w.n_events == keep.sum() and d.events.cells["id"].size == w.n_cells
        assert len(d.clusters) == w.n_clusters


def test_threshold_and_negative_clusters_are_counted(tmp_path, atlas, simulated):
    ev, cl = simulated
    w = write_mltree(tmp_path / "all.root", ev, cl, atlas, container="rntuple", cell_threshold_gev=-np.inf,
                     cluster_e_min_gev=None)
    assert w.n_cells == int((cl.cell_cluster >= 0).sum()) and w.n_cells_below_threshold == 0
    assert w.n_clusters == len(cl) and w.n_clusters_negative == 0
    w5 = write_mltree(tmp_path / "five.root", ev, cl, atlas, container="rntuple")
    assert w5.n_cells_below_threshold > 0 and w5.n_cells + w5.n_cells_below_threshold <= w.n_cells
    with pytest.raises(ValueError, match="container"):
        write_mltree(tmp_path / "x.root", ev, cl, atlas, container="hdf5")
    with pytest.raises(ValueError, match="one value per track"):
        write_mltree(tmp_path / "x.root", ev, cl, atlas, subtracted_energy_mev=np.zeros(3))


# ------------------------------------------------------------------------------------------ Athena-style files
@pytest.mark.parametrize("separate_geo", [False, True])
def test_athena_style_file(tmp_path, atlas, separate_geo):
    geo = tmp_path / "geo.root" if separate_geo else None
    d = read_mltree(athena_style_file(tmp_path / "athena.root", geo_path=geo), geo=geo)
    ev, m, c = d.events, d.meta, d.events.cells
    # mapping: A and B into one pcloud EMB2 cell, C, D mapped; E (presampler), F (EME2) no layer; G outside
    cm = m["cell_mapping"]
    assert cm["mode"] == "cellgeo" and cm["n_file_cells"] == 8 and cm["n_mapped"] == 5 and cm["n_pcloud_cells"] == 4
    assert cm["n_dropped_no_layer"] == 2 and cm["n_dropped_outside"] == 1
    assert cm["n_merged_into_shared_pcloud_cells"] == 1
    assert cm["energy_fraction_dropped"] == pytest.approx(1.3 / 7.85, rel=1e-6)
    emb2 = atlas.cell_at(1, [0.1125, 0.1375, 0.1125], [0.5, 0.5, 0.5]).tolist()
    tile0 = int(atlas.cell_at(3, 0.15, 0.5))
    assert c["event"].tolist() == [0, 0, 0, 2]
    assert c["id"].tolist() == sorted([emb2[0], emb2[1], tile0]) + [emb2[2]]
    e = dict(zip(c["id"][:3].tolist(), c["energy_gev"][:3]))
    assert e[emb2[0]] == pytest.approx(1.5) and e[emb2[1]] == pytest.approx(2.0)   # A+B merged; C split 1.2+0.8
    assert e[tile0] == pytest.approx(3.0)
    sig = dict(zip(c["id"][:3].tolist(), c["noise_sigma_gev"][:3]))
    assert sig[emb2[0]] == pytest.approx(0.05, rel=1e-6)                        # 30 (+) 40 MeV
    assert m["n_shared_cells"] == 1 and m["n_truncated_hit_lists"] == 2 and m["n_negative_truth"] == 1
    # truth: MeV -> GeV, merged per (pcloud cell, particle), C's truth once, D's negative entry dropped
    row = {cid: i for i, cid in enumerate(c["id"][:3].tolist())}
    got = {(int(cc), int(p)): float(x) for cc, p, x in zip(ev.hits["cell"], ev.hits["particle"], ev.hits["energy_gev"])}
    assert got == pytest.approx({(row[emb2[0]], 0): 1.1, (row[emb2[0]], 1): 0.3, (row[emb2[1]], 0): 1.5,
                                 (row[tile0], 0): 2.5, (3, 2): 0.04})
    assert np.all(np.diff(ev.hits["cell"]) >= 0)
    # clusters keep both memberships of the shared and merged cells
    cl = d.clusters
    assert cl.n_cells.tolist() == [3, 2, 1] and cl.event.tolist() == [0, 0, 2]
    assert sorted(cl.cells_of(1).tolist()) == sorted([row[emb2[0]], row[emb2[1]]])
    assert cl.cell_cluster.tolist() == [0, 0, 0, 2] and cl.meta["cluster_nCells"].tolist() == [6, 5, 1]
    np.testing.assert_allclose(cl.energy_gev, [5.9, 1.9, 0.05], rtol=1e-6)
    # tracks: sentinel and NaN -> not reached; missing DetailedTracking -> defaults; event numbers from the file
    T = ev.tracks
    assert T["layer_reached"].tolist() == [[True, True, True, True, False, False], [False] * 6]
    assert np.isnan(T["chi2"]).all() and (T["ndf"] == -1).all() and T["particle"].tolist() == [0, -1]
    for b in ("trackChiSquared", "trackNumberDOF", "truthPartPt"):
        assert b in m["missing_branches"] and b in m["defaults"]
    assert ev.meta["event_number"].tolist() == [1001, 1002, 1003]
    assert ev.particles["pdg"].tolist() == [211, 22, -211] and np.isnan(ev.particles["pt_gev"]).all()
    assert ev.particles["showered"].tolist() == [True, True, True]


def test_athena_style_negative_truth_policies(tmp_path):
    p = athena_style_file(tmp_path / "neg.root")
    tile = {"clip": 2.5, "keep": 2.45}
    for policy, expected in tile.items():
        d = read_mltree(p, negative_truth=policy)
        h = d.events.hits
        assert np.sum(h["energy_gev"][(h["particle"] == 0)]) == pytest.approx(1.1 + 1.5 + 2.5)
        assert np.sum(h["energy_gev"]) == pytest.approx(1.1 + 0.3 + 1.5 + expected + 0.04)
    with pytest.raises(FormatError, match="hitsTruthE.*negative"):
        read_mltree(p, negative_truth="error")
    with pytest.raises(ValueError, match="negative_truth"):
        read_mltree(p, negative_truth="ignore")


def test_missing_truth(tmp_path):
    from pcloud.io.mltree import require_truth

    d = read_mltree(athena_style_file(tmp_path / "nohits.root", with_truth=False))
    assert not d.meta["has_cell_truth"] and d.events.hits["cell"].size == 0
    assert np.isnan(d.events.cells["true_energy_gev"]).all()
    with pytest.raises(FormatError, match=r"nohits\.root: branch 'cluster_cell_hitsTruthIndex'.*training"):
        require_truth(d, "training")
    d2 = read_mltree(athena_style_file(tmp_path / "nopdg.root", drop=("truthPartPdgId",)))
    assert d2.events.particle_offsets.tolist() == [0, 2, 2, 3]            # placeholders cover every index
    assert (d2.events.particles["pdg"] == 0).all()


@pytest.mark.parametrize("branch", ["trackPt", "cluster_cell_ID"])
def test_missing_required_branch(tmp_path, branch):
    with pytest.raises(FormatError, match=branch):
        read_mltree(athena_style_file(tmp_path / "req.root", drop=(branch,)))


def test_bad_files(tmp_path, atlas, simulated):
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"not a root file at all")
    with pytest.raises(FormatError, match=r"junk\.root: file: expected a readable ROOT file"):
        read_mltree(junk)
    good = write_mltree(tmp_path / "good.root", *simulated, atlas, container="ttree" if has_root() else "rntuple")
    data = good.path.read_bytes()
    cut = tmp_path / "truncated.root"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"truncated\.root: .*expected a readable ROOT file"):
        read_mltree(cut)
    other = tmp_path / "other.root"
    with uproot.recreate(other) as f:
        f["Other"] = {"x": np.arange(3)}
    with pytest.raises(FormatError, match="EventTree"):
        read_mltree(other)
    flat = tmp_path / "flat.root"        # pcloud's old flattened layout: one vector of cells per event
    with uproot.recreate(flat) as f:
        f.mkrntuple("EventTree", {"trackPt": ak.Array([[1.0]]), "trackEta": ak.Array([[0.1]]),
                                  "trackPhi": ak.Array([[0.1]]), "cluster_cell_ID": ak.Array([[1, 2]]),
                                  "cluster_cell_E": ak.Array([[1.0, 2.0]])})
    with pytest.raises(FormatError, match="flattened layout"):
        read_mltree(flat, geometry=atlas)
    old = tmp_path / "old.root"          # pcloud's earlier nested files: truth in GeV, no runNumber
    with uproot.recreate(old) as f:
        f.mkrntuple("EventTree", {"trackPt": ak.Array([[1.0]]), "trackEta": ak.Array([[0.1]]),
                                  "trackPhi": ak.Array([[0.1]]), "cluster_cell_ID": ak.Array([[[1]]]),
                                  "cluster_cell_E": ak.Array([[[1.0]]]),
                                  "cluster_cell_hitsTruthE_EM": ak.Array([[[[0.5]]]])})
    with pytest.raises(FormatError, match="earlier pcloud version"):
        read_mltree(old, geometry=atlas)
    with pytest.raises(FormatError, match="cell_geo_ID"):          # identifiers missing from the geometry file
        read_mltree(athena_style_file(tmp_path / "a.root"), geo=cell_geo_file(tmp_path / "g.root", exclude="C"))


def test_writer_without_root_names_the_extra(tmp_path, atlas, simulated, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_root(name, *a, **k):
        if name == "ROOT":
            raise ImportError("No module named 'ROOT'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_root)
    with pytest.raises(ImportError, match=r"pcloud\[root\].*container='rntuple'"):
        write_mltree(tmp_path / "x.root", *simulated, atlas, container="ttree")
    assert not (tmp_path / "x.root").exists() and list(tmp_path.iterdir()) == []


def test_dictionary_cache_location(monkeypatch, tmp_path):
    from pcloud.io.mltree.root_writer import dictionary_dir

    monkeypatch.setenv("PCLOUD_CACHE", str(tmp_path / "c"))
    d = dictionary_dir("6.40/00")  # one folder per ROOT version and environment (libraries of one venv only)
    assert d.parent == tmp_path / "c" / "root-dicts" and d.name.startswith("6.40_00-")
    monkeypatch.delenv("PCLOUD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert dictionary_dir("6.40/00") == tmp_path / "x" / "pcloud" / "root-dicts" / d.name


def test_track_layers_are_mltreemakers():
    assert len(TRACK_LAYERS) == 21 and TRACK_LAYERS[:5] == ("PreSamplerB", "PreSamplerE", "EMB1", "EMB2", "EMB3")
    assert [CALO_SAMPLING[x] for x in LAYERS] == [1, 2, 3, 12, 13, 14]
