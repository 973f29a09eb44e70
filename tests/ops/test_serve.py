"""pcloud serve on Triton (PyTriton, loopback only): the Python client and plain KServe v2 HTTP agree with in-process
inference, bad rows are flagged in their own responses without failing the others of the same dynamic batch,
particle flow runs per event, and stopping leaves no process behind."""
import json
import os
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from pcloud.geometry import get_geometry
from pcloud.io.native import NativeStore

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
pytest.importorskip("tritonclient.http", reason="the serve extra (tritonclient) is not installed")

from pcloud.serve import checks  # noqa: E402
from pcloud.serve.client import Client, event_request, rows_from_clouds  # noqa: E402
from pcloud.serve.stubenv import needs_stub_env, stub_env_ready  # noqa: E402

if needs_stub_env() and not stub_env_ready():
    pytest.skip("Triton's stub environment is missing: python -m pcloud.serve.stubenv (scripts/setup.sh makes it)",
                allow_module_level=True)


def _processes_with(text: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def server(point_bundles, pflow_bundle):
    from pcloud.serve.server import Server

    s = Server([point_bundles["pointnet"], point_bundles["dgcnn"], pflow_bundle[0]], max_batch_size=64,
               max_queue_delay_us=20000, log=None, timeout_s=120)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _clouds(bundle_dir, n=24):
    return next(NativeStore(Path(bundle_dir) / "data" / "train.parquet").chunks(columns=None))[:n]


def _in_process(bundle_dir, clouds):
    from pcloud.pipeline.bundle import load_bundle

    b = load_bundle(bundle_dir)
    with torch.no_grad():
        out = b.model(b.batcher()(clouds))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("model", ["pointnet", "dgcnn"])
def test_client_matches_in_process_inference(server, point_bundles, model):
    bdir = point_bundles[model]
    clouds = _clouds(bdir)
    with Client.for_bundle(server.url, bdir, timeout_s=30) as c:
        assert c.ready()
        got = c.predict(clouds)
    ref = _in_process(bdir, clouds)
    assert np.all(got["error"] == 0) and all(m == "" for m in got["message"])
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-5)
    np.testing.assert_allclose(got["energy"].ravel(), ref["energy"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["probabilities"].sum(1), 1.0, atol=1e-5)


def test_plain_kserve_v2_http_json(server, point_bundles):
    bdir = point_bundles["pointnet"]
    c = Client.for_bundle(server.url, bdir)
    points, mask, g = rows_from_clouds(_clouds(bdir, 2), c.columns, c.global_fields)
    body = {"inputs": [{"name": "points", "datatype": "FP32", "shape": list(points.shape),
                        "data": points.ravel().tolist()},
                       {"name": "mask", "datatype": "BOOL", "shape": list(mask.shape), "data": mask.ravel().tolist()},
                       {"name": "g", "datatype": "FP32", "shape": list(g.shape), "data": g.ravel().tolist()}]}
    req = urllib.request.Request(f"{server.url}/v2/models/pointnet/infer", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        res = json.loads(r.read())
    outs = {o["name"]: o for o in res["outputs"]}
    assert outs["logits"]["shape"] == [2, 2] and outs["error"]["data"] == [0, 0]
    ref = c.infer(points=points, mask=mask, g=g)
    np.testing.assert_allclose(np.array(outs["logits"]["data"]).reshape(2, 2), ref["logits"], atol=1e-6)
    with urllib.request.urlopen(f"{server.url}/v2/models/pointnet", timeout=10) as r:
        meta = json.loads(r.read())
    assert {i["name"] for i in meta["inputs"]} == {"points", "mask", "g"}
    c.close()


def test_bad_rows_are_flagged_without_failing_the_batch(server, point_bundles):
    bdir = point_bundles["pointnet"]
    handler = next(h for h in server.handlers if h.name == "pointnet")
    c0 = Client.for_bundle(server.url, bdir)
    points, mask, g = rows_from_clouds(_clouds(bdir, 8), c0.columns, c0.global_fields, n_points=48)
    ref = c0.infer(points=points, mask=mask, g=g)
    c0.close()
    bad = {"nan": (lambda p, m, gg: (np.where(np.arange(p.shape[2]) == 3, np.nan, p), m, gg)),
           "columns": (lambda p, m, gg: (p[..., :-1], m, gg)),
           "mask": (lambda p, m, gg: (p, m[:, :-1], gg)),
           "g_len": (lambda p, m, gg: (p, m, gg[:, :1])),
           "type": (lambda p, m, gg: (np.where(np.arange(p.shape[2]) == 4, 7.0, p), m, gg))}
    expect = {"nan": checks.NOT_FINITE, "columns": checks.WRONG_LENGTH, "mask": checks.MASK_MISMATCH,
              "g_len": checks.WRONG_LENGTH, "type": checks.BAD_VALUE}
    jobs = [("good", None)] * 6 + [(k, f) for k, f in bad.items()]
    results, calls_before = {}, len(handler.calls)
    barrier = threading.Barrier(len(jobs))

    def run(i, kind, fn):
        with Client.for_bundle(server.url, bdir, timeout_s=30) as c:
            p, m, gg = (points[:2], mask[:2], g[:2]) if fn is None else fn(points[:2], mask[:2], g[:2])
            barrier.wait(timeout=30)
            results[i] = (kind, c.infer(points=p, mask=m, g=gg))

    threads = [threading.Thread(target=run, args=(i, k, f)) for i, (k, f) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == len(jobs)
    for kind, out in results.values():
        if kind == "good":
            assert np.all(out["error"] == 0)
            np.testing.assert_allclose(out["logits"], ref["logits"][:2], atol=1e-5)
        else:
            assert np.all(out["error"] == expect[kind]), (kind, out["error"], out["message"])
            assert np.all(np.isnan(out["logits"])) and all(out["message"])
    # requests of the same shape were batched together: some call saw good and bad requests at once
    sizes = handler.calls[calls_before:]
    assert sum(sizes) == len(jobs) and max(sizes) > 1
    # one NaN row among good rows of one request: only that row is flagged
    p = points.copy()
    p[1, 0, 0] = np.nan
    m = mask.copy()
    m[2] = False
    with Client.for_bundle(server.url, bdir) as c:
        out = c.infer(points=p, mask=m, g=g)
    assert out["error"].tolist() == [0, checks.NOT_FINITE, checks.MASK_MISMATCH] + [0] * 5
    ok = out["error"] == 0
    np.testing.assert_allclose(out["logits"][ok], ref["logits"][ok], atol=1e-5)


def test_particle_flow_per_event_matches_in_process(server, pflow_bundle):
    from pcloud.pflow.inference import iterative_inference
    from pcloud.pipeline.pflow import load_segmenter

    bdir, events = pflow_bundle
    seg, _ = load_segmenter(bdir)
    atlas = get_geometry("atlas")
    ref = iterative_inference(events, atlas, seg, dr_max=seg.dr_max)
    model = Path(bdir).resolve().name
    with Client(server.url, model, timeout_s=60) as c:
        for i in range(events.n_events):
            r = event_request(events, i)
            perm = np.random.default_rng(i).permutation(r["cell_id"].size)  # any cell order
            r_sh = {**r, "cell_id": r["cell_id"][perm], "cell_energy_gev": r["cell_energy_gev"][perm],
                    "cell_noise_gev": r["cell_noise_gev"][perm]}
            out = c.infer_event(**r_sh)
            assert out["error"].tolist() == [0]
            e = r_sh["cell_energy_gev"]
            charged = np.bincount(out["attr_cell"], out["attr_energy_gev"], minlength=e.size)
            np.testing.assert_allclose(charged + out["neutral_gev"], e, atol=1e-9)
            c0 = events.cell_offsets[i]
            sel = events.cells["event"][ref.cell_row] == i
            want = {(int(perm.argsort()[cr - c0]), int(tr - events.track_offsets[i])): en
                    for cr, tr, en in zip(ref.cell_row[sel], ref.track_row[sel], ref.energy_gev[sel])}
            got = {(int(a), int(b)): en for a, b, en in zip(out["attr_cell"], out["attr_track"],
                                                             out["attr_energy_gev"])}
            assert got.keys() == want.keys()
            np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-6, atol=1e-9)
        bad = event_request(events, 0)
        bad["cell_energy_gev"] = bad["cell_energy_gev"][:-1]
        assert c.infer_event(**bad)["error"].tolist() == [checks.WRONG_LENGTH]


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def test_stop_leaves_no_process(point_bundles):
    from pcloud.serve.server import Server

    s = Server([point_bundles["pointnet"]], log=None, timeout_s=120).start()
    server_pids = [p for p in _processes_with(str(s.http_port)) if p != os.getpid()
                   and "tritonserver" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert server_pids  # tritonserver, and below it the Python-backend stub
    family = set(server_pids) | {c for p in server_pids for c in _children(p)}
    assert len(family) > len(server_pids)
    s.stop()
    alive = [p for p in family if Path(f"/proc/{p}").exists()
             and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert not alive, alive
