"""The table-driven :meth:`Geometry.locate` against a slow, obviously-correct reference.

The reference follows the definition layer by layer: depth d = z (local frame) or r = hypot(x, y) (collider frame);
a position is in layer l when front_l <= d < back_l; transverse coordinates (x, y), (eta = asinh(z / r),
phi = atan2(y, x)) or (r, alpha = atan2(y, x)); periodic azimuths wrapped with ``np.mod``; bin i is the one with
edges[i] <= u < edges[i + 1], found by ``np.searchsorted`` on the edge values (never by arithmetic).

Random positions must give exactly the same cells. Positions constructed on edges may differ by rounding (uniform
bins are found arithmetically, r is sqrt(x^2 + y^2) instead of hypot): there the cell must be the reference cell of
the position itself or of the position moved by 1e-12 (relative) to either side of the edge.
"""
import numpy as np
import pytest

from pcloud.geometry import Geometry, Section, get_geometry
from pcloud.geometry.base import _GridSearch
from pcloud.geometry.calogan import PB_LAR
from pcloud.io.calochallenge import example_binning, parse_binning

N_RANDOM = 200_000
NUDGE = 1e-12


def _bins(edges, u, arithmetic):
    """Bin of each value, -1 outside [edges[0], edges[-1]); by edge search, or for uniform edges with
    ``arithmetic`` by floor((u - e0) / (e1 - e0)) (the formula the pre-table implementation used)."""
    n = edges.size - 1
    if arithmetic and np.allclose(np.diff(edges), edges[1] - edges[0], rtol=1e-9, atol=0):
        with np.errstate(invalid="ignore"):
            i = np.floor((u - edges[0]) / (edges[1] - edges[0])).astype(np.int64)
    else:
        i = np.searchsorted(edges, u, side="right") - 1
    return np.where((i >= 0) & (i < n) & (u >= edges[0]) & (u < edges[-1]), i, -1)


def reference_locate(g: Geometry, x, y, z, arithmetic=False) -> np.ndarray:
    """The definition in the module docstring. ``arithmetic=True`` reproduces the rounding of the fast path
    instead: uniform bins by floor((u - e0) / (e1 - e0)) and r = sqrt(x^2 + y^2)."""
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in np.broadcast_arrays(x, y, z))
    hypot = (lambda a, b: np.sqrt(a * a + b * b)) if arithmetic else np.hypot
    out = np.full(x.size, -1, dtype=np.int64)
    claims = np.zeros(x.size, dtype=np.int64)
    for si, s in enumerate(g.sections):
        if s.kind == "xy":
            d, u, v = z, x, y
        elif s.kind == "etaphi":
            d = hypot(x, y)
            u, v = np.arcsinh(z / np.maximum(d, 1e-9)), np.arctan2(y, x)
        else:
            d, u, v = z, hypot(x, y), np.arctan2(y, x)
        if s.v_periodic:
            v = s.v_edges[0] + np.mod(v - s.v_edges[0], s.v_edges[-1] - s.v_edges[0])
        iu, iv = _bins(s.u_edges, u, arithmetic), _bins(s.v_edges, v, arithmetic)
        in_grid = (iu >= 0) & (iv >= 0)
        for lay in range(s.n_layers):
            m = in_grid & (d >= s.layer_edges_mm[lay]) & (d < s.layer_edges_mm[lay + 1])
            out[m] = g.section_offsets[si] + (lay * s.n_u + iu[m]) * s.n_v + iv[m]
            claims += m
    assert claims.max(initial=0) <= 1, "reference: overlapping layers"
    return out


# ------------------------------------------------------------------------------------------------ geometries
def _photon5():
    return parse_binning(example_binning("photon5")).geometry


GEOMETRIES = {"calogan": lambda: get_geometry("calogan"), "clic": lambda: get_geometry("clic"),
              "atlas": lambda: get_geometry("atlas"), "cms": lambda: get_geometry("cms"), "photon5": _photon5}


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def geom(request):
    return GEOMETRIES[request.param]()


