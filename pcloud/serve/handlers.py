"""The model functions behind ``pcloud serve``: one per bundle, called by PyTriton with a list of requests.

Point-cloud bundles (PointNet, DGCNN, the dense CNNs)
-----------------------------------------------------
Inputs of a request of B clouds (KServe v2 names and datatypes):

* ``points`` FP32 (B, N, C): raw point columns, named by :func:`request_columns` (``x, y, z, energy, type`` and
  what the bundle's features or images need, e.g. ``layer``, ``cell_id``) in the units of pcloud's schema
  (mm, GeV; ``type`` 0 = cell);
* ``mask`` BOOL (B, N): True for real points (rows shorter than N are padded);
* ``g`` FP32 (B, G): the per-event inputs of the bundle (section energies in GeV) when it has any.

The server applies the bundle's own preprocessing (:meth:`pcloud.pipeline.bundle.Bundle.batcher`: features,
highest-energy-first truncation to ``max_points``, normaliser, or the images of a dense model), so a request
carries what a detector gives and the answers equal ``pcloud predict``. Outputs per row: the model's outputs
(``logits`` (n_classes), ``probabilities``, ``energy`` (1) GeV, ...) plus ``error`` INT32 (1) and ``message``
BYTES (1) (:mod:`pcloud.serve.checks`); rows with an error carry NaN outputs.

All requests of a dynamic batch are checked row by row, the good rows of all of them run through the model in one
forward pass, and the results are scattered back; if that pass fails, each request is rerun alone so that only the
failing one is flagged (code 4). The function never raises: PyTriton would fail the whole batch.

Particle-flow bundles (one event per request)
---------------------------------------------
Inputs: ``cell_id`` INT64 (C) geometry cell ids, ``cell_energy_gev`` FP64 (C), ``cell_noise_gev`` FP64 (C),
``track_scalars`` FP64 (T, 6) = ``pt_gev, p_gev, eta, phi, chi2, ndf`` and ``track_layers`` FP64 (T, 6, L) =
per calorimeter layer ``eta, phi, x_mm, y_mm, z_mm, reached`` (L = the ATLAS-like geometry's layers). The whole
iterative subtraction (:func:`pcloud.pflow.inference.iterative_inference`: tracks by descending pT,
predict-attribute-subtract-re-cloud, clean-up) runs behind the request; the events of the requests that arrive
together are processed in one vectorised pass. Outputs: ``attr_cell`` INT64 / ``attr_track`` INT64 /
``attr_energy_gev`` FP64 (the (cell, track, energy) attribution, indices into the request's arrays),
``neutral_gev`` FP64 (C) (energy left per cell), ``error`` INT32 (1) and ``message`` BYTES (1).
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from . import checks

BASE_COLUMNS = ("x", "y", "z", "energy", "type")
TRACK_SCALARS = ("pt_gev", "p_gev", "eta", "phi", "chi2", "ndf")
TRACK_LAYER_FIELDS = ("layer_eta", "layer_phi", "layer_x_mm", "layer_y_mm", "layer_z_mm", "layer_reached")


def request_columns(meta: dict) -> list[str]:
    """The point columns of a request to a bundle (``points[..., i]`` is column ``i``)."""
    from ..data.point_features import resolve_features

    need = set()
    if meta["model"]["family"] == "point":
        for f in resolve_features(meta["data"]["features"]):
            need |= set(f.needs)
    else:
        need.add("cell_id")
    return list(BASE_COLUMNS) + sorted(need - set(BASE_COLUMNS))


class PointModel:
    """A point or dense bundle as a PyTriton model function (module docstring)."""

    batching = True

    def __init__(self, bundle_dir, name: str | None = None):
        from pathlib import Path

        from ..pipeline.bundle import load_bundle

        self.bundle = load_bundle(bundle_dir)
        self.name = name or Path(bundle_dir).resolve().name
        self.columns = request_columns(self.bundle.meta)
        self.global_fields = list(self.bundle.meta["data"].get("global_fields") or [])
        self.batcher = self.bundle.batcher()
        self.geometry = self.bundle.geometry
        self.lock = threading.Lock()
        #: requests per call of the model function (the dynamic batches Triton formed)
        self.calls: list[int] = []
        # output names and widths from one dry run
        probe = self.predict(*self.example(2, 4))
        self.outputs = {k: v.shape[1] for k, v in probe.items()}

    # ------------------------------------------------------------------ specs
    def input_specs(self) -> list[tuple[str, type, tuple]]:
        specs = [("points", np.float32, (-1, -1)), ("mask", np.bool_, (-1,))]
        if self.global_fields:
            specs.append(("g", np.float32, (-1,)))
        return specs

    def output_specs(self) -> list[tuple[str, type, tuple]]:
        return [(k, np.float32, (-1,)) for k in self.outputs] + [("error", np.int32, (1,)),
                                                                 ("message", bytes, (1,))]

    def example(self, b: int, n: int, seed: int = 0):
        """A valid random request (points, mask, g) of ``b`` clouds of ``n`` points (for probes and tests)."""
        rng = np.random.default_rng(seed)
        pts = np.zeros((b, n, len(self.columns)), np.float32)
        for i, c in enumerate(self.columns):
            if c in ("x", "y", "z"):
                pts[..., i] = rng.normal(0, 50, (b, n))
            elif c == "energy":
                pts[..., i] = rng.exponential(0.5, (b, n))
            elif c == "layer":
                pts[..., i] = rng.integers(0, 3, (b, n))
            elif c == "cell_id":
                pts[..., i] = rng.integers(0, self.geometry.n_cells, (b, n))
        g = rng.uniform(0, 50, (b, len(self.global_fields))).astype(np.float32) if self.global_fields else None
        return pts, np.ones((b, n), bool), g

    # ------------------------------------------------------------------ inference
    def clouds(self, points: np.ndarray, mask: np.ndarray, g: np.ndarray | None):
        """Rows -> a cloud array of pcloud's schema (real points only; the global fields from ``g``)."""
        from ..core.schema import build_clouds

        counts = mask.sum(1).astype(np.int64)
        flat = points[mask]
        cols = {c: flat[:, i] for i, c in enumerate(self.columns)}
        events = {"event_number": np.arange(len(points), dtype=np.int64)}
        for j, f in enumerate(self.global_fields):
            events[f] = g[:, j].astype(np.float64)
        return build_clouds(counts, cols, events)

    def predict(self, points: np.ndarray, mask: np.ndarray, g: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Outputs (name -> (B, width) float32) of valid rows; the in-process path of the server."""
        batch = self.batcher(self.clouds(points, mask, g))
        with self.lock, torch.no_grad():
            out = self.bundle.model(batch)
        res = {}
        for k, v in out.items():
            if k == "global" or not torch.is_tensor(v):
                continue
            res[k] = v.float().reshape(v.shape[0], -1).numpy()
            if k == "logits":
                res["probabilities"] = torch.softmax(v.float(), -1).numpy()
        return res

    def check(self, request: dict) -> checks.RowErrors:
        type_col = self.columns.index("type")
        cell_col = self.columns.index("cell_id") if "cell_id" in self.columns else None
        return checks.check_point_request(request, len(self.columns), len(self.global_fields), self.columns,
                                          type_column=type_col, cell_column=cell_col,
                                          n_cells=self.geometry.n_cells if cell_col is not None else None)

    def _response(self, n: int, err: checks.RowErrors, values: dict | None, rows: np.ndarray) -> dict:
        out = {k: np.full((n, w), np.nan, np.float32) for k, w in self.outputs.items()}
        if values is not None:
            for k in out:
                out[k][rows] = values[k]
        out["error"] = err.code.reshape(-1, 1)
        out["message"] = err.messages()
        return out

    def __call__(self, requests) -> list[dict]:
        """PyTriton model function: one response per request, never an exception (module docstring)."""
        reqs = [{k: np.asarray(v) for k, v in r.items()} for r in requests]
        self.calls.append(len(reqs))
        errs = []
        for r in reqs:
            try:
                errs.append(self.check(r))
            except Exception as e:  # noqa: BLE001 - a check must never fail the batch
                e_ = checks.RowErrors(max(checks.n_rows(r, "points"), 1))
                e_.flag_all(checks.WRONG_LENGTH, f"unreadable request: {type(e).__name__}: {e}")
                errs.append(e_)
        good = [(i, np.nonzero(e.ok)[0]) for i, e in enumerate(errs) if e.ok.any()]
        values = {}
        if good:
            try:
                values = self._run_rows(reqs, good)
            except Exception:  # noqa: BLE001 - rerun each request alone, flag only the failing ones
                values = {}
                for i, rows in good:
                    try:
                        values.update(self._run_rows(reqs, [(i, rows)]))
                    except Exception as e:  # noqa: BLE001
                        errs[i].flag(rows, checks.MODEL_ERROR, f"model error: {type(e).__name__}: "
                                                               f"{str(e).splitlines()[0][:200] if str(e) else ''}")
        return [self._response(len(e.code), e, values.get(i), np.nonzero(e.ok)[0]) for i, e in enumerate(errs)]

    def _run_rows(self, reqs, good) -> dict:
        """One forward pass over the good rows of several requests (padded to the longest); per request values."""
        n_max = max(int(reqs[i]["mask"][rows].sum(1).max()) for i, rows in good)
        parts_p, parts_m, parts_g, sizes = [], [], [], []
        for i, rows in good:
            r = reqs[i]
            p = np.zeros((rows.size, n_max, len(self.columns)), np.float32)
            m = np.zeros((rows.size, n_max), bool)
            src_m = r["mask"][rows].astype(bool)
            # real points of each row moved to the front (their order is kept)
            order = np.argsort(~src_m, axis=1, kind="stable")[:, :n_max]
            p[:] = np.take_along_axis(r["points"][rows], order[..., None], 1)[:, :n_max]
            m[:] = np.take_along_axis(src_m, order, 1)[:, :n_max]
            parts_p.append(p)
            parts_m.append(m)
            parts_g.append(r["g"][rows].astype(np.float32) if self.global_fields else None)
            sizes.append(rows.size)
        pts, msk = np.concatenate(parts_p), np.concatenate(parts_m)
        g = np.concatenate(parts_g) if self.global_fields else None
        out = self.predict(pts, msk, g)
        res, start = {}, 0
        for (i, _), s in zip(good, sizes):
            res[i] = {k: v[start:start + s] for k, v in out.items()}
            start += s
        return res


class PflowModel:
    """A particle-flow bundle as a PyTriton model function: one event per request (module docstring)."""

    batching = False

    def __init__(self, bundle_dir, name: str | None = None):
        from pathlib import Path

        from ..geometry import get_geometry
        from ..pipeline.pflow import load_segmenter
        from ..sim import tracks as trk

        self.segmenter, self.meta = load_segmenter(bundle_dir)
        self.name = name or Path(bundle_dir).resolve().name
        self.geometry = get_geometry("atlas")
        self.layer_names = list(trk.layer_mid_radii_mm(self.geometry)[0])
        self.lock = threading.Lock()
        self.calls: list[int] = []

    def input_specs(self):
        L = len(self.layer_names)
        return [("cell_id", np.int64, (-1,)), ("cell_energy_gev", np.float64, (-1,)),
                ("cell_noise_gev", np.float64, (-1,)), ("track_scalars", np.float64, (-1, len(TRACK_SCALARS))),
                ("track_layers", np.float64, (-1, len(TRACK_LAYER_FIELDS), L))]

    def output_specs(self):
        return [("attr_cell", np.int64, (-1,)), ("attr_track", np.int64, (-1,)), ("attr_energy_gev", np.float64, (-1,)),
                ("neutral_gev", np.float64, (-1,)), ("error", np.int32, (1,)), ("message", bytes, (1,))]

    def check(self, r: dict) -> checks.RowErrors:
        err = checks.check_event_request(r, {name: shape for name, _, shape in self.input_specs()},
                                         may_be_nan=("track_layers",))
        if not err.ok.all():
            return err
        tl = r["track_layers"]
        reached = tl[:, -1, :]
        if not np.isin(reached, (0.0, 1.0)).all():
            err.flag_all(checks.BAD_VALUE, "track_layers[:, 5] (reached) must be 0 or 1")
            return err
        if not np.isfinite(np.where(reached[:, None, :] > 0, tl, 0.0)).all():  # unreached layers may be NaN
            err.flag_all(checks.NOT_FINITE, "track_layers hold NaN or inf on a reached layer")
            return err
        n = r["cell_id"].size
        if r["cell_energy_gev"].size != n or r["cell_noise_gev"].size != n:
            err.flag_all(checks.WRONG_LENGTH, f"cell_energy_gev and cell_noise_gev need one value per cell_id ({n})")
        elif n and (r["cell_id"].min() < 0 or r["cell_id"].max() >= self.geometry.n_cells):
            err.flag_all(checks.BAD_VALUE, f"cell_id must lie in [0, {self.geometry.n_cells})")
        elif np.unique(r["cell_id"]).size != n:
            err.flag_all(checks.BAD_VALUE, "cell_id holds duplicates")
        return err

    def events(self, reqs: list[dict]):
        """The requests' events as one :class:`pcloud.core.events.TrackCellEvents` (cells sorted by id; the
        permutation back to request order per event)."""
        from ..core.events import TrackCellEvents

        cells = {k: [] for k in ("event", "id", "energy_gev", "true_energy_gev", "noise_sigma_gev")}
        tracks = {k: [] for k in ("event", "particle", "charge", "true_pt_gev") + TRACK_SCALARS + TRACK_LAYER_FIELDS}
        orders, t0 = [], 0
        for e, r in enumerate(reqs):
            o = np.argsort(r["cell_id"], kind="stable")
            orders.append(o)
            n, T = o.size, r["track_scalars"].shape[0]
            cells["event"].append(np.full(n, e))
            cells["id"].append(r["cell_id"][o])
            cells["energy_gev"].append(r["cell_energy_gev"][o])
            cells["true_energy_gev"].append(np.zeros(n))
            cells["noise_sigma_gev"].append(r["cell_noise_gev"][o])
            tracks["event"].append(np.full(T, e))
            tracks["particle"].append(np.arange(t0, t0 + T))  # one stand-in particle per track (no truth here)
            tracks["charge"].append(np.ones(T))
            tracks["true_pt_gev"].append(r["track_scalars"][:, 0])
            for j, k in enumerate(TRACK_SCALARS):
                tracks[k].append(r["track_scalars"][:, j])
            for j, k in enumerate(TRACK_LAYER_FIELDS):
                v = r["track_layers"][:, j, :]
                tracks[k].append(v.astype(bool) if k == "layer_reached" else v)
            t0 += T
        cat = lambda d: {k: np.concatenate(v) for k, v in d.items()}  # noqa: E731
        tr = cat(tracks)
        n_t = tr["event"].size
        particles = {"event": tr["event"].copy(), "pdg": np.full(n_t, 211), "charge": np.ones(n_t),
                     "mass_gev": np.zeros(n_t), "energy_gev": tr["p_gev"].copy(), "px_gev": np.zeros(n_t),
                     "py_gev": np.zeros(n_t), "pz_gev": np.zeros(n_t), "pt_gev": tr["pt_gev"].copy(),
                     "eta": tr["eta"].copy(), "phi": tr["phi"].copy(), "vertex_mm": np.zeros((n_t, 3)),
                     "parent": np.full(n_t, -1), "showered": np.ones(n_t, bool)}
        empty_hits = {"cell": np.zeros(0, np.int64), "particle": np.zeros(0, np.int64),
                      "energy_gev": np.zeros(0), "energy_em_gev": np.zeros(0)}
        parents = {"event": np.zeros(0, np.int64), "pdg": np.zeros(0, np.int64), "mass_gev": np.zeros(0),
                   "energy_gev": np.zeros(0), "eta": np.zeros(0), "phi": np.zeros(0)}
        ev = TrackCellEvents(n_events=len(reqs), geometry_name=self.geometry.name, layer_names=self.layer_names,
                             particles=particles, parents=parents, tracks=tr, cells=cat(cells), hits=empty_hits)
        return ev, orders

    def infer_events(self, reqs: list[dict]) -> list[dict]:
        """Iterative inference of the events of ``reqs`` (valid requests) in one pass; one result per request."""
        from ..pflow.inference import iterative_inference

        ev, orders = self.events(reqs)
        with self.lock, torch.no_grad():
            a = iterative_inference(ev, self.geometry, self.segmenter, dr_max=self.segmenter.dr_max)
        neutral = a.neutral(np.asarray(ev.cells["energy_gev"], np.float64))
        c_ev = ev.cells["event"][a.cell_row]
        out = []
        for e, o in enumerate(orders):
            sel = c_ev == e
            cell_local = a.cell_row[sel] - ev.cell_offsets[e]
            back = np.empty(neutral[ev.cell_offsets[e]:ev.cell_offsets[e + 1]].size)
            back[o] = neutral[ev.cell_offsets[e]:ev.cell_offsets[e + 1]]
            out.append({"attr_cell": o[cell_local].astype(np.int64),
                        "attr_track": (a.track_row[sel] - ev.track_offsets[e]).astype(np.int64),
                        "attr_energy_gev": a.energy_gev[sel].astype(np.float64), "neutral_gev": back})
        return out

    def _empty(self, err):
        return {"attr_cell": np.zeros(0, np.int64), "attr_track": np.zeros(0, np.int64),
                "attr_energy_gev": np.zeros(0), "neutral_gev": np.zeros(0), "error": err.code,
                "message": err.messages().reshape(1)}

    def __call__(self, requests) -> list[dict]:
        reqs = [{k: np.asarray(v) for k, v in r.items()} for r in requests]
        self.calls.append(len(reqs))
        errs = []
        for r in reqs:
            try:
                errs.append(self.check(r))
            except Exception as e:  # noqa: BLE001
                e_ = checks.RowErrors(1)
                e_.flag_all(checks.WRONG_LENGTH, f"unreadable request: {type(e).__name__}: {e}")
                errs.append(e_)
        good = [i for i, e in enumerate(errs) if e.ok.all()]
        results = {}
        if good:
            try:
                results = dict(zip(good, self.infer_events([reqs[i] for i in good])))
            except Exception:  # noqa: BLE001 - rerun alone, flag the failing events only
                for i in good:
                    try:
                        results[i] = self.infer_events([reqs[i]])[0]
                    except Exception as e:  # noqa: BLE001
                        errs[i].flag_all(checks.MODEL_ERROR, f"model error: {type(e).__name__}: {e}")
        out = []
        for i, e in enumerate(errs):
            if i in results and e.ok.all():
                out.append({**results[i], "error": e.code, "message": e.messages().reshape(1)})
            else:
                out.append(self._empty(e))
        return out


def load_handler(bundle_dir, name: str | None = None):
    """The model function of a bundle folder (:class:`PflowModel` for particle flow, else :class:`PointModel`)."""
    from ..pipeline.bundle import read_bundle_meta

    meta = read_bundle_meta(bundle_dir)
    return PflowModel(bundle_dir, name) if meta["task"] == "pflow" else PointModel(bundle_dir, name)
