"""Event-level particle-flow metrics on hand-computed cases."""
import numpy as np
import pytest

from pcloud.core.attribution import Attribution, truth_attribution
from pcloud.pflow.topocluster import clustered_cell_mask
from pcloud.metrics.particle_flow import energy_conservation, evaluate_attribution, event_isolation_dr, track_isolation_dr

from helpers.events import centre, make_events

IU, IV = 56, 128


@pytest.fixture(scope="module")
def hand(atlas):
    """Event 0: pi+ (track 0) on EMB2 cell (56,128) and a photon 0.05 away in eta. Cells (rows by id):
    row 0 (56,128) E 3: pi 2.5, gamma 0.5 -> truth track 0 gets 2.5 (label track 0);
    row 1 (57,128) E 1: pi 0.4, gamma 0.6 -> track 0.4 < neutral 0.6 (label neutral);
    row 2 (58,128) E 2: gamma only (neutral);   row 3 (60,128) E 0.1: noise only (neutral);
    row 4 (60,129) E -0.05: negative, never evaluated.
    Truth: track energy 2.9 GeV, neutral 3.2 GeV of the 6.1 GeV positive energy."""
    eta, phi = centre(atlas, "EMB2", IU, IV)
    eta_g, _ = centre(atlas, "EMB2", IU + 2, IV)
    cells = [(0, "EMB2", IU, IV, 3.0), (0, "EMB2", IU + 1, IV, 1.0), (0, "EMB2", IU + 2, IV, 2.0),
             (0, "EMB2", IU + 4, IV, 0.1), (0, "EMB2", IU + 4, IV + 1, -0.05)]
    hits = [(0, 0, 2.5), (0, 1, 0.5), (1, 0, 0.4), (1, 1, 0.6), (2, 1, 2.0)]
    return make_events(atlas, 1, cells, [(0, 0, eta, phi, 10.0)], [(0, 1, eta, phi), (0, 0, eta_g, phi)], hits)


def test_truth_of_the_hand_case(hand):
    t = truth_attribution(hand)
    np.testing.assert_allclose(t.per_track(1), [2.9])
    e = hand.cells["energy_gev"]
    np.testing.assert_array_equal(t.dominant_track(e.size, e)[:4], [0, -1, -1, -1])


def test_perfect_prediction(hand):
    r = evaluate_attribution(hand, truth_attribution(hand))
    for k in ("f1", "iou", "accuracy", "energy_weighted_accuracy", "f1_track_macro", "soft_overlap",
              "track_energy_response", "neutral_energy_recovered", "neutral_energy_recovered_total"):
        assert r[k] == pytest.approx(1.0), k
    assert r["track_energy_resolution"] == pytest.approx(0.0)
    assert r["n_cells"] == 4  # the negative cell is never evaluated


def test_all_neutral_prediction(hand):
    z = np.zeros(0, np.int64)
    r = evaluate_attribution(hand, Attribution(z, z, np.zeros(0)))
    assert r["f1"] == 0.0 and r["iou"] == 0.0 and r["recall"] == 0.0
    assert r["accuracy"] == pytest.approx(3 / 4)
    assert r["energy_weighted_accuracy"] == pytest.approx(3.1 / 6.1)
    assert r["track_energy_response"] == 0.0
    assert r["neutral_energy_recovered"] == pytest.approx(6.1 / 3.2)
    # neutral remainders: min(true, pred) per cell = true neutral, plus nothing charged
    assert r["soft_overlap"] == pytest.approx(3.2 / 6.1)


