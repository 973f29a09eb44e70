"""Residual track clouds (teacher forcing of iterative inference): the hand event's second track with the first
track's true share removed, by hand; the generated events' residual clouds against the truth attribution; the
segmenter option trains on them, keeps it through save / load and refuses the stored-cloud path."""
import awkward as ak
import numpy as np
import pytest

from pcloud.core.attribution import truth_attribution
from pcloud.core.schema import PointType, target_fractions, validate_clouds
from pcloud.pflow.clouds import track_clouds
from pcloud.pflow.inference import track_order
from pcloud.pflow.learned import FocalTrackSegmenter
from pcloud.pflow.residual_clouds import _residual_steps, residual_track_clouds, share_taken_before_turn
from pcloud.sim.events import generate_events

from helpers.events import make_hand_event

CELL = int(PointType.CELL)


def _cells(cloud):
    """{cell_row: (energy, focal fraction)} of the CELL points of one cloud."""
    p = cloud.points
    typ = np.asarray(p["type"])
    rows = np.asarray(p["cell_row"])[typ == CELL]
    e = np.asarray(p["energy"])[typ == CELL]
    f = np.asarray(target_fractions(p, cloud.focal_truth_index))[typ == CELL]
    return {int(r): (float(a), float(b)) for r, a, b in zip(rows, e, f)}


def test_hand_event_second_track_by_hand(atlas):
    ev, row = make_hand_event(atlas)
    c = validate_clouds(residual_track_clouds(ev, atlas, dr_max=0.2), "residual")
    # track 0 (pT 10 GeV) is first, so only track 1 (the pi-, particle 2) gets a residual cloud
    assert len(c) == 1 and int(c.focal_track_row[0]) == 1 and int(c.focal_truth_index[0]) == 2
    cells = _cells(c[0])
    # c0: E 4.0, deposits pi+ 3 / pi0 1 -> the pi+ share 4.0 * 3/4 = 3.0 removed; left: the pi0's 1 GeV, focal 0
    assert cells[row["c0"]] == pytest.approx((1.0, 0.0))
    # c1: no pi+ deposit -> untouched, focal fraction 2 / (2 + 2)
    assert cells[row["c1"]] == pytest.approx((4.1, 0.5))
    # c2: the pi- alone; c3: noise only
    assert cells[row["c2"]] == pytest.approx((1.2, 1.0))
    assert cells[row["c3"]] == pytest.approx((0.05, 0.0))
    # c4: all its (clipped) truth is the pi+'s -> emptied, dropped as iterative inference drops it
    assert row["c4"] not in cells
    # against the untouched cloud of the same track: the same cells but c4, c0 with its full energy
    full = _cells(track_clouds(ev, atlas, dr_max=0.2, tracks=np.array([1]))[0])
    assert set(full) - set(cells) == {row["c4"]} and full[row["c0"]][0] == pytest.approx(4.0)


@pytest.fixture(scope="module")
def events(atlas):
    return generate_events(atlas, 10, np.random.default_rng(5), parent="rho", n_parents=(2, 3), energy_gev=(10, 40))


def test_generated_residual_clouds_match_the_truth_shares(atlas, events):
    rows, rank = track_order(events)
    c = residual_track_clouds(events, atlas)
    assert len(c) == int((rank >= 1).sum()) > 0
    # in rank order: all rank-1 tracks, then rank 2, ...
    assert np.array_equal(np.asarray(c.focal_track_row), np.concatenate(
        [rows[rank == k] for k in range(1, int(rank.max()) + 1)]))
    truth = truth_attribution(events)
    rank_of = np.full(events.tracks["event"].size, -1)
    rank_of[rows] = rank
    e = np.asarray(events.cells["energy_gev"], float)
    share = {(int(a), int(b)): float(x) for a, b, x in zip(truth.cell_row, truth.track_row, truth.energy_gev)}
    checked = 0
    for i in range(len(c)):
        t = int(c.focal_track_row[i])
        earlier = [u for u in np.nonzero((rank_of >= 0) & (rank_of < rank_of[t])
                                         & (events.tracks["event"] == events.tracks["event"][t]))[0]]
        for r, (en, f) in _cells(c[i]).items():
            if e[r] <= 0:  # noise below zero: no track has a share, the cell is left as measured
                assert en == pytest.approx(e[r], abs=1e-6)
                continue
            left = e[r] - sum(share.get((r, int(u)), 0.0) for u in earlier)
            assert en == pytest.approx(max(left, 0.0), abs=1e-6)
            # the residual's focal fraction times its energy is the focal track's true share of the measured energy
            assert f * en == pytest.approx(share.get((r, t), 0.0), abs=1e-5)
            checked += 1
    assert checked > 100


