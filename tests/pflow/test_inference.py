"""Common and iterative inference: exact energy conservation, pT ordering, subtraction, clean-up, oracle == truth."""
import numpy as np
import pytest

from pcloud.core.attribution import truth_attribution
from pcloud.pflow.clouds import cell_counts
from pcloud.core.attribution import Attribution
from pcloud.pflow.inference import clean_up_leftovers, common_inference, iterative_inference, track_order
from pcloud.pflow.learned import FocalTrackSegmenter, OracleSegmenter
from pcloud.sim.events import generate_events

from helpers.events import make_hand_event


class ConstSegmenter:
    """Predicts the same fraction for every cell and records the clouds it saw."""

    def __init__(self, f):
        self.f, self.seen = f, []

    def predict_fraction(self, clouds):
        self.seen.append(clouds)
        return np.full(int(cell_counts(clouds).sum()), self.f)


@pytest.fixture(scope="module")
def events(atlas):
    return generate_events(atlas, 16, np.random.default_rng(5), parent="rho", n_parents=(1, 3), energy_gev=(10, 50))


@pytest.fixture(scope="module")
def tiny_model(atlas, events):
    seg = FocalTrackSegmenter(max_points=64, device="cpu", channels=(8, 16), seg_hidden=(16,))
    seg.fit(events, events, atlas, epochs=1, batch_size=16, log=None)
    return seg


def _check_exact(ev, a):
    e = ev.cells["energy_gev"]
    a.check_conservation(e, atol=1e-12)
    assert np.all(a.energy_gev >= 0)
    # attributions only to tracks of the cell's own event
    assert np.all(ev.cells["event"][a.cell_row] == ev.tracks["event"][a.track_row])
    charged = a.per_cell_charged(e.size)
    neutral = a.neutral(e)
    np.testing.assert_allclose(charged + neutral, e, atol=1e-12)
    per_ev = np.bincount(ev.cells["event"], charged + neutral, minlength=ev.n_events)
    np.testing.assert_allclose(per_ev, np.bincount(ev.cells["event"], e, minlength=ev.n_events), rtol=1e-9)
    assert np.all(charged <= np.clip(e, 0, None) * (1 + 1e-12) + 1e-15)
    assert np.all(charged[e <= 0] == 0)


@pytest.mark.parametrize("mode", ["common", "iterative"])
def test_conservation_model_and_stubs(atlas, events, tiny_model, mode):
    run = common_inference if mode == "common" else iterative_inference
    for seg in (tiny_model, ConstSegmenter(0.9), ConstSegmenter(1.0), OracleSegmenter(events)):
        a = run(events, atlas, seg)
        _check_exact(events, a)
        assert a.energy_gev.sum() > 0


def test_track_order_descending_pt(events):
    rows, rank = track_order(events)
    pt = events.tracks["pt_gev"]
    ev = events.tracks["event"][rows]
    for k in range(1, rank.max() + 1):
        m = rank == k
        prev = {e: r for e, r, kk in zip(ev, rows, rank) if kk == k - 1}
        assert all(pt[prev[e]] >= pt[r] for e, r in zip(ev[m], rows[m]))
    assert rows.size == int(events.tracks["layer_reached"].any(1).sum())


def test_iterative_subtracts_in_pt_order_hand_event(atlas):
    ev, row = make_hand_event(atlas)
    seg = ConstSegmenter(0.5)
    a = iterative_inference(ev, atlas, seg, cleanup_sigma=None)
    e = ev.cells["energy_gev"]
    got = {(c, t): x for c, t, x in zip(a.cell_row, a.track_row, a.energy_gev)}
    # c0 is in both cones: track 0 (pT 10) first takes 0.5 E, then track 1 takes 0.5 of the rest
    c0 = row["c0"]
    assert got[(c0, 0)] == pytest.approx(0.5 * e[c0]) and got[(c0, 1)] == pytest.approx(0.25 * e[c0])
    assert (row["c5"], 0) not in got and (row["c5"], 1) not in got  # outside both cones
    assert len(seg.seen) == 2 and [int(c.focal_track_row[0]) for c in seg.seen] == [0, 1]  # one iteration per rank
    # common inference: both claim 0.5 -> no normalisation; both claim 0.8 -> scaled to 0.5 each
    for f, share in ((0.5, 0.5), (0.8, 0.5), (0.3, 0.3)):
        b = common_inference(ev, atlas, ConstSegmenter(f))
        gb = {(c, t): x for c, t, x in zip(b.cell_row, b.track_row, b.energy_gev)}
        assert gb[(c0, 0)] == pytest.approx(share * e[c0]) and gb[(c0, 1)] == pytest.approx(share * e[c0])


