"""``pcloud bench singles`` and ``pcloud bench pflow``."""
from __future__ import annotations

import argparse


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
    if args.granularity is not None:
        cfg.granularity_study = args.granularity
    if args.small_models:
        cfg.small_models = True
    if args.resume:
        cfg.resume = True
    if args.tasks:
        cfg.tasks = args.tasks.split(",")
    if args.models:
        cfg.models = args.models.split(",")
    if args.data:
        cfg.data = list(args.data)
        cfg.xml = args.xml
    run_singles(cfg)
    return 0


#: the segmentation losses of ``pcloud.nn.losses.SEG_LOSSES`` (spelled here so that building the parser does not
#: import torch; a test keeps the two equal)
PFLOW_LOSSES = ("energy_weighted", "ce", "focal", "energy_weighted_focal", "mixed")


def parse_minutes(text: str | None) -> tuple[float | None, dict | None]:
    """``--minutes`` of ``bench pflow``: ``"3"`` -> (3.0, {}) (every model, the mode's per-model budgets dropped);
    ``"pointnet=3,dgcnn=2"`` -> (None, {"pointnet": 3.0, "dgcnn": 2.0}) (merged into the mode's); None -> (None,
    None)."""
    if text is None:
        return None, None
    try:
        if "=" not in text:
            return float(text), {}
        out = {}
        for item in text.split(","):
            if item.strip():
                name, value = item.split("=")
                out[name.strip()] = float(value)
        return None, out
    except ValueError:
        raise ValueError(f"bench pflow: --minutes must be a number or NAME=MIN pairs separated by commas "
                         f"(e.g. pointnet=3,dgcnn=2), found {text!r}") from None


def _bench_pflow(args) -> int:
    from pcloud.bench.pflow import PflowConfig, run_pflow
    from pcloud.bench.pflow.config import PFLOW_MODES

    max_minutes, model_minutes = parse_minutes(getattr(args, "minutes", None))
    cfg = PflowConfig(out=args.out, quick=args.quick, medium=getattr(args, "medium", False),
                      large=getattr(args, "large", False), device=args.device,
                      n_events=args.events, epochs=args.epochs, seed=args.seed, seeds=getattr(args, "seeds", None),
                      recipe=getattr(args, "recipe", "new"), loss=getattr(args, "loss", None),
                      energy_share=getattr(args, "energy_share", None),
                      models=[m for m in args.models.split(",") if m] if args.models else None,
                      dense_fraction=getattr(args, "dense_fraction", 0.3),
                      generator=getattr(args, "generator", "gun"),
                      ablation=False if getattr(args, "no_ablation", False) else (
                          True if getattr(args, "ablation", False) else None),
                      event_model=not getattr(args, "no_event_model", False),
                      widths=getattr(args, "widths", None), max_minutes=max_minutes, model_minutes=model_minutes,
                      patience=getattr(args, "patience", None), max_points=getattr(args, "max_points", None),
                      kinematic_replicas=getattr(args, "kinematic_replicas", 16), ragged=getattr(args, "ragged", None),
                      residual_clouds=getattr(args, "residual_clouds", False),
                      data=list(getattr(args, "data", []) or []), features=parse_features(getattr(args, "features", None)))
    if model_minutes:  # NAME=MIN pairs replace the mode's budgets of those models only
        cfg.model_minutes = {**PFLOW_MODES[cfg.mode]["model_minutes"], **model_minutes}
    res = run_pflow(cfg)
    return 0 if res["all_conserve"] else 1


def parse_features(text):
    """``--features``: None (the recipe's), ``"jetpointnet"`` or comma-separated feature names (checked here, so a
    typo fails before any event is generated)."""
    from pcloud.data.point_features import feature_names

    try:
        return feature_names(text)
    except (KeyError, ValueError) as e:
        raise ValueError(f"bench pflow --features: {e}") from None


