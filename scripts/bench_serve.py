"""Load test of ``pcloud serve`` on loopback: latency p50/p99 and throughput vs in-process inference.

    python scripts/bench_serve.py BUNDLE [--seconds 4] [--max-requests 400] [--bad-fraction 0.1]

For 1, 8 and 32 concurrent clients and 1 and 32 clouds per request, every client thread sends requests (clouds of
the bundle's own store, padded to its ``max_points``) for at most ``--seconds`` seconds or ``--max-requests``
requests in all, whichever comes first. The same requests run in-process (the server's model function without
Triton, one thread) for the baseline. A final run mixes ``--bad-fraction`` bad requests (NaN, wrong column
count, mask mismatch) into 8 clients: every good request must succeed with the in-process answer, every bad one
must be flagged, and the server must still answer afterwards. Stopping the server must leave no process (its
tritonserver and stub are looked up by port). Only 127.0.0.1 is contacted; everything is bounded in time and count.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _percentiles(lat):
    a = np.asarray(lat) * 1000
    return (float(np.percentile(a, 50)), float(np.percentile(a, 99))) if a.size else (float("nan"),) * 2


def _requests(bundle_dir, columns, global_fields, per_request, n_points, n_distinct=16):
    from pcloud.io.native import NativeStore
    from pcloud.serve.client import rows_from_clouds

    clouds = next(NativeStore(Path(bundle_dir) / "data" / "train.parquet").chunks(columns=None))
    out = []
    for i in range(n_distinct):
        sel = clouds[(np.arange(per_request) + i * per_request) % len(clouds)]
        out.append(rows_from_clouds(sel, columns, global_fields, n_points=n_points))
    return out


def _bad(req, kind):
    p, m, g = (a.copy() if a is not None else None for a in req)
    if kind == 0:
        p[0, 0, 0] = np.nan
    elif kind == 1:
        p = p[..., :-1].copy()
    else:
        m = m[:, :-1].copy()
    return p, m, g


def run_clients(url, model, bundle_dir, reqs, n_clients, seconds, max_requests, bad_fraction=0.0, ref=None):
    from pcloud.serve.client import Client

    lat, errors, flagged, wrong = [], [], [0], [0]
    count = [0]
    lock = threading.Lock()
    t_end = time.monotonic() + seconds
    rng_master = np.random.default_rng(1)
    seeds = rng_master.integers(0, 1 << 30, n_clients)

    def worker(wid):
        rng = np.random.default_rng(seeds[wid])
        with Client.for_bundle(url, bundle_dir, model=model, timeout_s=30) as c:
            while time.monotonic() < t_end:
                with lock:
                    if count[0] >= max_requests:
                        return
                    count[0] += 1
                i = int(rng.integers(len(reqs)))
                bad = bad_fraction > 0 and rng.random() < bad_fraction
                p, m, g = _bad(reqs[i], int(rng.integers(3))) if bad else reqs[i]
                t0 = time.perf_counter()
                try:
                    out = c.infer(points=p, mask=m, g=g)
                except Exception as e:  # noqa: BLE001 - counted, reported
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    if bad:
                        flagged[0] += int(np.any(out["error"] != 0))
                    else:
                        lat.append(dt)
                        if np.any(out["error"] != 0) or (ref is not None and not np.allclose(
                                out["logits"], ref[i]["logits"], atol=1e-5)):
                            wrong[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    wall = time.perf_counter() - t0
    return {"requests": count[0], "good_latencies": lat, "wall_s": wall, "errors": errors, "bad_flagged": flagged[0],
            "good_wrong": wrong[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--seconds", type=float, default=4.0, help="per configuration (default 4)")
    ap.add_argument("--max-requests", type=int, default=400, help="per configuration (default 400)")
    ap.add_argument("--bad-fraction", type=float, default=0.1)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    from pcloud.serve.server import Server

    rows, results = [], {}
    with Server([args.bundle], log=None, max_queue_delay_us=2000, max_batch_size=64) as s:
        h = s.handlers[0]
        n_points = int(h.bundle.meta["data"]["max_points"])
        print(f"# {h.name} ({h.bundle.meta['model']['name']}), {n_points} points per cloud, Triton on {s.url}")
        for per_request in (1, 32):
            reqs = _requests(args.bundle, h.columns, h.global_fields, per_request, n_points)
            ref = [h.predict(*r) for r in reqs]
            # in-process baseline: the same model function calls, no Triton, one thread
            lat, t0, n = [], time.perf_counter(), 0
            while time.perf_counter() - t0 < args.seconds and n < args.max_requests:
                t1 = time.perf_counter()
                h.predict(*reqs[n % len(reqs)])
                lat.append(time.perf_counter() - t1)
                n += 1
            p50, p99 = _percentiles(lat)
            wall = time.perf_counter() - t0
            rows.append(("in-process", 1, per_request, n, p50, p99, n * per_request / wall, 0))
            for n_clients in (1, 8, 32):
                calls0 = len(h.calls)
                r = run_clients(s.url, h.name, args.bundle, reqs, n_clients, args.seconds, args.max_requests, ref=ref)
                p50, p99 = _percentiles(r["good_latencies"])
                sizes = h.calls[calls0:]
                rows.append(("triton", n_clients, per_request, r["requests"], p50, p99,
                             len(r["good_latencies"]) * per_request / r["wall_s"],
                             float(np.mean(sizes)) if sizes else 0.0))
                if r["errors"] or r["good_wrong"]:
                    print(f"FAILED: {r['errors'][:3]} wrong answers {r['good_wrong']}")
                    return 1
        reqs = _requests(args.bundle, h.columns, h.global_fields, 8, n_points)
        ref = [h.predict(*r) for r in reqs]
        mixed = run_clients(s.url, h.name, args.bundle, reqs, 8, args.seconds, args.max_requests,
                            bad_fraction=args.bad_fraction, ref=ref)
        n_good = len(mixed["good_latencies"])
        n_bad = mixed["requests"] - n_good - len(mixed["errors"])
        from pcloud.serve.client import Client

        with Client.for_bundle(s.url, args.bundle, timeout_s=10) as c:
            alive = c.ready() and int(c.infer(points=reqs[0][0], mask=reqs[0][1], g=reqs[0][2])["error"].max()) == 0
        results["mixed"] = {"requests": mixed["requests"], "good": n_good, "good_failed": mixed["good_wrong"],
                            "transport_errors": len(mixed["errors"]), "bad": n_bad,
                            "bad_flagged": mixed["bad_flagged"], "server_alive_after": bool(alive)}
        port = str(s.http_port)
    # after the with-block: the server is stopped; no tritonserver with our port may remain
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "tritonserver" in cmd and port in cmd:
                left.append(int(p.name))
    results["processes_left_after_stop"] = left
    print("\n| server | clients | clouds/request | requests | p50 ms | p99 ms | clouds/s | requests per model call |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.0f} | {r[7]:.1f} |")
    m = results["mixed"]
    print(f"\n10% bad requests, 8 clients: {m['requests']} requests, {m['good']} good ({m['good_failed']} failed, "
          f"{m['transport_errors']} transport errors), {m['bad']} bad ({m['bad_flagged']} flagged); server alive "
          f"after: {m['server_alive_after']}; processes left after stop: {left}")
    results["table"] = [dict(zip(("server", "clients", "clouds_per_request", "requests", "p50_ms", "p99_ms",
                                  "clouds_per_s", "requests_per_call"), r)) for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    ok = (m["good_failed"] == 0 and m["transport_errors"] == 0 and m["bad_flagged"] == m["bad"]
          and m["server_alive_after"] and not left)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
