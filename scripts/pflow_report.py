"""Re-write ``report.md`` of a ``pcloud bench pflow`` output folder from its ``results.json``.

The report is a pure function of ``results.json`` (:func:`pcloud.bench.pflow.render_report`), so a report produced by an
older version of the formatter can be refreshed without re-running the benchmark:

    python scripts/pflow_report.py OUT_DIR [--plot]

``--plot`` also redraws ``metrics_vs_dr.png`` (it needs only the per-bin numbers stored in ``results.json``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pcloud.bench.pflow import render_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output folder of pcloud bench pflow (holds results.json)")
    ap.add_argument("--plot", action="store_true", help="also redraw metrics_vs_dr.png from results.json")
    args = ap.parse_args(argv)
    path = Path(args.out) / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no results.json (expected the --out folder of `pcloud bench pflow`)")
    res = json.loads(path.read_text())
    for key in ("methods", "config", "splits", "conservation"):
        if key not in res:
            raise SystemExit(f"{path}: missing key {key!r}; is this a pcloud bench pflow results.json?")
    (Path(args.out) / "report.md").write_text(render_report(res))
    print(f"wrote {Path(args.out) / 'report.md'}")
    if args.plot:
        from pcloud.plots.pflow import plot_metrics_vs_dr

        shown = {k: v for k, v in res["methods"].items() if k != "oracle_common"}
        print("wrote", plot_metrics_vs_dr(shown, Path(args.out) / "metrics_vs_dr.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
