"""Learned segmenters: losses (cells only, energy weights, focal), tiny models overfitting, prediction, persistence."""
import awkward as ak
import numpy as np
import pytest
import torch

from pcloud.core.schema import PointType
from pcloud.pflow.clouds import track_clouds
from pcloud.nn.losses import CellSegmentationLoss, focal_loss
from pcloud.pflow.learned import ChargedFractionSegmenter, FocalTrackSegmenter, OracleSegmenter
from pcloud.sim.events import generate_events

from helpers.events import make_hand_event

TINY = dict(channels=(16, 32), seg_hidden=(32,))


@pytest.fixture(scope="module")
def events(atlas):
    rng = np.random.default_rng(11)
    return generate_events(atlas, 6, rng, parent="rho", energy_gev=(20, 40))


def _batch(seed=0, B=3, N=10):
    g = torch.Generator().manual_seed(seed)
    typ = torch.full((B, N), int(PointType.CELL))
    typ[:, :2] = int(PointType.FOCAL_TRACK)
    typ[:, -3:] = int(PointType.PADDING)
    mask = typ != int(PointType.PADDING)
    energy = torch.rand(B, N, generator=g) * 5 - 1  # some negative (noise) cells
    energy[~mask] = 0
    return {"cell_mask": typ == int(PointType.CELL), "mask": mask, "energy": energy,
            "y": torch.rand(B, N, generator=g)}, torch.randn(B, N, 2, generator=g)


@pytest.mark.parametrize("kind", ["energy_weighted", "ce", "focal", "energy_weighted_focal"])
@pytest.mark.parametrize("hard", [False, True])
def test_loss_ignores_tracks_and_padding(kind, hard):
    batch, logits = _batch()
    if hard:
        batch["y"] = (batch["y"] > 0.5).long()
        batch["y"][~batch["cell_mask"]] = -1
    lf = CellSegmentationLoss(kind)
    ref, _ = lf({"seg_logits": logits}, batch)
    other = ~batch["cell_mask"]
    logits2 = logits.clone()
    logits2[other] = torch.randn(int(other.sum()), 2) * 10
    b2 = dict(batch)
    if not hard:
        b2["y"] = batch["y"].clone()
        b2["y"][other] = 1.0
    loss2, _ = lf({"seg_logits": logits2}, b2)
    assert float(loss2) == pytest.approx(float(ref), rel=1e-6)
    # ... but a change on a cell with positive energy changes it
    cell_pos = batch["cell_mask"] & (batch["energy"] > 0)
    i = tuple(torch.nonzero(cell_pos)[0])
    logits3 = logits.clone()
    logits3[i] += torch.tensor([5.0, -5.0])
    assert float(lf({"seg_logits": logits3}, batch)[0]) != pytest.approx(float(ref), rel=1e-4)


def test_energy_weighted_hand_value():
    # two cells: E = 2 and E = -1 (noise, weight 0) and one track point; soft targets
    logits = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [3.0, 0.0]]])
    batch = {"cell_mask": torch.tensor([[True, True, False]]), "energy": torch.tensor([[2.0, -1.0, 0.0]]),
             "y": torch.tensor([[0.25, 1.0, 0.0]]), "mask": torch.ones(1, 3, dtype=torch.bool)}
    loss, _ = CellSegmentationLoss("energy_weighted")({"seg_logits": logits}, batch)
    assert float(loss) == pytest.approx(np.log(2.0), rel=1e-6)  # only cell 0: -(0.75 ln 0.5 + 0.25 ln 0.5)
    loss_ce, _ = CellSegmentationLoss("ce")({"seg_logits": logits}, batch)
    ce1 = -np.log(np.exp(-1) / (np.exp(1) + np.exp(-1)))
    assert float(loss_ce) == pytest.approx((np.log(2.0) + ce1) / 2, rel=1e-6)