def _coords_to_xyz(g: Geometry, s: Section, d, u, v):
    """Section coordinates (depth, u, v) to frame positions."""
    if s.kind == "xy":
        return u, v, d
    if s.kind == "etaphi":
        return d * np.cos(v), d * np.sin(v), d * np.sinh(u)
    return u * np.cos(v), u * np.sin(v), d


def _random_positions(g: Geometry, n: int, rng) -> tuple:
    """Positions inside and around every section: coordinates drawn 10% beyond each range, a quarter of the
    azimuths within 0.05 rad of +-pi, depths over the whole depth range (gaps, front and back included)."""
    lo, hi = g.layer_fronts_mm.min(), g.layer_backs_mm.max()
    sec = rng.integers(0, len(g.sections), n)
    xs, ys, zs = np.empty(n), np.empty(n), np.empty(n)
    for si, s in enumerate(g.sections):
        m = np.flatnonzero(sec == si)
        k = m.size
        du, dv = np.ptp(s.u_edges), np.ptp(s.v_edges)
        d = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), k)
        u = rng.uniform(s.u_edges[0] - 0.1 * du, s.u_edges[-1] + 0.1 * du, k)
        v = rng.uniform(s.v_edges[0] - 0.1 * dv, s.v_edges[-1] + 0.1 * dv, k)
        if s.kind != "xy":
            near_pi = rng.random(k) < 0.25
            v[near_pi] = np.pi + rng.uniform(-0.05, 0.05, near_pi.sum())
            v = np.where(v > np.pi, v - 2 * np.pi, v)
        if s.kind == "ralpha":
            u = np.abs(u)
        xs[m], ys[m], zs[m] = _coords_to_xyz(g, s, d, u, v)
    return xs, ys, zs


def _edge_positions(g: Geometry, rng, per_edge: int = 3):
    """Positions on every u, v and layer edge (others random inside), with copies moved by NUDGE (relative) to
    either side of the edge. Returns three (x, y, z) triples: on, below, above."""
    on, below, above = [], [], []
    for s in g.sections:
        f, b = s.layer_edges_mm[0], s.layer_edges_mm[-1]
        for axis, edges in (("d", s.layer_edges_mm), ("u", s.u_edges), ("v", s.v_edges)):
            e = np.repeat(edges, per_edge)
            k = e.size
            c = {"d": rng.uniform(f, b, k), "u": rng.uniform(s.u_edges[0], s.u_edges[-1], k),
                 "v": rng.uniform(s.v_edges[0], s.v_edges[-1], k)}
            for tag, dst in ((0, on), (-1, below), (1, above)):
                cc = dict(c)
                cc[axis] = e + tag * NUDGE * np.maximum(np.abs(e), 1.0)
                dst.append(_coords_to_xyz(g, s, cc["d"], cc["u"], cc["v"]))
    return [tuple(np.concatenate([p[i] for p in lst]) for i in range(3)) for lst in (on, below, above)]


# ------------------------------------------------------------------------------------------------ equivalence
def test_random_positions_identical_to_reference(geom):
    rng = np.random.default_rng(12345)
    x, y, z = _random_positions(geom, N_RANDOM, rng)
    ref = reference_locate(geom, x, y, z)
    got = geom.locate(x, y, z)
    assert got.dtype == np.int64 and got.shape == (N_RANDOM,)
    # both inside and outside cells are well represented, and the test must see many distinct cells
    assert 0.1 < np.mean(ref >= 0) < 0.9
    assert np.unique(ref[ref >= 0]).size > min(0.3 * geom.n_cells, 5000)
    bad = np.flatnonzero(got != ref)
    assert bad.size == 0, f"{geom.name}: {bad.size} differences, first at {x[bad[0]], y[bad[0]], z[bad[0]]}: " \
                          f"got {got[bad[0]]}, reference {ref[bad[0]]}"


