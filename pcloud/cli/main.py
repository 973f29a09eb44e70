"""The ``pcloud`` command line. Run ``pcloud --help`` or ``pcloud COMMAND --help``."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


class CLIError(Exception):
    """An error reported to the user as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------------- helpers
def _parse_range(text: str, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(t) for t in text.split(":"))
    except ValueError:
        raise CLIError(f"{what}: expected LO:HI (e.g. 1:100), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise CLIError(f"{what}: expected finite 0 < LO <= HI, got {text!r}")
    return lo, hi


def _threshold_gev(mev: float, what: str = "--threshold-mev") -> float:
    if not (math.isfinite(mev) and mev >= 0):
        raise CLIError(f"{what}: expected a finite value >= 0 (MeV), got {mev}")
    return mev / 1000.0


def _threshold_sigma(value, what: str = "--threshold-sigma"):
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise CLIError(f"{what}: expected a finite value >= 0, got {value}")
    return value


def _output_kind(geometry_name: str, out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "native"
    if suffix in (".h5", ".hdf5"):
        if geometry_name == "calogan":
            return "calogan"
        if geometry_name == "clic":
            return "triforce"
        raise CLIError(f"simulate {geometry_name}: HDF5 output exists only for calogan (CaloGAN layout) and clic "
                       f"(Triforce layout); use a .parquet output for {geometry_name}")
    raise CLIError(f"output {out}: expected a .h5/.hdf5 or .parquet file name")


def _fmt_size(v) -> str:
    return "variable" if isinstance(v, list) else f"{v:.4g}"


def _geometry_meta(geometry) -> dict:
    return {"name": geometry.name, "kwargs": geometry.info.get("builder_kwargs", {})}


# ---------------------------------------------------------------------------------------------------- commands
def cmd_geometry(args) -> int:
    from pcloud.geometry import get_geometry

    g = get_geometry(args.name)
    d = g.describe()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{d['name']}: {d['description']}")
    print(f"  {d['n_cells']} cells, {d['n_layers']} layers, depth {d['depth_mm']:.0f} mm = {d['depth_x0']:.1f} X0 = "
          f"{d['depth_lambda']:.2f} lambda_I")
    for s in d["sections"]:
        m = s["material"]
        print(f"  {s['name']:<9} {s['kind']:<6} {s['n_layers']:>3} x {s['n_cells_u']:>3} x {s['n_cells_v']:>3} cells,"
              f" cell {_fmt_size(s['cell_size_u'])} {s['cell_size_units'][0]} x "
              f"{_fmt_size(s['cell_size_v'])} {s['cell_size_units'][1]},"
              f" {s['depth_mm']:.0f} mm = {s['depth_x0']:.2f} X0 = {s['depth_lambda']:.3f} lambda_I,"
              f" {m['absorber'] or ''}{'/' if m['absorber'] else ''}{m['active']}, noise {s['noise_sigma_gev']} GeV")
    return 0


def cmd_simulate(args) -> int:
    from pcloud.geometry import get_geometry
    from pcloud.showers import particle_pdg

    out = Path(args.output)
    kind = _output_kind(args.geometry, out)
    lo, hi = _parse_range(args.energy, "--energy")
    _threshold_gev(args.threshold_mev)
    _threshold_sigma(args.threshold_sigma)
    if kind != "native" and args.threshold_mev:
        raise CLIError("--threshold-mev applies to point-cloud (.parquet) outputs; HDF5 files store every cell")
    if args.n <= 0:
        raise CLIError(f"--n: expected a positive number of showers, got {args.n}")
    particle_pdg(args.particle)  # validates
    g = get_geometry(args.geometry)
    noisy = any(sec.noise_sigma_gev > 0 for sec in g.sections) and args.noise is not False
    tsig = args.threshold_sigma if args.threshold_sigma is not None else (4.0 if noisy else None)
    if args.topo and args.geometry != "atlas":
        raise CLIError("--topo (topo-cluster cell selection) is available for the atlas geometry only")
    if args.topo and args.threshold_sigma is not None:
        raise CLIError("--topo and --threshold-sigma are alternative cell selections; give one")
    if tsig is not None and kind != "native":
        raise CLIError("--threshold-sigma applies to point-cloud (.parquet) outputs only")
    t0 = time.perf_counter()
    common = dict(energy_gev=(lo, hi), spectrum=args.spectrum, mode=args.mode, noise=args.noise, seed=args.seed)
    if args.spread:
        if args.geometry != "calogan":
            raise CLIError("--spread (the seed-004 angle/position beam) exists for the calogan geometry only")
        common["spread"] = True
    gen_meta = {"generator": "pcloud fast simulation (parametrised, GFlash-style; not Geant4)",
                "particle": args.particle, "n": args.n, "energy_gev": [lo, hi], "spectrum": args.spectrum,
                "mode": args.mode, "noise": args.noise, "seed": args.seed, "spread": bool(args.spread)}
    if args.geometry == "atlas":
        from pcloud.data.convert import sparse_to_clouds
        from pcloud.io.native import write_clouds
        from pcloud.sim.showers import simulate_sparse

        truth, ev, cell, e = simulate_sparse(g, args.particle, args.n, **common)
        if args.topo:
            # keep the cells of 4/2/0-sigma topo-clusters (ATLAS, Eur. Phys. J. C 77 (2017) 490); the sparse noise
            # holds pure-noise cells above 2 sigma only, so perimeter cells are those with deposits or |E| > 2 sigma
            from pcloud.pflow.topocluster import topo_cluster

            tc = topo_cluster(g, ev, cell, e, n_events=args.n)
            keep = tc.cell_cluster >= 0
            ev, cell, e = ev[keep], cell[keep], e[keep]
            tsig = None
            gen_meta["cell_selection"] = "topo-clusters 4/2/0 sigma"
        clouds = sparse_to_clouds(g, truth, ev, cell, e, threshold_gev=args.threshold_mev / 1000.0, n_events=args.n,
                                  threshold_sigma=tsig)
        write_clouds(out, clouds, meta={"geometry": _geometry_meta(g), "threshold_gev": args.threshold_mev / 1000.0,
                                        "threshold_sigma": tsig, "source": "simulation", **gen_meta})
    else:
        from pcloud.sim.showers import simulate_showers

        showers = simulate_showers(g, args.particle, args.n, **common)
        showers.meta.update(gen_meta)
        if kind == "calogan":
            from pcloud.io.calogan import write_calogan

            write_calogan(out, showers)
        elif kind == "triforce":
            from pcloud.io.triforce import write_triforce

            write_triforce(out, showers)
        else:
            from pcloud.data.convert import images_to_clouds
            from pcloud.io.native import write_clouds

            clouds = images_to_clouds(showers, threshold_gev=args.threshold_mev / 1000.0, threshold_sigma=tsig)
            write_clouds(out, clouds, meta={"geometry": _geometry_meta(g),
                                            "threshold_gev": args.threshold_mev / 1000.0, "threshold_sigma": tsig,
                                            "source": "simulation", **gen_meta})
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} {args.particle} showers ({args.geometry}, {lo:g}-{hi:g} GeV, {args.mode}) to {out} "
          f"[{kind}] in {dt:.1f} s ({args.n / max(dt, 1e-9):.0f} showers/s incl. I/O)")
    return 0