def test_segmenter_trains_on_residual_clouds(atlas, events, tmp_path):
    kw = dict(model="pointnet", cells="topo", device="cpu", seed=2, channels=(8, 16), seg_hidden=(16,),
              head_hidden=())
    plain = FocalTrackSegmenter(**kw)
    seg = FocalTrackSegmenter(residual_clouds=True, **kw)
    n_plain = len(plain.make_train_clouds(events, atlas))
    n_extra = len(residual_track_clouds(events, atlas, cell_mask=seg.cloud_cell_mask(events, atlas)))
    assert len(seg.make_train_clouds(events, atlas)) == n_plain + n_extra
    # validation and inference clouds are the untouched ones
    assert len(seg.make_clouds(events, atlas)) == n_plain
    info = seg.fit(events, events, atlas, epochs=1, batch_size=16, log=lambda s: None)
    assert info["n_train_clouds"] == n_plain + n_extra
    seg.save(tmp_path / "seg.pt")
    back = FocalTrackSegmenter.load(tmp_path / "seg.pt")
    assert back.residual_clouds and "residual_clouds" not in back.model_cfg
    clouds = seg.make_clouds(events, atlas)
    assert np.allclose(back.predict_fraction(clouds), seg.predict_fraction(clouds))
    with pytest.raises(ValueError, match="residual_clouds=True needs the events"):
        FocalTrackSegmenter(residual_clouds=True, threshold=0.4, **kw).fit_stores(None, None)
    from pcloud.pflow.visible_oracle import VisibleTruthSegmenter

    with pytest.raises(ValueError, match="residual_clouds is not offered for the oracle"):
        VisibleTruthSegmenter(residual_clouds=True, **kw)


def test_single_track_events_have_no_residual_clouds(atlas):
    ev = generate_events(atlas, 3, np.random.default_rng(1), parent="rho", n_parents=(1, 1), energy_gev=(20, 30))
    rows, rank = track_order(ev)
    got = residual_track_clouds(ev, atlas)
    assert (got is None) == (int(rank.max()) < 1)
    seg = FocalTrackSegmenter(residual_clouds=True, model="pointnet", device="cpu")
    base = seg.make_clouds(ev, atlas)
    assert len(seg.make_train_clouds(ev, atlas)) == len(base) + (0 if got is None else len(got))
    assert isinstance(base, ak.Array)


def test_hand_event_predicted_subtraction_by_hand(atlas):
    """Track 0 (the pi+) took 3.5 of c0 (true share 3.0: 0.5 too much, eaten from the pi0), 1.0 of c1 and 0.3 of c2
    (no pi+ deposit there: all of it too much) and half of c4 (all pi+)."""
    from pcloud.core.attribution import Attribution

    ev, row = make_hand_event(atlas)
    took = Attribution(np.array([row["c0"], row["c1"], row["c2"], row["c4"]]), np.zeros(4, np.int64),
                       np.array([3.5, 1.0, 0.3, 0.45]), method="hand")
    c = validate_clouds(residual_track_clouds(ev, atlas, dr_max=0.2, subtracted=took), "residual")
    assert len(c) == 1 and int(c.focal_track_row[0]) == 1
    cells = _cells(c[0])
    assert cells[row["c0"]] == pytest.approx((0.5, 0.0))   # pi+ left 0, pi0 1.0 * (1 - 0.5 / 1.0)
    assert cells[row["c1"]] == pytest.approx((3.1, 0.5))   # pi0 and pi- scaled alike: still half each
    assert cells[row["c2"]] == pytest.approx((0.9, 1.0))   # the pi- alone
    assert cells[row["c3"]] == pytest.approx((0.05, 0.0))  # untouched noise
    assert cells[row["c4"]] == pytest.approx((0.45, 0.0))  # the pi+'s leftover, not the focal track's
    # the truth as "subtracted" is the teacher-forced default
    exact = residual_track_clouds(ev, atlas, dr_max=0.2, subtracted=truth_attribution(ev))
    a, b = _cells(exact[0]), _cells(residual_track_clouds(ev, atlas, dr_max=0.2)[0])
    assert set(a) == set(b) and all(a[k] == pytest.approx(b[k]) for k in a)
    with pytest.raises(ValueError, match=r"residual_track_clouds \(subtracted\): Attribution\(bad\)\.track_row must "
                                         r"be in \[0, 2\), found \[7, 7\]"):
        residual_track_clouds(ev, atlas, subtracted=Attribution([0], [7], [1.0], method="bad"))


