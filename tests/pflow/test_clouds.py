"""Per-track and whole-event particle-flow clouds: contents, geometry cuts, truth lists and target derivations."""
import awkward as ak
import numpy as np
import pytest

from pcloud.data.batch import to_padded
from pcloud.core.schema import PointType, hard_labels, target_fractions, validate_clouds
from pcloud.pflow.clouds import (NEIGHBOUR_FIELDS, NO_TRACK_DR, event_clouds, neighbour_energy, reference_layer,
                                  track_clouds)
from pcloud.pflow.learned import hard3_labels
from pcloud.sim.events import generate_events

from helpers.events import make_hand_event

CELL, FOCAL, OTHER = int(PointType.CELL), int(PointType.FOCAL_TRACK), int(PointType.OTHER_TRACK)


@pytest.fixture(scope="module")
def hand(atlas):
    return make_hand_event(atlas)


@pytest.fixture(scope="module")
def small_events(atlas):
    return generate_events(atlas, 12, np.random.default_rng(7), parent="rho", n_parents=(1, 3),
                           energy_gev=(10, 40))


def _dr(eta1, phi1, eta2, phi2):
    return np.hypot(eta1 - eta2, np.mod(phi1 - phi2 + np.pi, 2 * np.pi) - np.pi)


def test_hand_event_cloud_contents(atlas, hand):
    ev, row = hand
    c = validate_clouds(track_clouds(ev, atlas, dr_max=0.2), "test")
    assert len(c) == 2
    assert ak.to_list(c.focal_truth_index) == [0, 2] and ak.to_list(c.focal_track_row) == [0, 1]
    assert ak.to_list(c.focal_ref_layer) == [1, 1]  # EMB2
    p0 = c[0].points
    typ = np.asarray(p0["type"])
    assert (typ == FOCAL).sum() == 6 and (typ == OTHER).sum() == 6  # track 1 within 0.07 in every layer
    cell_rows = sorted(np.asarray(p0.cell_row)[typ == CELL].tolist())
    assert cell_rows == sorted(row[k] for k in ("c0", "c1", "c2", "c3", "c4"))  # c5 is outside the cone
    # focal-track points sit on the track: delta_r 0; pT and chi2/ndf carried
    f = typ == FOCAL
    np.testing.assert_allclose(np.asarray(p0.delta_r)[f], 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(p0.track_pt)[f], 10.0)
    np.testing.assert_allclose(np.asarray(p0.track_chi2_ndf)[f], 1.0)
    np.testing.assert_allclose(np.asarray(p0.track_chi2_ndf)[typ == OTHER], 2.0)
    assert set(np.asarray(p0.track_index)[typ == OTHER].tolist()) == {1}


def test_hand_event_targets(atlas, hand):
    ev, row = hand
    c = track_clouds(ev, atlas, dr_max=0.2)
    pts = c.points
    cr = ak.to_list(pts.cell_row)
    frac = ak.to_list(target_fractions(pts, ak.to_numpy(c.focal_truth_index)))
    hard = ak.to_list(hard_labels(pts))
    want_frac0 = {"c0": 0.75, "c1": 0.0, "c2": 0.0, "c3": 0.0, "c4": 1.0}
    want_hard = {"c0": 0, "c1": 1, "c2": 2, "c3": -1, "c4": 0}
    want_frac1 = {"c0": 0.0, "c1": 0.5, "c2": 1.0, "c3": 0.0, "c4": 0.0}
    for k in want_frac0:
        i0, i1 = cr[0].index(row[k]), cr[1].index(row[k])
        assert frac[0][i0] == pytest.approx(want_frac0[k]) and frac[1][i1] == pytest.approx(want_frac1[k])
        assert hard[0][i0] == want_hard[k]
    # 3-class labels: focal / other charged / neutral (noise-only -> neutral), per focal track
    pad = to_padded(c, ["energy"], targets=("hard", "binary", "soft"), sort_by=None)
    cell = (pad["type"] == CELL).numpy()
    y3 = hard3_labels(c, pad["y_hard"].numpy(), cell)
    want3 = [{"c0": 0, "c1": 2, "c2": 1, "c3": 2, "c4": 0}, {"c0": 1, "c1": 2, "c2": 0, "c3": 2, "c4": 1}]
    for b in range(2):
        for k, lab in want3[b].items():
            assert y3[b, cr[b].index(row[k])] == lab, (b, k)
        assert np.all(y3[b][~cell[b]] == -1)
    yb = pad["y_binary"].numpy()
    assert yb[0, cr[0].index(row["c0"])] == 1 and yb[1, cr[1].index(row["c1"])] == 0  # 0.5 is not > 0.5


