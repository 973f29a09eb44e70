"""Fast Calorimeter Simulation Challenge 2022 ("CaloChallenge", datasets 1-3): HDF5 showers + binning XML.

HDF5 layout (calochallenge.github.io/homepage; CaloChallenge/homepage ``README.md``, ``Dataset_creation.ipynb``):
``incident_energies`` (N, 1) and ``showers`` (N, n_voxels), both in MeV, float64 (as the dataset-1 creation code
produces them; the challenge's ``code/evaluate.py`` computes in float64), gzip-compressed, cells >= 0. pcloud
writes the same. ``evaluate.py`` (``check_file``) requires ``incident_energies.shape[0] == showers.shape[0]`` and
``showers.shape[1]`` = the voxel count of the dataset's XML (368, 533, 6480, 40500), and concatenates
``log10(incident_energies)`` (2-D) with the voxels, so the (N, 1) shape matters. The voxel layout comes from a
binning XML file of this structure (as in the challenge's ``binning_dataset_1_photons.xml``,
``binning_dataset_1_pions.xml``, ``binning_dataset_2.xml``, ``binning_dataset_3.xml``)::

    <Bins>
      <Bin pid="22" etaMin="0" etaMax="130" name="photon">
        <Layer id="0" r_edges="0,5,10,30,50,100,200,400,600" n_bin_alpha="1"/>
        <Layer id="1" r_edges="0,2,4,...,200" n_bin_alpha="10"/>
        <Layer id="4" r_edges="0" n_bin_alpha="1"/>          <!-- no radial bin: no voxel -->
        ...

Per layer: ``r_edges`` (comma separated, mm, radius from the shower axis) and ``n_bin_alpha`` angular bins that
split [-pi, pi) evenly. The challenge's ``code/XMLHandler.py`` takes the ``<Layer>`` children of the ``<Bin>`` in
document order (the position is the index into its cumulative voxel offsets) and records layers with
``n_bin_alpha > 1`` by their ``id``, so the two agree only when the ids are 0 .. n-1 in order, as in the official
XMLs; ``HighLevelFeatures`` checks the ``name`` against the particle it is given (photon, pion, electron). A layer
whose ``r_edges`` is a single value has no voxel (dataset 1 keeps the ATLAS sampling numbering 0-23 and leaves
unused samplings empty). Voxel order in ``showers``: layer (document order), then alpha
bin, then radial bin fastest: ``index = layer_offset + i_alpha * n_r + i_r``.

Inside pcloud each non-empty layer is one ``"ralpha"`` :class:`Section` named ``layer_<id>`` with images
``(N, 1, n_r, n_alpha)`` (u = r in mm, v = alpha in rad, periodic), points at bin centres (for ``n_bin_alpha = 1``
the bin centre is alpha = 0, a proxy for a full ring, as in the challenge's own helper code). Energies are GeV.

Layer depths: the XML gives none. Nominal depths (documented, used for point positions and X0 bookkeeping only):

``"par04"``  datasets 2 and 3 were made with the Geant4 Par04 example: 90 layers of 1.4 mm W + 0.3 mm Si starting
            at r = 800 mm, read out in 45 z-cells of 3.4 mm (two physical layers each) -> pitch 3.4 mm, Si/W stack.
``"atlas"``  dataset 1 is ATLAS (eta 0.20-0.25) with layer ids = ATLAS CaloSampling numbers: PreSamplerB (0,
            1410-1421 mm LAr), EMB1-3 (1-3) and TileBar0-2 (12-14) at the radii of :mod:`pcloud.geometry.atlas`
            (depth axis = radius). Other samplings (end-cap, gap, extended barrel, FCal) must be empty (they are
            in dataset 1); otherwise use ``"uniform"``.
``"uniform"`` all layers with the pitch ``pitch_mm`` (default 3.4 mm) from z = 0, Par04 Si/W stack.
``"auto"``   ``"atlas"`` for a 24-layer file whose Bin has etaMin/etaMax or whose pid is 22/211 (dataset 1),
            otherwise ``"par04"``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..geometry import Geometry, Section
from ..geometry.atlas import LAYERS as ATLAS_LAYERS
from ..geometry.atlas import SAMPLING
from ..geometry.materials import LAR, SILICON, TUNGSTEN, Stack
from ..core.showers import ShowerImages
from ..core.atomic import atomic_output
from .calogan import _json_attr, _write_common_attrs, resolve_pdg
from .errors import (NEGATIVE_TOLERANCE_GEV, FormatError, check_cells, check_dtype, check_positive, check_shape,
                     event_range, get_dataset, open_hdf5, read_range, read_truth_group, safe_attr,
                     write_truth_group)

MEV_PER_GEV = 1000.0
DATA_DIR = Path(__file__).parent / "data"
#: Geant4 Par04 (CaloChallenge datasets 2, 3): 1.4 mm W + 0.3 mm Si, readout cells of 3.4 mm in depth.
PAR04_STACK = Stack(active=SILICON, active_mm=0.3, absorber=TUNGSTEN, absorber_mm=1.4)
PAR04_PITCH_MM = 3.4
PAR04_INNER_RADIUS_MM = 800.0
PRESAMPLER = Stack(active=LAR, active_mm=11.0)
DEPTH_MODELS = ("auto", "par04", "atlas", "uniform")


def example_binning(name: str = "photon5") -> Path:
    """Path of a small binning XML shipped with pcloud: ``"photon5"`` (5 layers, one empty, 169 voxels) or
    ``"uniform3"`` (3 layers of 4 radial x 8 angular bins, 96 voxels). Written for pcloud, not challenge files."""
    files = {"photon5": "binning_example_photon5.xml", "uniform3": "binning_example_uniform3.xml"}
    if name not in files:
        raise ValueError(f"unknown example binning {name!r}; known: {sorted(files)}")
    return DATA_DIR / files[name]


@dataclass
class LayerBinning:
    layer_id: int
    r_edges_mm: np.ndarray
    n_alpha: int

    @property
    def n_r(self) -> int:
        return self.r_edges_mm.size - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha if self.n_r > 0 else 0


@dataclass
class CaloChallengeBinning:
    """A parsed binning XML: layers, voxel count, the pcloud geometry and the voxel permutation.

    ``file_to_flat[j]`` is the column of the file's ``showers`` array that holds pcloud flat cell ``j``, so
    ``flat = showers[:, file_to_flat]`` and ``showers[:, file_to_flat] = flat``.
    """

    source: str
    pid: int | None
    particle: str
    bin_attrs: dict
    layers: list[LayerBinning]
    geometry: Geometry
    file_to_flat: np.ndarray
    depth_model: str = "par04"
    notes: list[str] = field(default_factory=list)

    @property
    def n_voxels(self) -> int:
        return int(sum(lay.n_voxels for lay in self.layers))

    def voxel_table(self) -> dict[str, np.ndarray]:
        """Per voxel in *file* order: ``layer_id``, ``r_bin``, ``alpha_bin``, ``r_mm``, ``alpha_rad`` (bin
        centres), ``x_mm``, ``y_mm``, ``z_mm`` (local frame, z = nominal layer-centre depth)."""
        inv = np.empty_like(self.file_to_flat)
        inv[self.file_to_flat] = np.arange(self.file_to_flat.size)
        c = self.geometry.cells
        sec_layer = np.array([int(s.name.split("_")[1]) for s in self.geometry.sections], dtype=np.int64)
        return {"layer_id": sec_layer[c["section"][inv]], "r_bin": c["iu"][inv], "alpha_bin": c["iv"][inv],
                "r_mm": c["u"][inv], "alpha_rad": c["v"][inv], "x_mm": c["x"][inv], "y_mm": c["y"][inv],
                "z_mm": c["z"][inv]}

    def to_xml(self) -> str:
        """The binning as XML text in the challenge's structure (round-trips through :func:`parse_binning`)."""
        return binning_xml_text(self.pid, self.particle, self.layers, self.bin_attrs)


