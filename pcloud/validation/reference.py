"""References the fast simulation is validated against: JSON cards of Geant4 quantiles, or real shower files.

A **card** (e.g. the built-in ``calogan-geant4``, :data:`BUILTIN`) is a JSON object::

    {"source": "...where the numbers come from...",
     "configuration": {"geometry": "calogan", "particles": ["e+", ...], "energy_gev": [1, 100],
                       "spectrum": "flat", "beam": "...", "mode": "total"},
     "quantities": {"f0": {"definition": "...", "e+": {"p16": .., "median": .., "p84": .., "mean": ..}, ...}, ...}}

Per particle a quantity holds any of ``p16``, ``median``, ``p84`` (16th, 50th, 84th percentile of the per-shower
distribution) and ``mean``; ``total_energy_over_E`` may also hold ``median_total_gev`` and ``fraction_below_<X>_gev``
(statistics of the total deposited energy in GeV). Quantity names are those of
:data:`pcloud.validation.quantities.QUANTITIES`. :func:`load_card` checks all of it and raises
:class:`ReferenceError` naming the file and the field.

A **file reference** is ``PATH:PARTICLE`` (e.g. ``eplus.hdf5:e+``): a shower file readable by
:func:`pcloud.io.detect.read_images` (CaloGAN HDF5 for the calogan geometry) whose quantities pcloud computes itself
(:func:`parse_file_specs`).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.particles import PARTICLES, particle_pdg
from .quantities import QUANTITIES

#: Built-in cards shipped with pcloud (name -> file in pcloud/validation/data).
BUILTIN = {"calogan-geant4": "calogan_geant4.json"}
#: Statistic keys a card may give per (quantity, particle).
QUANTILE_KEYS = ("p16", "median", "p84")
STAT_KEYS = QUANTILE_KEYS + ("mean",)
#: Extra statistics of the total deposited energy (GeV) allowed under ``total_energy_over_E``.
TOTAL_ENERGY_EXTRA = re.compile(r"^(median_total_gev|fraction_below_(\d+(\.\d+)?)_gev)$")
SPECTRA = {"flat": "uniform", "uniform": "uniform", "log": "log", "log-uniform": "log"}


class ReferenceError(ValueError):
    """A reference card or file specification that cannot be used; the message names the file and the field."""


@dataclass
class Card:
    """A parsed reference card (see the module docstring)."""

    path: str
    source: str
    geometry: str
    particles: list[str]
    energy_gev: tuple[float, float]
    spectrum: str
    mode: str
    beam: str
    quantities: dict[str, dict[str, dict[str, float]]]
    definitions: dict[str, str] = field(default_factory=dict)

    def stats(self, quantity: str, particle: str) -> dict[str, float]:
        return self.quantities.get(quantity, {}).get(particle, {})


@dataclass
class FileReference:
    """A shower file of one particle (``PATH:PARTICLE``)."""

    path: Path
    particle: str


def builtin_path(name: str) -> Path:
    return Path(__file__).parent / "data" / BUILTIN[name]


def _fail(path, where: str, msg: str):
    raise ReferenceError(f"{path}: {where}: {msg}")


def _number(path, where, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        _fail(path, where, f"expected a finite number, found {v!r}")
    return float(v)


def load_card(ref) -> Card:
    """Load and check a card: a built-in name (:data:`BUILTIN`) or a path to a JSON file."""
    name = str(ref)
    path = builtin_path(name) if name in BUILTIN else Path(name)
    if not path.exists():
        raise ReferenceError(f"{path}: no such reference card (built-in cards: {', '.join(sorted(BUILTIN))})")
    try:
        text = path.read_text()
    except OSError as e:
        raise ReferenceError(f"{path}: cannot read the reference card: {e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(d, dict):
        _fail(path, "top level", f"expected a JSON object, found {type(d).__name__}")
    for key in ("configuration", "quantities"):
        if key not in d:
            _fail(path, key, "missing (a card needs 'source', 'configuration' and 'quantities')")
    cfg = d["configuration"]
    if not isinstance(cfg, dict):
        _fail(path, "configuration", f"expected an object, found {type(cfg).__name__}")
    for key in ("geometry", "particles", "energy_gev"):
        if key not in cfg:
            _fail(path, f"configuration.{key}", "missing")
    parts = cfg["particles"]
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        _fail(path, "configuration.particles", f"expected a non-empty list of particle names, found {parts!r}")
    for p in parts:
        if p not in PARTICLES:
            _fail(path, "configuration.particles", f"unknown particle {p!r} (known: {', '.join(sorted(PARTICLES))})")
    e = cfg["energy_gev"]
    if not isinstance(e, list) or len(e) != 2:
        _fail(path, "configuration.energy_gev", f"expected [lo, hi] in GeV, found {e!r}")
    lo, hi = (_number(path, "configuration.energy_gev", v) for v in e)
    if not 0 < lo <= hi:
        _fail(path, "configuration.energy_gev", f"expected 0 < lo <= hi, found {e!r}")
    spectrum = str(cfg.get("spectrum", "flat"))
    if spectrum not in SPECTRA:
        _fail(path, "configuration.spectrum", f"expected one of {sorted(SPECTRA)}, found {spectrum!r}")
    mode = str(cfg.get("mode", "total"))
    if mode not in ("total", "visible"):
        _fail(path, "configuration.mode", f"expected 'total' or 'visible', found {mode!r}")
    qs = d["quantities"]
    if not isinstance(qs, dict) or not qs:
        _fail(path, "quantities", "expected a non-empty object of quantities")
    out, defs = {}, {}
    for qname, entry in qs.items():
        where = f"quantities.{qname}"
        if qname not in QUANTITIES:
            _fail(path, where, f"unknown quantity (pcloud computes: {', '.join(QUANTITIES)})")
        if not isinstance(entry, dict):
            _fail(path, where, f"expected an object, found {type(entry).__name__}")
        defs[qname] = str(entry.get("definition", ""))
        out[qname] = {}
        for pname, stats in entry.items():
            if pname == "definition":
                continue
            if pname not in parts:
                _fail(path, f"{where}.{pname}", f"particle not listed in configuration.particles {parts}")
            if not isinstance(stats, dict) or not stats:
                _fail(path, f"{where}.{pname}", f"expected an object of statistics, found {stats!r}")
            got = {}
            for k, v in stats.items():
                if k not in STAT_KEYS and not (qname == "total_energy_over_E" and TOTAL_ENERGY_EXTRA.match(k)):
                    _fail(path, f"{where}.{pname}.{k}", f"unknown statistic (expected {', '.join(STAT_KEYS)})")
                got[k] = _number(path, f"{where}.{pname}.{k}", v)
            qv = [got[k] for k in QUANTILE_KEYS if k in got]
            if any(k in got for k in QUANTILE_KEYS) and not all(k in got for k in QUANTILE_KEYS):
                _fail(path, f"{where}.{pname}", "give all of p16, median, p84 or none")
            if qv and not qv[0] <= qv[1] <= qv[2]:
                _fail(path, f"{where}.{pname}", f"quantiles not ordered: p16 {qv[0]}, median {qv[1]}, p84 {qv[2]}")
            out[qname][pname] = got
    return Card(path=str(path), source=str(d.get("source", "")), geometry=str(cfg["geometry"]), particles=parts,
                energy_gev=(lo, hi), spectrum=SPECTRA[spectrum], mode=mode, beam=str(cfg.get("beam", "")),
                quantities=out, definitions=defs)


def parse_file_specs(specs) -> list[FileReference]:
    """``PATH:PARTICLE`` strings -> :class:`FileReference` (the file must exist; the particle must be known)."""
    out = []
    for spec in specs:
        spec = str(spec)
        path, sep, particle = spec.rpartition(":")
        if not sep or not path or not particle:
            raise ReferenceError(f"{spec}: a reference file needs its particle label, FILE:PARTICLE "
                                 f"(e.g. eplus.hdf5:e+)")
        if not Path(path).exists():
            raise ReferenceError(f"{path}: no such reference file")
        try:
            particle_pdg(particle)
        except ValueError:
            raise ReferenceError(f"{spec}: unknown particle {particle!r} (known: {', '.join(sorted(PARTICLES))})") \
                from None
        if particle not in PARTICLES:     # an alias (photon, positron): use pcloud's name
            particle = next(k for k, v in PARTICLES.items() if v == particle_pdg(particle))
        out.append(FileReference(Path(path), particle))
    return out
