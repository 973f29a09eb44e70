"""GPU check of every learned model (issue 13): CUDA vs CPU parity in float32 and bf16 autocast, and the cost of
training steps and inference on the GPU at the cell thresholds of the singles occupancy study.

What it runs (``--out DIR`` receives ``gpu_check.json`` and a Markdown table ``gpu_check.md``):

1. **Parity.** Every point model (PointNet, DGCNN, point transformer, GravNet; full widths, a classification head,
   an energy head and a per-point segmentation head at once) and every dense CNN (full widths, classification and
   energy) is built once on the CPU and copied to the GPU. On one realistic batch (CaloGAN e+ showers 1-100 GeV,
   the singles benchmark's features, padded to ``--max-points`` 384) the same loss (cross-entropy of the class,
   squared relative energy error, per-point cross-entropy of random segment labels) is evaluated and
   back-propagated on the CPU (float32, the reference) and on the GPU in float32 (TF32 off) and in bf16 autocast.
   Models run in eval mode (batch norm from running statistics, no dropout; DGCNN ranks neighbours in float64), so
   the only differences are floating-point rounding. Reported: the relative L2 error of every output and of the
   whole gradient vector, ``||a - b|| / ||b||``, and the cosine between the gradient vectors; pass when float32
   outputs <= 1e-4 and gradients <= 1e-3, bf16 outputs <= 5e-2 and gradient cosine >= 0.98 (bf16 keeps 8
   significant bits, 2^-8 = 3.9e-3 per rounding; on the CPU, bf16 autocast against float32 gave output errors
   2e-3 to 1e-2 and gradient errors 1e-2 to 0.13 on these untrained models).
2. **Cost.** For each threshold of the occupancy study (0, 1, 10, 100 MeV) the clouds are padded to the largest
   event of the batch (capped at ``--max-points``), and for every model: training events/s (forward, backward and
   an AdamW step, batch ``--train-batch``) in float32 and in bf16 autocast, inference events/s (batch
   ``--infer-batch``) in both, and the peak GPU memory of a training step
   (``torch.cuda.max_memory_allocated`` above what was held before); the point models also on the same events as a
   ragged batch (:mod:`pcloud.nn.ragged`). Dense models see the whole image at any threshold, so they are
   measured once.

It also runs on a CPU (``--device cpu``; parity then compares the CPU with itself and only exercises the code), which
is how it is tested before a GPU is lent. Usage on a GPU machine::

    PYTHONPATH=. python scripts/gpu_check.py --out OUT [--max-minutes 3]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

THRESHOLDS_MEV = (0.0, 1.0, 10.0, 100.0)   # the occupancy study of pcloud bench singles
#: float32: relative L2 errors of outputs and of the gradient vector; bf16: relative L2 error of the outputs and the
#: cosine of the angle between the bf16 and the float32 CPU gradient vectors (a gradient step in bf16 must point
#: where the float32 one points; its length is set by the optimiser)
TOL = {"float32": {"outputs": 1e-4, "grads": 1e-3}, "bf16": {"outputs": 5e-2, "grad_cosine": 0.98}}


def point_specs() -> dict[str, dict]:
    """Full-width constructor arguments of the four point models (5 input features, 3 CaloGAN sections)."""
    from pcloud.pipeline.models import model_spec

    base = dict(n_classes=2, n_seg_classes=2)
    specs = {}
    for name in ("pointnet", "dgcnn"):
        s = model_spec(name, 5, 2, True, 0, 3, small=False)
        specs[name] = {**s, **base}
    common = dict(in_channels=5, n_global=3, energy_columns=(0, 1, 2), g_scale=100.0, energy_scale_gev=100.0,
                  head_hidden=(256, 128), **base)
    # x columns: x, y, z, layer, log_energy (pcloud.bench.singles.models.SINGLES_POINT_FEATURES)
    specs["transformer"] = dict(common, dim=128, n_heads=8, n_layers=4, pair_features=("dist", "dlayer", "dlogE"),
                                layer_col=3, energy_col=4)
    specs["gravnet"] = dict(common)
    return specs


def build_point(name: str, spec: dict):
    from pcloud.nn import build_model

    return build_model(name, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()})


def dense_models(geometry) -> dict:
    from pcloud.pipeline.models import DENSE_MODEL_NAMES, build

    return {n: (lambda n=n: build(n, geometry, 2, True, 0, 3, small=False)) for n in DENSE_MODEL_NAMES}


def showers(n: int, seed: int):
    from pcloud.geometry import get_geometry
    from pcloud.sim.showers import simulate_showers

    g = get_geometry("calogan")
    return g, simulate_showers(g, "e+", n, energy_gev=(1.0, 100.0), seed=seed, spread=True)


def point_batch(sh, threshold_mev: float, max_points: int, seed: int) -> dict[str, torch.Tensor]:
    """The singles benchmark's point tensors plus the section energies ``g`` (GeV), labels and targets."""
    from pcloud.bench.singles.models import point_tensors

    n = sh.n_events
    pts, _ = point_tensors(sh, np.ones(n, bool), threshold_mev / 1000.0, max_points)
    sec = sh.section_energy()
    b = dict(pts)
    b["g"] = torch.as_tensor(np.stack([sec[s.name] for s in sh.geometry.sections], 1), dtype=torch.float32)
    rng = np.random.default_rng(seed)
    b["y"] = torch.as_tensor(rng.integers(0, 2, n))
    b["e"] = torch.as_tensor(sh.total_energy(), dtype=torch.float32).clamp_min(0.1)
    b["yseg"] = torch.as_tensor(rng.integers(0, 2, tuple(pts["mask"].shape)))
    return b