def test_focal_loss_hand_values():
    logits = torch.tensor([[np.log(0.8), np.log(0.2)]], dtype=torch.float32)
    fl = focal_loss(logits, torch.tensor([0]), gamma=2.0)
    assert float(fl[0]) == pytest.approx(-(0.2 ** 2) * np.log(0.8), rel=1e-5)
    ce = focal_loss(logits, torch.tensor([1]), gamma=0.0)
    assert float(ce[0]) == pytest.approx(-np.log(0.2), rel=1e-5)
    soft = focal_loss(logits, torch.tensor([[0.5, 0.5]]), gamma=2.0)
    assert float(soft[0]) == pytest.approx(-0.5 * (0.04 * np.log(0.8) + 0.64 * np.log(0.2)), rel=1e-5)
    assert float(focal_loss(logits, torch.tensor([-1]))[0]) == 0.0


@pytest.mark.parametrize("target,loss", [("soft", "energy_weighted"), ("hard", "focal"), ("binary", "ce")])
def test_tiny_segmenter_overfits(atlas, events, target, loss):
    seg = FocalTrackSegmenter(model="pointnet", target=target, loss=loss, max_points=48, device="cpu", seed=3, **TINY)
    h = seg.fit(events, events, atlas, epochs=40, batch_size=8, lr=1e-2, patience=100, log=None)
    first, last = h["history"][0]["train_loss"], min(r["train_loss"] for r in h["history"])
    assert last < 0.4 * first, (first, last)
    clouds = track_clouds(events, atlas)
    f = seg.predict_fraction(clouds)
    n_cells = int((ak.to_numpy(ak.flatten(clouds.points["type"])) == PointType.CELL).sum())
    assert f.shape == (n_cells,) and np.all((f >= 0) & (f <= 1))
    assert seg.n_params == h["n_params"] > 0


def test_predict_fraction_dgcnn_and_save_load(atlas, events, tmp_path):
    seg = FocalTrackSegmenter(model="dgcnn", max_points=32, device="cpu", k=4, edge_channels=(8, 8), emb_dim=16,
                              seg_hidden=(16,))
    h = seg.fit(events, events, atlas, epochs=1, batch_size=8, log=None)
    clouds = track_clouds(events, atlas)
    # the truncated-energy statistic of the in-memory fit: energy of the cells beyond the 32 kept points, by hand
    e_all = e_kept = 0.0
    for c in clouds:
        e = np.clip(np.asarray(c.points.energy, float), 0, None)
        trk = np.asarray(c.points["type"]) != PointType.CELL
        e_all += e.sum()
        e_kept += e[trk][:32].sum() + np.sort(e[~trk])[::-1][:max(32 - int(trk.sum()), 0)].sum()
    assert 0 < h["truncated_energy_fraction"] == pytest.approx(1 - e_kept / e_all, rel=1e-9)
    f = seg.predict_fraction(clouds)
    typ = ak.to_numpy(ak.flatten(clouds.points["type"]))
    assert f.shape == ((typ == PointType.CELL).sum(),) and np.all((f >= 0) & (f <= 1))
    # cells beyond max_points (lowest energies) are predicted 0; the top cells get model outputs
    assert np.count_nonzero(f) <= len(clouds) * 32
    seg.save(tmp_path / "seg.pt")
    back = FocalTrackSegmenter.load(tmp_path / "seg.pt")
    np.testing.assert_allclose(back.predict_fraction(clouds), f, atol=1e-6)
    with pytest.raises(ValueError, match="not a ChargedFractionSegmenter"):
        ChargedFractionSegmenter.load(tmp_path / "seg.pt")


def test_bad_arguments():
    with pytest.raises(ValueError, match="target"):
        FocalTrackSegmenter(target="fuzzy")
    with pytest.raises(ValueError, match="loss"):
        FocalTrackSegmenter(loss="l2")
    with pytest.raises(ValueError, match="model"):
        FocalTrackSegmenter(model="resnet")
    with pytest.raises(RuntimeError, match="not fitted"):
        FocalTrackSegmenter().predict_fraction(None)