def cmd_convert(args) -> int:
    from pcloud.data.convert import images_to_clouds
    from pcloud.io.detect import detect_format, iter_images
    from pcloud.io.native import write_clouds

    src, out = Path(args.input), Path(args.output)
    if not src.exists():
        raise CLIError(f"{src}: no such file")
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise CLIError(f"output {out}: convert writes the native Parquet store; use a .parquet file name")
    if args.chunk_size <= 0:
        raise CLIError(f"--chunk-size: expected a positive number of events, got {args.chunk_size}")
    thr = _threshold_gev(args.threshold_mev)
    tsig = _threshold_sigma(args.threshold_sigma)
    fmt = detect_format(src)
    if fmt in ("native", "mltree"):
        raise CLIError(f"{src}: already a {fmt} file; convert reads image formats (calogan, calochallenge, triforce)")
    t0 = time.perf_counter()
    state = {"n": 0}
    chunks = iter_images(src, xml=args.xml, chunk_size=args.chunk_size)
    first = next(chunks, None)
    if first is None or first.n_events == 0:
        raise CLIError(f"{src}: contains no events")
    g = first.geometry

    def clouds():
        for showers in _chain(first, chunks):
            state["n"] += showers.n_events
            yield images_to_clouds(showers, threshold_gev=thr, threshold_sigma=tsig)

    meta = {"geometry": _geometry_meta(g), "threshold_gev": thr, "threshold_sigma": tsig, "source": str(src),
            "source_format": fmt}
    if "binning_xml" in first.meta:  # CaloChallenge: the geometry is defined by the binning, keep it in the store
        meta["geometry"]["binning_xml"] = first.meta["binning_xml"]
    write_clouds(out, clouds(), meta=meta)
    dt = time.perf_counter() - t0
    print(f"converted {state['n']} events from {src} [{fmt}] to {out} (threshold {args.threshold_mev:g} MeV) in "
          f"{dt:.1f} s ({state['n'] / max(dt, 1e-9):.0f} events/s)")
    return 0