# --------------------------------------------------------------------------------------------- XML parsing
def _parse_edges(text: str, src, field_name: str) -> np.ndarray:
    parts = [p.strip() for p in str(text).split(",") if p.strip() != ""]
    try:
        edges = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise FormatError(src, field_name, "comma separated numbers (mm)", repr(text)) from None
    if edges.size == 0:
        raise FormatError(src, field_name, "at least one edge", repr(text))
    if not np.all(np.isfinite(edges)) or edges[0] < 0 or np.any(np.diff(edges) <= 0):
        raise FormatError(src, field_name, "finite, non-negative, strictly increasing radii", repr(text))
    return edges


def _read_xml(xml) -> tuple[ET.Element, str]:
    """Root element and a source label from a path, XML text or an Element."""
    if isinstance(xml, ET.Element):
        return xml, "<xml element>"
    if isinstance(xml, (str, bytes)) and str(xml if isinstance(xml, str) else xml[:64].decode(
            "utf-8", "replace")).lstrip().startswith("<"):
        try:
            return ET.fromstring(xml), "<xml text>"
        except ET.ParseError as err:
            raise FormatError("<xml text>", "XML", "well-formed XML", f"a parse error ({err})") from None
    p = Path(xml)
    if not p.exists():
        raise FileNotFoundError(f"{p}: binning XML not found (--xml)")
    if p.is_dir():
        raise FormatError(p, "binning XML (--xml)", "an XML file", "a directory")
    try:
        return ET.parse(p).getroot(), str(p)
    except ET.ParseError as err:
        raise FormatError(p, "XML", "well-formed XML", f"a parse error ({err})") from None


