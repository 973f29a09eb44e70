"""Commands of the later stages: ``pcloud bench singles`` and ``pcloud bench pflow``."""
from __future__ import annotations


def _bench_singles(args) -> int:
    from pcloud.bench.singles import SinglesConfig, config_from_dict, run_singles

    if args.config or args.set:
        from pcloud.train.config import load_config

        cfg = config_from_dict(load_config(args.config, args.set or [], defaults=False))
    else:
        cfg = SinglesConfig()
    # explicit command-line flags win over the config file
    for flag, field in (("out", "out"), ("device", "device"), ("seed", "seed"), ("n_per_class", "n_per_class"),
                        ("epochs", "epochs"), ("threshold_mev", "threshold_mev"), ("max_points", "max_points")):
        v = getattr(args, flag)
        if v is not None:
            setattr(cfg, field, v)
    if args.quick:
        cfg.quick = True
    if args.no_occupancy:
        cfg.occupancy_study = False
    if args.small_models:
        cfg.small_models = True
    if args.resume:
        cfg.resume = True
    if args.tasks:
        cfg.tasks = args.tasks.split(",")
    if args.models:
        cfg.models = args.models.split(",")
    run_singles(cfg)
    return 0


def register(sub) -> None:
    """Add ``pcloud bench ...`` and ``pcloud validate`` to the ``pcloud`` parser."""
    from pcloud.cli import validate

    validate.register(sub)
    bench = sub.add_parser("bench", help="benchmarks: singles (PID/energy), pflow (segmentation)")
    bsub = bench.add_subparsers(dest="bench", required=True)
    s = bsub.add_parser("singles", help="point-cloud vs dense vs shower-shape models on single showers")
    s.add_argument("--quick", action="store_true", help="small data and few epochs (<= 15 min on 2 CPU cores)")
    s.add_argument("--config", default=None, help="YAML/TOML config (see pcloud/configs/singles.yaml)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    s.add_argument("--out", default=None, help="output folder (default out/bench_singles)")
    s.add_argument("--device", default=None, help="auto, cpu or cuda")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--tasks", default=None, help="comma-separated subset of the tasks (default: all)")
    s.add_argument("--models", default=None, help="comma-separated subset of the learned models (default: all)")
    s.add_argument("--n-per-class", type=int, default=None, help="showers per class (default 700 quick, 20000 full)")
    s.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 8 quick, 40 full)")
    s.add_argument("--threshold-mev", type=float, default=None, help="cell threshold for the point clouds (MeV)")
    s.add_argument("--max-points", type=int, default=None, help="points per event (default 96 quick, 384 full)")
    s.add_argument("--no-occupancy", action="store_true", help="skip the compute-vs-occupancy study")
    s.add_argument("--small-models", action="store_true", help="CPU-sized model widths also outside --quick")
    s.add_argument("--resume", action="store_true",
                   help="continue each model from its last checkpoint in OUT/runs (same seed and settings)")
    s.set_defaults(func=_bench_singles)
    try:
        from pcloud.bench import pflow
    except ImportError:  # pragma: no cover - the pflow bench is optional at import time
        return
    pflow.register(bsub)