def _chain(first, rest):
    yield first
    yield from rest


def _info_images(src: Path, fmt: str, xml, thr: float) -> dict:
    """Stream an image file chunk by chunk: events, points above threshold per event, total energy (GeV)."""
    import numpy as np

    from pcloud.io.detect import iter_images

    n, npts, pmin, pmax, tot, geometry = 0, 0, None, None, 0.0, None
    e_true = []
    for showers in iter_images(src, xml=xml, chunk_size=10_000):
        geometry = showers.geometry.name
        flat = showers.flat()
        above = flat > thr
        cnt = above.sum(axis=1)
        n += cnt.size
        npts += int(cnt.sum())
        pmin = int(cnt.min()) if pmin is None else min(pmin, int(cnt.min()))
        pmax = int(cnt.max()) if pmax is None else max(pmax, int(cnt.max()))
        tot += float(np.sum(flat, where=above, dtype=np.float64))
        if "energy_gev" in showers.truth:
            e_true.append(np.asarray(showers.truth["energy_gev"], dtype=np.float64))
    info = {"file": str(src), "format": fmt, "geometry": geometry, "n_events": n, "n_points": npts,
            "points_per_event": {"mean": npts / n if n else 0.0, "min": pmin or 0, "max": pmax or 0},
            "threshold_gev": thr, "total_energy_gev": tot}
    if e_true:
        e = np.concatenate(e_true)
        info["true_energy_gev"] = {"mean": float(e.mean()), "min": float(e.min()), "max": float(e.max())}
    return info


def _info_mltree(src: Path) -> dict:
    import numpy as np

    from pcloud.io.mltree import read_mltree

    d = read_mltree(src)
    ev = d.events
    return {"file": str(src), "format": "mltree", "geometry": getattr(ev, "geometry_name", None),
            "n_events": int(ev.n_events), "n_tracks": int(ev.tracks["event"].size),
            "n_clusters": int(np.asarray(d.clusters.cluster_event).size) if hasattr(d.clusters, "cluster_event")
            else None, "n_cells": int(ev.cells["event"].size),
            "total_cell_energy_gev": float(np.sum(ev.cells["energy_gev"], dtype=np.float64)),
            "n_truth_particles": int(ev.particles["event"].size), "notes": d.meta}


def cmd_info(args) -> int:
    from pcloud.io.detect import detect_format

    src = Path(args.file)
    if not src.exists():
        raise CLIError(f"{src}: no such file")
    thr = _threshold_gev(args.threshold_mev)
    fmt = detect_format(src)
    if fmt == "native":
        from pcloud.data.summary import summarise

        info = summarise(src)
    elif fmt == "mltree":
        info = _info_mltree(src)
    else:
        info = _info_images(src, fmt, args.xml, thr)
    info.setdefault("file", str(src))
    info.setdefault("format", fmt)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            print(f"{k:>24}: {v}")
    return 0


def _load_event(src: Path, index: int, xml=None):
    """Return (event record, geometry) for event ``index`` of any supported file."""
    from pcloud.io.detect import detect_format

    fmt = detect_format(src)
    if fmt == "native":
        from pcloud.geometry import get_geometry
        from pcloud.io.native import read_clouds, read_meta

        meta = read_meta(src)
        n = int(meta.get("n_events", -1))
        if n >= 0 and not (0 <= index < n):
            raise CLIError(f"{src}: --event {index} out of range (file has {n} events)")
        clouds = read_clouds(src, start=index, stop=index + 1)
        gm = meta.get("geometry", {})
        if isinstance(gm, dict) and gm.get("binning_xml"):
            from pcloud.io.calochallenge import parse_binning

            g = parse_binning(gm["binning_xml"]).geometry
        else:
            g = get_geometry(gm["name"] if isinstance(gm, dict) else gm, **(gm.get("kwargs", {}) if isinstance(gm, dict) else {}))
        return clouds[0], g
    from pcloud.data.convert import images_to_clouds
    from pcloud.io.detect import read_images

    showers = read_images(src, xml=xml, start=index, stop=index + 1)
    if showers.n_events == 0:
        raise CLIError(f"{src}: --event {index} out of range")
    return images_to_clouds(showers)[0], showers.geometry