#: the largest binning pcloud builds (voxels): 25x the official dataset 3 (40 500 voxels); a larger count in an XML
#: is refused before anything is allocated (a crafted n_bin_alpha would otherwise exhaust the memory)
MAX_VOXELS = 1_000_000


def parse_binning(xml, particle=None, depth_model: str = "auto", pitch_mm: float | None = None,
                  expected_voxels: int | None = None, data_path=None) -> CaloChallengeBinning:
    """Parse a CaloChallenge binning XML (path, XML text or Element) into a :class:`CaloChallengeBinning`.

    ``particle``: pid or name selecting one ``<Bin>`` when the file has several. ``depth_model`` and
    ``pitch_mm``: nominal layer depths, see the module docstring. The voxel count implied by the XML is checked
    before the geometry is built: at most :data:`MAX_VOXELS`, and equal to ``expected_voxels`` (the width of a
    file's ``showers``, named ``data_path`` in the error) when given.
    """
    if depth_model not in DEPTH_MODELS:
        raise ValueError(f"depth_model must be one of {DEPTH_MODELS}, got {depth_model!r}")
    root, src = _read_xml(xml)
    bins = [root] if root.tag == "Bin" else root.findall("Bin")
    if not bins:
        raise FormatError(src, "<Bins>", "at least one <Bin> element", f"root <{root.tag}> with children "
                          f"{sorted({c.tag for c in root})}")
    if particle is not None and len(bins) > 1:
        want = str(particle).lower()
        sel = [b for b in bins if b.get("pid") == str(particle) or (b.get("name") or "").lower() == want]
        if len(sel) != 1:
            raise FormatError(src, "<Bin>", f"exactly one <Bin> for particle {particle!r}",
                              f"{len(sel)} among pids {[b.get('pid') for b in bins]}")
        bins = sel
    if len(bins) > 1:
        raise FormatError(src, "<Bin>", "one <Bin> element (or pass particle=)",
                          f"{len(bins)} with pids {[b.get('pid') for b in bins]}")
    b = bins[0]
    pid = None
    if b.get("pid") is not None:
        pid = resolve_pdg(b.get("pid"), src, "<Bin pid>")
    name = b.get("name") or ""
    layers: list[LayerBinning] = []
    for i, el in enumerate(b.findall("Layer")):
        where = f"<Layer> #{i}"
        for attr in ("id", "r_edges", "n_bin_alpha"):
            if el.get(attr) is None:
                raise FormatError(src, f"{where} attribute {attr!r}", "attributes id, r_edges, n_bin_alpha",
                                  f"attributes {sorted(el.attrib)}")
        try:
            lid, n_alpha = int(el.get("id")), int(el.get("n_bin_alpha"))
        except ValueError:
            raise FormatError(src, f"{where} id/n_bin_alpha", "integers",
                              f"id={el.get('id')!r}, n_bin_alpha={el.get('n_bin_alpha')!r}") from None
        edges = _parse_edges(el.get("r_edges"), src, f"<Layer id={lid}> r_edges")
        if edges.size > 1 and n_alpha < 1:
            raise FormatError(src, f"<Layer id={lid}> n_bin_alpha", ">= 1 angular bin", str(n_alpha))
        layers.append(LayerBinning(lid, edges, n_alpha))
    if not layers:
        raise FormatError(src, f"<Bin pid={b.get('pid')}>", "at least one <Layer>", "none")
    ids = [lay.layer_id for lay in layers]
    if any(np.diff(ids) <= 0):
        raise FormatError(src, "<Layer> ids", "strictly increasing layer ids (voxel order follows depth)", str(ids))
    if not any(lay.n_voxels for lay in layers):
        raise FormatError(src, "<Layer> r_edges", "at least one layer with radial bins", "only empty layers")
    n_vox = sum(int(lay.n_voxels) for lay in layers)
    if n_vox > MAX_VOXELS:
        raise FormatError(src, "<Layer> r_edges / n_bin_alpha", f"a binning of at most {MAX_VOXELS:,} voxels",
                          f"{n_vox:,} voxels (nothing was allocated)")
    if expected_voxels is not None and n_vox != int(expected_voxels):
        raise FormatError(data_path, "dataset 'showers'", f"{n_vox} voxels per event (binning XML {src})",
                          f"{int(expected_voxels)} (checked before building the binning; wrong XML for this file?)")
    bin_attrs = {k: v for k, v in b.attrib.items() if k not in ("pid", "name")}
    return build_binning(layers, pid=pid, particle=name, bin_attrs=bin_attrs, source=src,
                         depth_model=depth_model, pitch_mm=pitch_mm)


