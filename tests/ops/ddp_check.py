"""The DDP self-check: two ranks on synthetic batches against one process on the global batch."""
import gc
from pathlib import Path

import torch
import torch.distributed as dist

from pcloud.pipeline.distributed import init, join_context, wrap_ddp


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
    from pcloud.nn import build_model

    torch.manual_seed(123)
    return build_model("pointnet", in_channels=5, n_classes=2, n_global=3, energy_columns=(0, 1, 2),
                       g_scale=100.0, channels=(16, 32), head_hidden=(16,), norm=None, pooling="max+mean")


def equivalence_run(rank: int, world: int, init_method: str, out: str, steps: int = 4) -> None:
    """One rank of the DDP self-check: 2 epochs over :func:`equivalence_batches`; saves its parameters and
    per-epoch training losses to ``out/rank<r>.pt`` (``world == 1, rank == -1``: the single-process reference on
    the global batches, saved as ``out/single.pt``)."""
    from pcloud.nn.losses import MultiTaskLoss
    from pcloud.train.trainer import Trainer

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
        # free the DDP wrapper (its reducer holds gloo work objects) while the interpreter is fully alive: freed
        # during interpreter finalisation they abort the process ("terminate called without an active exception")
        del trainer, model, core, res
        gc.collect()
        dist.barrier()  # both ranks done with their collectives before the group is torn down
        dist.destroy_process_group()