def cmd_show(args) -> int:
    from pcloud.plots.event_display import plot_event

    src = Path(args.file)
    if not src.exists():
        raise CLIError(f"{src}: no such file")
    if args.event < 0:
        raise CLIError(f"--event must be >= 0, got {args.event}")
    ev, g = _load_event(src, args.event, xml=args.xml)
    title = f"{src.name} event {args.event}"
    if {"pdg", "energy_gev"} <= set(getattr(ev, "fields", [])):
        title += f": pdg {int(ev['pdg'])}, E = {float(ev['energy_gev']):.2f} GeV"
    elif "energy_gev" in getattr(ev, "fields", []):
        title += f": E = {float(ev['energy_gev']):.2f} GeV"
    center = None
    try:  # zoom eta-phi panels on the incident direction rather than on the hottest (possibly noise) cell
        import numpy as np

        if {"theta_rad", "phi_rad"} <= set(ev.fields):
            center = (float(-np.log(np.tan(0.5 * float(ev["theta_rad"])))), float(ev["phi_rad"]))
    except (KeyError, ValueError, TypeError, AttributeError):
        pass
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    plot_event(ev, g, args.output, title=title, center_etaphi=center)
    print(f"wrote {args.output}")
    return 0


def cmd_demo(args) -> int:
    """Main job until the benchmark lands: simulate, convert, summarise and draw."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = [
        ["simulate", "calogan", "--particle", "e+", "--n", str(args.n), "--energy", "1:100", "--seed", "1",
         "-o", str(out / "e+.h5")],
        ["simulate", "calogan", "--particle", "pi+", "--n", str(args.n), "--energy", "1:100", "--seed", "2",
         "-o", str(out / "pi+.h5")],
        ["convert", str(out / "e+.h5"), "-o", str(out / "e+.parquet")],
        ["convert", str(out / "pi+.h5"), "-o", str(out / "pi+.parquet")],
        ["info", str(out / "e+.parquet")],
        ["show", str(out / "e+.parquet"), "--event", "0", "-o", str(out / "e+_event0.png")],
        ["show", str(out / "pi+.parquet"), "--event", "0", "-o", str(out / "pi+_event0.png")],
    ]
    for s in steps:
        print("$ pcloud " + " ".join(s), flush=True)
        rc = main(s)
        if rc:
            return rc
    return 0


# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pcloud", description="Calorimeter data as sparse point clouds.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("geometry", help="describe a detector geometry")
    s.add_argument("name", choices=["calogan", "clic", "atlas", "cms"])
    s.add_argument("--json", action="store_true", help="print the full description as JSON")
    s.set_defaults(func=cmd_geometry)

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
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--spread", action="store_true",
                   help="calogan: directions within 5 deg and entry points within +-50 mm (seed 004); default: the "
                        "public CaloGAN beam at the origin along the axis")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("convert", help="convert an image file (CaloGAN, CaloChallenge, Triforce) to the native store")
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--threshold-mev", type=float, default=0.0, help="keep cells with E > threshold (MeV)")
    s.add_argument("--threshold-sigma", type=float, default=None, help="also require E > T x cell noise sigma")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("--chunk-size", type=int, default=20000, help="events per chunk (bounds memory)")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("info", help="summarise a file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("--threshold-mev", type=float, default=0.0, help="threshold for image files (MeV)")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("show", help="draw an event display PNG")
    s.add_argument("file")
    s.add_argument("--event", type=int, default=0)
    s.add_argument("--xml", default=None, help="CaloChallenge binning XML")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("demo", help="simulate, convert, summarise and draw a small default dataset")
    s.add_argument("--out", default="out/demo")
    s.add_argument("--n", type=int, default=2000)
    s.set_defaults(func=cmd_demo)

    from pcloud.cli import extra  # commands of later stages (bench, train, pflow) register themselves here

    extra.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"pcloud {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        # library errors (FormatError is a ValueError) already name the file/field; show them without a traceback
        if os.environ.get("PCLOUD_DEBUG"):
            raise
        print(f"pcloud {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - last resort: one line instead of a traceback
        if os.environ.get("PCLOUD_DEBUG"):
            raise
        print(f"pcloud {args.command}: internal error: {type(e).__name__}: {e} (set PCLOUD_DEBUG=1 for the "
              f"traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