def test_charged_fraction_segmenter(atlas, events):
    seg = ChargedFractionSegmenter(max_points=64, device="cpu", channels=(8, 16), seg_hidden=(16,))
    h = seg.fit(events, events, atlas, epochs=2, batch_size=4, log=None)
    assert h["n_train_clouds"] == events.n_events
    from pcloud.pflow.clouds import event_clouds
    clouds = event_clouds(events, atlas)
    f = seg.predict_fraction(clouds)
    n_cells = events.cells["event"].size
    assert f.shape == (n_cells,) and np.all((f >= 0) & (f <= 1))
    a = seg.attribute(events, atlas, clouds)
    a.check_conservation(events.cells["energy_gev"])
    assert np.all(events.cells["event"][a.cell_row] == events.tracks["event"][a.track_row])


def test_oracle_fractions_hand_event(atlas):
    ev, row = make_hand_event(atlas)
    clouds = track_clouds(ev, atlas)
    f = OracleSegmenter(ev).predict_fraction(clouds)
    typ = ak.to_numpy(ak.flatten(clouds.points["type"]))
    cr = ak.to_numpy(ak.flatten(clouds.points.cell_row))[typ == PointType.CELL]
    n0 = int((np.asarray(clouds[0].points["type"]) == PointType.CELL).sum())
    got0 = dict(zip(cr[:n0].tolist(), f[:n0].tolist()))
    assert got0[row["c0"]] == pytest.approx(0.75) and got0[row["c4"]] == pytest.approx(1.0)
    assert got0[row["c3"]] == 0.0 and got0[row["c1"]] == 0.0
    fb = OracleSegmenter(ev, binary=True).predict_fraction(clouds)
    assert set(np.unique(fb).tolist()) <= {0.0, 1.0}


def test_cell_graph_segmenter(atlas, events, tmp_path):
    """The cell-graph model end to end: its clouds carry the graph, the padded neighbour slots point at the listed
    neighbours (also after truncation), inference builds the graph for it, save/load keeps predictions; clouds
    without the graph and the whole-event segmenter are refused with a clear message."""
    from pcloud.data.batch import select_points
    from pcloud.pflow.inference import common_inference, iterative_inference
    from pcloud.pflow.learned import SegmenterEnsemble, cell_graph_slots

    seg = FocalTrackSegmenter(model="cellgraph", device="cpu", cells="topo", channels=(8, 16), seg_hidden=(16,))
    assert seg.needs_cell_graph
    seg.fit(events, events, atlas, epochs=1, batch_size=8, log=None)
    clouds = seg.make_clouds(events, atlas)
    assert "cell_nbr" in ak.fields(clouds.points)
    for max_points in (None, 40):
        sel = select_points(clouds, max_points, "energy")
        n = int(sel["kept"].max())
        nbr, layer = cell_graph_slots(clouds, sel, n)
        assert nbr.shape[:2] == (len(clouds), n) and nbr.dtype == torch.int16
        starts = np.concatenate([[0], np.cumsum(sel["counts"])])[:-1]
        slot_of = {(int(sel["ev"][i]), int(s)): int(i) for i, s in zip(sel["idx"], sel["slot"])}
        lists = ak.to_list(ak.flatten(clouds.points.cell_nbr, axis=1))
        lay = ak.to_numpy(ak.flatten(clouds.points.layer))
        checked = 0
        for (b, s), i in list(slot_of.items())[::7]:
            got = sorted(slot_of[(b, int(t))] - starts[b] for t in nbr[b, s].tolist() if t >= 0)
            kept_local = {j - starts[b] for (bb, _), j in slot_of.items() if bb == b}
            assert got == sorted(j for j in lists[i] if j in kept_local)
            assert int(layer[b, s]) == lay[i]
            checked += len(got)
        assert checked > 50
    f = seg.predict_fraction(clouds)
    assert np.all((f >= 0) & (f <= 1)) and np.ptp(f) > 0
    for att in (common_inference(events, atlas, seg), iterative_inference(events, atlas, seg)):
        assert np.isfinite(att.energy_gev).all() and att.energy_gev.sum() > 0
    seg.save(tmp_path / "cg.pt")
    back = FocalTrackSegmenter.load(tmp_path / "cg.pt")
    assert back.needs_cell_graph
    np.testing.assert_allclose(back.predict_fraction(clouds), f, atol=1e-6)
    assert SegmenterEnsemble([seg, back]).needs_cell_graph
    with pytest.raises(ValueError, match="cell_graph=True"):
        seg.predict_fraction(track_clouds(events, atlas))
    with pytest.raises(ValueError, match="cellgraph"):
        ChargedFractionSegmenter(model="cellgraph")