def _layer_depths(layers, pid, bin_attrs, depth_model, pitch_mm):
    """(front_mm, back_mm, stack) per layer and the model used."""
    notes = []
    table = {0: (1410.0, 1421.0, PRESAMPLER)}
    by_name = {name: (r0, r1, st) for name, r0, r1, _, _, _, st in ATLAS_LAYERS}
    table.update({sid: by_name[name] for name, sid in SAMPLING.items()})
    outside = [lay.layer_id for lay in layers if lay.n_voxels and lay.layer_id not in table]
    if depth_model == "auto":
        ds1 = len(layers) == 24 and bool({"etaMin", "etaMax"} & set(bin_attrs) or (
            pid is not None and abs(pid) in (22, 211)))
        depth_model = "atlas" if ds1 and not outside else "par04"
    if depth_model == "atlas":
        if outside:
            raise ValueError(f"depth_model 'atlas': layers {outside} have voxels but are not ATLAS barrel "
                             f"samplings {sorted(table)}; use depth_model='uniform'")
        # empty layers get no section; their nominal depth is irrelevant (kept at the layer before)
        out, prev = [], (1410.0, 1410.0, PRESAMPLER)
        for lay in layers:
            prev = table.get(lay.layer_id, (prev[1], prev[1] + 1.0, prev[2]))
            out.append(prev)
        return out, "atlas", notes
    pitch = PAR04_PITCH_MM if pitch_mm is None else float(pitch_mm)
    if pitch <= 0:
        raise ValueError(f"pitch_mm must be > 0, got {pitch}")
    z0 = PAR04_INNER_RADIUS_MM if depth_model == "par04" else 0.0
    out = []
    for i, _ in enumerate(layers):
        out.append((z0 + i * pitch, z0 + (i + 1) * pitch, PAR04_STACK))
    return out, depth_model, notes


