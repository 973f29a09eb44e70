"""JetPointNet's preprocessing accepts pcloud's MLTree files.

JetPointNet (github.com/markojovo/JetPointNet and the fork Joshuah143/JetPointNet,
``python_scripts/data_processing/jets/jets_root_to_awk.py`` and helpers) cannot be installed here, so this test
re-implements its reading logic from its documented behaviour (formats spec section 2.3): the file is read with
uproot exactly as JetPointNet reads it (``iterate`` over its 50 branch names, ``library="ak"``, ``step_size=250``;
CellGeo columns with ``.array(library="np")[0]``), then for every event

1. cut each cluster's truth lists to its cell list (original version) / require equal lengths (fork);
2. flatten the clusters; 3. de-duplicate cell IDs (first occurrence; the fork needs unique IDs);
4. look the IDs up in CellGeo with ``isin`` and pair the rows, in CellGeo order, with the sorted IDs;
5. cell positions from rPerp, eta, phi; 6. track points on JetPointNet's layer cylinders / planes, sentinel skipped;
7. reference direction EMB2, else EME2; 8. track metadata (chi2 / ndf); 9. cells within Delta R of the reference
   and their distance to the track points; 10. per-cell truth labels, both versions.

Every step asserts what would make JetPointNet crash or silently go wrong.
"""
import awkward as ak
import numpy as np
import pytest
import uproot

from helpers.mltree import has_root
from pcloud.core.particles import PDG_CHARGE
from pcloud.io.mltree import write_mltree
from pcloud.io.mltree.layout import JETPOINTNET_LAYERS, JETPOINTNET_RADIUS_MM, JETPOINTNET_Z_MM
from pcloud.pflow.topocluster import topo_cluster_events
from pcloud.sim.events import generate_events

MASK = -100000.0                                   # UPROOT_MASK_VALUE_THRESHOLD
FIELDS = ([f"trackEta_{lay}" for lay in JETPOINTNET_LAYERS] + [f"trackPhi_{lay}" for lay in JETPOINTNET_LAYERS]
          + ["trackSubtractedCaloEnergy", "trackPt", "nTrack", "cluster_cell_ID", "trackNumberDOF",
             "trackChiSquared", "cluster_cell_E", "cluster_cell_hitsTruthIndex", "cluster_cell_hitsTruthE",
             "trackTruthParticleIndex", "eventNumber", "truthPartPdgId"])
DR = {"original": 0.1, "fork": 0.2}


@pytest.fixture(scope="module")
def mltree_file(tmp_path_factory, atlas, deposit_fn):
    if not has_root():
        pytest.skip("JetPointNet reads TTrees: needs the root extra")
    rng = np.random.default_rng(5)
    ev = generate_events(atlas, 30, rng, deposit_fn=deposit_fn, parent=["rho", "delta"], energy_gev=(10, 60),
                         n_parents=(1, 3), dr=(0.05, 0.3), eta=(-1.2, 1.2))
    cl = topo_cluster_events(atlas, ev)
    path = tmp_path_factory.mktemp("jpn") / "pcloud_events.root"
    write_mltree(path, ev, cl, atlas, subtracted_energy_mev=np.full(ev.tracks["event"].size, 1234.0))
    return path


def _cell_geo(path):
    t = uproot.open(path)["CellGeo"]
    return {k: t[k].array(library="np")[0] for k in ("cell_geo_ID", "cell_geo_eta", "cell_geo_phi",
                                                     "cell_geo_rPerp", "cell_geo_sigma")}


def _event_cells(event, geo, version):
    """Steps 1-5: the unique cells of one event with CellGeo coordinates and truth lists."""
    ids_c, e_c = event["cluster_cell_ID"], event["cluster_cell_E"]
    hi_c, he_c = event["cluster_cell_hitsTruthIndex"], event["cluster_cell_hitsTruthE"]
    hi, he = [], []
    for c in range(len(ids_c)):
        n = len(ids_c[c])
        assert len(e_c[c]) == n
        if version == "fork":                      # no cut: flattened truth must line up with the cells
            assert len(hi_c[c]) == len(he_c[c]) == n
        hi += [np.asarray(x, np.int64) for x in hi_c[c][:n]]
        he += [np.asarray(x, np.float64) for x in he_c[c][:n]]
    assert all(a.size == b.size for a, b in zip(hi, he))
    ids = np.array([i for c in ids_c for i in c], np.uint64)
    e = np.array([x for c in e_c for x in c], np.float32)
    uid, first = np.unique(ids, return_index=True)
    if version == "fork":                          # its duplicate-summing loop fails under numpy 2
        assert uid.size == ids.size
    rows = np.nonzero(np.isin(geo["cell_geo_ID"], uid))[0]
    assert rows.size == uid.size                   # else ak.zip of the two cannot broadcast
    np.testing.assert_array_equal(geo["cell_geo_ID"][rows], uid)  # pairing in CellGeo order is right
    eta, phi, r = geo["cell_geo_eta"][rows], geo["cell_geo_phi"][rows], geo["cell_geo_rPerp"][rows]
    return {"id": uid, "e": e[first], "eta": eta, "phi": phi,
            "xyz": np.stack([r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta)], 1),
            "sigma": geo["cell_geo_sigma"][rows], "hi": [hi[i] for i in first], "he": [he[i] for i in first]}


