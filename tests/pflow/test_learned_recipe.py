"""Particle-flow segmenters with the new models, the ragged path, topo-clustered clouds, the mixed loss and the
decision threshold chosen on the validation split."""
import awkward as ak
import numpy as np
import pytest
import torch

from pcloud.core.schema import PointType
from pcloud.nn.losses import CellSegmentationLoss
from pcloud.pflow.clouds import cloud_cell_rows, track_clouds
from pcloud.pflow.inference import common_inference, iterative_inference
from pcloud.pflow.learned import FocalTrackSegmenter, SegmenterEnsemble, cloud_cell_mask, remap_fraction
from pcloud.sim.events import generate_events

SMALL = {"transformer": dict(dim=16, n_heads=2, n_layers=1, pair_hidden=8, seg_hidden=(16,)),
         "gravnet": dict(blocks=1, dense=(16,), out_dims=8, space_dims=3, prop_dims=6, k=4, emb_dim=16,
                         seg_hidden=(16,))}


@pytest.fixture(scope="module")
def events(atlas):
    return generate_events(atlas, 5, np.random.default_rng(21), parent="rho", energy_gev=(20, 40), n_parents=(1, 3),
                           dr=(0.03, 0.15))


def test_mixed_loss_hand_value():
    # two cells (E = 3, E = 1) and a track point; soft targets; 0.5 x energy-weighted + 0.5 x per-cell mean
    logits = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [3.0, 0.0]]])
    batch = {"cell_mask": torch.tensor([[True, True, False]]), "energy": torch.tensor([[3.0, 1.0, 0.0]]),
             "y": torch.tensor([[0.25, 1.0, 0.0]]), "mask": torch.ones(1, 3, dtype=torch.bool)}
    ce0 = np.log(2.0)
    ce1 = -np.log(np.exp(-1) / (np.exp(1) + np.exp(-1)))
    want = 0.5 * (3 * ce0 + ce1) / 4 + 0.5 * (ce0 + ce1) / 2
    loss, _ = CellSegmentationLoss("mixed", energy_share=0.5)({"seg_logits": logits}, batch)
    assert float(loss) == pytest.approx(want, rel=1e-6)
    e_only, _ = CellSegmentationLoss("mixed", energy_share=1.0)({"seg_logits": logits}, batch)
    assert float(e_only) == pytest.approx(float(CellSegmentationLoss("energy_weighted")({"seg_logits": logits},
                                                                                          batch)[0]), rel=1e-6)


def test_remap_fraction_moves_the_decision_point():
    p = np.array([0.0, 0.1, 0.2, 0.3, 0.65, 1.0])
    np.testing.assert_allclose(remap_fraction(p, 0.2), [0.0, 0.25, 0.5, 0.5625, 0.78125, 1.0])
    assert np.all(np.diff(remap_fraction(np.linspace(0, 1, 101), 0.3)) > 0)
    assert remap_fraction(p, None) is p


def test_topo_clouds_hold_only_clustered_positive_cells(atlas, events):
    mask = cloud_cell_mask(events, atlas, "topo")
    assert mask.dtype == bool and 0 < mask.sum() < mask.size
    assert np.all(events.cells["energy_gev"][mask] > 0)
    c = track_clouds(events, atlas, cell_mask=mask)
    rows = cloud_cell_rows(c)
    assert rows.size > 0 and mask[rows].all()
    full = cloud_cell_rows(track_clouds(events, atlas))
    assert set(rows) == set(full[mask[full]])  # the same cells of the cone, minus the others
    assert cloud_cell_mask(events, atlas, "all") is None


@pytest.mark.parametrize("model", ["transformer", "gravnet"])
def test_new_models_ragged_topo_threshold(atlas, events, model, tmp_path):
    seg = FocalTrackSegmenter(model=model, loss="mixed", max_points=64, device="cpu", seed=2, cells="topo",
                              threshold="val", ragged=True, **SMALL[model])
    h = seg.fit(events, events, atlas, epochs=3, batch_size=8, lr=3e-3, patience=100, log=None, optimizer="adamw",
                schedule="cosine", warmup=0.2, weight_decay=0.01)
    assert isinstance(seg.threshold, float) and 0 < seg.threshold < 1 and h["threshold"] == seg.threshold
    info = h["threshold_info"]
    assert info["chosen_on"] == "val" and info["val"]["f1+ewa"] >= info["val_at_0.5"]["f1+ewa"] - 1e-12
    assert info["val"] == info["grid"][str(seg.threshold)]
    clouds = seg.make_clouds(events, atlas)
    raw = seg.predict_fraction(clouds, raw=True)
    np.testing.assert_allclose(seg.predict_fraction(clouds), remap_fraction(raw, seg.threshold))
    # ragged and padded prediction agree
    seg.ragged = False
    np.testing.assert_allclose(seg.predict_fraction(clouds, raw=True), raw, atol=1e-5)
    seg.ragged = True
    # persistence keeps the chosen threshold and the cell selection
    seg.save(tmp_path / "s.pt")
    back = FocalTrackSegmenter.load(tmp_path / "s.pt")
    assert back.threshold == seg.threshold and back.cells == "topo" and back.threshold_info == seg.threshold_info
    np.testing.assert_allclose(back.predict_fraction(clouds), seg.predict_fraction(clouds), atol=1e-6)
    # inference builds its clouds from the segmenter's cells: nothing outside them is attributed, energy conserved
    mask = cloud_cell_mask(events, atlas, "topo")
    for a in (iterative_inference(events, atlas, back), common_inference(events, atlas, back)):
        assert mask[a.cell_row].all()
        a.check_conservation(events.cells["energy_gev"])