def build_binning(layers: list[LayerBinning], pid=None, particle: str = "", bin_attrs: dict | None = None,
                  source: str = "<memory>", depth_model: str = "auto", pitch_mm: float | None = None
                  ) -> CaloChallengeBinning:
    """Geometry and voxel permutation from a list of layers (used by :func:`parse_binning`)."""
    bin_attrs = dict(bin_attrs or {})
    depths, model, notes = _layer_depths(layers, pid, bin_attrs, depth_model, pitch_mm)
    sections, perm, off = [], [], 0
    for lay, (front, back, stack) in zip(layers, depths):
        if lay.n_voxels == 0:
            continue
        sections.append(Section(
            name=f"layer_{lay.layer_id}", kind="ralpha", layer_edges_mm=[front, back], u_edges=lay.r_edges_mm,
            v_edges=np.linspace(-np.pi, np.pi, lay.n_alpha + 1), stack=stack, v_periodic=True,
            layer_names=[f"layer_{lay.layer_id}"]))
        # pcloud order inside the section: (r, alpha) with alpha fastest; file order: alpha, then r fastest
        ir, ia = np.meshgrid(np.arange(lay.n_r), np.arange(lay.n_alpha), indexing="ij")
        perm.append(off + (ia * lay.n_r + ir).ravel())
        off += lay.n_voxels
    info = {"file_format": "calochallenge-hdf5", "energy_units_in_file": "MeV", "depth_model": model,
            "pitch_mm": pitch_mm,
            "calochallenge": {"pid": pid, "particle": particle, "bin_attrs": bin_attrs,
                              "layers": [{"id": lay.layer_id, "r_edges": lay.r_edges_mm.tolist(),
                                          "n_bin_alpha": lay.n_alpha} for lay in layers]}}
    label = particle or (str(pid) if pid is not None else "showers")
    geom = Geometry(name=f"calochallenge_{label}", sections=sections,
                    description=f"CaloChallenge binning ({source}): {len(sections)} layers with voxels, "
                                f"{off} voxels, nominal depths '{model}'", info=info)
    return CaloChallengeBinning(source=source, pid=pid, particle=particle, bin_attrs=bin_attrs, layers=layers,
                                geometry=geom, file_to_flat=np.concatenate(perm).astype(np.int64),
                                depth_model=model, notes=notes)


def binning_from_geometry(geometry: Geometry) -> CaloChallengeBinning:
    """Rebuild the binning of a geometry made by :func:`parse_binning` (from ``geometry.info``)."""
    cc = geometry.info.get("calochallenge")
    if cc is None:
        raise ValueError(f"geometry {geometry.name!r} was not built from a CaloChallenge binning "
                         f"(no info['calochallenge']); pass the binning XML")
    layers = [LayerBinning(int(d["id"]), np.asarray(d["r_edges"], dtype=np.float64), int(d["n_bin_alpha"]))
              for d in cc["layers"]]
    b = build_binning(layers, cc["pid"], cc["particle"], cc["bin_attrs"], "<geometry info>",
                      geometry.info.get("depth_model", "auto"), geometry.info.get("pitch_mm"))
    b.geometry = geometry
    return b


def binning_xml_text(pid, particle: str, layers: list[LayerBinning], bin_attrs: dict | None = None) -> str:
    """XML text in the challenge's structure (``<Bins><Bin pid name ...><Layer id r_edges n_bin_alpha/>``)."""
    root = ET.Element("Bins")
    attrs = {}
    if pid is not None:
        attrs["pid"] = str(pid)
    attrs.update({k: str(v) for k, v in (bin_attrs or {}).items()})
    if particle:
        attrs["name"] = particle
    b = ET.SubElement(root, "Bin", attrs)
    for lay in layers:
        ET.SubElement(b, "Layer", {"id": str(lay.layer_id),
                                   "r_edges": ",".join(f"{x:.10g}" for x in lay.r_edges_mm),
                                   "n_bin_alpha": str(lay.n_alpha)})
    ET.indent(root, space="   ")
    return ET.tostring(root, encoding="unicode") + "\n"