def test_cell_centres_identical(geom):
    c = geom.cells
    np.testing.assert_array_equal(geom.locate(c["x"], c["y"], c["z"]), np.arange(geom.n_cells))
    np.testing.assert_array_equal(reference_locate(geom, c["x"], c["y"], c["z"]), np.arange(geom.n_cells))


def test_edge_positions_take_a_neighbouring_cell(geom):
    rng = np.random.default_rng(7)
    on, below, above = _edge_positions(geom, rng)
    got = geom.locate(*on)
    ref_on, ref_lo, ref_hi = reference_locate(geom, *on), reference_locate(geom, *below), reference_locate(geom, *above)
    ok = (got == ref_on) | (got == ref_lo) | (got == ref_hi)
    assert ok.all(), f"{geom.name}: {np.sum(~ok)} edge positions in a non-adjacent cell"
    # on edges the result is decided by rounding: exactly that of floor((u - e0) / du) for uniform bins (as the
    # pre-table implementation) and of r = sqrt(x^2 + y^2) (1 ulp from hypot)
    np.testing.assert_array_equal(got, reference_locate(geom, *on, arithmetic=True))
    # the nudged copies are 1e-12 away from the edge, far beyond rounding: identical
    np.testing.assert_array_equal(geom.locate(*below), ref_lo)
    np.testing.assert_array_equal(geom.locate(*above), ref_hi)


def test_exact_edges_calogan_lower_edge_inclusive():
    # x, y, z edges of CaloGAN are exact binary numbers: no rounding, the cell is the one above each edge
    g = get_geometry("calogan")
    s = g.sections[1]
    x = s.u_edges[:-1]
    got = g.locate(x, np.full(x.size, s.v_edges[3]), np.full(x.size, s.layer_edges_mm[0]))
    np.testing.assert_array_equal(got, g.section_offsets[1] + np.arange(12) * 12 + 3)
    assert g.locate(s.u_edges[-1], 0.0, 500.0) == -1          # upper edge of the grid is outside
    assert g.locate(0.0, 0.0, g.layer_backs_mm[-1]) == -1       # back face is outside
    np.testing.assert_array_equal(g.locate(x, 0.0, 500.0), reference_locate(g, x, 0.0, 500.0))


@pytest.mark.parametrize("name", ["atlas", "photon5"])
def test_azimuth_exactly_pi_wraps_to_first_bin(name):
    g = GEOMETRIES[name]()
    s = g.sections[1]
    d = 0.5 * (s.layer_edges_mm[0] + s.layer_edges_mm[1])
    r = d if s.kind == "etaphi" else 0.5 * (s.u_edges[0] + s.u_edges[1])
    z = 0.0 if s.kind == "etaphi" else d
    # atan2(+0, -r) = +pi and atan2(-0, -r) = -pi: both are the first azimuthal bin [v0, v0 + dv)
    for y0 in (0.0, -0.0):
        idx = int(g.locate(-r, y0, z))
        assert idx >= 0 and g.cells["iv"][idx] == 0 and g.cells["section"][idx] == 1
        assert idx == reference_locate(g, -r, y0, z)[0]
    # just below +pi: the last bin
    idx = int(g.locate(r * np.cos(np.pi - 1e-9), r * np.sin(np.pi - 1e-9), z))
    assert g.cells["iv"][idx] == s.n_v - 1


def test_atlas_hand_case():
    # EMB2 (r 1582..1889 mm): eta = 0.3175 -> i_eta = (0.3175 + 1.4) / 0.025 = 68.7 -> 68 (centre 0.3125);
    # phi = 0.1 -> i_phi = (0.1 + pi) / (2 pi / 256) = 132.07 -> 132; flat = off(EMB2) + 68 * 256 + 132
    g = get_geometry("atlas")
    r, eta, phi = 1700.0, 0.3175, 0.1
    idx = g.locate(r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta))
    assert idx == g.section_offsets[1] + 68 * 256 + 132
    assert g.cells["eta"][idx] == pytest.approx(0.3125) and g.cells["layer"][idx] == 1


