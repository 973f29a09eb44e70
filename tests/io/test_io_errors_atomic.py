"""FormatError message contract and crash-safe atomic_output."""
import os
import pickle

import numpy as np
import pytest

from pcloud.core.atomic import atomic_output
from pcloud.io.errors import FormatError, check_cells, event_range


def test_format_error_names_file_field_expected_found():
    e = FormatError("/d/x.h5", "dataset 'layer_1'", "shape (N, 12, 12)", "(5, 12, 11)", hint="wrong file?")
    s = str(e)
    assert s == "/d/x.h5: dataset 'layer_1': expected shape (N, 12, 12), found (5, 12, 11) (wrong file?)"
    assert isinstance(e, ValueError)
    assert (e.path, e.field, e.expected, e.found) == ("/d/x.h5", "dataset 'layer_1'", "shape (N, 12, 12)",
                                                      "(5, 12, 11)")
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == s


def test_check_cells_policy_by_hand():
    a = np.array([[0.5, -0.0005, 0.0], [1.0, 2.0, -0.0002]], dtype=np.float32)
    out, n_neg = check_cells(a.copy(), "f.h5", "dataset 'x'", 1e-3)
    assert n_neg == 2 and out.min() < 0  # kept as is
    out, n_neg = check_cells(a.copy(), "f.h5", "dataset 'x'", 1e-3, clip_negative=True)
    assert n_neg == 2 and out.min() == 0.0 and out[1, 1] == 2.0
    with pytest.raises(FormatError, match=r"f\.h5: dataset 'x': expected cell energies >= -0\.0001 GeV .*"
                                          r"found minimum -0\.0005 GeV \(first in event 10\)"):
        check_cells(a.copy(), "f.h5", "dataset 'x'", 1e-4, offset=10)
    b = a.copy()
    b[1, 0] = np.nan
    with pytest.raises(FormatError, match=r"expected finite values, found 1 NaN/inf values \(first in event 1\)"):
        check_cells(b, "f.h5", "dataset 'x'", 1e-3)


def test_event_range_rules():
    assert event_range(10, None, None, "f", False) == (0, 10)
    assert event_range(10, 3, 100, "f", False) == (3, 10)
    with pytest.raises(FormatError, match="expected at least one event, found 0 events"):
        event_range(0, None, None, "f", False)
    assert event_range(0, None, None, "f", True) == (0, 0)
    # slice semantics: past the end or reversed -> 0 events, so chunk loops can stop on an empty read
    assert event_range(10, 10, 20, "f", False) == (10, 10)
    assert event_range(10, 12, None, "f", False) == (10, 10)
    assert event_range(10, 6, 4, "f", False) == (6, 6)
    with pytest.raises(ValueError, match="non-negative"):
        event_range(10, -1, None, "f", False)


def test_atomic_output_replaces_on_success(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"new content")
        assert target.read_bytes() == b"old"  # untouched until the block succeeds
    assert target.read_bytes() == b"new content"
    assert (target.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"precious")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half writ")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # temp removed


def test_atomic_output_new_file_and_missing_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
            raise RuntimeError("fail")
    assert list(tmp_path.iterdir()) == []  # nothing created
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_output(tmp_path / "nope" / "f.bin"):
            pass
