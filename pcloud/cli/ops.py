"""Operations commands: ``pcloud export``, ``serve``, ``tune``, ``resample``, and the ``--nproc`` / ``--repeat``
options of ``pcloud train`` (distributed and repeated trainings)."""
from __future__ import annotations

from .errors import CLIError


def cmd_export(args) -> int:
    from pcloud.export import export_bundle

    info = export_bundle(args.bundle, args.format, args.output)
    print(f"{args.format}: {info['path']} (inputs {', '.join(info['inputs'])}; outputs {', '.join(info['outputs'])};"
          f" {info['seconds']:.1f} s)")
    return 0


def cmd_serve(args) -> int:
    from pcloud.serve.server import serve_forever

    serve_forever(args.bundles, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                  max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
                  names=args.name)
    return 0


def cmd_tune(args) -> int:
    from pcloud.tune import tune

    res = tune(args.config, args.trials, data=args.data, study=args.study, out=args.out, repeat=args.repeat,
               overrides=args.set or [], timeout_min=args.timeout_min, seed=args.seed)
    print(f"best trial {res['best_trial']}: {res['metric']} {res['best_value']:.4g} with {res['best_params']} "
          f"(study {res['study']}: {res['n_trials']} trials, {res['n_pruned']} pruned)")
    return 0


def cmd_resample(args) -> int:
    from pcloud.data.resample import resample_file

    info = resample_file(args.input, args.to, args.output, xml=args.xml)
    print(f"{info['events']} events: {info['from']} -> {info['to']} ({info['cells_in']} -> {info['cells_out']} "
          f"cells; energy conserved to {info['max_energy_difference_gev']:.2e} GeV) -> {args.output}")
    return 0


def _train_wrapper(original):
    """``pcloud train`` with ``--nproc N`` (DDP worker processes) and ``--repeat K`` (K seeds)."""

    def cmd(args) -> int:
        nproc, repeat = getattr(args, "nproc", 1) or 1, getattr(args, "repeat", 1) or 1
        if nproc < 1 or repeat < 1:
            raise CLIError(f"--nproc and --repeat must be >= 1, found {nproc}, {repeat}")
        if repeat > 1:
            from pcloud.train.repeat import repeat_training

            repeat_training(args, repeat, original)
            return 0
        if nproc > 1:
            from pcloud.cli.torchrun import launch_cli
            from pcloud.pipeline.config import run_config

            task = run_config(args.config, args.set or [], data=args.data, task=args.task).task
            if task == "pflow":
                raise CLIError("--nproc: distributed training is for the id / energy / id+energy tasks; particle flow "
                               "(--task pflow) trains in one process (leave --nproc out)")

            return launch_cli(args, nproc)
        return original(args)

    return cmd


def register(sub) -> None:
    """Add ``export``, ``serve``, ``tune``, ``resample`` and the ``train`` options to the ``pcloud`` parser."""
    s = sub.add_parser("export", help="write a model bundle as ONNX or TorchScript (dynamic batch and points)")
    s.add_argument("bundle", help="the --out folder of pcloud train")
    s.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="serve model bundles with NVIDIA Triton (PyTriton; dynamic batching, KServe v2)")
    s.add_argument("bundles", nargs="+", help="bundle folders; one Triton model each (named after the folder)")
    s.add_argument("--name", action="append", default=None, help="model name per bundle (default: folder name)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--max-batch-size", type=int, default=64, help="clouds per dynamic batch")
    s.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batcher's wait for more requests")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("tune", help="hyper-parameter scan of pcloud train with optuna (pruning, resumable study)")
    s.add_argument("config", help="YAML scan file: base recipe + search space (see pcloud/configs/tune.yaml)")
    s.add_argument("--trials", type=int, required=True, help="trials to run now (added to a resumed study)")
    s.add_argument("--data", action="append", default=[], metavar="FILE[:LABEL]")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the base recipe")
    s.add_argument("--study", default=None, help="sqlite file of the study (default OUT/study.sqlite3)")
    s.add_argument("--out", required=True, help="folder of the scan (trials, study, summary)")
    s.add_argument("--repeat", type=int, default=1, help="seeds per trial; the objective is their mean")
    s.add_argument("--timeout-min", type=float, default=None, help="stop starting trials after this time")
    s.add_argument("--seed", type=int, default=1, help="sampler seed")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("resample", help="re-bin the CLIC ECAL to coarser cells (energy conserved)")
    s.add_argument("input", help="a CLIC-geometry file pcloud reads (native store or Triforce HDF5)")
    s.add_argument("--to", required=True, help="atlas, cms or CELLxCELL (cell size in mm, e.g. 20x20)")
    s.add_argument("-o", "--output", required=True, help="output native store (.parquet)")
    s.add_argument("--xml", default=None)
    s.set_defaults(func=cmd_resample)

    train = sub.choices.get("train")
    if train is not None:
        train.add_argument("--nproc", type=int, default=1,
                           help="DDP worker processes on this machine (gloo on CPU, NCCL on GPU); several nodes: "
                                "torchrun -m pcloud.cli.torchrun (README)")
        train.add_argument("--repeat", type=int, default=1,
                           help="train K times with seeds seed..seed+K-1 (OUT/seed_<s>) and report mean +- std")
        train.set_defaults(func=_train_wrapper(train.get_default("func")))