# ------------------------------------------------------------------------------------------------ input forms
def test_scalar_nd_empty_and_non_finite_inputs():
    g = get_geometry("atlas")
    rng = np.random.default_rng(3)
    x, y, z = _random_positions(g, 600, rng)
    flat = g.locate(x, y, z)
    got = g.locate(x.reshape(2, 3, 100), y.reshape(2, 3, 100), z.reshape(2, 3, 100))
    assert got.shape == (2, 3, 100)
    np.testing.assert_array_equal(got.ravel(), flat)
    s = g.locate(x[0], y[0], z[0])
    assert s.shape == () and s == flat[0]
    assert g.locate(np.array([]), np.array([]), np.array([])).shape == (0,)
    # broadcasting a scalar z against arrays (z = 0 would be eta = 0, an edge: see the edge test)
    np.testing.assert_array_equal(g.locate(x, y, 123.0), reference_locate(g, x, y, 123.0))
    bad = np.array([np.nan, np.inf, -np.inf, 1700.0, 1700.0])
    out = g.locate(bad, np.array([0.0, 0.0, 0.0, np.nan, np.inf]), 0.0)
    np.testing.assert_array_equal(out, -1)
    for name in ("calogan", "photon5"):
        h = GEOMETRIES[name]()
        np.testing.assert_array_equal(h.locate([np.nan, np.inf, 0.0], [0.0, 0.0, 0.0], [500.0, 500.0, np.inf]), -1)


def test_long_inputs_cross_chunk_boundaries():
    from pcloud.geometry import base
    g = get_geometry("cms")
    rng = np.random.default_rng(5)
    n = 2 * base._LOCATE_CHUNK + 77
    x, y, z = _random_positions(g, n, rng)
    np.testing.assert_array_equal(g.locate(x, y, z), reference_locate(g, x, y, z))


# ------------------------------------------------------------------------------------------------ general cases
def _custom_geometries():
    """Hand-built geometries that reach the less common code paths."""
    two_pi = np.linspace(-np.pi, np.pi, 9)
    mixed = Geometry("mixed", [
        Section("pre", "xy", [100.0, 110.0, 125.0], np.linspace(-50, 50, 11), np.linspace(-50, 50, 6), PB_LAR),
        # non-uniform r (LUT search) next to a uniform-r polar layer; azimuth over [0, 2 pi)
        Section("polar", "ralpha", [130.0, 140.0], [0.0, 1.0, 3.0, 7.0, 20.0], np.linspace(0, 2 * np.pi, 7), PB_LAR,
                v_periodic=True),
        Section("polar2", "ralpha", [140.0, 150.0, 180.0], np.linspace(0, 30, 4), two_pi, PB_LAR, v_periodic=True),
    ])
    # a grid far too fine for the LUT (gap 1e-7 over 1000 mm): np.searchsorted fallback, two distinct edge arrays
    huge = Geometry("huge", [
        Section("a", "ralpha", [0.0, 5.0], [0.0, 1e-7, 1.0, 1000.0], two_pi, PB_LAR, v_periodic=True),
        Section("b", "ralpha", [5.0, 6.0], [0.0, 2e-7, 3.0, 900.0], two_pi, PB_LAR, v_periodic=True),
    ])
    huge1 = Geometry("huge1", [
        Section("a", "ralpha", [0.0, 5.0, 6.0], [0.0, 1e-7, 1.0, 1000.0], two_pi, PB_LAR, v_periodic=True)])
    # a periodic xy axis (not an angle: np.mod path), a gap and an overlap-free odd layer pattern
    xyper = Geometry("xyper", [
        Section("a", "xy", [0.0, 1.0], [-3.0, 0.0, 3.0], [-2.0, 0.0, 1.0, 2.0], PB_LAR, v_periodic=True),
        Section("b", "xy", [2.0, 2.5, 3.0, 4.0, 4.5, 7.0], np.linspace(-3, 3, 5), np.linspace(-2, 2, 3), PB_LAR),
    ])
    # collider frame with phi bins over [0, 2 pi) (wrap of negative atan2) and a partial-phi window
    collider = Geometry("collider", [
        Section("a", "etaphi", [1000.0, 1100.0], np.linspace(-1, 1, 21), np.linspace(0, 2 * np.pi, 33), PB_LAR,
                v_periodic=True),
        Section("b", "etaphi", [1200.0, 1300.0], [-1.0, -0.5, 0.0, 0.1, 1.0], np.linspace(-0.3, 0.3, 7), PB_LAR),
    ])
    # > _FEW_EDGES layer boundaries with a 1e-9 mm gap: too fine for the depth grid, np.searchsorted fallback
    deep = Geometry("deep", [
        Section("a", "xy", np.arange(0.0, 20.0), np.linspace(-5, 5, 3), np.linspace(-5, 5, 4), PB_LAR),
        Section("b", "xy", [19.0 + 1e-9, 21.0, 25.0], np.linspace(-5, 5, 5), np.linspace(-5, 5, 2), PB_LAR),
    ])
    return [mixed, huge, huge1, xyper, collider, deep]