def write_binning_xml(path, binning: CaloChallengeBinning) -> None:
    """Write a binning as an XML file (atomically)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(binning.to_xml(), encoding="utf-8")


# --------------------------------------------------------------------------------------------- HDF5
def _resolve_binning(f, path, xml, particle, depth_model, pitch_mm) -> CaloChallengeBinning:
    if isinstance(xml, CaloChallengeBinning):
        return xml
    width = f["showers"].shape[1] if "showers" in f and len(f["showers"].shape) == 2 else None
    if xml is not None:
        return parse_binning(xml, particle=particle, depth_model=depth_model, pitch_mm=pitch_mm,
                             expected_voxels=width, data_path=path)
    if "binning_xml" in f.attrs:  # written by pcloud
        return parse_binning(safe_attr(f.attrs["binning_xml"]), particle=particle, depth_model=depth_model,
                             pitch_mm=pitch_mm, expected_voxels=width, data_path=path)
    raise FormatError(path, "binning", "a binning XML (pass xml=..., e.g. binning_dataset_2.xml)",
                      "no xml argument and no 'binning_xml' attribute in the file")


def _n_events(f, path, binning: CaloChallengeBinning) -> int:
    sh = get_dataset(f, "showers", path)
    check_dtype(sh, "f", path)
    if sh.ndim != 2:
        raise FormatError(path, "dataset 'showers'", "shape (N, n_voxels)", f"{sh.shape}")
    if sh.shape[1] != binning.n_voxels:
        raise FormatError(path, "dataset 'showers'",
                          f"{binning.n_voxels} voxels per event (binning XML {binning.source})",
                          f"{sh.shape[1]} (shape {sh.shape})", hint="wrong binning XML for this file?")
    ie = get_dataset(f, "incident_energies", path)
    check_dtype(ie, "fiu", path, "a numeric dtype")
    n = check_shape(ie, (None, 1), path, alternatives=((None,),))
    if n != sh.shape[0]:
        raise FormatError(path, "dataset 'incident_energies'", f"{sh.shape[0]} events (as 'showers')", f"{n}")
    return n


def read_calochallenge(path, xml=None, start: int | None = None, stop: int | None = None, particle=None,
                       pdg=None, depth_model: str = "auto", pitch_mm: float | None = None,
                       negative_tolerance_gev: float = NEGATIVE_TOLERANCE_GEV, clip_negative: bool = False,
                       allow_empty: bool = False) -> ShowerImages:
    """Read events ``[start, stop)`` of a CaloChallenge HDF5 file into :class:`ShowerImages` (GeV).

    ``xml``: binning XML path/text or a parsed :class:`CaloChallengeBinning` (required unless the file was written
    by pcloud, which stores it in the attribute ``binning_xml``). ``pdg``: particle of all events; default the
    XML's ``<Bin pid>``. Raises :class:`FormatError` when the XML's voxel count differs from ``showers.shape[1]``,
    and for the bad inputs listed in :mod:`pcloud.io.errors`.
    """
    with open_hdf5(path) as f:
        binning = _resolve_binning(f, path, xml, particle, depth_model, pitch_mm)
        n = _n_events(f, path, binning)
        start, stop = event_range(n, start, stop, path, allow_empty)
        raw = read_range(f["showers"], start, stop, path)
        flat = (raw[:, binning.file_to_flat].astype(np.float64) / MEV_PER_GEV).astype(np.float32)
        flat, n_neg = check_cells(flat, path, "dataset 'showers'", negative_tolerance_gev, start, "GeV",
                                  clip_negative)
        e = read_range(f["incident_energies"], start, stop, path).astype(np.float64).reshape(-1) / MEV_PER_GEV
        check_positive(e, path, "dataset 'incident_energies'", start)
        truth = {"energy_gev": e}
        truth.update({k: v for k, v in read_truth_group(f, n, start, stop, path).items() if k not in truth})
        p = pdg if pdg is not None else (None if "pdg" in truth else binning.pid)
        if p is not None:
            truth["pdg"] = np.full(stop - start, resolve_pdg(p, path, "pdg"), dtype=np.int32)
        if "event_number" not in truth:
            truth["event_number"] = np.arange(start, stop, dtype=np.int64)
        file_meta = _json_attr(f, "pcloud_meta")
    g = binning.geometry
    meta = {"source_format": "calochallenge", "source_path": str(path), "binning_source": binning.source,
            "n_events_in_file": n, "event_range": [start, stop], "n_negative_cells": n_neg,
            "negative_cells_clipped": bool(clip_negative), "energy_units_in_file": "MeV",
            "depth_model": binning.depth_model, "binning_xml": binning.to_xml()}
    if binning.notes:
        meta["notes"] = list(binning.notes)
    if file_meta is not None:
        meta["file_meta"] = file_meta
    return ShowerImages(g, g.unflatten_images(flat), truth, meta)


def iter_calochallenge(path, xml=None, chunk_size: int = 1_000, start: int | None = None,
                       stop: int | None = None, **kwargs) -> Iterator[ShowerImages]:
    """Yield chunks of at most ``chunk_size`` events; the XML is parsed once and every chunk shares the geometry."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with open_hdf5(path) as f:
        binning = _resolve_binning(f, path, xml, kwargs.get("particle"), kwargs.get("depth_model", "auto"),
                                   kwargs.get("pitch_mm"))
        n = _n_events(f, path, binning)
    start, stop = event_range(n, start, stop, path, kwargs.get("allow_empty", False))
    for a in range(start, stop, chunk_size):
        yield read_calochallenge(path, binning, a, min(a + chunk_size, stop), **kwargs)