def _track_points(event, t):
    """Steps 6-7: the track's layer points (mm) and reference direction."""
    pts = []
    for lay in JETPOINTNET_LAYERS:
        eta, phi = float(event[f"trackEta_{lay}"][t]), float(event[f"trackPhi_{lay}"][t])
        assert np.isfinite(eta) and np.isfinite(phi)            # NaN would pass the mask test and poison x, y, z
        if eta < MASK or phi < MASK:
            continue
        if lay in JETPOINTNET_RADIUS_MM:
            rad = JETPOINTNET_RADIUS_MM[lay]
            pts.append((rad * np.cos(phi), rad * np.sin(phi), rad * np.sinh(eta)))
        else:
            z = np.sign(eta) * JETPOINTNET_Z_MM[lay]
            rad = z / np.sinh(eta)
            pts.append((rad * np.cos(phi), rad * np.sin(phi), z))
    ref = "EMB2" if event["trackEta_EMB2"][t] > MASK else "EME2"
    return np.array(pts).reshape(-1, 3), float(event[f"trackEta_{ref}"][t]), float(event[f"trackPhi_{ref}"][t])


def _labels(cells, k, focal, pdg, version):
    """Step 10 for cell ``k``: (fraction of the focal particle, ...) as each version computes it."""
    idx, e = cells["hi"][k], cells["he"][k]
    total = e.sum()
    if version == "original":
        frac = e[idx == focal].sum() / total if focal in idx else 0.0
        return (frac,)
    assert np.all(idx < len(pdg))                               # pdg lookup of every listed particle
    charge = np.array([PDG_CHARGE.get(int(p), 0) for p in np.asarray(pdg)[idx]])
    if total <= 0:
        return 0.0, 0.0, 1.0
    f = e[idx == focal].sum() / total
    n = e[(charge == 0) & (idx != focal)].sum() / total
    o = e[(charge != 0) & (idx != focal)].sum() / total
    return tuple(float(np.clip(x, 0, 1)) for x in (f, o, n))


@pytest.mark.parametrize("version", ["original", "fork"])
def test_jetpointnet_reads_pcloud_files(mltree_file, version):
    geo = _cell_geo(mltree_file)
    assert np.all(np.diff(geo["cell_geo_ID"].astype(np.int64)) > 0) and geo["cell_geo_ID"].max() < 2 ** 31
    visible = ak.flatten(uproot.open(mltree_file)["EventTree"]["trackVisibleCalHitCaloEnergy"].array())
    n_trk = n_ref = n_assoc = 0
    missed_energetic = []
    for chunk in uproot.open(mltree_file)["EventTree"].iterate(FIELDS, library="ak", step_size=250):
        for event in chunk.to_list():                  # plain lists: per-element awkward access is slow
            cells = _event_cells(event, geo, version)
            assert np.all(cells["e"] >= 0.005)
            for t in range(int(event["nTrack"])):
                pts, ref_eta, ref_phi = _track_points(event, t)
                assert event["trackNumberDOF"][t] > 0 and np.isfinite(event["trackChiSquared"][t])
                assert event["trackSubtractedCaloEnergy"][t] > MASK
                focal = int(event["trackTruthParticleIndex"][t])
                dr = np.hypot(cells["eta"] - ref_eta, np.mod(cells["phi"] - ref_phi + np.pi, 2 * np.pi) - np.pi)
                near = np.nonzero(dr <= DR[version])[0]
                if near.size:
                    assert pts.shape[0] > 0                     # min() over an empty list in the original
                    dist = np.linalg.norm(cells["xyz"][near, None, :] - pts[None], axis=2).min(1)
                    assert np.all(np.isfinite(dist))
                for k in near:
                    lab = _labels(cells, k, focal, event["truthPartPdgId"], version)
                    assert all(np.isfinite(x) and 0.0 <= x <= 1.0 + 1e-6 for x in lab), lab
                has_ref = ref_eta > MASK
                n_trk += 1
                n_ref += has_ref
                n_assoc += has_ref and near.size > 0
                if has_ref and near.size == 0 and visible[n_trk - 1] > 0.5:
                    missed_energetic.append(n_trk - 1)
    assert n_trk > 20 and n_ref > 0.8 * n_trk
    assert n_assoc >= 0.9 * n_ref                               # tracks at EMB2 find their cells
    assert missed_energetic == []                               # always when the particle left > 0.5 GeV
