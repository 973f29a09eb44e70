"""Schema construction, validation, features and the label derivations (hard / binary / soft) on hand cases."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from pcloud.data.point_features import POINT_FEATURES as FEATURES, feature_columns, feature_matrix
from pcloud.core.schema import (NO_PARTICLE, PointType, SchemaError, binary_labels, build_clouds, hard_labels, soft_fractions, target_fractions, validate_clouds)


def _cells(truth):
    """One event whose points have the given (truth_index, truth_energy) lists."""
    counts = [len(t[0]) for t in truth]
    return build_clouds([len(truth)], {"energy": np.ones(len(truth))}, {},
                        truth_counts=counts, truth_index=np.concatenate([t[0] for t in truth]).astype(int),
                        truth_energy=np.concatenate([t[1] for t in truth]).astype(np.float32))


HAND = [
    ([0, 1], [1.0, 3.0]),      # particle 1 dominates: 0.25 / 0.75
    ([], []),                   # noise-only cell: no particle
    ([0, 2], [-1.0, 0.0]),      # only negative / zero truth: no particle
    ([0, 2], [2.0, 2.0]),       # tie: lowest index wins the hard label
    ([1, 3], [-0.5, 1.5]),      # negative entry clipped: particle 3 owns it fully
    ([2], [0.5]),               # exactly one particle
]


def test_hard_labels_hand_cases():
    c = _cells(HAND)
    assert hard_labels(c.points).tolist() == [[1, NO_PARTICLE, NO_PARTICLE, 0, 3, 2]]


def test_soft_fractions_hand_cases():
    c = _cells(HAND)
    got = soft_fractions(c.points).tolist()[0]
    assert got == [[0.25, 0.75], [], [0.0, 0.0], [0.5, 0.5], [0.0, 1.0], [1.0]]


def test_target_fractions_and_binary_labels():
    c = _cells(HAND)
    np.testing.assert_allclose(target_fractions(c.points, 1).tolist()[0], [0.75, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(target_fractions(c.points, 0).tolist()[0], [0.25, 0, 0, 0.5, 0, 0])
    # strict threshold: the 0.5 tie does not pass 0.5 but passes 0.4
    assert binary_labels(c.points, 0, 0.5).tolist() == [[0, 0, 0, 0, 0, 0]]
    assert binary_labels(c.points, 0, 0.4).tolist() == [[0, 0, 0, 1, 0, 0]]
    assert binary_labels(c.points, [3]).tolist() == [[0, 0, 0, 0, 1, 0]]
    with pytest.raises(ValueError, match="threshold"):
        binary_labels(c.points, 0, 1.0)
    with pytest.raises(ValueError, match="per-event"):
        binary_labels(c.points, [0, 1])


def test_per_event_target_index():
    a = _cells([([0, 1], [1.0, 1.5])])
    two = ak.concatenate([a, a])
    assert binary_labels(two.points, np.array([0, 1])).tolist() == [[0], [1]]


def test_build_clouds_defaults_and_extras():
    c = build_clouds([2, 0, 1], {"energy": [1.0, 2.0, 3.0], "cell_id": [4, 5, 6], "my_flag": np.array([1, 0, 1])},
                     {"event_number": [7, 8, 9], "run": np.array([1, 1, 2])})
    validate_clouds(c)
    assert c.points["type"].tolist() == [[0, 0], [], [0]]
    assert c.points.track_index.tolist() == [[-1, -1], [], [-1]]
    assert c.points.my_flag.tolist() == [[1, 0], [], [1]]
    assert c.run.tolist() == [1, 1, 2]
    t = str(ak.type(c))
    for frag in ("type: int8", "x: float32", "layer: int32", "cell_id: int32", "energy: float32",
                 "truth_index: var * int32", "truth_energy: var * float32", "event_number: int64"):
        assert frag in t
    with pytest.raises(SchemaError, match="field 'cell_id': expected 3 values"):
        build_clouds([2, 0, 1], {"energy": [1.0, 2.0, 3.0], "cell_id": [4, 5]}, {})
    with pytest.raises(SchemaError, match="must contain 'energy'"):
        build_clouds([1], {"x": [1.0]}, {})


def test_particles_list():
    c = build_clouds([1, 1], {"energy": [1.0, 2.0]}, {},
                     particles={"counts": [2, 1], "pdg": [211, 22, -211], "energy_gev": [5.0, 2.0, 3.0],
                                "track_index": [0, -1, 0]})
    assert c.particles.pdg.tolist() == [[211, 22], [-211]]
    assert c.particles.charge.tolist() == [[0, 0], [0]]  # default when not given
    assert np.isnan(c.particles.pt_gev[0, 0])
    with pytest.raises(SchemaError, match="counts"):
        build_clouds([1], {"energy": [1.0]}, {}, particles={"pdg": [1]})


def test_validate_errors():
    with pytest.raises(SchemaError, match="awkward Array"):
        validate_clouds({"points": []})
    with pytest.raises(SchemaError, match=r"missing per-event field\(s\) \['event_number'\]"):
        validate_clouds(ak.Array([{"points": []}]))
    with pytest.raises(SchemaError, match="missing per-point field"):
        validate_clouds(ak.Array([{"event_number": 1, "points": [{"energy": 1.0}]}]))


def test_feature_registry():
    c = build_clouds([3], {"energy": [2.0, 0.0, 0.5], "type": [0, 1, 2], "x": [1.0, 2.0, 3.0]}, {})
    cols = {k: ak.to_numpy(ak.flatten(c.points[k])) for k in ("energy", "type", "x")}
    m = feature_matrix(cols, ["x", "log_energy", "type_onehot"])
    assert feature_columns(["x", "log_energy", "type_onehot"]) == ["x", "log_energy", "type_onehot[0]",
                                                                    "type_onehot[1]", "type_onehot[2]"]
    np.testing.assert_allclose(m[:, 0], [1, 2, 3])
    np.testing.assert_allclose(m[:, 1], [np.log(2.0), np.log(1e-3), np.log(0.5)], rtol=1e-6)
    np.testing.assert_array_equal(m[:, 2:], np.eye(3))
    for name in ("x", "y", "z", "eta", "phi", "layer", "log_energy", "energy", "noise_sigma", "delta_r",
                 "type_onehot", "track_pt", "track_chi2_ndf"):
        assert name in FEATURES
    with pytest.raises(KeyError, match="unknown feature 'nope'"):
        feature_matrix(cols, ["nope"])
    assert PointType.PADDING == 3 and PointType.FOCAL_TRACK == 1
