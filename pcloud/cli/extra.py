"""Commands of the later stages: ``pcloud bench singles`` and ``pcloud bench pflow``."""
from __future__ import annotations


def _bench_singles(args) -> int:
    from pcloud.bench.singles import SinglesConfig, run_singles

    cfg = SinglesConfig(out=args.out, quick=args.quick, device=args.device, seed=args.seed,
                        n_per_class=args.n_per_class, epochs=args.epochs, threshold_mev=args.threshold_mev,
                        max_points=args.max_points, occupancy_study=not args.no_occupancy,
                        small_models=True if args.small_models else None)
    if args.tasks:
        cfg.tasks = args.tasks.split(",")
    if args.models:
        cfg.models = args.models.split(",")
    run_singles(cfg)
    return 0


def register(sub) -> None:
    """Add ``pcloud bench ...`` to the ``pcloud`` parser."""
    bench = sub.add_parser("bench", help="benchmarks: singles (PID/energy), pflow (segmentation)")
    bsub = bench.add_subparsers(dest="bench", required=True)
    s = bsub.add_parser("singles", help="point-cloud vs dense vs shower-shape models on single showers")
    s.add_argument("--quick", action="store_true", help="small data and few epochs (<= 15 min on 2 CPU cores)")
    s.add_argument("--out", default="out/bench_singles")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--tasks", default=None, help="comma-separated subset of the tasks (default: all)")
    s.add_argument("--models", default=None, help="comma-separated subset of the learned models (default: all)")
    s.add_argument("--n-per-class", type=int, default=None, help="showers per class (default 700 quick, 20000 full)")
    s.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 8 quick, 40 full)")
    s.add_argument("--threshold-mev", type=float, default=0.0, help="cell threshold for the point clouds (MeV)")
    s.add_argument("--max-points", type=int, default=None, help="points per event (default 96 quick, 384 full)")
    s.add_argument("--no-occupancy", action="store_true", help="skip the compute-vs-occupancy study")
    s.add_argument("--small-models", action="store_true", help="CPU-sized model widths also outside --quick")
    s.set_defaults(func=_bench_singles)
    try:
        from pcloud.bench import pflow
    except ImportError:  # pragma: no cover - the pflow bench is optional at import time
        return
    pflow.register(bsub)
