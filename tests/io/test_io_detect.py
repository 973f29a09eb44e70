"""Format detection from content and the read_images / write_images dispatch."""
import h5py
import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.io import FormatError, detect_format, iter_images, read_images, write_images
from pcloud.io.calochallenge import example_binning, parse_binning


@pytest.fixture
def three_files(tmp_path, make_showers):
    files = {}
    files["calogan"] = tmp_path / "a.dat"
    write_images(files["calogan"], make_showers(get_geometry("calogan"), 3))
    files["triforce"] = tmp_path / "b.dat"
    write_images(files["triforce"], make_showers(get_geometry("clic"), 3, sparsity=0.99))
    files["calochallenge"] = tmp_path / "c.dat"
    write_images(files["calochallenge"], make_showers(parse_binning(example_binning("uniform3")).geometry, 3))
    return files


def test_detect_and_read(three_files):
    for fmt, p in three_files.items():
        assert detect_format(p) == fmt  # names carry no extension hint
        r = read_images(p)
        assert r.meta["source_format"] == fmt and r.n_events == 3
        assert [len(c) for c in iter_images(p, chunk_size=2)] == [2, 1]
    r = read_images(three_files["calochallenge"], xml=example_binning("uniform3"), start=1)
    assert r.n_events == 2
    with pytest.raises(ValueError, match="a binning XML was given but the file is a calogan file"):
        read_images(three_files["calogan"], xml=example_binning("uniform3"))


def test_detect_magic_bytes(tmp_path):
    pq = tmp_path / "store"
    pq.write_bytes(b"PAR1" + b"\0" * 32 + b"PAR1")
    assert detect_format(pq) == "native"
    root = tmp_path / "tree"
    root.write_bytes(b"root\x00\x00\xf4\x4a" + b"\0" * 64)
    assert detect_format(root) == "mltree"
    with pytest.raises(FormatError, match=r"store: format: expected an image file .*found a native file "
                                          r"\(point clouds / events, not dense images\) \(read it with "
                                          r"pcloud\.io\.native\.read_clouds\)"):
        read_images(pq)


def test_unknown_content(tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("hello world")
    with pytest.raises(FormatError, match=r"t\.txt: file signature: expected HDF5 .*Parquet b'PAR1' or ROOT "
                                          r"b'root', found b'hello wo'"):
        detect_format(t)
    e = tmp_path / "e"
    e.write_bytes(b"")
    with pytest.raises(FormatError, match="found an empty file"):
        detect_format(e)
    h = tmp_path / "h.h5"
    with h5py.File(h, "w") as f:
        f["images"] = np.zeros((2, 3))
        f["labels"] = np.zeros(2)
    with pytest.raises(FormatError, match=r"h\.h5: HDF5 keys: expected the datasets of a known format "
                                          r"\(calogan: layer_0, layer_1, layer_2; .*found keys \['images', 'labels'\]"):
        read_images(h)
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing")
    with pytest.raises(FormatError, match="found a directory"):
        detect_format(tmp_path)


def test_write_images_needs_known_geometry(tmp_path, make_showers):
    with pytest.raises(ValueError, match="no image file format for geometry 'cms'"):
        write_images(tmp_path / "x", make_showers(get_geometry("cms"), 1))


def test_files_read_together_need_one_geometry(tmp_path, make_showers, three_files):
    from pcloud.io import check_same_layout, image_layout

    a, b = tmp_path / "rec25.h5", tmp_path / "gen51.h5"
    write_images(a, make_showers(get_geometry("clic", ecal_cells=25), 2, sparsity=0.99))
    write_images(b, make_showers(get_geometry("clic", ecal_cells=51), 3, sparsity=0.99))
    lay = image_layout(b)
    assert lay["format"] == "triforce" and lay["n_events"] == 3
    assert lay["sections"] == [("ECAL", (25, 51, 51)), ("HCAL", (60, 11, 11))]
    assert check_same_layout([a, a])["n_events"] == 2
    msg = (r"gen51\.h5: geometry: expected a triforce file on geometry 'clic' \(ECAL 25 x 25 x 25, HCAL 60 x 11 x 11;"
           r" 22885 cells\) as .*rec25\.h5 \(files read together must share one geometry\), found a triforce file on "
           r"geometry 'clic' \(ECAL 25 x 51 x 51, HCAL 60 x 11 x 11; 72285 cells\)$")
    with pytest.raises(FormatError, match=msg) as err:
        check_same_layout([a, b])
    assert "\n" not in str(err.value)  # one line
    with pytest.raises(FormatError, match=r"b\.dat: geometry: expected a calogan file .*found a triforce file"):
        check_same_layout([three_files["calogan"], three_files["triforce"]])
    # CaloChallenge: the binning decides; two binnings of different voxel counts are two geometries
    c = three_files["calochallenge"]
    d = tmp_path / "d.h5"
    write_images(d, make_showers(parse_binning(example_binning("photon5")).geometry, 2))
    assert check_same_layout([c, c], xml=example_binning("uniform3"))["n_cells"] == 96
    with pytest.raises(FormatError, match=r"d\.h5: geometry: expected a calochallenge file .*96 cells.*found a "
                                          r"calochallenge file .*169 cells"):
        check_same_layout([c, d])
    with pytest.raises(ValueError, match="no files given"):
        check_same_layout([])
