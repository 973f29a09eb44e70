"""``pcloud.serve.Client``: a small client of ``pcloud serve`` over KServe v2 HTTP (``tritonclient.http``, binary
tensor data), plus the helpers that turn pcloud's clouds and events into requests.

Any KServe v2 client works too; the JSON form of a request of 1 cloud of 2 points with columns
``x, y, z, energy, type, layer`` is::

    POST /v2/models/<model>/infer
    {"inputs": [{"name": "points", "datatype": "FP32", "shape": [1, 2, 6], "data": [...12 numbers...]},
                {"name": "mask", "datatype": "BOOL", "shape": [1, 2], "data": [true, true]},
                {"name": "g", "datatype": "FP32", "shape": [1, 3], "data": [12.0, 0.4, 0.0]}]}
"""
from __future__ import annotations

import awkward as ak
import numpy as np

from .handlers import TRACK_LAYER_FIELDS, TRACK_SCALARS, request_columns

_NP_TO_KSERVE = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64",
                 np.dtype(np.int32): "INT32", np.dtype(bool): "BOOL"}


def rows_from_clouds(clouds: ak.Array, columns, global_fields=(), n_points: int | None = None):
    """``(points, mask, g)`` request arrays of a cloud array, padded to the longest cloud; with ``n_points`` to
    exactly that many points (longer clouds keep their highest-energy points, as the server would)."""
    counts = ak.to_numpy(ak.num(clouds.points, axis=1)).astype(np.int64)
    n = int(n_points or max(1, counts.max(initial=1)))
    flat = np.stack([ak.to_numpy(ak.flatten(clouds.points[c], axis=1)).astype(np.float32) for c in columns], 1)
    ev = np.repeat(np.arange(len(clouds)), counts)
    slot = np.arange(ev.size) - np.repeat(np.cumsum(counts) - counts, counts)
    if n_points is not None and counts.max(initial=0) > n:
        e = flat[:, list(columns).index("energy")]
        order = np.lexsort((-e, ev))
        rank = np.empty(ev.size, np.int64)
        rank[order] = np.arange(ev.size) - np.repeat(np.cumsum(counts) - counts, counts)
        slot = rank
    keep = slot < n
    points = np.zeros((len(clouds), n, len(columns)), np.float32)
    mask = np.zeros((len(clouds), n), bool)
    points[ev[keep], slot[keep]] = flat[keep]
    mask[ev[keep], slot[keep]] = True
    g = (np.stack([ak.to_numpy(clouds[f]).astype(np.float32) for f in global_fields], 1)
         if len(global_fields) else None)
    return points, mask, g


def event_request(events, i: int) -> dict:
    """The particle-flow request of event ``i`` of :class:`pcloud.core.events.TrackCellEvents` (cells and
    tracks as the detector gives them; no truth)."""
    c0, c1 = events.cell_offsets[i], events.cell_offsets[i + 1]
    t0, t1 = events.track_offsets[i], events.track_offsets[i + 1]
    T = events.tracks
    return {"cell_id": np.asarray(events.cells["id"][c0:c1], np.int64),
            "cell_energy_gev": np.asarray(events.cells["energy_gev"][c0:c1], np.float64),
            "cell_noise_gev": np.asarray(events.cells["noise_sigma_gev"][c0:c1], np.float64),
            "track_scalars": np.stack([np.asarray(T[k][t0:t1], np.float64) for k in TRACK_SCALARS], 1).reshape(
                t1 - t0, len(TRACK_SCALARS)),
            "track_layers": np.stack([np.asarray(T[k][t0:t1], np.float64) for k in TRACK_LAYER_FIELDS], 1)}


class Client:
    """Client of one model of ``pcloud serve`` (``url`` like ``http://127.0.0.1:8000``).

    ``infer(points=..., mask=..., g=...)`` sends named arrays and returns the outputs as numpy arrays (``error`` and
    ``message`` per row included: a bad row never raises here, a transport or server failure does).
    ``predict(clouds)`` sends a cloud array (needs ``columns``/``global_fields``, e.g. from :meth:`for_bundle`);
    ``infer_event(**event_request(events, i))`` sends one particle-flow event.
    """

    def __init__(self, url: str, model: str, timeout_s: float = 60.0, columns=None, global_fields=()):
        import tritonclient.http as httpclient

        self.url, self.model = url, model
        host = url.split("://", 1)[-1].rstrip("/")
        self._http = httpclient
        self._c = httpclient.InferenceServerClient(host, connection_timeout=timeout_s, network_timeout=timeout_s)
        self.columns, self.global_fields = (list(columns) if columns else None), list(global_fields)

    @classmethod
    def for_bundle(cls, url: str, bundle_dir, model: str | None = None, **kw) -> "Client":
        """A client that knows the request columns of a bundle (model name: the folder name)."""
        from pathlib import Path

        from ..pipeline.bundle import read_bundle_meta

        meta = read_bundle_meta(bundle_dir)
        cols = request_columns(meta) if meta["task"] != "pflow" else None
        return cls(url, model or Path(bundle_dir).resolve().name, columns=cols,
                   global_fields=meta["data"].get("global_fields") or (), **kw)

    def ready(self) -> bool:
        try:
            return bool(self._c.is_model_ready(self.model))
        except Exception:  # noqa: BLE001 - not reachable = not ready
            return False

    def infer(self, **arrays) -> dict[str, np.ndarray]:
        inputs = []
        for name, a in arrays.items():
            if a is None:
                continue
            a = np.ascontiguousarray(a)
            t = self._http.InferInput(name, list(a.shape), _NP_TO_KSERVE[a.dtype])
            t.set_data_from_numpy(a, binary_data=True)
            inputs.append(t)
        res = self._c.infer(self.model, inputs)
        out = {o["name"]: res.as_numpy(o["name"]) for o in res.get_response()["outputs"]}
        if "message" in out:
            out["message"] = np.array([m.decode() if isinstance(m, bytes) else str(m)
                                       for m in np.asarray(out["message"]).reshape(-1)])
        if "error" in out:
            out["error"] = np.asarray(out["error"]).reshape(-1)
        return out

    def predict(self, clouds: ak.Array, n_points: int | None = None) -> dict[str, np.ndarray]:
        if self.columns is None:
            raise ValueError("Client.predict: the request columns are unknown; use Client.for_bundle(url, bundle)")
        points, mask, g = rows_from_clouds(clouds, self.columns, self.global_fields, n_points)
        return self.infer(points=points, mask=mask, g=g)

    def infer_event(self, **arrays) -> dict[str, np.ndarray]:
        return self.infer(**arrays)

    def close(self) -> None:
        self._c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