def test_threshold_argument_checked():
    with pytest.raises(ValueError, match="threshold"):
        FocalTrackSegmenter(threshold=1.5)
    with pytest.raises(ValueError, match="cells"):
        FocalTrackSegmenter(cells="some")
    assert FocalTrackSegmenter(threshold=0.3).threshold == 0.3


def test_dr_other_track_by_brute_force(atlas, events):
    c = track_clouds(events, atlas)
    for i in range(len(c)):  # a few clouds: a plain loop is the reference
        pts = c[i].points
        typ = ak.to_numpy(pts["type"])
        lay, eta, phi = ak.to_numpy(pts["layer"]), ak.to_numpy(pts["eta"]), ak.to_numpy(pts["phi"])
        pt = ak.to_numpy(pts["track_pt"])
        got, got_pt = ak.to_numpy(pts["dr_other_track"]), ak.to_numpy(pts["other_track_pt"])
        for p in range(len(typ)):
            best, best_pt = 1.0, 0.0
            for q in np.nonzero(typ == PointType.OTHER_TRACK)[0]:
                if q != p and lay[q] == lay[p]:
                    d = np.hypot(eta[p] - eta[q], (phi[p] - phi[q] + np.pi) % (2 * np.pi) - np.pi)
                    if d < best:
                        best, best_pt = d, pt[q]
            assert got[p] == pytest.approx(best, abs=1e-5) and got_pt[p] == pytest.approx(best_pt, rel=1e-5)
    assert (ak.to_numpy(ak.flatten(c.points["dr_other_track"])) < 1.0).any()  # some cells see another track


def test_segmenter_ensemble(atlas, events):
    """One member: the member itself (fractions, chosen threshold, inference); two members: the mean of their raw
    fractions, remapped by the ensemble's own threshold; members building different clouds are refused."""
    segs = []
    for seed in (3, 4):
        seg = FocalTrackSegmenter(model="pointnet", loss="ce", max_points=64, device="cpu", seed=seed, cells="topo",
                                  threshold="val")
        seg.fit(events, events, atlas, epochs=2, batch_size=8, lr=3e-3, patience=100, log=None)
        segs.append(seg)
    a, b = segs
    clouds = a.make_clouds(events, atlas)
    one = SegmenterEnsemble([a], threshold=a.threshold)
    np.testing.assert_array_equal(one.predict_fraction(clouds), a.predict_fraction(clouds))
    np.testing.assert_array_equal(one.predict_fraction(clouds, raw=True), a.predict_fraction(clouds, raw=True))
    assert one.n_params == a.n_params
    for inf in (common_inference, iterative_inference):
        np.testing.assert_array_equal(inf(events, atlas, one).energy_gev, inf(events, atlas, a).energy_gev)
    # choosing the threshold on the same validation events finds the member's choice
    chooser = SegmenterEnsemble([a])
    assert chooser.choose_threshold(events, atlas) == a.threshold and chooser.threshold_info == a.threshold_info
    two = SegmenterEnsemble(segs, threshold=0.4)
    mean = (a.predict_fraction(clouds, raw=True) + b.predict_fraction(clouds, raw=True)) / 2
    np.testing.assert_allclose(two.predict_fraction(clouds, raw=True), mean, rtol=1e-12)
    np.testing.assert_allclose(two.predict_fraction(clouds), remap_fraction(mean, 0.4), rtol=1e-12)
    assert not np.allclose(mean, a.predict_fraction(clouds, raw=True))
    with pytest.raises(ValueError, match="no members"):
        SegmenterEnsemble([])
    b.cells = "all"
    with pytest.raises(ValueError, match="different clouds"):
        SegmenterEnsemble(segs)