def image_batch(sh, seed: int) -> dict[str, torch.Tensor]:
    from pcloud.pipeline.models import image_tensors

    b = image_tensors(sh)
    rng = np.random.default_rng(seed)
    b["y"] = torch.as_tensor(rng.integers(0, 2, sh.n_events))
    b["e"] = torch.as_tensor(sh.total_energy(), dtype=torch.float32).clamp_min(0.1)
    return b


def loss_of(out: dict, b: dict) -> torch.Tensor:
    """Class cross-entropy + squared relative energy error (+ per-point cross-entropy on real points)."""
    loss = F.cross_entropy(out["logits"].float(), b["y"])
    if "energy" in out:
        e = out["energy"].float().reshape(-1)
        loss = loss + (((e - b["e"]) / b["e"]) ** 2).mean()
    if "seg_logits" in out and "yseg" in b:
        m = b["mask"]
        loss = loss + F.cross_entropy(out["seg_logits"].float()[m], b["yseg"][m])
    return loss


def to(b: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in b.items()}


def model_inputs(b: dict) -> dict:
    return {k: v for k, v in b.items() if k not in ("y", "e", "yseg")}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def forward_backward(model, b: dict, device, bf16: bool) -> tuple[dict, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        out = model(model_inputs(b))
        loss = loss_of(out, b)
    loss.backward()
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double().cpu()
                       for p in model.parameters() if p.requires_grad])
    return {k: v.detach().float().cpu() for k, v in out.items() if torch.is_tensor(v)}, grads


def parity(name: str, make, batch: dict, device) -> dict:
    torch.manual_seed(0)
    ref_model = make().eval()
    out_ref, g_ref = forward_backward(ref_model, batch, "cpu", False)
    res = {"n_params": int(sum(p.numel() for p in ref_model.parameters() if p.requires_grad))}
    for mode, bf16 in (("float32", False), ("bf16", True)):
        m = copy.deepcopy(ref_model).to(device).eval()
        out, g = forward_backward(m, to(batch, device), device, bf16)
        errs = {k: rel(out[k], out_ref[k]) for k in out_ref if k in out and out_ref[k].numel()}
        ge = rel(g, g_ref)
        cos = float((g @ g_ref) / (g.norm() * g_ref.norm()).clamp_min(1e-300))
        tol = TOL[mode]
        grad_ok = ge <= tol["grads"] if mode == "float32" else cos >= tol["grad_cosine"]
        res[mode] = {"outputs": errs, "grads": ge, "grad_cosine": cos,
                     "pass": bool(all(v <= tol["outputs"] for v in errs.values()) and grad_ok)}
    return res


