"""A user's files as inputs of the pipeline: ``FILE[:LABEL]`` specs, globs, formats, classes and one geometry.

A data spec is a path, a glob (``showers/*.h5``) or either followed by ``:LABEL``, the class of every event of the
file(s) (``eplus.hdf5:e+``). Labels are particle names or PDG ids (``e+``, ``positron``, ``gamma``, ``pi+``,
``-11``...; :func:`pcloud.core.particles.particle_pdg`); an unknown label is an error. Files without a label give
each event's class from their own truth: Triforce files carry ``pdgID``, CaloChallenge files the ``pid`` of their
binning, pcloud-written files a ``pdg``. The class list is the order of first appearance (class 0 is the signal of
two-class tasks) unless the recipe names it.

All files of one run must share one geometry (same name and builder arguments, or the same CaloChallenge binning):
mixing geometries is an error that names both files. Files are checked before anything is converted.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.particles import PDG_NAMES, particle_pdg
from ..io.detect import detect_format, iter_images
from ..io.errors import open_hdf5
from ..io.native import NativeStore, geometry_from_meta, geometry_meta

LABEL_SEPARATOR = ":"
_GLOB_CHARS = set("*?[")
#: the dataset whose first axis counts the events of each image format
_EVENT_DATASET = {"calogan": "layer_0", "calochallenge": "showers", "triforce": "ECAL"}


class InputError(ValueError):
    """A data spec or a set of input files that cannot be used together (one line, naming the file)."""


def class_name(pdg: int) -> str:
    """The canonical class name of a PDG id (``e+``, ``gamma``, ``pi+``...; the id itself when pcloud has no name)."""
    return PDG_NAMES.get(int(pdg), str(int(pdg)))


def parse_label(label: str, spec: str) -> tuple[str, int]:
    """``(canonical name, PDG id)`` of a user label; an unknown label is an :class:`InputError`."""
    try:
        pdg = particle_pdg(label)
    except ValueError:
        raise InputError(f"{spec}: unknown label {label!r}; expected a particle name "
                         f"({', '.join(sorted(PDG_NAMES.values()))}) or a PDG id") from None
    return class_name(pdg), pdg


@dataclass
class InputFile:
    """One input file: its path, detected format, the user's label (class name and PDG id, or None) and its
    position in the input list (``source_file`` of its events)."""

    path: Path
    format: str
    index: int
    label: str | None = None
    pdg: int | None = None
    n_events: int = 0
    geometry: object = field(default=None, repr=False)
    truth_keys: tuple = ()

    @property
    def spec(self) -> str:
        return f"{self.path}{LABEL_SEPARATOR}{self.label}" if self.label else str(self.path)


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``(path or glob, label or None)``: a spec that names an existing file is a path even if it has a colon."""
    if Path(spec).exists() or LABEL_SEPARATOR not in spec:
        return spec, None
    path, label = spec.rsplit(LABEL_SEPARATOR, 1)
    if not path:
        raise InputError(f"data spec {spec!r}: expected FILE[:LABEL], found an empty file name")
    if not label:
        raise InputError(f"data spec {spec!r}: expected FILE:LABEL, found an empty label after the colon")
    return path, label


def _expand(path: str, spec: str) -> list[Path]:
    if _GLOB_CHARS & set(path) and not Path(path).exists():
        hits = sorted(glob.glob(path))
        if not hits:
            raise InputError(f"data spec {spec!r}: no file matches {path!r}")
        return [Path(h) for h in hits]
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file (data spec {spec!r})")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; expected a data file (use a glob such as {str(p / '*.h5')!r})")
    return [p]


def _probe(inp: InputFile, xml) -> None:
    """Event count, geometry and truth keys of a file, from its metadata and first event only."""
    if inp.format == "native":
        store = NativeStore(inp.path)
        inp.n_events = store.n_events
        inp.geometry = geometry_from_meta(store.meta, inp.path)
        inp.truth_keys = tuple(next(store.chunks(chunk_size=1)).fields)
        return
    if inp.format == "mltree":
        from ..geometry import get_geometry

        inp.geometry = get_geometry("atlas")
        return
    with open_hdf5(inp.path) as f:
        inp.n_events = int(f[_EVENT_DATASET[inp.format]].shape[0])
    if inp.n_events == 0:
        raise InputError(f"{inp.path}: contains no events")
    first = next(iter(iter_images(inp.path, xml=xml if inp.format == "calochallenge" else None, chunk_size=1)))
    inp.geometry = first.geometry
    inp.truth_keys = tuple(first.truth)