def test_generated_predicted_subtraction_against_a_cell_by_cell_count(atlas, events):
    """Random takes (0-1.5x each earlier track's true share, plus takes from cells where it deposited nothing):
    every residual cell holds E+ - takes, and its focal fraction times that is the focal track's true share scaled
    by gamma = 1 - excess / (the non-earlier particles' shares), counted cell by cell here."""
    from pcloud.core.attribution import Attribution

    rng = np.random.default_rng(3)
    rows, rank = track_order(events)
    truth = truth_attribution(events)
    e = np.asarray(events.cells["energy_gev"], float)
    spill_cells = rng.choice(np.nonzero(e > 0)[0], 200, replace=False)
    spill_tracks = np.array([rng.choice(np.nonzero(events.tracks["event"] == events.cells["event"][c])[0])
                             for c in spill_cells])
    took = Attribution(np.r_[truth.cell_row, spill_cells], np.r_[truth.track_row, spill_tracks],
                       np.r_[truth.energy_gev * rng.uniform(0, 1.5, truth.cell_row.size),
                             rng.uniform(0, 0.3, 200) * e[spill_cells]], method="random")
    # the pairs may repeat (a spill onto a pair of the truth): sum them as the function must
    take = {}
    for a, b, x in zip(took.cell_row, took.track_row, took.energy_gev):
        take[(int(a), int(b))] = take.get((int(a), int(b)), 0.0) + float(x)
    share = {(int(a), int(b)): float(x) for a, b, x in zip(truth.cell_row, truth.track_row, truth.energy_gev)}
    c = residual_track_clouds(events, atlas, subtracted=took)
    rank_of = np.full(events.tracks["event"].size, -1)
    rank_of[rows] = rank
    checked = eaten = 0
    for i in range(len(c)):
        t = int(c.focal_track_row[i])
        same = events.tracks["event"] == events.tracks["event"][t]
        earlier = [int(u) for u in np.nonzero((rank_of >= 0) & (rank_of < rank_of[t]) & same)[0]]
        for r, (en, f) in _cells(c[i]).items():
            if e[r] <= 0:
                continue
            p = sum(take.get((r, u), 0.0) for u in earlier)
            assert en == pytest.approx(max(e[r] - p, 0.0), abs=1e-6)
            excess = sum(max(take.get((r, u), 0.0) - share.get((r, u), 0.0), 0.0) for u in earlier)
            others = e[r] - sum(share.get((r, u), 0.0) for u in earlier)
            gamma = 1.0 if excess <= 0 or others <= 0 else min(max(1.0 - excess / others, 0.0), 1.0)
            assert f * en == pytest.approx(gamma * share.get((r, t), 0.0), abs=1e-5)
            checked += 1
            eaten += gamma < 1 and share.get((r, t), 0.0) > 0
    assert checked > 100 and eaten > 5