def timed(fn, n_events: int, device) -> float:
    """Events per second of ``fn`` (:func:`pcloud.bench.compute.throughput`: one warm-up, then >= 0.3 s)."""
    from pcloud.bench.compute import throughput

    return throughput(fn, n_events, device=device, min_seconds=0.3, max_repeats=30)


def cost(model, b: dict, device, train_batch: int, infer_batch: int) -> dict:
    """Training and inference events/s in float32 and bf16 autocast, peak GPU memory of a training step (MB)."""
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tb = to({k: v[:train_batch] for k, v in b.items()}, device)
    ib = to(model_inputs({k: v[:infer_batch] for k, v in b.items()}), device)
    n_tr, n_in = int(tb["y"].shape[0]), int(next(iter(ib.values())).shape[0])
    row = {}
    for mode, bf16 in (("float32", False), ("bf16", True)):
        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_of(model(model_inputs(tb)), tb)
            loss.backward()
            opt.step()

        def infer():
            with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                                                 enabled=bf16):
                model(ib)

        model.train()
        mem = None
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            mem = (torch.cuda.max_memory_allocated() - base) / 1e6
        row[mode] = {"train_events_per_s": timed(step, n_tr, device)}
        model.eval()
        row[mode]["infer_events_per_s"] = timed(infer, n_in, device)
        row[mode]["train_peak_memory_mb"] = mem
    return row


def ragged(b: dict) -> dict:
    from pcloud.nn.ragged import padded_to_ragged

    r = padded_to_ragged(model_inputs(b))
    r.update({"y": b["y"], "e": b["e"]})
    return r


