"""``pcloud train ... --nproc N`` and the torchrun entry point ``torchrun ... -m pcloud.cli.torchrun <pcloud train
arguments>`` (several processes or nodes; :mod:`pcloud.pipeline.distributed`)."""
from __future__ import annotations

import gc
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import CLIError


def launch_cli(args, nproc: int) -> int:
    """``pcloud train ... --nproc N``."""
    from pcloud.pipeline.config import run_config
    from pcloud.pipeline.distributed import launch

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
    """torchrun entry point: ``torchrun ... -m pcloud.cli.torchrun <pcloud train arguments>``."""
    from pcloud.pipeline.config import run_config
    from pcloud.pipeline.distributed import backend_for, train_ddp

    from .main import build_parser

    args = build_parser().parse_args(["train", *(argv if argv is not None else __import__("sys").argv[1:])])
    cfg = run_config(args.config, args.set or [], data=args.data, task=args.task, model=args.model,
                     epochs=args.epochs, device=args.device, seed=args.seed, xml=args.xml)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist.init_process_group(backend_for(device), init_method="env://")
    try:
        train_ddp(cfg, args.out)
        gc.collect()  # free the DDP wrapper before the group (see pipeline.distributed._spawned)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