def test_partial_prediction_by_hand(hand):
    # rows 0 and 1 wholly to the track: labels [0, 0, -1, -1] vs truth [0, -1, -1, -1]
    a = Attribution([0, 1], [0, 0], [3.0, 1.0])
    r = evaluate_attribution(hand, a)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(2 / 3) and r["iou"] == pytest.approx(0.5)
    assert r["accuracy"] == pytest.approx(3 / 4)
    assert r["energy_weighted_accuracy"] == pytest.approx(5.1 / 6.1)
    assert r["track_energy_response"] == pytest.approx(4.0 / 2.9)
    assert r["track_energy_mae_gev"] == pytest.approx(1.1)
    # overlap: row 0 min(2.5, 3) + row 1 min(0.4, 1) + row 2 (2 neutral both) + row 3 (0.1) = 5.0 of 6.1
    assert r["soft_overlap"] == pytest.approx(5.0 / 6.1)
    # focal-track F1 of the single track equals the binary F1 here; per-track soft IoU 2.9 / 4.0
    assert r["f1_track_macro"] == pytest.approx(2 / 3)
    assert r["soft_iou_track_macro"] == pytest.approx(2.9 / 4.0)
    assert r["neutral_energy_recovered"] == pytest.approx(2.1 / 3.2)
    # the only track is 0.05 from the photon -> bin 0.05-0.1 holds it, the others are empty
    by = r["by_dr"]
    assert by["0.05-0.1"]["n_tracks"] == 1 and by["0-0.05"]["n_tracks"] == 0
    assert by["0.05-0.1"]["response_median"] == pytest.approx(4.0 / 2.9)
    assert np.isnan(by[">0.2"]["f1"])
    # per-track energy-weighted accuracy: truth cells of the track (row 0, 3 GeV, right) + cells wrongly given to it
    # (row 1, 1 GeV) -> 3 / 4
    assert by["0.05-0.1"]["energy_weighted_accuracy"] == pytest.approx(0.75)
    # the event's densest track is at 0.05 -> event bin 0.05-0.1 with the cell-level numbers of the whole event
    be = r["by_event_dr"]
    assert be["0.05-0.1"]["n_events"] == 1 and be[">0.2"]["n_events"] == 0
    assert be["0.05-0.1"]["f1"] == pytest.approx(2 / 3)
    assert be["0.05-0.1"]["energy_weighted_accuracy"] == pytest.approx(5.1 / 6.1)
    assert be["0.05-0.1"]["neutral_energy_recovered"] == pytest.approx(2.1 / 3.2)
    assert np.isnan(be[">0.2"]["neutral_energy_recovered"])
    # the dedicated dense summary (DeltaR < 0.1) holds the track and the event; the isolated complement is empty
    d = r["dense"]
    assert d["dr"] == 0.1 and d["tracks"]["n_tracks"] == 1 and d["events"]["n_events"] == 1
    assert d["tracks"]["f1"] == pytest.approx(2 / 3) and d["tracks"]["response_median"] == pytest.approx(4.0 / 2.9)
    assert d["events"]["neutral_energy_recovered"] == pytest.approx(2.1 / 3.2)
    assert d["isolated_tracks"]["n_tracks"] == 0 and d["isolated_events"]["n_events"] == 0
    # a tighter cut moves them to the isolated side
    d2 = evaluate_attribution(hand, a, dense_dr=0.04)["dense"]
    assert d2["tracks"]["n_tracks"] == 0 and d2["isolated_events"]["n_events"] == 1
    assert d2["isolated_events"]["energy_weighted_accuracy"] == pytest.approx(5.1 / 6.1)
    # a cell mask restricts every metric: only rows 0 and 2 -> both right
    m = np.array([True, False, True, False, False])
    rm = evaluate_attribution(hand, a, cell_mask=m)
    assert rm["n_cells"] == 2 and rm["f1"] == 1.0 and rm["track_energy_response"] == pytest.approx(3.0 / 2.5)


def test_isolation_dr_hand(atlas):
    eta, phi = centre(atlas, "EMB2", IU, IV)
    parts = [(0, 1, eta, phi), (0, 0, eta + 0.3, phi), (0, 1, eta, phi + 0.12), (1, 1, eta, phi)]
    tracks = [(0, 0, eta, phi, 10.0), (0, 2, eta, phi + 0.12, 5.0), (1, 3, eta, phi, 7.0)]
    ev = make_events(atlas, 2, [(0, "EMB2", IU, IV, 1.0)], tracks, parts)
    np.testing.assert_allclose(track_isolation_dr(ev), [0.12, 0.12, np.inf])
    np.testing.assert_allclose(event_isolation_dr(ev), [0.12, np.inf])
    # all particles of make_events share parent -1 (no parent): other_parent_only keeps them
    np.testing.assert_allclose(track_isolation_dr(ev, other_parent_only=True), [0.12, 0.12, np.inf])
    # same parent -> the partner no longer counts; the next particle (0.3 away in eta) from another parent does
    ev.particles["parent"] = np.array([0, 1, 0, 2])
    np.testing.assert_allclose(track_isolation_dr(ev, other_parent_only=True), [0.3, np.hypot(0.3, 0.12), np.inf])
    np.testing.assert_allclose(track_isolation_dr(ev), [0.12, 0.12, np.inf])
    # phi wrap-around: particles at +-pi are close
    parts = [(0, 1, 0.0, np.pi - 0.01), (0, 0, 0.0, -np.pi + 0.02)]
    ev = make_events(atlas, 1, [(0, "EMB2", IU, IV, 1.0)], [(0, 0, 0.0, np.pi - 0.01, 5.0)], parts)
    np.testing.assert_allclose(track_isolation_dr(ev), [0.03], atol=1e-12)