def parse_data_specs(specs: Sequence[str], xml=None, probe: bool = True) -> list[InputFile]:
    """Input files of ``specs`` (see the module docstring), in order, globs expanded (sorted), formats detected and,
    with ``probe``, event counts, geometries and truth keys read; checks that they share one geometry."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise InputError("no input data: give at least one --data FILE[:LABEL]")
    out: list[InputFile] = []
    for spec in specs:
        path, label = _split_spec(str(spec))
        name, pdg = parse_label(label, spec) if label is not None else (None, None)
        for p in _expand(path, spec):
            inp = InputFile(path=p, format=detect_format(p), index=len(out), label=name, pdg=pdg)
            if probe:
                _probe(inp, xml)
            out.append(inp)
    if probe:
        check_same_geometry(out)
    return out


def check_same_geometry(inputs: Sequence[InputFile]) -> None:
    """All inputs on one geometry (name, builder arguments, binning); else an InputError naming two files."""
    ref = None
    for inp in inputs:
        meta = geometry_meta(inp.geometry)
        if ref is None:
            ref = (inp, meta)
        elif meta != ref[1]:
            raise InputError(f"{inp.path}: geometry {_describe(meta)} differs from {_describe(ref[1])} of "
                             f"{ref[0].path}; files of one run must share one geometry")


def _describe(meta: dict) -> str:
    kw = meta.get("kwargs") or {}
    extra = f" {kw}" if kw else ""
    return f"{meta['name']!r}{extra}" + (" (CaloChallenge binning)" if meta.get("binning_xml") else "")


def file_pdgs(inp: InputFile, xml=None, chunk_events: int = 20_000) -> np.ndarray:
    """The distinct per-event PDG ids of an unlabelled file (read from its truth, streaming)."""
    if inp.label is not None:
        return np.array([inp.pdg])
    if "pdg" not in inp.truth_keys:
        raise InputError(f"{inp.path}: no label and no per-event particle id in the file; give the class as "
                         f"{inp.path}:LABEL (e.g. {inp.path}:e+)")
    seen: set[int] = set()
    if inp.format == "native":
        for c in NativeStore(inp.path).chunks(columns=["pdg"]):
            seen |= set(np.unique(np.asarray(c.pdg)).tolist())
    else:
        for s in iter_images(inp.path, xml=xml if inp.format == "calochallenge" else None, chunk_size=chunk_events):
            seen |= set(np.unique(np.asarray(s.truth["pdg"])).tolist())
    return np.array(sorted(seen, key=lambda p: (abs(p), p)), dtype=np.int64)


def resolve_classes(inputs: Sequence[InputFile], classes: Sequence[str] | None = None, xml=None) -> list[str]:
    """The class names of an identification run: ``classes`` (validated) or the order of first appearance over the
    inputs (labels, then each unlabelled file's PDG ids). Every class needs events; every file's classes must be
    in the list."""
    found: list[str] = []
    per_file: dict[int, list[str]] = {}
    for inp in inputs:
        names = [class_name(p) for p in file_pdgs(inp, xml)]
        per_file[inp.index] = names
        found += [n for n in names if n not in found]
    if classes is None:
        out = found
    else:
        out = [parse_label(str(c), "data.classes")[0] for c in classes]
        if len(set(out)) != len(out):
            raise InputError(f"data.classes: {list(classes)} names a class twice")
        for inp in inputs:
            extra = [n for n in per_file[inp.index] if n not in out]
            if extra:
                raise InputError(f"{inp.path}: events of class {extra} not in data.classes {out}")
        empty = [c for c in out if c not in found]
        if empty:
            raise InputError(f"class {empty[0]!r} of data.classes has no events in the input files "
                             f"({', '.join(str(i.path) for i in inputs)})")
    return out


def label_of(pdg: np.ndarray, classes: Sequence[str], path) -> np.ndarray:
    """Class index (int64) of each event's PDG id; an id outside the classes is an InputError naming the file."""
    names = np.array([class_name(p) for p in np.unique(pdg)])
    lut = {int(p): classes.index(n) for p, n in zip(np.unique(pdg), names) if n in classes}
    missing = sorted({int(p) for p in np.unique(pdg)} - set(lut))
    if missing:
        raise InputError(f"{path}: events with PDG id(s) {missing} ({[class_name(m) for m in missing]}) are not "
                         f"among the classes {list(classes)}")
    keys = np.array(sorted(lut))
    return np.array([lut[k] for k in keys], np.int64)[np.searchsorted(keys, pdg)]


def require_format(inputs: Sequence[InputFile], allowed: Sequence[str], task: str) -> None:
    """Every input in one of ``allowed`` formats (e.g. MLTree files only for particle flow)."""
    for inp in inputs:
        if inp.format not in allowed:
            hint = ("MLTree files hold particle-flow events: use --task pflow" if inp.format == "mltree" else
                    "particle flow needs MLTree (track + cell) files" if task == "pflow" else "")
            raise InputError(f"{inp.path}: a {inp.format} file cannot be used for task {task!r} (expected "
                             f"{' or '.join(allowed)}){'; ' + hint if hint else ''}")


def total_events(inputs: Sequence[InputFile]) -> int:
    return int(sum(i.n_events for i in inputs))


def describe_inputs(inputs: Sequence[InputFile]) -> list[dict]:
    """JSON-friendly list of the inputs (path, format, label, events)."""
    return [{"path": str(i.path), "format": i.format, "label": i.label, "n_events": int(i.n_events)}
            for i in inputs]


def load_showers(inputs: Sequence[InputFile], classes: Sequence[str], xml=None, max_per_class: int | None = None,
                 chunk_events: int = 10_000):
    """All events of image inputs as one :class:`~pcloud.core.showers.ShowerImages` (for the in-memory
    benchmarks): truth ``label`` (class index), ``pdg``, unique running ``event_number``, ``source_file`` and
    ``source_event``; at most ``max_per_class`` events of each class (the first ones of the files, in order)."""
    from ..core.showers import ShowerImages

    parts, taken = [], np.zeros(len(classes), np.int64)
    for inp in inputs:
        if inp.format not in _EVENT_DATASET:
            raise InputError(f"{inp.path}: a {inp.format} file holds no shower images; the singles benchmark reads "
                             f"CaloGAN, CaloChallenge or Triforce files")
        for s in iter_images(inp.path, xml=xml if inp.format == "calochallenge" else None, chunk_size=chunk_events):
            pdg = np.full(s.n_events, inp.pdg) if inp.label else np.asarray(s.truth.get("pdg", np.zeros(0)))
            if pdg.size != s.n_events:
                raise InputError(f"{inp.path}: no label and no per-event particle id; give FILE:LABEL")
            label = label_of(pdg, list(classes), inp.path)
            keep = np.ones(s.n_events, bool)
            if max_per_class is not None:
                rank = np.zeros(s.n_events, np.int64)
                for c in np.unique(label):  # a few classes: rank events of each class in file order
                    m = label == c
                    rank[m] = taken[c] + np.arange(int(m.sum()))
                keep = rank < max_per_class
                np.add.at(taken, label[keep], 1)
            if not keep.any():
                continue
            truth = {k: np.asarray(v)[keep] for k, v in s.truth.items()}
            truth.update(label=label[keep], pdg=pdg[keep].astype(np.int32),
                         source_file=np.full(int(keep.sum()), inp.index, np.int32),
                         source_event=np.asarray(s.truth.get("event_number", np.arange(s.n_events)))[keep])
            parts.append(ShowerImages(s.geometry, {k: v[keep] for k, v in s.images.items()}, truth, dict(s.meta)))
    if not parts:
        raise InputError("no events in the input files")
    out = ShowerImages.concatenate(parts) if len(parts) > 1 else parts[0]
    out.truth["event_number"] = np.arange(out.n_events, dtype=np.int64)
    return out