def test_iterative_reclouds_with_subtracted_energy(atlas):
    ev, row = make_hand_event(atlas)
    ev.cells["energy_gev"][row["c3"]] = -0.05  # a negative noise fluctuation: never attributed, never dropped
    seg = ConstSegmenter(1.0)  # track 0 empties every cell of its cone -> they vanish from track 1's cloud
    a = iterative_inference(ev, atlas, seg, cleanup_sigma=None)
    rows1 = set(np.asarray(seg.seen[0][0].points.cell_row).tolist()) - {-1}
    rows2 = set(np.asarray(seg.seen[1][0].points.cell_row).tolist()) - {-1}
    assert rows1 == {row[k] for k in ("c0", "c1", "c2", "c3", "c4")}
    assert rows2 == {row["c3"]}
    assert set(a.track_row.tolist()) == {0}
    e = ev.cells["energy_gev"]
    np.testing.assert_allclose(a.per_cell_charged(e.size), np.where(np.isin(np.arange(e.size), list(rows1)),
                                                                    np.clip(e, 0, None), 0.0))


def test_cleanup_gives_small_leftovers_to_the_main_track(atlas):
    ev, row = make_hand_event(atlas)
    c0, c2 = row["c0"], row["c2"]
    e, sigma = ev.cells["energy_gev"], ev.cells["noise_sigma_gev"]
    f = 0.995  # after both tracks, c0 keeps 4.0 * 0.005^2 = 1e-4 GeV << 2 sigma
    a0 = iterative_inference(ev, atlas, ConstSegmenter(f), cleanup_sigma=None)
    a2 = iterative_inference(ev, atlas, ConstSegmenter(f), cleanup_sigma=2.0)
    left0 = a0.neutral(e)
    assert 0 < left0[c0] < 2 * sigma[c0]
    left2 = a2.neutral(e)
    assert left2[c0] == pytest.approx(0.0, abs=1e-12)
    g0 = dict(zip(zip(a0.cell_row, a0.track_row), a0.energy_gev))
    g2 = dict(zip(zip(a2.cell_row, a2.track_row), a2.energy_gev))
    assert g2[(c0, 0)] == pytest.approx(g0[(c0, 0)] + left0[c0])  # track 0 took most of c0
    assert g2[(c2, 1)] >= g0[(c2, 1)]
    _check_exact(ev, a2)


