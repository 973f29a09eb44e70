"""Model commands: ``pcloud train``, ``pcloud evaluate`` and ``pcloud predict`` on the user's own files."""
from __future__ import annotations

from pathlib import Path

from .errors import CLIError


def cmd_train(args) -> int:
    from pcloud.pipeline.config import run_config

    cfg = run_config(args.config, args.set or [], data=args.data, task=args.task, model=args.model,
                     epochs=args.epochs, device=args.device, seed=args.seed, xml=args.xml)
    out = Path(args.out)
    if out.exists() and (out / "bundle.json").exists() and not args.overwrite:
        raise CLIError(f"--out {out}: already holds a model bundle; choose another folder or pass --overwrite")
    if cfg.task == "pflow":
        from pcloud.pipeline.pflow import train_pflow

        train_pflow(cfg, out)
    else:
        from pcloud.pipeline.train import train

        train(cfg, out)
    print(f"model bundle: {out} (results: {out / 'results.json'})")
    return 0


def cmd_evaluate(args) -> int:
    from pcloud.pipeline.bundle import read_bundle_meta

    task = read_bundle_meta(args.bundle)["task"]
    if task == "pflow":
        from pcloud.pipeline.pflow import evaluate_pflow

        evaluate_pflow(args.bundle, args.data, args.out)
    else:
        from pcloud.pipeline.evaluate import evaluate

        evaluate(args.bundle, args.data, args.out, xml=args.xml)
    return 0


def cmd_predict(args) -> int:
    from pcloud.pipeline.bundle import read_bundle_meta

    task = read_bundle_meta(args.bundle)["task"]
    if task == "pflow":
        from pcloud.pipeline.pflow import predict_pflow

        predict_pflow(args.bundle, args.input, args.output)
    else:
        from pcloud.pipeline.evaluate import predict

        predict(args.bundle, args.input, args.output, xml=args.xml)
    return 0


def register(sub) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to the ``pcloud`` parser."""
    s = sub.add_parser("train", help="train a model on your files (any format pcloud reads); writes a model bundle")
    s.add_argument("--data", action="append", default=[], metavar="FILE[:LABEL]",
                   help="input file, glob or either with the class of its events (eplus.hdf5:e+); repeatable")
    s.add_argument("--model", default=None, help="pointnet, dgcnn, transformer, gravnet, dense_fcn, cnn3d, "
                                                 "multistream_cnn, densenet, upsample_cnn (--task pflow: the first "
                                                 "four; default: the config's, pointnet)")
    s.add_argument("--task", default=None, choices=("id", "energy", "id+energy", "pflow"), help="default: id")
    s.add_argument("--config", default=None, help="YAML recipe (see pcloud/configs/train.yaml)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. train.lr=3e-4")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("--out", required=True, help="folder of the model bundle (and splits, checkpoints, results)")
    s.add_argument("--overwrite", action="store_true", help="replace a bundle already in --out")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="metrics, tables and plots of a model bundle on files")
    s.add_argument("bundle", help="the --out folder of pcloud train")
    s.add_argument("--data", action="append", required=True, metavar="FILE[:LABEL]")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML (default: the bundle's)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="per-event predictions of a model bundle, written as Parquet")
    s.add_argument("bundle", help="the --out folder of pcloud train")
    s.add_argument("input", help="input file or glob (a label is not needed)")
    s.add_argument("-o", "--output", required=True, help="output .parquet file")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML (default: the bundle's)")
    s.set_defaults(func=cmd_predict)
