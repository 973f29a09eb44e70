"""Distributed data-parallel training of ``pcloud train``: ``--nproc N`` on one machine, torchrun for several.

PyTorch's DistributedDataParallel (DDP) keeps one model replica per process; after each backward pass the
gradients are averaged over all processes (an all-reduce overlapped with the backward pass), so every replica takes
the same optimiser step and the parameters stay equal; with equal local batches of ``b`` events the step equals a
single process's step on the global batch of ``N b`` events (mean loss) for models without batch norm. Batch-norm
statistics are per process (DDP's default; the running statistics of rank 0 are the ones saved).

* Backend: ``gloo`` on CPU, ``nccl`` on CUDA.
* Rendezvous: ``--nproc N`` starts N processes with ``torch.multiprocessing`` and a ``file://`` init method in the
  run folder (no TCP store: torchrun's store listens on every interface). Several nodes: ``torchrun --nnodes M
  --nproc-per-node N ... -m pcloud.pipeline.distributed --data ... --out OUT`` (environment rendezvous, the same
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

import gc
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
    from ..io.native import NativeStore
    from .models import build_from_spec
    from .train import _run_settings, finish_training, prepare_data, run_model_spec, run_streams, task_loss
    from ..train.trainer import Trainer, select_device

    rank, world = rank_world()
    out = Path(out)
    say = log if rank == 0 else (lambda s: None)
    p = prepare_data(cfg, out, say) if rank == 0 else None
    shared = broadcast(None if p is None else {k: v for k, v in p.items() if k != "store"})
    store_path = out / "data" / "train.parquet"
    if rank != 0:
        p = dict(shared, store=NativeStore(store_path))
    t, task = cfg.train, cfg.task
    spec = run_model_spec(cfg, p)
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    model = build_from_spec(cfg.model["name"], spec, p["geometry"])
    ddp = wrap_ddp(model.to(device), device)
    train_ds, val_ds = run_streams(cfg, p)
    train_ds.rank, train_ds.world = rank, world
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
                      progress=False, settings={**_run_settings(cfg), "world_size": world},
                      optimizer=t.get("optimizer", "adam"), schedule=t.get("schedule", "constant"),
                      warmup=t.get("warmup", 0.05), weight_decay=t.get("weight_decay", 0.0))
    trainer.batch_context = join_context(ddp)
    result = trainer.fit(counted(train_ds), val_ds)
    per_rank = [None] * world
    dist.all_gather_object(per_rank, {"rank": rank, "train_events_read": seen["events"]})
    params = torch.cat([q.detach().reshape(-1).cpu() for q in ddp.module.parameters()])
    same = [None] * world
    dist.all_gather_object(same, float(params.double().sum()))
    if rank != 0:
        return None
    distributed = {"world_size": world, "backend": backend_for(str(device)), "per_rank": per_rank, "param_sums": same}
    log(f"[train:ddp] {world} processes; training events read per rank {[r['train_events_read'] for r in per_rank]}"
        f" (epochs x shard); parameter sums per rank {same}")
    return finish_training(out, ddp.module.cpu(), cfg, p, spec, result, extra={"distributed": distributed}, log=log)


def _spawned(rank: int, world: int, init_method: str, cfg_dict: dict, out: str, threads: int) -> None:
    from .config import RunConfig

    torch.set_num_threads(threads)
    cfg = RunConfig(**cfg_dict)
    init(rank, world, init_method, cfg.device if cfg.device != "auto" else
         ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        train_ddp(cfg, out)
        # the DDP wrapper and its reducer (gloo work objects) freed now, not during interpreter finalisation, where
        # freeing them aborts the process ("terminate called without an active exception")
        gc.collect()
        dist.barrier()  # every rank done with its collectives before any rank tears the group down
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