def register(sub) -> None:
    """Add ``pcloud bench ...`` to the ``pcloud`` parser."""
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
    s.add_argument("--models", default=None,
                   help="comma-separated learned models (default: quick pointnet, dgcnn and the dense CNNs; full "
                        "mode also transformer, gravnet)")
    s.add_argument("--n-per-class", type=int, default=None, help="showers per class (default 700 quick, 20000 full)")
    s.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 8 quick, 40 full)")
    s.add_argument("--threshold-mev", type=float, default=None, help="cell threshold for the point clouds (MeV)")
    s.add_argument("--max-points", type=int, default=None, help="points per event (default 96 quick, 384 full)")
    s.add_argument("--no-occupancy", action="store_true", help="skip the compute-vs-occupancy study")
    s.add_argument("--granularity", action=argparse.BooleanOptionalAction, default=None,
                   help="the gamma/pi0 task at native, CMS-like and ATLAS-like ECAL cells (default: on in full mode)")
    s.add_argument("--small-models", action="store_true", help="CPU-sized model widths also outside --quick")
    s.add_argument("--resume", action="store_true",
                   help="continue each model from its last checkpoint in OUT/runs (same seed and settings)")
    s.add_argument("--data", action="append", default=[], metavar="FILE[:LABEL]",
                   help="your files instead of the simulated tasks: one identification task on them (class 0 = the "
                        "first class given); repeatable")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML of the --data files")
    s.set_defaults(func=_bench_singles)
    p = bsub.add_parser("pflow", help="particle-flow segmentation benchmark (learned vs rule-based vs trivial)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="small configuration (600 events, 2 epochs; < 5 min on 2 CPU cores)")
    mode.add_argument("--medium", action="store_true",
                      help="between quick and full (3000 events, 8 epochs, the four per-track models with time "
                           "budgets, 3 training seeds)")
    mode.add_argument("--large", action="store_true",
                      help="more data for the best model (8000 events, PointNet with a 12 min budget per training "
                           "seed, 3 seeds; about 50 min on 2 CPU cores)")
    p.add_argument("--out", default="out/bench_pflow", help="output folder (default out/bench_pflow)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--events", type=int, default=None, help="number of generated events")
    p.add_argument("--epochs", type=int, default=None, help="maximum training epochs per model")
    p.add_argument("--seed", type=int, default=1, help="seed of generation, splits and the first training seed")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds run in sequence (seed, seed+1, ...; metrics as mean and spread; default 1 "
                        "quick, 3 otherwise)")
    p.add_argument("--recipe", default="new", choices=("new", "legacy"),
                   help="training recipe of the per-track models: new (topo-clustered clouds, per-cell "
                        "cross-entropy, AdamW + cosine, threshold chosen on val) or legacy (before issue 11)")
    p.add_argument("--loss", default=None, choices=PFLOW_LOSSES,
                   help="segmentation loss of the per-track models instead of the recipe's (ce; legacy: "
                        "energy_weighted); mixed = energy_share x energy-weighted + (1 - energy_share) x ce")
    p.add_argument("--energy-share", type=float, default=None,
                   help="energy-weighted share of the mixed loss (default 0.5)")
    p.add_argument("--models", default=None,
                   help="comma-separated learned per-track models: pointnet, dgcnn, transformer, gravnet, cellgraph "
                        "(default per mode)")
    p.add_argument("--dense-fraction", type=float, default=0.3,
                   help="share of events with 2-3 parents at DeltaR 0.02-0.15 (default 0.3)")
    p.add_argument("--generator", default="gun", choices=("gun", "pythia-tau", "pythia-dijet"),
                   help="event generator: the built-in rho/Delta gun (default) or Pythia8 (needs pythia8mc)")
    p.add_argument("--no-ablation", action="store_true", help="skip the PointNet target/loss ablation")
    p.add_argument("--ablation", action="store_true",
                   help="run the PointNet target/loss ablation (default: only in full mode)")
    p.add_argument("--no-event-model", action="store_true", help="skip the whole-event ChargedFractionSegmenter")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping: epochs without a better validation loss (default 6 with --large, else 3)")
    p.add_argument("--features", default=None, metavar="NAME,...|jetpointnet",
                   help="point features of the per-track models: comma-separated names of pcloud.data."
                        "point_features, or 'jetpointnet' for the encoding without the cell neighbourhoods "
                        "(default: the recipe's)")
    p.add_argument("--widths", default=None, choices=("light", "small", "full"),
                   help="widths of the per-track models: light (narrower DGCNN / transformer / GravNet; quick and "
                        "medium), small (CPU-sized; large) or full (the model classes' own, GPU-sized)")
    p.add_argument("--minutes", default=None, metavar="MIN|NAME=MIN,...",
                   help="training time budget per model in minutes: one number for every model, or NAME=MIN pairs "
                        "(names: pointnet, dgcnn, transformer, gravnet, cellgraph, event_pointnet, ablation) replacing "
                        "the mode's budgets of those models")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="points per track cloud, tracks first then the highest-energy cells (default: 128 with "
                        "--quick, else 0 = every point)")
    p.add_argument("--ragged", action=argparse.BooleanOptionalAction, default=None,
                   help="train and run the per-track models on flat (P, F) batches with a cloud index instead of "
                        "padded ones (pcloud.nn.ragged; default: ragged with --large, else padded)")
    p.add_argument("--residual-clouds", action="store_true",
                   help="also train the per-track models on the clouds of every track after an event's first with "
                        "the true shares of the higher-pT tracks removed (teacher forcing of iterative inference, "
                        "pcloud.pflow.residual_clouds)")
    p.add_argument("--kinematic-replicas", type=int, default=16, metavar="N",
                   help="noise-free re-simulations of the test events for the kinematic oracles (labels from the "
                        "true particle kinematics, alone and with each cell's energy; generated events only; "
                        "default 16, 0: none)")
    p.add_argument("--data", action="append", default=[], metavar="FILE.root",
                   help="MLTree files with per-cell truth instead of generated events; repeatable")
    p.set_defaults(func=_bench_pflow)
