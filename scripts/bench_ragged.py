"""Padded vs ragged batches of the point models on the occupancy study of ``pcloud bench singles`` (issue 11 item 2).

Runs :func:`pcloud.bench.singles.occupancy.occupancy_study` (128 CaloGAN e+ showers, cell thresholds 0 / 1 / 10 /
100 MeV, untrained models) for the point models only and prints the padded-vs-ragged table: inference events/s and
peak tensor memory, seconds and peak memory of one training step (forward + backward), per model and threshold.

    OMP_NUM_THREADS=2 python scripts/bench_ragged.py [--full-widths] [--out ragged.json]
"""
from __future__ import annotations

import argparse
import json

import torch

from pcloud.bench.singles.config import SinglesConfig
from pcloud.bench.singles.occupancy import occupancy_study
from pcloud.bench.singles.report import _occupancy
from pcloud.core.jsonable import to_jsonable
from pcloud.pipeline.models import POINT_MODEL_NAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full-widths", action="store_true", help="the full model widths (default: CPU-sized)")
    ap.add_argument("--models", default=",".join(POINT_MODEL_NAMES))
    ap.add_argument("--out", default=None, help="write the study as JSON")
    args = ap.parse_args()
    cfg = SinglesConfig(models=args.models.split(","), small_models=not args.full_widths).resolved()
    cfg.small_models = not args.full_widths
    occ = occupancy_study(cfg, torch.device("cpu"), log=print, granularity=False)
    lines = _occupancy(occ)
    start = next(i for i, s in enumerate(lines) if s.startswith("### Padded vs ragged"))
    end = next(i for i, s in enumerate(lines) if s.startswith("### Inference cost vs ECAL"))
    print(f"threads: {torch.get_num_threads()}, widths: {'full' if args.full_widths else 'CPU-sized'}")
    print("\n".join(lines[start:end]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(to_jsonable(occ), f, indent=1)


if __name__ == "__main__":
    main()