@pytest.mark.parametrize("g", _custom_geometries(), ids=lambda g: g.name)
def test_custom_geometries_identical_to_reference(g):
    rng = np.random.default_rng(11)
    x, y, z = _random_positions(g, 40_000, rng)
    ref = reference_locate(g, x, y, z)
    assert 0.05 < np.mean(ref >= 0) < 0.95
    np.testing.assert_array_equal(g.locate(x, y, z), ref)
    c = g.cells
    np.testing.assert_array_equal(g.locate(c["x"], c["y"], c["z"]), np.arange(g.n_cells))
    on, below, above = _edge_positions(g, rng)
    got = g.locate(*on)
    ok = (got == reference_locate(g, *on)) | (got == reference_locate(g, *below)) | (got == reference_locate(g, *above))
    assert ok.all()


def test_custom_geometries_take_the_intended_paths():
    mixed, huge, huge1, xyper, collider, deep = _custom_geometries()
    assert not deep._locator.few_bounds and deep._locator.depth_grid is None
    assert mixed._locator.mixed is not None and mixed._locator.u.grid is not None and mixed._locator.wrap_once
    assert huge._locator.u.grid is None and len(huge._locator.u.group_edges) == 2
    assert huge1._locator.u.grid is None and len(huge1._locator.u.group_edges) == 1
    assert not xyper._locator.wrap_once
    assert collider._locator.wrap_low and collider._locator.v.uniform and not collider._locator.u.uniform
    assert get_geometry("atlas")._locator.u.uniform and get_geometry("atlas")._locator.few_bounds
    assert get_geometry("clic")._locator.depth_grid is not None


def test_grid_search_equals_searchsorted():
    rng = np.random.default_rng(2)
    rows = [np.cumsum(rng.exponential(1.0, 2 + rng.integers(0, 12))) - 3.0 for _ in range(6)]
    rows.append(np.array([0.0, 1e-3, 5.0, 5.001, 80.0]))
    gs = _GridSearch.build(rows)
    for r, b in enumerate(rows):
        x = np.concatenate([rng.uniform(b[0] - 2, b[-1] + 2, 5000), b, np.nextafter(b, -np.inf),
                            np.nextafter(b, np.inf), [np.inf, -np.inf]])
        g = np.full(x.size, r)
        np.testing.assert_array_equal(gs(g, x), np.searchsorted(b, x, side="right"))
        assert gs(g[:1], np.array([np.nan]))[0] == 0   # NaN: below every boundary (outside)
    # rows mixed in one call
    g = rng.integers(0, len(rows), 3000)
    x = rng.uniform(-5, 80, 3000)
    want = np.array([np.searchsorted(rows[r], xi, side="right") for r, xi in zip(g, x)])
    np.testing.assert_array_equal(gs(g, x), want)
