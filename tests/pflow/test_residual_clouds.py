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
from pcloud.pflow.residual_clouds import residual_track_clouds
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