def test_share_taken_before_turn_by_hand_and_at_the_extremes(atlas, events):
    from pcloud.core.attribution import Attribution

    ev, row = make_hand_event(atlas)
    took = Attribution(np.array([row["c0"], row["c1"], row["c2"], row["c4"]]), np.zeros(4, np.int64),
                       np.array([3.5, 1.0, 0.3, 0.45]), method="hand")
    true, taken = share_taken_before_turn(ev, took)
    # the pi- (track 1): c1 4.1 * 2/4 = 2.05 of which 1.0 / 4.1 went with the pi+'s over-take, c2 1.2 of which 0.3
    assert true == pytest.approx([3.0 + 0.9, 2.05 + 1.2]) and taken == pytest.approx([0.0, 0.5 + 0.3])
    assert np.allclose(share_taken_before_turn(ev, truth_attribution(ev))[1], 0)
    # generated events: exact subtraction takes nothing; the hardest track taking every cell takes all of the others
    rows, rank = track_order(events)
    true, taken = share_taken_before_turn(events, truth_attribution(events))
    assert np.allclose(taken, 0) and np.allclose(true.sum(), truth_attribution(events).energy_gev.sum())
    e = np.clip(np.asarray(events.cells["energy_gev"], float), 0, None)
    first = np.full(events.n_events, -1)
    first[events.tracks["event"][rows[rank == 0]]] = rows[rank == 0]
    owner = first[events.cells["event"]]
    ok = owner >= 0
    greedy = Attribution(np.nonzero(ok)[0], owner[ok], e[ok], method="greedy")
    true, taken = share_taken_before_turn(events, greedy)
    later = rows[rank >= 1]
    assert (true[later] > 0).sum() > 5 and np.allclose(taken[later], true[later])
    assert np.allclose(taken[rows[rank == 0]], 0)


def test_split_deposits_empty_takes_and_em_energy(atlas):
    """A pair's deposit split into two hits keeps the pair's leftover (not each hit's); no takes leave the untouched
    cells; the EM part of a deposit is rescaled with it."""
    import dataclasses

    from pcloud.core.attribution import Attribution

    ev, row = make_hand_event(atlas)
    hits = {k: np.asarray(v).copy() for k, v in ev.hits.items()}
    hits["energy_em_gev"] = 0.5 * hits["energy_gev"]
    # c0's pi+ deposit (3.0) as two hits of 1.5
    i = np.nonzero((hits["cell"] == row["c0"]) & (hits["particle"] == 0))[0]
    assert i.size == 1
    dup = {k: np.insert(v, i[0], v[i[0]]) for k, v in hits.items()}
    dup["energy_gev"][i[0]:i[0] + 2] = 1.5
    dup["energy_em_gev"][i[0]:i[0] + 2] = 0.75
    split = dataclasses.replace(ev, hits=dup)
    took = Attribution(np.array([row["c0"]]), np.array([0]), np.array([1.0]), method="hand")
    # the pi+ keeps 3.0 - 1.0 = 2.0 of its share in c0, the pi0 its 1.0: the cell holds 3.0, focal (pi-) 0
    assert _cells(residual_track_clouds(split, atlas, dr_max=0.2, subtracted=took)[0])[row["c0"]] == \
        pytest.approx((3.0, 0.0))
    (_, _, left, _), = _residual_steps(split, took, "test")
    pip = (left["cell"] == row["c0"]) & (left["particle"] == 0)
    assert pip.sum() == 2 and left["energy_gev"][pip].sum() == pytest.approx(2.0)  # (E = H in c0: shares = deposits)
    true, taken = share_taken_before_turn(split, took)
    assert true == pytest.approx([3.9, 3.25]) and taken == pytest.approx([0.0, 0.0])
    # the pi+'s leftover in c4 is half its deposit, EM part included; the untouched pi0 deposits keep theirs
    steps = list(_residual_steps(dataclasses.replace(ev, hits=hits), Attribution(
        np.array([row["c4"]]), np.array([0]), np.array([0.45]), method="hand"), "test"))
    assert len(steps) == 1
    _, e_res, hits_k, scale = steps[0]
    j = np.nonzero((hits_k["cell"] == row["c4"]) & (hits_k["particle"] == 0))[0]
    assert hits_k["energy_gev"][j] == pytest.approx([0.5]) and hits_k["energy_em_gev"][j] == pytest.approx([0.25])
    assert e_res[row["c4"]] == pytest.approx(0.45)
    # no takes at all: the cells and fractions of the untouched clouds
    none = Attribution(np.zeros(0), np.zeros(0), np.zeros(0), method="none")
    a = _cells(residual_track_clouds(ev, atlas, dr_max=0.2, subtracted=none)[0])
    b = _cells(track_clouds(ev, atlas, dr_max=0.2, tracks=np.array([1]))[0])
    assert set(a) == set(b) and all(a[k] == pytest.approx(b[k]) for k in a)
    assert np.allclose(share_taken_before_turn(ev, none)[1], 0)
