"""Event-number splits (stable, disjoint, seeded, saved) and train-only normalisation."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch

from pcloud.data import Normaliser, Splits, to_padded
from pcloud.core.schema import build_clouds
from pcloud.data.splits import event_uniform, splitmix64


def test_splitmix64_reference_values():
    # SplitMix64 with state 0: the first outputs of the reference generator (Vigna's splitmix64.c)
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF
    state = np.uint64(0x9E3779B97F4A7C15)
    assert int(splitmix64(np.array([state], np.uint64))[0]) == 0x6E789E6AA1B965F4


def test_splits_stable_under_shuffling_and_disjoint():
    ev = np.arange(20000, dtype=np.int64) * 7 + 3
    sp = Splits({"train": 0.6, "val": 0.2, "test": 0.2}, seed=5)
    a = sp.assign(ev)
    perm = np.random.default_rng(0).permutation(ev.size)
    np.testing.assert_array_equal(sp.assign(ev[perm]), a[perm])
    # assignment of one event does not depend on the others (chunking, other files)
    np.testing.assert_array_equal(np.concatenate([sp.assign(ev[:7]), sp.assign(ev[7:])]), a)
    masks = [sp.mask(ev, n) for n in sp.names]
    assert np.all(np.sum(masks, axis=0) == 1)  # disjoint and covering
    frac = np.array([m.mean() for m in masks])
    np.testing.assert_allclose(frac, [0.6, 0.2, 0.2], atol=0.015)
    other = Splits({"train": 0.6, "val": 0.2, "test": 0.2}, seed=6).assign(ev)
    assert 0.3 < np.mean(other == a) < 0.6  # a different seed reshuffles (chance agreement 0.44)


def test_splits_json_round_trip(tmp_path):
    ev = np.arange(500)
    sp = Splits({"train": 0.5, "test": 0.5}, seed=9)
    p = tmp_path / "splits.json"
    sp.save(p, event_number=ev)
    back = Splits.load(p, event_number=ev)
    assert back == sp
    np.testing.assert_array_equal(back.assign(ev), sp.assign(ev))
    with pytest.raises(ValueError, match="different data set"):
        Splits.load(p, event_number=np.arange(400))
    with pytest.raises(ValueError, match="sum to 1"):
        Splits({"train": 0.5, "test": 0.3})
    with pytest.raises(KeyError, match="unknown split 'val'"):
        sp.mask(ev, "val")
    u = event_uniform(ev, 1)
    assert u.min() >= 0 and u.max() < 1


def _clouds(event_number, energies_per_event):
    counts = [len(e) for e in energies_per_event]
    return build_clouds(counts, {"energy": np.concatenate(energies_per_event),
                                 "x": np.concatenate([np.full(len(e), float(n)) for n, e in
                                                      zip(event_number, energies_per_event)])},
                        {"event_number": event_number})


def test_normaliser_fits_train_only(tmp_path):
    ev = np.arange(400)
    sp = Splits({"train": 0.5, "test": 0.5}, seed=2)
    is_train = sp.mask(ev, "train")
    # train events hold energy 1 GeV, test events 100 GeV: fitting on all would give a very different mean
    energies = [np.full(3, 1.0 if t else 100.0) * (1 + 0.1 * (i % 3)) for i, t in enumerate(is_train)]
    clouds = _clouds(ev, energies)
    norm = Normaliser.fit(clouds, ["log_energy", "x", "type_onehot"], splits=sp, split="train")
    train_logs = np.log(np.concatenate([e for e, t in zip(energies, is_train) if t]))
    assert norm.mean[0] == pytest.approx(train_logs.mean(), rel=1e-6)  # features are float32
    assert norm.std[0] == pytest.approx(train_logs.std(), rel=1e-6)
    assert norm.mean[1] == pytest.approx(ev[is_train].mean(), rel=1e-9)
    assert norm.mean[2:].tolist() == [0, 0, 0] and norm.std[2:].tolist() == [1, 1, 1]  # one-hot untouched
    assert norm.fitted_on["n_events"] == int(is_train.sum())
    # streaming fit over chunks gives the same statistics (parallel variance update)
    chunked = Normaliser.fit([clouds[:37], clouds[37:200], clouds[200:]], ["log_energy", "x", "type_onehot"],
                             splits=sp)
    np.testing.assert_allclose(chunked.mean, norm.mean, rtol=1e-12)
    np.testing.assert_allclose(chunked.std, norm.std, rtol=1e-12)
    # applied to a padded batch: train points standardised, padding stays 0
    b = to_padded(sp.select(clouds, "train")[:5], ["log_energy", "x", "type_onehot"], pad_to_multiple=8,
                  normaliser=norm)
    m = b["mask"]
    assert torch.all(b["x"][~m] == 0)
    p = tmp_path / "norm.json"
    norm.save(p)
    back = Normaliser.load(p)
    np.testing.assert_allclose(back.mean, norm.mean)
    raw = to_padded(sp.select(clouds, "train")[:5], ["log_energy", "x", "type_onehot"], pad_to_multiple=8)
    torch.testing.assert_close(back.apply(raw)["x"], b["x"])
    expect = (raw["x"][m][:, 0].double() - norm.mean[0]) / norm.std[0]
    torch.testing.assert_close(b["x"][m][:, 0].double(), expect, rtol=1e-5, atol=1e-5)


def test_normaliser_errors(tmp_path):
    clouds = _clouds(np.arange(4), [np.ones(2)] * 4)
    with pytest.raises(ValueError, match="no points"):
        Normaliser.fit(clouds[:0], ["energy"])
    p = tmp_path / "bad.json"
    p.write_text('{"features": ["energy"]}')
    with pytest.raises(ValueError, match=r"lacks \['mean', 'std'\]"):
        Normaliser.load(p)
    n = Normaliser.fit(clouds, ["energy"])
    assert n.std[0] == 1.0  # constant feature: std replaced by 1
    with pytest.raises(ValueError, match="feature columns"):
        n.transform_flat(np.zeros((3, 2), np.float32))
    assert ak.num(clouds.points, 1).tolist() == [2, 2, 2, 2]
