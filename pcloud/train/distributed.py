"""Distributed data-parallel training of ``pcloud train``: ``--nproc N`` on one machine, torchrun for several.

PyTorch's DistributedDataParallel (DDP) keeps one model replica per process; after each backward pass the
gradients are averaged over all processes (an all-reduce overlapped with the backward pass), so every replica takes
the same optimiser step and the parameters stay equal; with equal local batches of ``b`` events the step equals a
single process's step on the global batch of ``N b`` events (mean loss) for models without batch norm. Batch-norm
statistics are per process (DDP's default; the running statistics of rank 0 are the ones saved).

* Backend: ``gloo`` on CPU, ``nccl`` on CUDA.
* Rendezvous: ``--nproc N`` starts N processes with ``torch.multiprocessing`` and a ``file://`` init method in the
  run folder (no TCP store: torchrun's store listens on every interface). Several nodes: ``torchrun --nnodes M
  --nproc-per-node N ... -m pcloud.train.distributed --data ... --out OUT`` (environment rendezvous, the same
  arguments as ``pcloud train``; the store's address is torchrun's ``--rdzv-endpoint``).
* Data: rank 0 builds the store, splits and normaliser (:func:`pcloud.pipeline.train.prepare_data`) and sends the
  small pieces to the others (``broadcast_object_list``); each rank streams only its share of the training row
  groups (:class:`pcloud.data.batch.CloudDataset` with ``rank``/``world``: row group ``i`` goes to reader
  ``i mod (N x workers)``). Shards may differ by a few batches: the epoch runs under DDP's ``Join`` so ranks that
  run out shadow the others' all-reduces. Validation runs on the whole validation split in every rank (identical
  losses, so early stopping decides the same everywhere).
* Outputs: checkpoints, the bundle and the test-split results are written by rank 0 only.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init(rank: int, world: int, init_method: str, device: str = "cpu") -> None:
    dist.init_process_group(backend_for(device), init_method=init_method, rank=rank, world_size=world)


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast(obj, src: int = 0):
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(model: torch.nn.Module, device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    if torch.device(device).type == "cuda":
        return DDP(model.to(device), device_ids=[torch.device(device).index or 0])
    return DDP(model)


def join_context(ddp_model):
    """DDP's Join: ranks with fewer batches keep matching the others' collective calls until all are done."""
    from torch.distributed.algorithms.join import Join

    return lambda: Join([ddp_model])


def train_ddp(cfg, out, log=print) -> dict | None:
    """``pcloud train`` inside an initialised process group (module docstring); returns rank 0's results."""
    from ..data.batch import CloudDataset
    from ..data.point_features import feature_columns
    from ..io.native import NativeStore
    from ..pipeline.batches import Batcher
    from ..pipeline.bundle import save_bundle
    from ..pipeline.models import build_from_spec, model_spec
    from ..pipeline.train import _run_settings, _xml_text, prepare_data, task_loss
    from ..pipeline.inputs import describe_inputs
    from .trainer import Trainer, select_device

    rank, world = rank_world()
    out = Path(out)
    say = log if rank == 0 else (lambda s: None)
    p = prepare_data(cfg, out, say) if rank == 0 else None
    shared = broadcast(None if p is None else {k: v for k, v in p.items() if k != "store"})
    store_path = out / "data" / "train.parquet"
    if rank != 0:
        p = dict(shared, store=NativeStore(store_path))
    d, t, task = cfg.data, cfg.train, cfg.task
    n_classes = len(p["classes"]) if task in ("id", "id+energy") else 0
    spec = model_spec(cfg.model["name"], len(feature_columns(d["features"])), n_classes,
                      task in ("energy", "id+energy"), 0, len(p["global_fields"]), bool(cfg.model["small"]),
                      cfg.model.get("options") or {})
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    model = build_from_spec(cfg.model["name"], spec, p["geometry"])
    ddp = wrap_ddp(model.to(device), device)
    batcher = Batcher(p["kind"], d["features"], d["max_points"], p["normaliser"], p["geometry"], p["global_fields"])
    common = dict(batch_size=t["batch_size"], collate=batcher, splits=p["splits"], seed=cfg.seed,
                  chunk_size=d["chunk_events"])
    train_ds = CloudDataset(p["store"], shuffle=True, split="train", shuffle_buffer=t["shuffle_buffer"], **common)
    train_ds.rank, train_ds.world = rank, world
    val_ds = CloudDataset(p["store"], shuffle=False, split="val", **common)
    seen = {"events": 0}

    def counted(ds):
        class _Count:
            def set_epoch(self, e):
                ds.set_epoch(e)

            def __iter__(self):
                for b in ds:
                    seen["events"] += int(b["event_number"].shape[0])
                    yield b
        return _Count()

    trainer = Trainer(ddp, task_loss(task), run_dir=out / "runs" if rank == 0 else None, epochs=t["epochs"],
                      batch_size=t["batch_size"], lr=t["lr"], patience=t["patience"], device=str(device),
                      seed=cfg.seed, max_minutes=t.get("max_minutes"), log=lambda s: say(f"[train:ddp] {s}"),
                      progress=False, settings={**_run_settings(cfg), "world_size": world})
    trainer.batch_context = join_context(ddp)
    result = trainer.fit(counted(train_ds), val_ds)
    per_rank = [None] * world
    dist.all_gather_object(per_rank, {"rank": rank, "train_events_read": seen["events"]})
    params = torch.cat([q.detach().reshape(-1).cpu() for q in ddp.module.parameters()])
    same = [None] * world
    dist.all_gather_object(same, float(params.double().sum()))
    if rank != 0:
        return None
    data_meta = {"features": list(d["features"]), "max_points": d["max_points"],
                 "threshold_gev": d["threshold_mev"] / 1000.0, "classes": p["classes"],
                 "global_fields": p["global_fields"], "selection": d.get("selection") or {},
                 "xml_text": _xml_text(d.get("xml")), "inputs": describe_inputs(p["inputs"])}
    training = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss, "seconds": result.seconds, "history": result.history,
                "stopped_early": result.stopped_early, "split_counts": p["counts"], "config": cfg.to_dict(),
                "n_params": int(sum(q.numel() for q in model.parameters() if q.requires_grad)),
                "distributed": {"world_size": world, "backend": backend_for(str(device)), "per_rank": per_rank,
                                "param_sums": same}}
    save_bundle(out, ddp.module.cpu(), task, cfg.model["name"], spec, data_meta, p["geometry"], p["normaliser"],
                training)
    log(f"[train:ddp] {world} processes; training events read per rank {[r['train_events_read'] for r in per_rank]}"
        f" (epochs x shard); parameter sums per rank {same}; bundle written to {out}")
    from ..pipeline.evaluate import evaluate_store

    res = evaluate_store(out, p["store"], out, splits=p["splits"], split="test", log=log)
    res["distributed"] = training["distributed"]
    from ..core.atomic import atomic_output

    with atomic_output(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1, default=str) + "\n")
    return res


