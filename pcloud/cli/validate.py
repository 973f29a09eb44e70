"""``pcloud validate GEOMETRY --reference REF --out DIR``: the fast simulation against Geant4 (a card or files).

The logic is in :mod:`pcloud.validation.run`; this module only adds the sub-command to the ``pcloud`` parser.
"""
from __future__ import annotations

import argparse


def _cmd(args) -> int:
    from pcloud.validation.reference import ReferenceError
    from pcloud.validation.run import validate

    particles = [p.strip() for p in args.particles.split(",") if p.strip()] if args.particles else None
    try:
        res = validate(args.geometry, args.reference, args.out, particles=particles, n=args.n, seed=args.seed)
    except ReferenceError as e:
        raise ValueError(str(e)) from None       # one line, exit 2 (pcloud.cli.main)
    return 0 if res["summary"]["all_passed"] or not args.strict else 1


def register(sub) -> None:
    s = sub.add_parser(
        "validate", help="compare the fast simulation with Geant4: a reference card or real shower files",
        description="Simulate showers in the reference's configuration, compute the CaloGAN per-shower quantities of "
                    "both, and write one figure per quantity, summary.png, results.json and report.md into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("geometry", choices=["calogan"], help="geometry the reference describes")
    s.add_argument("--reference", required=True, nargs="+", metavar="REF",
                   help="a JSON card (path, or the built-in name calogan-geant4) or shower files FILE:PARTICLE "
                        "(e.g. eplus.hdf5:e+ gamma.hdf5:gamma piplus.hdf5:pi+)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--particles", default=None, help="comma-separated subset, e.g. e+,gamma,pi+ (default: all)")
    s.add_argument("--n", type=int, default=3000, help="showers per particle")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--strict", action="store_true", help="exit status 1 when a row fails")
    s.set_defaults(func=_cmd)
