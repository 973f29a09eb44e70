"""File commands: ``pcloud geometry``, ``simulate``, ``generate``, ``convert``, ``info`` and ``show``."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from pcloud.core.jsonable import to_jsonable

from .errors import CLIError


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


#: energies the fast simulation is parametrised for (GeV): from the MIP/few-hundred-MeV regime where GFlash-style
#: profiles start to hold to 10 TeV; outside it the profiles and the spot budget are not meaningful
SIM_ENERGY_RANGE_GEV = (0.01, 1.0e4)
#: bytes per cell and shower that ``simulate`` holds for image outputs (float32 image, float32 flat copy, float64
#: sums while converting); sparse (atlas) outputs keep far less but are bounded the same way
SIM_BYTES_PER_CELL = 16


def _available_memory_bytes() -> int:
    """MemAvailable of /proc/meminfo (8 GiB when it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30


def _check_memory(n: int, geometry, kind: str) -> None:
    """Refuse a --n whose images would not fit in the memory available (one clear line, nothing written)."""
    need = float(n) * geometry.n_cells * SIM_BYTES_PER_CELL * (0.05 if geometry.name == "atlas" else 1.0)
    have = _available_memory_bytes()
    if need > 0.8 * have:
        per_file = max(1, int(0.8 * have / (geometry.n_cells * SIM_BYTES_PER_CELL)))
        raise CLIError(f"--n {n}: {geometry.name} showers would need about {need / 2**30:.1f} GiB of memory "
                       f"({geometry.n_cells} cells x {SIM_BYTES_PER_CELL} bytes per shower), "
                       f"{have / 2**30:.1f} GiB are available; simulate at most ~{per_file} showers per file")


def cmd_simulate(args) -> int:
    from pcloud.core.particles import PARTICLES, particle_pdg
    from pcloud.geometry import get_geometry

    out = Path(args.output)
    kind = _output_kind(args.geometry, out)
    lo, hi = _parse_range(args.energy, "--energy")
    _threshold_gev(args.threshold_mev)
    _threshold_sigma(args.threshold_sigma)
    if kind != "native" and args.threshold_mev:
        raise CLIError("--threshold-mev applies to point-cloud (.parquet) outputs; HDF5 files store every cell")
    if args.n <= 0:
        raise CLIError(f"--n: expected a positive number of showers, got {args.n}")
    if getattr(args, "triforce_strict", False) and kind != "triforce":
        raise CLIError("--triforce-strict applies to clic .h5 outputs (Triforce layout) only")
    pdg = particle_pdg(args.particle)  # validates names
    if pdg not in PARTICLES.values():
        raise CLIError(f"--particle: the fast simulation showers {', '.join(PARTICLES)} (PDG "
                       f"{sorted(PARTICLES.values())}), got {args.particle!r}")
    if args.seed is not None and args.seed < 0:
        raise CLIError(f"--seed: expected an integer >= 0, got {args.seed}")
    if hi > SIM_ENERGY_RANGE_GEV[1] or lo < SIM_ENERGY_RANGE_GEV[0]:
        raise CLIError(f"--energy: the fast simulation is parametrised for {SIM_ENERGY_RANGE_GEV[0]:g}-"
                       f"{SIM_ENERGY_RANGE_GEV[1]:g} GeV (GFlash-style profiles, PDG shower laws), got {args.energy}")
    g = get_geometry(args.geometry)
    _check_memory(args.n, g, kind)
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
        from pcloud.io.native import geometry_meta, write_clouds
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
        write_clouds(out, clouds, meta={"geometry": geometry_meta(g), "threshold_gev": args.threshold_mev / 1000.0,
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

            write_triforce(out, showers, strict_keys=bool(getattr(args, "triforce_strict", False)))
        else:
            from pcloud.data.convert import images_to_clouds
            from pcloud.io.native import geometry_meta, write_clouds

            clouds = images_to_clouds(showers, threshold_gev=args.threshold_mev / 1000.0, threshold_sigma=tsig)
            write_clouds(out, clouds, meta={"geometry": geometry_meta(g),
                                            "threshold_gev": args.threshold_mev / 1000.0, "threshold_sigma": tsig,
                                            "source": "simulation", **gen_meta})
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} {args.particle} showers ({args.geometry}, {lo:g}-{hi:g} GeV, {args.mode}) to {out} "
          f"[{kind}] in {dt:.1f} s ({args.n / max(dt, 1e-9):.0f} showers/s incl. I/O)")
    return 0


def cmd_generate(args) -> int:
    from pcloud.pipeline.mltree import generate_mltree

    out = Path(args.output)
    if out.suffix.lower() != ".root":
        raise CLIError(f"output {out}: generate writes an MLTree ROOT file; use a .root file name")
    if args.n <= 0:
        raise CLIError(f"--n: expected a positive number of events, got {args.n}")
    try:
        s = generate_mltree(args.generator, args.n, out, seed=args.seed, container=args.container)
    except ImportError as err:  # the root or pythia extra is missing: one line, exit 2
        raise CLIError(str(err)) from None
    print(f"wrote {s['n_events']} {args.generator} events to {out} [MLTree {s['container']}, {s['bytes']} bytes]: "
          f"{s['n_tracks']} tracks ({s['n_tracks_subtracted']} with rule-based subtraction), {s['n_clusters']} "
          f"topo-clusters, {s['n_cells']} cluster cells >= 5 MeV ({s['n_cells_below_threshold']} below, not stored); "
          f"simulation {s['seconds_simulation']:.1f} s, clustering + particle flow "
          f"{s['seconds_clustering_pflow']:.1f} s, write {s['seconds_write']:.1f} s")
    return 0


def _convert_mltree(args, src: Path, out: Path) -> int:
    from pcloud.pipeline.mltree import convert_mltree

    if args.xml or args.threshold_mev or args.threshold_sigma is not None:
        raise CLIError("--xml, --threshold-mev and --threshold-sigma apply to image files; an MLTree file holds the "
                       "topo-clustered cells (>= 5 MeV) already")
    clouds = args.clouds or "track"
    if args.dr_max is not None and clouds != "track":
        raise CLIError("--dr-max applies to per-track clouds (--clouds track)")
    dr = 0.2 if args.dr_max is None else args.dr_max
    if not (math.isfinite(dr) and dr > 0):
        raise CLIError(f"--dr-max: expected a positive number, got {dr}")
    if args.geo is not None and not Path(args.geo).exists():
        raise CLIError(f"--geo {args.geo}: no such file")
    t0 = time.perf_counter()
    meta = convert_mltree(src, out, clouds=clouds, dr_max=dr, geo=args.geo, chunk_events=args.chunk_size or 1000)
    r = meta["mltree_reading"]
    cm = r.get("cell_mapping", {})
    print(f"converted {r['n_events']} MLTree events from {src} to {out}: {r['n_clouds']} {clouds} clouds"
          f"{f' (Delta R < {dr:g})' if clouds == 'track' else ''}; cells mapped onto atlas "
          f"{cm.get('n_mapped')}/{cm.get('n_file_cells')} (energy fraction dropped "
          f"{cm.get('energy_fraction_dropped', 0):.3g}), shared cells summed {r.get('n_shared_cells')}, per-cell "
          f"truth {'yes' if r.get('has_cell_truth') else 'no'}; {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_convert(args) -> int:
    from pcloud.data.convert import images_to_clouds
    from pcloud.io.detect import detect_format, iter_images
    from pcloud.io.native import geometry_meta, write_clouds

    src, out = Path(args.input), Path(args.output)
    if not src.exists():
        raise CLIError(f"{src}: no such file")
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise CLIError(f"output {out}: convert writes the native Parquet store; use a .parquet file name")
    if args.chunk_size is not None and args.chunk_size <= 0:
        raise CLIError(f"--chunk-size: expected a positive number of events, got {args.chunk_size}")
    fmt = detect_format(src)
    if fmt == "mltree":
        return _convert_mltree(args, src, out)
    if args.clouds or args.dr_max is not None or args.geo:
        raise CLIError("--clouds, --dr-max and --geo apply to MLTree ROOT files")
    thr = _threshold_gev(args.threshold_mev)
    tsig = _threshold_sigma(args.threshold_sigma)
    if fmt == "native":
        raise CLIError(f"{src}: already a native file; convert reads image formats (calogan, calochallenge, "
                       f"triforce) and MLTree ROOT files")
    t0 = time.perf_counter()
    state = {"n": 0}
    chunks = iter_images(src, xml=args.xml, chunk_size=args.chunk_size or 20000)
    first = next(chunks, None)
    if first is None or first.n_events == 0:
        raise CLIError(f"{src}: contains no events")
    g = first.geometry

    def clouds():
        for showers in _chain(first, chunks):
            state["n"] += showers.n_events
            yield images_to_clouds(showers, threshold_gev=thr, threshold_sigma=tsig)

    meta = {"geometry": geometry_meta(g), "threshold_gev": thr, "threshold_sigma": tsig, "source": str(src),
            "source_format": fmt}
    write_clouds(out, clouds(), meta=meta)
    dt = time.perf_counter() - t0
    print(f"converted {state['n']} events from {src} [{fmt}] to {out} (threshold {args.threshold_mev:g} MeV) in "
          f"{dt:.1f} s ({state['n'] / max(dt, 1e-9):.0f} events/s)")
    return 0


def _chain(first, rest):
    yield first
    yield from rest


def cmd_info(args) -> int:
    from pcloud.pipeline import describe_file

    src = Path(args.file)
    if not src.exists():
        raise CLIError(f"{src}: no such file")
    info = describe_file(src, xml=args.xml, threshold_gev=_threshold_gev(args.threshold_mev))
    if args.json:
        print(json.dumps(to_jsonable(info), indent=2, default=str, allow_nan=False))
    else:
        for k, v in info.items():
            print(f"{k:>24}: {v}")
    return 0


def cmd_show(args) -> int:
    from pcloud.pipeline import load_event
    from pcloud.plots.event_display import plot_event

    src = Path(args.file)
    if not src.exists():
        raise CLIError(f"{src}: no such file")
    if args.event < 0:
        raise CLIError(f"--event must be >= 0, got {args.event}")
    ev, g = load_event(src, args.event, xml=args.xml)
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