def _spawned(rank: int, world: int, init_method: str, cfg_dict: dict, out: str, threads: int) -> None:
    from ..pipeline.config import RunConfig

    torch.set_num_threads(threads)
    cfg = RunConfig(**cfg_dict)
    init(rank, world, init_method, cfg.device if cfg.device != "auto" else
         ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        train_ddp(cfg, out)
    finally:
        dist.destroy_process_group()


def launch(cfg, out, nproc: int, log=print) -> dict:
    """Train ``cfg`` with ``nproc`` local processes (file:// rendezvous in ``out``); returns rank 0's results."""
    import torch.multiprocessing as mp

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd, rdv = tempfile.mkstemp(prefix=".ddp-rendezvous.", dir=out)
    os.close(fd)
    os.unlink(rdv)  # the file:// store creates it; it must not exist beforehand
    threads = max(1, (os.cpu_count() or 1) // nproc)
    t0 = time.perf_counter()
    try:
        mp.spawn(_spawned, args=(nproc, f"file://{rdv}", cfg.to_dict(), str(out), threads), nprocs=nproc, join=True)
    finally:
        if os.path.exists(rdv):
            os.unlink(rdv)
    log(f"[train:ddp] {nproc} processes finished in {time.perf_counter() - t0:.1f} s")
    return json.loads((out / "results.json").read_text())


def launch_cli(args, nproc: int) -> int:
    """``pcloud train ... --nproc N``."""
    from ..cli.errors import CLIError
    from ..pipeline.config import run_config

    cfg = run_config(args.config, args.set or [], data=args.data, task=args.task, model=args.model,
                     epochs=args.epochs, device=args.device, seed=args.seed, xml=args.xml)
    if cfg.task == "pflow":
        raise CLIError("--nproc: particle-flow training runs in one process (its clouds are built in memory)")
    out = Path(args.out)
    if (out / "bundle.json").exists() and not args.overwrite:
        raise CLIError(f"--out {out}: already holds a model bundle; choose another folder or pass --overwrite")
    launch(cfg, out, nproc)
    print(f"model bundle: {out} (results: {out / 'results.json'})")
    return 0


def main(argv=None) -> int:
    """torchrun entry point: ``torchrun ... -m pcloud.train.distributed <pcloud train arguments>``."""
    from ..cli.main import build_parser
    from ..pipeline.config import run_config

    args = build_parser().parse_args(["train", *(argv if argv is not None else __import__("sys").argv[1:])])
    cfg = run_config(args.config, args.set or [], data=args.data, task=args.task, model=args.model,
                     epochs=args.epochs, device=args.device, seed=args.seed, xml=args.xml)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist.init_process_group(backend_for(device), init_method="env://")
    try:
        train_ddp(cfg, args.out)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------------------------------------------- self-check
def equivalence_batches(rank: int, world: int, steps: int = 4, local_batch: int = 8, n_points: int = 12,
                        seed: int = 0) -> list[dict]:
    """Deterministic synthetic batches of one rank for :func:`equivalence_run` (rank ``r`` gets events
    ``[r b, (r + 1) b)`` of every global batch of ``world x b`` events)."""
    out = []
    for s in range(steps):
        g = torch.Generator().manual_seed(seed * 1000 + s)
        B = world * local_batch
        mask = torch.rand(B, n_points, generator=g) > 0.2
        mask[:, 0] = True
        full = {"x": torch.randn(B, n_points, 5, generator=g), "pos": torch.randn(B, n_points, 3, generator=g) * 30,
                "mask": mask, "g": torch.rand(B, 3, generator=g) * 50, "label": torch.randint(0, 2, (B,), generator=g),
                "energy_gev": torch.rand(B, generator=g) * 50 + 1}
        sl = slice(rank * local_batch, (rank + 1) * local_batch) if rank >= 0 else slice(None)
        out.append({k: v[sl] for k, v in full.items()})
    return out


def equivalence_model():
    """A PointNet without batch norm (the case where DDP equals the single-process global batch exactly)."""
    from ..nn import build_model

    torch.manual_seed(123)
    return build_model("pointnet", in_channels=5, n_classes=2, n_global=3, energy_columns=(0, 1, 2),
                       g_scale=100.0, channels=(16, 32), head_hidden=(16,), norm=None, pooling="max+mean")


def equivalence_run(rank: int, world: int, init_method: str, out: str, steps: int = 4) -> None:
    """One rank of the DDP self-check: 2 epochs over :func:`equivalence_batches`; saves its parameters and
    per-epoch training losses to ``out/rank<r>.pt`` (``world == 1, rank == -1``: the single-process reference on
    the global batches, saved as ``out/single.pt``)."""
    from ..nn.losses import MultiTaskLoss
    from .trainer import Trainer

    torch.set_num_threads(1)
    model = equivalence_model()
    single = rank < 0
    if not single:
        init(rank, world, init_method)
        model = wrap_ddp(model, "cpu")
    trainer = Trainer(model, MultiTaskLoss(w_id=1.0, w_energy=1.0, energy_loss="relative_mse"), epochs=2,
                      batch_size=10 ** 6, lr=1e-3, patience=10, device="cpu", seed=1, progress=False, log=None)
    if not single:
        trainer.batch_context = join_context(model)
    data = equivalence_batches(rank, world, steps)
    val = equivalence_batches(-1, world, 1, seed=9)
    res = trainer.fit(data, val)
    core = model if single else model.module
    torch.save({"params": {k: v.detach().clone() for k, v in core.state_dict().items()},
                "train_loss": [h["train_loss"] for h in res.history],
                "val_loss": [h["val_loss"] for h in res.history]}, Path(out) / ("single.pt" if single else
                                                                                  f"rank{rank}.pt"))
    if not single:
        dist.destroy_process_group()