def test_energy_conservation_flags_bad_attributions(atlas):
    eta, phi = centre(atlas, "EMB2", IU, IV)
    cells = [(0, "EMB2", IU, IV, 2.0), (1, "EMB2", IU, IV, 1.0)]
    ev = make_events(atlas, 2, cells, [(0, 0, eta, phi, 5.0), (1, 1, eta, phi, 5.0)],
                     [(0, 1, eta, phi), (1, 1, eta, phi)])
    good = energy_conservation(ev, Attribution([0, 1], [0, 1], [1.5, 1.0]))
    assert good["max_violation_gev"] < 1e-12 and good["n_cross_event"] == 0
    over = energy_conservation(ev, Attribution([0], [0], [2.5]))
    assert over["max_cell_excess_gev"] == pytest.approx(0.5) and over["max_violation_gev"] == pytest.approx(0.5)
    cross = energy_conservation(ev, Attribution([0], [1], [1.0]))  # cell of event 0 given to the track of event 1
    assert cross["n_cross_event"] == 1 and cross["max_event_violation_gev"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="track_row"):
        energy_conservation(ev, Attribution([0], [5], [1.0]))


def test_clustered_mask(atlas, hand):
    m = clustered_cell_mask(hand, atlas)
    assert m.shape == (5,) and m[0] and m[2]  # 3 GeV and 2 GeV EMB2 cells are far above 4 sigma (30 MeV)


def _close(a, b, path=""):
    """Nested metric dicts equal (floats to 1e-12 relative; NaN equals NaN)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    else:
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12, nan_ok=True), path


def test_metrics_over_chunks_equal_metrics_over_all_events(atlas):
    """AttributionMetrics fed chunk by chunk (files larger than memory) gives evaluate_attribution's numbers."""
    from pcloud.baselines.particle_flow import dr_nearest
    from pcloud.core.events import select_events
    from pcloud.metrics.particle_flow import AttributionMetrics
    from pcloud.sim.events import generate_events

    ev = generate_events(atlas, 24, np.random.default_rng(5), parent=["rho", "delta"], n_parents=(1, 3),
                         dr=(0.02, 0.3), energy_gev=(10, 60))
    mask = clustered_cell_mask(ev, atlas)
    lay = atlas.cells["layer"][ev.cells["id"]]
    whole = evaluate_attribution(ev, dr_nearest(ev, atlas), cell_mask=mask, cell_layer=lay)
    acc = AttributionMetrics()
    for lo, hi in ((0, 5), (5, 6), (6, 17), (17, 24)):  # uneven chunks, one of a single event
        keep = np.zeros(ev.n_events, bool)
        keep[lo:hi] = True
        part = select_events(ev, keep)
        acc.add(part, dr_nearest(part, atlas), cell_mask=mask[keep[ev.cells["event"]]],
                cell_layer=lay[keep[ev.cells["event"]]])
    got = acc.result()
    _close(got, whole)
    assert got["n_events"] == 24 and got["n_tracks"] == ev.tracks["event"].size
    assert 0 < got["f1"] < 1 and got["energy_conservation"]["max_violation_gev"] < 1e-9
    assert set(got["by_layer"]) == set(ev.layer_names)
    assert sum(b["n_cells"] for b in got["by_layer"].values()) == got["n_cells"]
    assert sum(b["n_cells"] for b in got["by_significance"].values()) == got["n_cells"]
    lost = sum(got["energy_lost"].values())
    assert lost == pytest.approx(1 - got["energy_weighted_accuracy"])
    assert sum(b[k] for b in got["by_layer"].values() for k in ("lost_charged_as_neutral", "lost_neutral_as_charged",
                                                                "lost_wrong_track")) == pytest.approx(lost)