class RandomSegmenter:
    """Uniform fractions, 30 % of them 0.999 (cells left with a tiny leftover), from a fixed seed."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def predict_fraction(self, clouds):
        n = int(cell_counts(clouds).sum())
        f = self.rng.uniform(0, 1, n)
        f[self.rng.uniform(size=n) < 0.3] = 0.999
        return f


@pytest.mark.parametrize("cleanup_sigma", [0.5, 2.0])
def test_clean_up_leftovers_cell_by_cell(atlas, events, cleanup_sigma):
    raw = iterative_inference(events, atlas, RandomSegmenter(1), cleanup_sigma=None)
    got = clean_up_leftovers(events, raw, cleanup_sigma)
    # iterative_inference applies it with its own cleanup_sigma (same fractions: same seed)
    inside = iterative_inference(events, atlas, RandomSegmenter(1), cleanup_sigma=cleanup_sigma)
    assert np.array_equal(got.cell_row, inside.cell_row) and np.array_equal(got.track_row, inside.track_row)
    np.testing.assert_allclose(got.energy_gev, inside.energy_gev, rtol=0, atol=1e-12)
    # an independent loop over the cells the tracks took part of
    e, sigma = events.cells["energy_gev"], events.cells["noise_sigma_gev"]
    want = {}
    for c, t, x in zip(raw.cell_row, raw.track_row, raw.energy_gev):
        want[(c, t)] = want.get((c, t), 0.0) + x
    n_cleaned = 0
    for c in np.unique(raw.cell_row):
        pairs = {t: x for (cc, t), x in want.items() if cc == c}
        taken = sum(pairs.values())
        left = e[c] - taken
        if 0 < left < cleanup_sigma * sigma[c] and left < taken:
            best = max(pairs.items(), key=lambda tx: (tx[1], events.tracks["pt_gev"][tx[0]], -tx[0]))[0]
            want[(c, best)] += left
            n_cleaned += 1
    assert n_cleaned > 50  # the random fractions leave many small leftovers
    g = {(c, t): x for c, t, x in zip(got.cell_row, got.track_row, got.energy_gev)}
    assert g.keys() == want.keys()
    np.testing.assert_allclose([g[k] for k in want], list(want.values()), rtol=0, atol=1e-12)
    _check_exact(events, got)


def test_clean_up_leftovers_hand_cases(atlas):
    ev, row = make_hand_event(atlas)
    c0 = row["c0"]
    e, sigma = ev.cells["energy_gev"], ev.cells["noise_sigma_gev"]
    left = 0.5 * sigma[c0]
    half = (e[c0] - left) / 2  # two tracks take equal parts: the leftover goes to the track of higher pT
    tie = Attribution([c0, c0], [1, 0], [half, half], method="hand")
    for pt, winner in (([10.0, 5.0], 0), ([5.0, 10.0], 1)):
        ev.tracks["pt_gev"] = np.array(pt)
        out = clean_up_leftovers(ev, tie, 2.0)
        assert out.method == "hand"
        got = {(c, t): x for c, t, x in zip(out.cell_row, out.track_row, out.energy_gev)}
        assert got[(c0, winner)] == pytest.approx(half + left) and got[(c0, 1 - winner)] == pytest.approx(half)
    ev.tracks["pt_gev"] = np.array([10.0, 5.0])
    # repeated entries count summed: track 0 takes 0.3 + 0.3 of the rest, track 1 0.4 -> track 0 gets the leftover
    rest = e[c0] - left
    dup = Attribution([c0, c0, c0], [0, 1, 0], [0.3 * rest, 0.4 * rest, 0.3 * rest], method="hand")
    got = {(c, t): x for c, t, x in zip(*(lambda a: (a.cell_row, a.track_row, a.energy_gev))(
        clean_up_leftovers(ev, dup, 2.0)))}
    assert got == pytest.approx({(c0, 0): 0.6 * rest + left, (c0, 1): 0.4 * rest})
    # a leftover above cleanup_sigma * sigma stays neutral
    for taken, cs in ((e[c0] - 3 * sigma[c0], 2.0), (e[c0] - 0.5 * sigma[c0], 0.4)):
        a = Attribution([c0], [0], [taken], method="hand")
        np.testing.assert_array_equal(clean_up_leftovers(ev, a, cs).energy_gev, [taken])
    # a faint cell (E = 1 sigma): a leftover of 0.6 sigma after a take of 0.4 sigma stays (not smaller than the take),
    # a leftover of 0.4 sigma after a take of 0.6 sigma goes to the track
    ev.cells["energy_gev"][c0] = sigma[c0]
    for taken, want in ((0.4 * sigma[c0], 0.4 * sigma[c0]), (0.6 * sigma[c0], sigma[c0])):
        out = clean_up_leftovers(ev, Attribution([c0], [0], [taken], method="hand"), 2.0)
        np.testing.assert_allclose(out.energy_gev, [want], rtol=1e-12)
    # cleanup_sigma 0 or None: no clean-up, only the merge of repeated entries; bad input names what was expected
    raw = Attribution([c0, c0], [0, 0], [0.2 * e[c0], 0.3 * e[c0]], method="hand")
    for cs in (0.0, None):
        out = clean_up_leftovers(ev, raw, cs)
        assert out.cell_row.tolist() == [c0] and out.energy_gev == pytest.approx([0.5 * e[c0]])
    with pytest.raises(ValueError, match="cleanup_sigma must be >= 0"):
        clean_up_leftovers(ev, raw, -1.0)
    for bad in (Attribution([e.size], [0], [1.0]), Attribution([-1], [0], [1.0]), Attribution([c0], [2], [1.0])):
        with pytest.raises(ValueError, match=r"clean_up_leftovers: Attribution\(\)\.(cell|track)_row must be in \[0, "):
            clean_up_leftovers(ev, bad, 2.0)


def test_oracle_reproduces_truth(atlas, events):
    ev_h, _ = make_hand_event(atlas)
    truth = truth_attribution(ev_h)
    for run in (common_inference, iterative_inference):
        a = run(ev_h, atlas, OracleSegmenter(ev_h), **({} if run is common_inference else {"cleanup_sigma": None}))
        n = ev_h.cells["event"].size
        for t in (0, 1):
            want = np.bincount(truth.cell_row[truth.track_row == t], truth.energy_gev[truth.track_row == t],
                               minlength=n)
            got = np.bincount(a.cell_row[a.track_row == t], a.energy_gev[a.track_row == t], minlength=n)
            np.testing.assert_allclose(got, want, atol=1e-9)
    # simulated events, a cone wider than any shower (hadronic tails reach DeltaR > 1): per-track energies of the
    # tracks that reach the calorimeter
    nt = events.tracks["event"].size
    reach = events.tracks["layer_reached"].any(1)
    want = truth_attribution(events).per_track(nt)[reach]
    exact = iterative_inference(events, atlas, OracleSegmenter(events), dr_max=3.0,
                                cleanup_sigma=None).per_track(nt)[reach]
    np.testing.assert_allclose(exact, want, rtol=1e-6, atol=1e-3)
    # the clean-up only ever adds small (< 2 sigma) leftovers: close to the truth, never below it
    clean = iterative_inference(events, atlas, OracleSegmenter(events), dr_max=3.0).per_track(nt)[reach]
    assert np.all(clean >= exact - 1e-9)
    assert clean.sum() - want.sum() < 0.05 * want.sum()
    got_c = common_inference(events, atlas, OracleSegmenter(events), dr_max=3.0).per_track(nt)[reach]
    np.testing.assert_allclose(got_c, want, rtol=0.01, atol=0.02)
    # a binary oracle is a worse, but still sensible, upper bound
    gb = common_inference(events, atlas, OracleSegmenter(events, binary=True), dr_max=3.0).per_track(nt)[reach]
    assert np.abs(gb - want).sum() > np.abs(got_c - want).sum()


def test_bad_segmenter(atlas, events):
    class Wrong:
        def predict_fraction(self, clouds):
            return np.zeros(3)

    with pytest.raises(ValueError, match="predict_fraction returned 3 values"):
        common_inference(events, atlas, Wrong())
    with pytest.raises(TypeError, match="predict_fraction"):
        iterative_inference(events, atlas, object())