def test_cells_within_cone_and_delta_r(atlas, small_events):
    ev = small_events
    dr_max = 0.15
    c = track_clouds(ev, atlas, dr_max=dr_max)
    reaching = np.nonzero(ev.tracks["layer_reached"].any(1))[0]
    assert ak.to_list(c.focal_track_row) == reaching.tolist()
    gc = atlas.cells
    for i in range(0, len(c), max(1, len(c) // 4)):
        t = int(c.focal_track_row[i])
        e = int(ev.tracks["event"][t])
        L = int(reference_layer(ev, [t])[0])
        r_eta, r_phi = ev.tracks["layer_eta"][t, L], ev.tracks["layer_phi"][t, L]
        rows = np.arange(ev.cell_offsets[e], ev.cell_offsets[e + 1])
        ids = ev.cells["id"][rows]
        inside = rows[_dr(gc["eta"][ids], gc["phi"][ids], r_eta, r_phi) < dr_max]
        p = c[i].points
        typ = np.asarray(p["type"])
        got = np.asarray(p.cell_row)[typ == CELL]
        assert sorted(got.tolist()) == inside.tolist()
        # cell energies in the cloud sum to the event's cells inside the cone (float64 kept)
        assert np.asarray(p.energy)[typ == CELL].sum() == pytest.approx(ev.cells["energy_gev"][inside].sum(),
                                                                          rel=1e-12, abs=1e-12)
        # delta_r by hand: to the focal track at each cell's layer (the helix bends in phi between layers)
        cids = np.asarray(p.cell_id)[typ == CELL]
        lay = gc["layer"][cids]
        want = _dr(gc["eta"][cids], gc["phi"][cids], ev.tracks["layer_eta"][t, lay], ev.tracks["layer_phi"][t, lay])
        np.testing.assert_allclose(np.asarray(p.delta_r)[typ == CELL], want, atol=1e-6)
        assert np.all(np.asarray(p.delta_r_ref)[typ == CELL] < dr_max)
        np.testing.assert_allclose(np.asarray(p.delta_r)[typ == FOCAL], 0.0, atol=1e-6)
        # one focal-track point per reached layer, at the extrapolated positions
        f = typ == FOCAL
        assert f.sum() == ev.tracks["layer_reached"][t].sum()
        np.testing.assert_allclose(np.asarray(p.eta)[f], ev.tracks["layer_eta"][t][ev.tracks["layer_reached"][t]],
                                   atol=1e-6)
        assert ak.sum(ak.num(p.truth_index[typ != CELL])) == 0  # track points carry no truth


def test_truth_lists_match_hits(atlas, small_events):
    ev = small_events
    c = track_clouds(ev, atlas)
    typ = ak.to_numpy(ak.flatten(c.points["type"]))
    cr = ak.to_numpy(ak.flatten(c.points.cell_row))[typ == CELL]
    te = ak.to_numpy(ak.sum(ak.flatten(c.points.truth_energy, axis=1), axis=-1))[typ == CELL]
    want = np.bincount(ev.hits["cell"], ev.hits["energy_gev"], minlength=ev.cells["event"].size)[cr]
    np.testing.assert_allclose(te, want, rtol=1e-9, atol=1e-12)


def test_cell_energy_override_changes_cloud(atlas, small_events):
    ev = small_events
    t = np.nonzero(ev.tracks["layer_reached"].any(1))[0][:1]
    base = track_clouds(ev, atlas, tracks=t)
    e = ev.cells["energy_gev"].copy()
    p = base[0].points
    typ = np.asarray(p["type"])
    rows = np.asarray(p.cell_row)[typ == CELL]
    top = rows[np.argsort(-np.asarray(p.energy)[typ == CELL])[:3]]
    e[top[0]] = 0.0           # emptied by subtraction -> dropped
    e[top[1]] *= 0.5          # partly subtracted -> kept with the new energy
    c2 = track_clouds(ev, atlas, tracks=t, cell_energy_gev=e)
    rows2 = np.asarray(c2[0].points.cell_row)
    e2 = np.asarray(c2[0].points.energy)
    assert top[0] not in rows2 and len(rows2) == len(np.asarray(p.cell_row)) - 1
    assert e2[list(rows2).index(top[1])] == pytest.approx(0.5 * ev.cells["energy_gev"][top[1]])
    with pytest.raises(ValueError, match="cell_energy_gev"):
        track_clouds(ev, atlas, cell_energy_gev=e[:-1])
    with pytest.raises(ValueError, match="dr_max"):
        track_clouds(ev, atlas, dr_max=-1)


def test_event_clouds_hand(atlas, hand):
    ev, row = hand
    c = validate_clouds(event_clouds(ev, atlas), "test")
    p = c[0].points
    typ = np.asarray(p["type"])
    assert (typ == CELL).sum() == 6 and (typ == OTHER).sum() == 12
    cr = np.asarray(p.cell_row)
    cf = np.asarray(p.charged_fraction)
    want = {"c0": 0.75, "c1": 0.5, "c2": 1.0, "c3": 0.0, "c4": 1.0, "c5": 0.0}
    for k, v in want.items():
        assert cf[list(cr).index(row[k])] == pytest.approx(v)
    near = np.asarray(p.nearest_track_row)
    assert near[list(cr).index(row["c0"])] == 0 and near[list(cr).index(row["c2"])] == 1
    dr = np.asarray(p.dr_nearest_track)
    assert np.all(dr[typ == CELL] < NO_TRACK_DR)
    np.testing.assert_allclose(np.asarray(p.delta_r), 0.0)  # schema: no focal track


def _brute_neighbours(atlas, ev, e, eligible, row):
    """Neighbour sums of one cell row from the cell areas, by brute force over its event's cells: same layer = the
    8 cells around it on the grid (phi wraps); inner / outer = cells of the adjacent layers whose (eta, phi) areas
    overlap its area."""
    gc = atlas.cells
    e0, e1 = ev.cell_offsets[ev.cells["event"][row]], ev.cell_offsets[ev.cells["event"][row] + 1]
    rows = np.arange(e0, e1)
    rows = rows[eligible[rows] & (rows != row)]
    a, b = ev.cells["id"][row], ev.cells["id"][rows]
    la, lb = gc["layer"][a], gc["layer"][b]
    du = np.abs(gc["u"][b] - gc["u"][a])
    dv = np.abs(np.mod(gc["v"][b] - gc["v"][a] + np.pi, 2 * np.pi) - np.pi)
    tol = 1e-9
    same = (lb == la) & (du < 1.5 * gc["du"][a]) & (dv < 1.5 * gc["dv"][a])
    overlap = (du < (gc["du"][a] + gc["du"][b]) / 2 - tol) & (dv < (gc["dv"][a] + gc["dv"][b]) / 2 - tol)
    inner, outer = overlap & (lb == la - 1), overlap & (lb == la + 1)
    mx = e[rows[same]].max() if same.any() else 0.0
    return e[rows[same]].sum(), e[rows[inner]].sum(), e[rows[outer]].sum(), mx, same.sum(), inner.sum() + outer.sum()


def test_neighbour_energy_matches_cell_areas(atlas, small_events):
    ev = small_events
    rng = np.random.default_rng(3)
    e = ev.cells["energy_gev"].astype(np.float64)
    eligible = rng.random(e.size) < 0.8  # some neighbours are not in the selection: they must not count
    nbr = neighbour_energy(ev, atlas, e, eligible)
    counted = [0, 0]
    for row in rng.choice(np.nonzero(eligible)[0], 300, replace=False):
        s, i, o, mx, n_same, n_cross = _brute_neighbours(atlas, ev, e, eligible, row)
        got = [nbr[k][row] for k in NEIGHBOUR_FIELDS]
        np.testing.assert_allclose(got, [s, i, o, mx], rtol=1e-5, atol=1e-6, err_msg=f"row {row}")
        counted[0] += n_same
        counted[1] += n_cross
    assert counted[0] > 300 and counted[1] > 100  # the sample exercised both kinds of neighbours
    # rows outside the computed set get 0; bad input is named
    only = neighbour_energy(ev, atlas, e, eligible, rows=[5])
    assert all(np.count_nonzero(only[k][np.arange(e.size) != 5]) == 0 for k in NEIGHBOUR_FIELDS)
    with pytest.raises(ValueError, match="energy_gev"):
        neighbour_energy(ev, atlas, e[:-1])
    with pytest.raises(ValueError, match="rows"):
        neighbour_energy(ev, atlas, e, rows=[e.size])


def test_track_clouds_carry_neighbourhood_of_the_current_energies(atlas, small_events):
    ev = small_events
    t = np.nonzero(ev.tracks["layer_reached"].any(1))[0][:3]
    c = track_clouds(ev, atlas, tracks=t)
    typ = ak.to_numpy(ak.flatten(c.points["type"]))
    rows = ak.to_numpy(ak.flatten(c.points.cell_row))[typ == CELL]
    want = neighbour_energy(ev, atlas)
    for k in NEIGHBOUR_FIELDS:
        col = ak.to_numpy(ak.flatten(c.points[k]))
        np.testing.assert_allclose(col[typ == CELL], want[k][rows], rtol=1e-6)
        assert np.all(col[typ != CELL] == 0)
    # a cell emptied by subtraction leaves its neighbours' sums; a partly subtracted one enters with its new energy
    p = c[0].points
    r = np.asarray(p.cell_row)[np.asarray(p["type"]) == CELL]
    top = r[np.argsort(-np.asarray(p.energy)[np.asarray(p["type"]) == CELL])[:2]]
    e = ev.cells["energy_gev"].astype(np.float64).copy()
    e[top[0]], e[top[1]] = 0.0, 0.25 * e[top[1]]
    c2 = track_clouds(ev, atlas, tracks=t[:1], cell_energy_gev=e)
    eligible = ~((e <= 0) & (ev.cells["energy_gev"] > 0))
    want2 = neighbour_energy(ev, atlas, e, eligible)
    r2 = np.asarray(c2[0].points.cell_row)
    cell2 = np.asarray(c2[0].points["type"]) == CELL
    same2 = np.asarray(c2[0].points.nbr_energy_same)[cell2]
    np.testing.assert_allclose(same2, want2["nbr_energy_same"][r2[cell2]], rtol=1e-6)
    assert not np.allclose(same2, want["nbr_energy_same"][r2[cell2]])  # the subtraction changed the neighbourhood


def test_cloud_cell_graph_matches_cell_areas(atlas, small_events):
    """``cell_nbr`` lists, within each cloud, exactly the cells whose areas touch (same layer: the 8 around it) or
    overlap (adjacent layers) the cell's area, found by brute force; symmetric; track points have none; the field
    is absent unless asked for and the other fields do not change."""
    from pcloud.pflow.clouds import cloud_cell_graph

    ev = small_events
    mask = np.random.default_rng(4).random(ev.cells["id"].size) < 0.7  # not every neighbour is in the clouds
    c = track_clouds(ev, atlas, cell_mask=mask, cell_graph=True)
    plain = track_clouds(ev, atlas, cell_mask=mask)
    assert "cell_nbr" not in ak.fields(plain.points)
    assert ak.all(plain.points.energy == c.points.energy) and ak.all(plain.points.cell_row == c.points.cell_row)
    gc = atlas.cells
    tol = 1e-9
    n_same = n_cross = 0
    for i in range(min(len(c), 6)):
        p = c[i].points
        cid = np.asarray(p.cell_id)
        lists = ak.to_list(p.cell_nbr)
        for a in range(cid.size):
            if cid[a] < 0:
                assert lists[a] == []
                continue
            b = np.nonzero(cid >= 0)[0]
            b = b[b != a]
            du = np.abs(gc["u"][cid[b]] - gc["u"][cid[a]])
            dv = np.abs(np.mod(gc["v"][cid[b]] - gc["v"][cid[a]] + np.pi, 2 * np.pi) - np.pi)
            la, lb = gc["layer"][cid[a]], gc["layer"][cid[b]]
            same = (lb == la) & (du < 1.5 * gc["du"][cid[a]]) & (dv < 1.5 * gc["dv"][cid[a]])
            cross = (np.abs(lb - la) == 1) & (du < (gc["du"][cid[a]] + gc["du"][cid[b]]) / 2 - tol) \
                & (dv < (gc["dv"][cid[a]] + gc["dv"][cid[b]]) / 2 - tol)
            assert sorted(lists[a]) == sorted(b[same | cross].tolist()), (i, a)
            assert all(a in lists[j] for j in lists[a])  # symmetric
            n_same += int(same.sum())
            n_cross += int(cross.sum())
    assert n_same > 200 and n_cross > 50
    # chunking does not change the graph; points not grouped by cloud or a cell twice in a cloud are rejected
    cl = np.repeat(np.arange(len(c)), ak.to_numpy(ak.num(c.points)))
    cid = ak.to_numpy(ak.flatten(c.points.cell_id))
    n1, l1 = cloud_cell_graph(atlas, cl, cid)
    n2, l2 = cloud_cell_graph(atlas, cl, cid, max_pairs=50)
    assert np.array_equal(n1, n2) and np.array_equal(l1, l2)
    assert np.array_equal(n1, ak.to_numpy(ak.flatten(ak.num(c.points.cell_nbr, axis=2))))
    with pytest.raises(ValueError, match="grouped by cloud"):
        cloud_cell_graph(atlas, cl[::-1], cid)
    with pytest.raises(ValueError, match="twice"):
        cloud_cell_graph(atlas, np.zeros(2, np.int64), np.array([5, 5]))


def test_neighbourhood_features(atlas, small_events):
    from pcloud.data.point_features import NEIGHBOUR_FEATURES, feature_matrix

    cols = {"type": np.array([CELL, CELL, CELL, FOCAL, CELL]), "energy": np.array([0.5, 0.2, -0.1, 0.0, 0.3]),
            "nbr_max_same": np.array([0.4, 0.3, -0.2, 0.0, 0.3]),
            "nbr_energy_same": np.array([2.0, 0.0, -1.0, 0.0, 0.3]),
            "nbr_energy_inner": np.array([1.0, 1.0, 1.0, 0.0, 0.0]),
            "nbr_energy_outer": np.array([0.0, 0.0, 0.0, 0.0, 0.0])}
    m = feature_matrix(cols, NEIGHBOUR_FEATURES)
    np.testing.assert_allclose(m[:, 0], np.log([2.0, 1e-3, 1e-3, 1e-3, 0.3]), rtol=1e-6)
    # negative cells, track points and a tie with a neighbour are no local maxima
    np.testing.assert_allclose(m[:, 3], [1, 0, 0, 0, 0])


def test_segmenter_feature_specifications():
    """features= takes names, a comma-separated string or 'jetpointnet'; the per-track default adds the cell
    neighbourhoods to the JetPointNet encoding; a string is never split into characters."""
    from pcloud.data.point_features import JETPOINTNET_FEATURES, NEIGHBOUR_FEATURES
    from pcloud.pflow.learned import FocalTrackSegmenter

    assert FocalTrackSegmenter(device="cpu").features == JETPOINTNET_FEATURES + NEIGHBOUR_FEATURES
    assert FocalTrackSegmenter(device="cpu", features="jetpointnet").features == JETPOINTNET_FEATURES
    assert FocalTrackSegmenter(device="cpu", features="delta_r").features == ["delta_r"]
    assert FocalTrackSegmenter(device="cpu", features="delta_r, local_max").features == ["delta_r", "local_max"]
    with pytest.raises(KeyError, match="unknown feature 'jetpoint'"):
        FocalTrackSegmenter(device="cpu", features="jetpoint")


def test_floored_log_features():
    """log_energy floors at 1 MeV, log_track_pt / log_other_track_pt at 0.1 GeV (one helper serves all of them)."""
    from pcloud.data.point_features import feature_matrix

    cols = {"energy": np.array([2.0, 0.0, -0.5]), "track_pt": np.array([5.0, 0.0, 0.05]),
            "other_track_pt": np.array([0.0, 1.0, 0.2])}
    m = feature_matrix(cols, ["log_energy", "log_track_pt", "log_other_track_pt"])
    np.testing.assert_allclose(m, np.log([[2.0, 5.0, 0.1], [1e-3, 0.1, 1.0], [1e-3, 0.1, 0.2]]), rtol=1e-6)