def test_visible_truth_oracle(atlas, events, tmp_path):
    """The visible-truth oracle's extra features are the true focal fraction exactly on the cells above the cut (by
    hand from the truth lists), it trains and predicts through the normal inference, and save/load keeps its cut."""
    from pcloud.core.schema import target_fractions
    from pcloud.pflow.inference import common_inference
    from pcloud.pflow.visible_oracle import VisibleTruthSegmenter, add_visible_truth

    c = add_visible_truth(track_clouds(events, atlas), 2.0)
    p = c.points
    typ = ak.to_numpy(ak.flatten(p["type"]))
    e = ak.to_numpy(ak.flatten(p.energy))
    sig = ak.to_numpy(ak.flatten(p.noise_sigma))
    # the focal fraction by hand from the truth lists: clipped focal deposit over the clipped deposits of the cell
    n_truth = ak.to_numpy(ak.flatten(ak.num(p.truth_index, axis=2)))
    point = np.repeat(np.arange(n_truth.size), n_truth)  # point of every truth entry
    focal = np.repeat(ak.to_numpy(c.focal_truth_index), ak.to_numpy(ak.num(p)))[point]
    ti = ak.to_numpy(ak.flatten(p.truth_index, axis=None))
    te = np.clip(ak.to_numpy(ak.flatten(p.truth_energy, axis=None)).astype(np.float64), 0, None)
    num = np.bincount(point, np.where(ti == focal, te, 0.0), minlength=n_truth.size)
    den = np.bincount(point, te, minlength=n_truth.size)
    f = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    np.testing.assert_allclose(f, ak.to_numpy(ak.flatten(target_fractions(p, c.focal_truth_index))), atol=1e-6)
    vis = (typ == PointType.CELL) & (e > 2.0 * sig)
    assert 0 < vis.sum() < vis.size and np.any(f[vis] > 0.5) and np.any(f[~vis & (typ == PointType.CELL)] > 0.5)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(p.visible)), vis.astype(np.float32))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(p.truth_fraction_visible)), np.where(vis, f, 0.0), atol=1e-6)
    seg = VisibleTruthSegmenter(device="cpu", visible_sigma=2.0, channels=(8, 16), seg_hidden=(16,))
    seg.fit(events, events, atlas, epochs=1, batch_size=8, log=None)
    assert common_inference(events, atlas, seg).energy_gev.sum() > 0
    seg.save(tmp_path / "vis.pt")
    back = VisibleTruthSegmenter.load(tmp_path / "vis.pt")
    assert back.visible_sigma == 2.0
    np.testing.assert_allclose(back.predict_fraction(track_clouds(events, atlas)),
                               seg.predict_fraction(track_clouds(events, atlas)), atol=1e-6)
    with pytest.raises(ValueError, match="visible_sigma"):
        VisibleTruthSegmenter(visible_sigma=-1)
    with pytest.raises(ValueError, match="truth_fraction_visible"):
        VisibleTruthSegmenter(features=["log_energy"])
    with pytest.raises(ValueError, match="focal_truth_index"):
        add_visible_truth(ak.without_field(c, "focal_truth_index"), 2.0)
