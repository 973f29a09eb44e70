"""ATLAS topological cell clustering (the 4/2/0 scheme), vectorised over cells and events.

Reference: ATLAS Collaboration, "Topological cell clustering in the ATLAS calorimeters and its performance in LHC
Run 1", Eur. Phys. J. C 77 (2017) 490, section 4. With the cell signal significance
``varsigma = E / sigma_noise``:

1. seeds: cells with |varsigma| > S = 4;
2. growth: neighbours with |varsigma| > N = 2 are added, and their neighbours are examined in turn;
3. perimeter: the neighbours of the collected cells with |varsigma| > P = 0 are added once (no further growth);
4. two proto-clusters that touch through a cell above N are merged (they form one connected set).

Implementation: the neighbour graph of the geometry is computed once (sparse, cached). For the cells present in the
events (flat rows with an event index, all events at once) the graph restricted to cells above N is split into
connected components with :func:`scipy.sparse.csgraph.connected_components`; components holding at least one seed
are the clusters (so steps 1, 2 and 4 are exact). Every remaining cell above P that neighbours a clustered cell
above N is then attached to the cluster of its most significant such neighbour (Athena processes cells in order of
decreasing significance, so the cluster that reaches a perimeter cell first is the one grown from the more
significant neighbour). Absolute significances are used for all three thresholds by default (the Run-2 ATLAS
configuration, which makes the scheme symmetric under noise sign); ``use_abs=False`` uses signed values.

Neighbours (``all3D`` option of the paper): cells sharing an edge or a corner in the same layer (8 in a regular
grid; the azimuth wraps around), and cells of adjacent layers (also across sections, e.g. EMB3-TileBar0, the
"super-calo" neighbours of ATLAS) whose (u, v) areas overlap with non-zero area.

Not done (documented simplification): cluster splitting around local maxima (the ATLAS splitter) — clusters here
are the raw topo-clusters; no time or bad-cell handling.

Cluster kinematics: E = sum of cell energies (GeV); eta, phi = |E|-weighted centroid of the cell centres (phi as a
circular mean). Clusters are numbered per event in order of decreasing energy (as in the MLTree ntuples).
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from ..core.clusters import TopoClusters

_NEIGHBOUR_CACHE: dict = {}


def _geometry_key(geometry) -> tuple:
    return (geometry.name, tuple((s.name, s.kind, s.layer_edges_mm.tobytes(), s.u_edges.tobytes(),
                                  s.v_edges.tobytes(), s.v_periodic) for s in geometry.sections))


def _overlap_pairs(a_edges: np.ndarray, b_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with bin i of ``a_edges`` and bin j of ``b_edges`` overlapping with non-zero length."""
    a_lo, a_hi = a_edges[:-1], a_edges[1:]
    b_lo, b_hi = b_edges[:-1], b_edges[1:]
    tol = 1e-9 * max(1.0, float(np.abs(np.concatenate([a_edges, b_edges])).max()))
    j0 = np.searchsorted(b_hi, a_lo + tol, side="right")  # first b bin ending after a_lo
    j1 = np.searchsorted(b_lo, a_hi - tol, side="left")   # first b bin starting at/after a_hi
    cnt = np.maximum(j1 - j0, 0)
    i = np.repeat(np.arange(a_lo.size), cnt)
    j = np.repeat(j0, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return i.astype(np.int64), j.astype(np.int64)


def cell_neighbours(geometry) -> sparse.csr_matrix:
    """Symmetric boolean adjacency (n_cells x n_cells, CSR, no diagonal) of the geometry's cells; cached."""
    key = _geometry_key(geometry)
    if key in _NEIGHBOUR_CACHE:
        return _NEIGHBOUR_CACHE[key]
    rows, cols = [], []
    # ---- same layer: 8-neighbourhood (half of the offsets, symmetrised below)
    for si, s in enumerate(geometry.sections):
        base = geometry.section_offsets[si]
        iu, iv = np.meshgrid(np.arange(s.n_u), np.arange(s.n_v), indexing="ij")
        iu, iv = iu.ravel(), iv.ravel()
        for du, dv in ((0, 1), (1, -1), (1, 0), (1, 1)):
            u2, v2 = iu + du, iv + dv
            if s.v_periodic:
                v2 = np.mod(v2, s.n_v)
            ok = (u2 >= 0) & (u2 < s.n_u) & (v2 >= 0) & (v2 < s.n_v)
            if s.v_periodic and s.n_v <= 2:
                ok &= v2 != iv
            a = iu[ok] * s.n_v + iv[ok]
            b = u2[ok] * s.n_v + v2[ok]
            for lay in range(s.n_layers):
                rows.append(base + lay * s.n_u * s.n_v + a)
                cols.append(base + lay * s.n_u * s.n_v + b)
        # consecutive layers inside a section share the grid: the same (iu, iv) overlaps
        n2 = s.n_u * s.n_v
        for lay in range(s.n_layers - 1):
            rows.append(base + lay * n2 + np.arange(n2))
            cols.append(base + (lay + 1) * n2 + np.arange(n2))
    # ---- last layer of a section and first layer of the next: overlapping (u, v) areas
    for si in range(len(geometry.sections) - 1):
        s, t = geometry.sections[si], geometry.sections[si + 1]
        if s.kind != t.kind:
            continue
        iu_a, iu_b = _overlap_pairs(s.u_edges, t.u_edges)
        iv_a, iv_b = _overlap_pairs(s.v_edges, t.v_edges)
        a = (iu_a[:, None] * s.n_v + iv_a[None, :]).ravel()
        b = (iu_b[:, None] * t.n_v + iv_b[None, :]).ravel()
        rows.append(geometry.section_offsets[si] + (s.n_layers - 1) * s.n_u * s.n_v + a)
        cols.append(geometry.section_offsets[si + 1] + b)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    n = geometry.n_cells
    m = sparse.coo_matrix((np.ones(2 * r.size, dtype=bool), (np.concatenate([r, c]), np.concatenate([c, r]))),
                          shape=(n, n)).tocsr()
    m.setdiag(False)
    m.eliminate_zeros()
    m.sum_duplicates()
    m.data[:] = True
    _NEIGHBOUR_CACHE[key] = m
    return m


def _topo_inputs(geometry, event, cell_id, energy_gev, noise_sigma_gev, n_events, thresholds) -> tuple:
    """Validated inputs of :func:`topo_cluster`: (event, cell id, energy, noise sigma per row, n_events)."""
    seed_sigma, grow_sigma, cell_sigma = thresholds
    if not (seed_sigma >= grow_sigma >= cell_sigma >= 0):
        raise ValueError(f"topo_cluster: thresholds must satisfy seed >= grow >= cell >= 0, found "
                         f"{(seed_sigma, grow_sigma, cell_sigma)}")
    event = np.asarray(event, dtype=np.int64)
    cid = np.asarray(cell_id, dtype=np.int64)
    e = np.asarray(energy_gev, dtype=np.float64)
    if not (event.shape == cid.shape == e.shape) or event.ndim != 1:
        raise ValueError(f"topo_cluster: event, cell_id, energy_gev must be 1-D of equal length, found "
                         f"{event.shape}, {cid.shape}, {e.shape}")
    nc = geometry.n_cells
    if cid.size and (cid.min() < 0 or cid.max() >= nc):
        raise ValueError(f"topo_cluster: cell_id must be in [0, {nc}) for geometry {geometry.name!r}, found "
                         f"[{cid.min()}, {cid.max()}]")
    n_events = int(event.max() + 1 if event.size else 0) if n_events is None else int(n_events)
    sigma = geometry.cells["noise_sigma_gev"][cid] if noise_sigma_gev is None else \
        np.broadcast_to(np.asarray(noise_sigma_gev, dtype=np.float64), e.shape)
    if np.any(~(sigma > 0)):
        raise ValueError("topo_cluster: noise_sigma_gev must be > 0 for every cell (significance E / sigma)")
    return event, cid, e, sigma, n_events


def _sorted_cell_keys(event, cid, nc: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, sorted keys) of the rows by key event * n_cells + cell id; rejects duplicate (event, cell) rows."""
    key = event * nc + cid
    order = np.argsort(key, kind="stable")
    skey = key[order]
    if key.size and np.any(np.diff(skey) == 0):
        raise ValueError("topo_cluster: duplicate (event, cell_id) rows; sum them first")
    return order, skey


def _neighbour_edges(geometry, event, cid, order, skey, is_grow, is_cand) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (src, dst): every present cell above N to its present neighbours above P (only these edges
    matter: N-N edges for the growth, N-P edges for the perimeter), via the geometry's neighbour lists."""
    nc = geometry.n_cells
    n = event.size
    nb = cell_neighbours(geometry)
    cand = np.nonzero(is_grow)[0]
    deg = np.diff(nb.indptr)[cid[cand]]
    src = np.repeat(cand, deg)
    starts = nb.indptr[cid[cand]]
    pos = np.repeat(starts - np.cumsum(deg) + deg, deg) + np.arange(deg.sum())
    nb_key = event[src] * nc + nb.indices[pos]
    j = np.searchsorted(skey, nb_key)
    j = np.clip(j, 0, max(n - 1, 0))
    found = (skey[j] == nb_key) if n else np.zeros(0, bool)
    dst = order[j[found]]
    src = src[found]
    keep = is_cand[dst]
    return src[keep], dst[keep]


def _grow_clusters(src, dst, is_grow, is_seed) -> np.ndarray:
    """Cluster label per row (-1: none): connected components of the > N subgraph that hold a seed."""
    n = is_grow.size
    grow_rows = np.nonzero(is_grow)[0]
    gidx = np.full(n, -1, np.int64)
    gidx[grow_rows] = np.arange(grow_rows.size)
    ge = is_grow[src] & is_grow[dst]
    g = sparse.coo_matrix((np.ones(int(ge.sum()), bool), (gidx[src[ge]], gidx[dst[ge]])),
                          shape=(grow_rows.size, grow_rows.size))
    _, comp = connected_components(g, directed=False) if grow_rows.size else (0, np.zeros(0, np.int64))
    seeded = np.zeros(comp.max() + 1 if comp.size else 0, bool)
    seeded[comp[is_seed[grow_rows]]] = True
    label = np.full(n, -1, np.int64)
    label[grow_rows] = np.where(seeded[comp], comp, -1)
    return label


def _assign_perimeter(label, src, dst, s, is_grow, is_seed) -> np.ndarray:
    """Give every unclustered candidate next to a clustered > N cell the cluster of its most significant such
    neighbour (``label`` updated in place); returns the cell roles (0 none, 1 seed, 2 growth, 3 perimeter)."""
    pe = (label[dst] < 0) & (label[src] >= 0)
    p_src, p_dst = dst[pe], src[pe]  # (perimeter candidate, clustered cell above N)
    if p_src.size:
        o = np.lexsort((-s[p_dst], p_src))
        p_src, p_dst = p_src[o], p_dst[o]
        first = np.concatenate([[True], np.diff(p_src) != 0])
        perim_rows = p_src[first]
        perim_label = label[p_dst[first]]
    else:
        perim_rows = perim_label = np.zeros(0, np.int64)
    role = np.zeros(label.size, np.int8)
    role[(label >= 0) & is_grow] = 2
    role[(label >= 0) & is_seed] = 1
    label[perim_rows] = perim_label
    role[perim_rows] = 3
    return role


def _number_clusters(label, event, e) -> tuple:
    """Renumber the clusters by event, then decreasing energy: (clustered rows, their new cluster index, the
    cluster count, per-cluster energy and event in the old numbering, the new order of the old clusters)."""
    clustered = np.nonzero(label >= 0)[0]
    uniq, inv = np.unique(label[clustered], return_inverse=True)
    k = uniq.size
    c_e = np.bincount(inv, e[clustered], minlength=k)
    c_event = np.zeros(k, np.int64)
    c_event[inv] = event[clustered]
    new_order = np.lexsort((-c_e, c_event))
    rank = np.empty(k, np.int64)
    rank[new_order] = np.arange(k)
    return clustered, rank[inv], k, c_e, c_event, new_order


def _cluster_centroids(geometry, cid, clustered, cl, e, k) -> tuple[np.ndarray, np.ndarray]:
    """|E|-weighted (eta, phi) centroids of the clusters (phi as a circular mean)."""
    w = np.abs(e[clustered])
    eta_c = geometry.cells["eta"][cid[clustered]]
    phi_c = geometry.cells["phi"][cid[clustered]]
    sw = np.bincount(cl, w, minlength=k)
    safe = np.where(sw > 0, sw, 1.0)
    c_eta = np.bincount(cl, w * eta_c, minlength=k) / safe
    c_phi = np.arctan2(np.bincount(cl, w * np.sin(phi_c), minlength=k), np.bincount(cl, w * np.cos(phi_c), minlength=k))
    return c_eta, c_phi


def topo_cluster(geometry, event, cell_id, energy_gev, noise_sigma_gev=None, n_events: int | None = None,
                 seed_sigma: float = 4.0, grow_sigma: float = 2.0, cell_sigma: float = 0.0,
                 use_abs: bool = True) -> TopoClusters:
    """Topo-clusters of cells given as flat rows ``(event, cell_id, energy_gev)`` (see the module docstring).

    ``cell_id``: flat cell index of ``geometry``; one row per (event, cell) (duplicates rejected).
    ``noise_sigma_gev``: per-row noise (defaults to the geometry's section noise); must be > 0.
    """
    event, cid, e, sigma, n_events = _topo_inputs(geometry, event, cell_id, energy_gev, noise_sigma_gev, n_events,
                                                  (seed_sigma, grow_sigma, cell_sigma))
    order, skey = _sorted_cell_keys(event, cid, geometry.n_cells)
    sig = e / sigma
    s = np.abs(sig) if use_abs else sig
    is_seed = s > seed_sigma
    is_grow = s > grow_sigma
    is_cand = s > cell_sigma
    src, dst = _neighbour_edges(geometry, event, cid, order, skey, is_grow, is_cand)
    label = _grow_clusters(src, dst, is_grow, is_seed)
    role = _assign_perimeter(label, src, dst, s, is_grow, is_seed)
    clustered, cl, k, c_e, c_event, new_order = _number_clusters(label, event, e)
    cell_cluster = np.full(e.size, -1, np.int64)
    cell_cluster[clustered] = cl
    c_eta, c_phi = _cluster_centroids(geometry, cid, clustered, cl, e, k)
    members = clustered[np.argsort(cl, kind="stable")]
    n_cells = np.bincount(cl, minlength=k)
    return TopoClusters(n_events=n_events, event=c_event[new_order], energy_gev=c_e[new_order], eta=c_eta,
                        phi=c_phi, n_cells=n_cells.astype(np.int64), cell_cluster=cell_cluster, cell_role=role,
                        members=members.astype(np.int64),
                        member_offsets=np.concatenate([[0], np.cumsum(n_cells)]).astype(np.int64),
                        thresholds=(seed_sigma, grow_sigma, cell_sigma), meta={"use_abs": use_abs})


def topo_cluster_events(geometry, events, **kwargs) -> TopoClusters:
    """Topo-clusters of a :class:`pcloud.core.events.TrackCellEvents` (cell energies with noise)."""
    c = events.cells
    return topo_cluster(geometry, c["event"], c["id"], c["energy_gev"], c["noise_sigma_gev"],
                        n_events=events.n_events, **kwargs)


def expected_noise_seeds(n_cells: int, seed_sigma: float = 4.0, use_abs: bool = True) -> float:
    """Expected number of pure-noise cells above the seed threshold: n P(|Z| > S) (Gaussian noise)."""
    from scipy.special import erfc

    p = erfc(seed_sigma / np.sqrt(2.0))  # two-sided tail
    return float(n_cells * (p if use_abs else p / 2))


def clustered_cell_mask(events, geometry=None, clusters=None):
    """Boolean mask of the cell rows of ``events`` that belong to a 4/2/0 topo-cluster (the MLTree cell
    population); ``clusters`` (a :class:`~pcloud.core.clusters.TopoClusters` on those rows) or the geometry
    (default: the events' own) to cluster them."""
    if clusters is None:
        if geometry is None:
            from ..geometry import get_geometry
            geometry = get_geometry(events.geometry_name)
        clusters = topo_cluster_events(geometry, events)
    return clusters.cell_cluster >= 0
