"""The ``pcloud`` command line. Run ``pcloud --help`` or ``pcloud COMMAND --help``."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import bench, files, models, ops, validate
from .errors import CLIError

# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pcloud", description="Calorimeter data as sparse point clouds.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("geometry", help="describe a detector geometry")
    s.add_argument("name", choices=["calogan", "clic", "atlas", "cms"])
    s.add_argument("--json", action="store_true", help="print the full description as JSON")
    s.set_defaults(func=files.cmd_geometry)

    s = sub.add_parser("simulate", help="simulate single-particle showers with the embedded fast simulation")
    s.add_argument("geometry", choices=["calogan", "clic", "atlas", "cms"])
    s.add_argument("--particle", required=True, help="e+, e-, gamma, pi0, pi+, pi-")
    s.add_argument("--n", type=int, required=True, help="number of showers")
    s.add_argument("--energy", default="1:100", help="energy range LO:HI in GeV (default 1:100)")
    s.add_argument("--spectrum", choices=["uniform", "log"], default="uniform")
    s.add_argument("--mode", choices=["total", "visible"], default="total",
                   help="total = absorber+active deposits (as public CaloGAN files); visible = active only")
    s.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None,
                   help="add cell noise (default: on where the geometry defines noise)")
    s.add_argument("--threshold-mev", type=float, default=0.0, help="cell threshold for native (cloud) outputs")
    s.add_argument("--threshold-sigma", type=float, default=None,
                   help="also keep only cells with E > T x noise sigma (native outputs; default 4 for noisy "
                        "geometries, i.e. atlas and cms, none otherwise)")
    s.add_argument("--topo", action="store_true",
                   help="atlas: keep the cells of 4/2/0-sigma topo-clusters instead of a sigma threshold")
    s.add_argument("--triforce-strict", action="store_true",
                   help="clic .h5 only: write exactly the 53 (fixed angle) / 56 (variable angle) keys of the public "
                        "Triforce files, without pcloud's extra truth")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--spread", action="store_true",
                   help="calogan: directions within 5 deg and entry points within +-50 mm (seed 004); default: the "
                        "public CaloGAN beam at the origin along the axis")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=files.cmd_simulate)

    s = sub.add_parser("generate", help="simulate ATLAS-style track-cell events and write an MLTree ROOT file")
    s.add_argument("generator", choices=["gun", "pythia-tau", "pythia-dijet"],
                   help="gun: rho/Delta mixture of bench pflow; pythia-*: Pythia8 (the pythia extra)")
    s.add_argument("--n", type=int, required=True, help="number of events")
    s.add_argument("-o", "--output", required=True, help="output .root file")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--container", choices=["ttree", "rntuple"], default="ttree",
                   help="ttree: MLTreeMaker's TTrees (needs the root extra); rntuple: same columns, uproot only")
    s.set_defaults(func=files.cmd_generate)

    s = sub.add_parser("convert", help="convert an image file (CaloGAN, CaloChallenge, Triforce) or an MLTree ROOT "
                                       "file to the native store")
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--threshold-mev", type=float, default=0.0, help="keep cells with E > threshold (MeV)")
    s.add_argument("--threshold-sigma", type=float, default=None, help="also require E > T x cell noise sigma")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("--chunk-size", type=int, default=None,
                   help="events per chunk (bounds memory; default 20000 for images, 1000 for MLTree)")
    s.add_argument("--clouds", choices=["track", "event"], default=None,
                   help="MLTree: one cloud per track (default, Delta R features) or per event")
    s.add_argument("--dr-max", type=float, default=None, help="MLTree per-track clouds: Delta R cut (default 0.2)")
    s.add_argument("--geo", default=None, help="MLTree: separate ROOT file holding the CellGeo tree")
    s.set_defaults(func=files.cmd_convert)

    s = sub.add_parser("info", help="summarise a file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("--threshold-mev", type=float, default=0.0, help="threshold for image files (MeV)")
    s.set_defaults(func=files.cmd_info)

    s = sub.add_parser("show", help="draw an event display PNG")
    s.add_argument("file")
    s.add_argument("--event", type=int, default=0)
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=files.cmd_show)

    models.register(sub)
    validate.register(sub)
    ops.register(sub)
    bench.register(sub)
    return p


class Terminated(BaseException):
    """SIGTERM turned into an exception, so that unfinished outputs are removed on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())  # library messages are one line; never print a multi-line one


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"pcloud {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pcloud {args.command}: interrupted (Ctrl-C); unfinished outputs were removed", file=sys.stderr)
        return 130
    except Terminated:
        print(f"pcloud {args.command}: terminated (SIGTERM); unfinished outputs were removed", file=sys.stderr)
        return 143
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        # library errors (FormatError is a ValueError) already name the file/field; show them without a traceback
        if os.environ.get("PCLOUD_DEBUG"):
            raise
        print(f"pcloud {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - last resort: one line instead of a traceback
        if os.environ.get("PCLOUD_DEBUG"):
            raise
        print(f"pcloud {args.command}: internal error: {type(e).__name__}: {_one_line(e)} (set PCLOUD_DEBUG=1 for "
              f"the traceback)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