def write_calochallenge(path, showers: ShowerImages, xml=None, compression: str | None = "gzip",
                        compression_opts: int | None = None, xml_path=None) -> None:
    """Write ShowerImages on a CaloChallenge geometry as ``incident_energies`` (N, 1) and ``showers`` (N, n_voxels),
    float64 MeV (as the official files), in the challenge's voxel order (atomically).

    The binning comes from ``xml`` or from the geometry made by :func:`parse_binning`; its XML text is stored in
    the root attribute ``binning_xml`` (and written to ``xml_path`` if given). Negative cells (electronic noise) are
    set to 0, as the challenge's dataset creation clipped its showers; their number is stored in the attribute
    ``pcloud_negative_cells_clipped``. Incident energies must be finite and > 0. Other truth keys go to the group
    ``pcloud_truth``; attributes ``pcloud_format`` etc. as for CaloGAN files.
    """
    import h5py

    g = showers.geometry
    binning = binning_from_geometry(g) if xml is None else (
        xml if isinstance(xml, CaloChallengeBinning) else parse_binning(xml))
    if [(s.name, s.shape) for s in binning.geometry.sections] != [(s.name, s.shape) for s in g.sections]:
        raise ValueError(f"write_calochallenge({path}): showers geometry {g.name!r} "
                         f"{[(s.name, s.shape) for s in g.sections]} does not match the binning "
                         f"{[(s.name, s.shape) for s in binning.geometry.sections]}")
    n = showers.n_events
    if n == 0:
        raise ValueError(f"write_calochallenge({path}): no events to write")
    if "energy_gev" not in showers.truth:
        raise ValueError(f"write_calochallenge({path}): truth 'energy_gev' is required (incident_energies); "
                         f"found {sorted(showers.truth)}")
    flat = np.asarray(showers.flat(), dtype=np.float64) * MEV_PER_GEV
    out = np.empty((n, binning.n_voxels), dtype=np.float64)
    out[:, binning.file_to_flat] = flat
    n_neg = int(np.count_nonzero(out < 0))
    np.maximum(out, 0.0, out=out)
    e = np.asarray(showers.truth["energy_gev"], dtype=np.float64).reshape(n, 1) * MEV_PER_GEV
    if not np.all(np.isfinite(e) & (e > 0)):
        raise ValueError(f"write_calochallenge({path}): truth 'energy_gev' must be finite and > 0")
    kw = {"compression": compression, "compression_opts": compression_opts} if compression else {}
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("incident_energies", data=e, **kw)
            f.create_dataset("showers", data=out, **kw)
            write_truth_group(f, showers.truth, skip=("energy_gev",), compression=compression)
            f.attrs["binning_xml"] = binning.to_xml()
            f.attrs["pcloud_negative_cells_clipped"] = n_neg
            _write_common_attrs(f, "calochallenge", showers)
    if xml_path is not None:
        write_binning_xml(xml_path, binning)


__all__ = ["CaloChallengeBinning", "LayerBinning", "parse_binning", "build_binning", "binning_from_geometry",
           "binning_xml_text", "write_binning_xml", "read_calochallenge", "iter_calochallenge",
           "write_calochallenge", "example_binning"]