def cost_ragged(model, b: dict, device, train_batch: int, infer_batch: int) -> dict:
    """As :func:`cost` in float32 on the ragged form of the same events (no segmentation loss: per-point labels
    would need the ragged order)."""
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tb = {k: v[:train_batch] for k, v in b.items() if k != "yseg"}
    ib = {k: v[:infer_batch] for k, v in b.items() if k != "yseg"}
    tr, ir = to(ragged(tb), device), to(model_inputs(ragged(ib)), device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_of(model(model_inputs(tr)), tr).backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(ir)

    model.train()
    out = {"train_events_per_s": timed(step, int(tb["y"].shape[0]), device)}
    model.eval()
    out["infer_events_per_s"] = timed(infer, int(ib["y"].shape[0]), device)
    return out


def trim(b: dict) -> dict:
    """Pad only to the largest event of the batch (as the occupancy study)."""
    n = int(b["mask"].sum(1).max())
    return {k: (v[:, :n] if k in ("x", "pos", "mask", "yseg") else v) for k, v in b.items()}


def markdown(res: dict) -> str:
    lines = [f"# GPU check ({res['device_name']}, torch {res['torch']})", "",
             "## Parity with the CPU float32 reference (relative L2 errors; tolerances: float32 outputs 1e-4, "
             "gradients 1e-3; bf16 outputs 5e-2, gradient cosine >= 0.98)", "",
             "| model | params | fp32 max output err | fp32 grad err | bf16 max output err | bf16 grad err | "
             "bf16 grad cosine | pass |", "|---|---|---|---|---|---|---|---|"]
    for n, p in res["parity"].items():
        if "error" in p:
            lines.append(f"| {n} | - | error: {p['error']} | | | | | no |")
            continue
        f, h = p["float32"], p["bf16"]
        lines.append(f"| {n} | {p['n_params']:,} | {max(f['outputs'].values()):.1e} | {f['grads']:.1e} | "
                     f"{max(h['outputs'].values()):.1e} | {h['grads']:.1e} | {h['grad_cosine']:.4f} | "
                     f"{'yes' if f['pass'] and h['pass'] else 'fp32 ' + str(f['pass']) + ', bf16 ' + str(h['pass'])} |")
    lines += ["", "## Cost on the GPU (events/s; training = forward + backward + AdamW step)", "",
              "| threshold MeV | points/event mean / padded to | model | train fp32 | train bf16 | infer fp32 | "
              "infer bf16 | train peak MB fp32 / bf16 | ragged train / infer fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["cost"]:
        for n, c in r["models"].items():
            if "error" in c:
                lines.append(f"| {r['threshold_mev']:g} | | {n} | error: {c['error']} | | | | | |")
                continue
            f, h = c["float32"], c["bf16"]
            rg = r.get("ragged", {}).get(n)
            rgs = (f"{rg['train_events_per_s']:,.0f} / {rg['infer_events_per_s']:,.0f}" if rg and "error" not in rg
                   else ("error" if rg else "-"))
            mem = (f"{f['train_peak_memory_mb']:,.0f} / {h['train_peak_memory_mb']:,.0f}"
                   if f["train_peak_memory_mb"] is not None else "-")
            lines.append(f"| {r['threshold_mev']:g} | {r['points_mean']:.0f} / {r['padded_to']} | {n} | "
                         f"{f['train_events_per_s']:,.0f} | {h['train_events_per_s']:,.0f} | "
                         f"{f['infer_events_per_s']:,.0f} | {h['infer_events_per_s']:,.0f} | {mem} | {rgs} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-points", type=int, default=384)
    ap.add_argument("--parity-events", type=int, default=32)
    ap.add_argument("--events", type=int, default=512, help="showers of the cost batches")
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=512)
    ap.add_argument("--models", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--thresholds", default=",".join(f"{t:g}" for t in THRESHOLDS_MEV))
    ap.add_argument("--max-minutes", type=float, default=4.0, help="stop starting new measurements after this")
    args = ap.parse_args()
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False   # parity in float32 means float32
        torch.backends.cudnn.allow_tf32 = False
    res = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or
           "cpu", "tolerances": TOL, "max_points": args.max_points, "parity": {}, "cost": []}

    def save():
        (out / "gpu_check.json").write_text(json.dumps(res, indent=1))
        (out / "gpu_check.md").write_text(markdown(res))

    def over() -> bool:
        return time.time() - t_start > 60 * args.max_minutes

    g, sh = showers(max(args.events, args.parity_events), seed=13)
    specs = point_specs()
    makers = {n: (lambda n=n: build_point(n, specs[n])) for n in specs}
    dense = dense_models(g)
    makers.update(dense)
    wanted = args.models.split(",") if args.models else list(makers)
    pb = point_batch(sh.select(np.arange(args.parity_events)), 0.0, args.max_points, seed=1)
    ib = image_batch(sh.select(np.arange(args.parity_events)), seed=1)
    for n in wanted:
        try:
            res["parity"][n] = parity(n, makers[n], ib if n in dense else pb, device)
        except Exception as err:  # a finding, reported in the table; the other models still run
            res["parity"][n] = {"error": f"{type(err).__name__}: {err}"}
        print(f"[parity] {n}: {json.dumps(res['parity'][n])[:300]}", flush=True)
        save()
    imgs = image_batch(sh, seed=2)
    for thr in (float(t) for t in args.thresholds.split(",")):
        if over():
            print("[cost] time budget reached", flush=True)
            break
        b = trim(point_batch(sh, thr, args.max_points, seed=2))
        row = {"threshold_mev": thr, "points_mean": float(b["mask"].sum(1).float().mean()),
               "padded_to": int(b["mask"].shape[1]), "models": {}, "ragged": {}}
        for n in wanted:
            if n in dense and res["cost"]:
                continue  # the whole image at every threshold: measured once
            try:
                torch.manual_seed(0)
                row["models"][n] = cost(makers[n](), imgs if n in dense else b, device, args.train_batch,
                                        args.infer_batch)
                if n not in dense:
                    torch.manual_seed(0)
                    row["ragged"][n] = cost_ragged(makers[n](), b, device, args.train_batch, args.infer_batch)
            except Exception as err:
                row["models"][n] = {"error": f"{type(err).__name__}: {err}"}
            print(f"[cost] {thr:g} MeV {n}: {json.dumps(row['models'][n])[:200]}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        res["cost"].append(row)
        save()
    res["seconds"] = time.time() - t_start
    save()
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