def test_error_budget_by_hand(hand):
    """energy_lost / by_significance / by_layer of the partial prediction, computed by hand: rows 0 and 1 both
    given to the track, truth labels [track, neutral, neutral, neutral]."""
    a = Attribution([0, 1], [0, 0], [3.0, 1.0])
    e = hand.cells["energy_gev"]
    sig = hand.cells["noise_sigma_gev"]
    # one significance bin per cell: edges between the four evaluated cells' E / sigma
    s = np.sort(e[:4] / sig[:4])
    assert np.all(np.diff(s) > 0)
    edges = np.concatenate([[0.0], (s[:-1] + s[1:]) / 2, [np.inf]])
    layer = np.array([1, 1, 0, 2, 2])  # invented layers: row 2 alone in layer 0, rows 3-4 in layer 2
    r = evaluate_attribution(hand, a, significance_edges=edges, cell_layer=layer, layer_names=["A", "B", "C"])
    lost = r["energy_lost"]
    # only row 1 (1 GeV, neutral in truth) is wrong: given to the track
    assert lost["neutral_as_charged"] == pytest.approx(1.0 / 6.1)
    assert lost["charged_as_neutral"] == 0.0 and lost["wrong_track"] == 0.0
    assert sum(lost.values()) == pytest.approx(1.0 - r["energy_weighted_accuracy"])
    bins = list(r["by_significance"].values())
    assert [b["n_cells"] for b in bins] == [1, 1, 1, 1]
    rank = {row: int(np.searchsorted(s, e[row] / sig[row])) for row in range(4)}
    b1 = bins[rank[1]]
    assert b1["charged_share_true"] == 0.0 and b1["charged_share_pred"] == 1.0
    assert b1["energy_weighted_accuracy"] == 0.0 and b1["lost_neutral_as_charged"] == pytest.approx(1.0 / 6.1)
    assert b1["energy_share"] == pytest.approx(1.0 / 6.1)
    b0 = bins[rank[0]]
    assert b0["f1"] == 1.0 and b0["energy_weighted_accuracy"] == 1.0 and b0["energy_share"] == pytest.approx(3 / 6.1)
    assert sum(b["energy_share"] for b in bins) == pytest.approx(1.0)
    # per layer: B holds rows 0 (right) and 1 (wrong); A row 2 (right, neutral); C row 3 (right; row 4 E < 0)
    by = r["by_layer"]
    assert list(by) == ["A", "B", "C"]
    assert by["B"]["n_cells"] == 2 and by["B"]["energy_weighted_accuracy"] == pytest.approx(3.0 / 4.0)
    assert by["B"]["f1"] == pytest.approx(2 / 3) and by["B"]["lost_neutral_as_charged"] == pytest.approx(1 / 6.1)
    assert by["A"]["n_cells"] == 1 and by["A"]["charged_share_true"] == 0.0 and by["A"]["charged_share_pred"] == 0.0
    assert by["C"]["n_cells"] == 1 and by["C"]["energy_share"] == pytest.approx(0.1 / 6.1)
    # the perfect attribution loses nothing; a track-swap is a wrong-track loss
    assert sum(evaluate_attribution(hand, truth_attribution(hand))["energy_lost"].values()) == 0.0
    with pytest.raises(ValueError, match="cell_layer must have shape"):
        evaluate_attribution(hand, a, cell_layer=layer[:3])
    with pytest.raises(ValueError, match="significance_edges must be increasing"):
        evaluate_attribution(hand, a, significance_edges=[0.0, 2.0, 1.0])


def test_wrong_track_loss(atlas):
    """Two tracks, one cell each; a prediction that swaps them loses all charged energy as wrong_track."""
    eta, phi = centre(atlas, "EMB2", IU, IV)
    eta2, _ = centre(atlas, "EMB2", IU + 3, IV)
    cells = [(0, "EMB2", IU, IV, 2.0), (0, "EMB2", IU + 3, IV, 1.0)]
    hits = [(0, 0, 2.0), (1, 1, 1.0)]
    ev = make_events(atlas, 1, cells, [(0, 0, eta, phi, 10.0), (0, 1, eta2, phi, 5.0)],
                     [(0, 1, eta, phi), (0, 1, eta2, phi)], hits)
    swapped = Attribution([0, 1], [1, 0], [2.0, 1.0])
    r = evaluate_attribution(ev, swapped)
    assert r["energy_lost"] == pytest.approx({"charged_as_neutral": 0.0, "neutral_as_charged": 0.0,
                                              "wrong_track": 1.0})
    assert r["f1"] == 1.0 and r["energy_weighted_accuracy"] == 0.0


def test_layer_groups_grow_across_chunks(hand):
    """A chunk with a layer index beyond the events' layer names, then one without it: the layer sums are padded,
    not dropped; layers without a name are keyed by their index."""
    from pcloud.metrics.particle_flow import AttributionMetrics

    a = Attribution([0, 1], [0, 0], [3.0, 1.0])
    acc = AttributionMetrics()
    acc.add(hand, a, cell_layer=np.array([0, 0, 7, 0, 0]))  # row 2 in an unnamed layer 7
    acc.add(hand, a, cell_layer=np.zeros(5, np.int64))
    by = acc.result()["by_layer"]
    n_names = len(hand.layer_names)
    assert list(by)[:n_names] == list(hand.layer_names) and list(by)[n_names:] == [str(i) for i in range(n_names, 8)]
    assert by[hand.layer_names[0]]["n_cells"] == 3 + 4 and by["7"]["n_cells"] == 1 and by["6"]["n_cells"] == 0
    assert by["7"]["energy_share"] == pytest.approx(2.0 / 12.2)
