"""The MLTree file layout: tree and branch names, C++ types, units, layer lists, sampling numbers, sentinels.

Facts from the Athena algorithms that write MLTree files (github.com/atlas-calo-ml/MLTree, master 5fb825d,
``src/MLTreeMaker.{h,cxx}``, ``src/CellGeometryTreeMaker.{h,cxx}``) and from the public consumer JetPointNet
(github.com/markojovo/JetPointNet ``python_scripts/data_processing/jets/``, and its fork Joshuah143/JetPointNet).

* Two top-level TTrees: ``EventTree`` (one entry per event) and ``CellGeo`` (exactly one entry: every vector holds
  one value per calorimeter cell). The geometry may also sit in a separate file (JetPointNet's ``GEO_FILE_LOC``).
* Units: energies and momenta in GeV (MLTreeMaker scales Athena's MeV by 1e-3), except ``cluster_cell_hitsTruthE``
  (``CaloCalibrationHit::energyTotal()`` stored unscaled: **MeV**), ``trackSubtractedCaloEnergy`` (eflowRec weights,
  unscaled: MeV) and ``cell_geo_sigma`` (CaloNoise, MeV). Angles in rad, lengths in mm, ``cell_geo_volume`` mm^3.
* Per-object branches are STL vectors (``TTree::Branch(name, &std::vector<...>)``); scalars are leaf lists.
* Cells in clusters: ``cluster_cell_*`` are ``vector<vector<...>>`` (outer index = cluster, inner = cell), per-cell
  truth ``vector<vector<vector<...>>>``. A cell is stored only if ``E * weight >= CellEthres`` = 5 MeV (MLTreeMaker.cxx
  l. 1218-1220; the property is compared with energies already in GeV).
* Track extrapolations ``trackEta_<L>`` / ``trackPhi_<L>`` for the 21 layers of :data:`TRACK_LAYERS` (MLTreeMaker.cxx
  l. 185-232, 899-932): the entry point of ``Trk::CaloExtension`` into the sampling, or the sentinel
  ``-999999999`` (stored in float32 as -1e9) when the track has no intersection. Readers compare with a threshold
  (JetPointNet: ``< -100000``).
"""
from __future__ import annotations

from dataclasses import dataclass

#: The sentinel MLTreeMaker writes for "no intersection with this layer" (``float defaultValue = -999999999``).
NO_POINT = -999999999.0
#: Anything below this is "not reached" (JetPointNet's ``UPROOT_MASK_VALUE_THRESHOLD``).
NO_POINT_THRESHOLD = -1e5
#: ``trackSubtractedCaloEnergy`` of a track that is not a charged particle-flow object (MLTreeMaker.cxx l. 747-758).
NO_SUBTRACTION_MEV = -999.0
#: MLTreeMaker's ``CellEthres`` (0.005, compared with cell energies in GeV): cells below 5 MeV are not stored.
CELL_THRESHOLD_GEV = 0.005

#: The layers of pcloud's ATLAS-like barrel (:mod:`pcloud.geometry.atlas`), i.e. the track layers that
#: :class:`pcloud.core.events.TrackCellEvents` read from MLTree files carry.
LAYERS = ("EMB1", "EMB2", "EMB3", "TileBar0", "TileBar1", "TileBar2")

#: The 21 layers of ``trackEta_<L>`` / ``trackPhi_<L>``, in MLTreeMaker's booking order (FCAL is not written).
TRACK_LAYERS = ("PreSamplerB", "PreSamplerE", "EMB1", "EMB2", "EMB3", "EME1", "EME2", "EME3", "HEC0", "HEC1",
                "HEC2", "HEC3", "TileBar0", "TileBar1", "TileBar2", "TileGap1", "TileGap2", "TileGap3", "TileExt0",
                "TileExt1", "TileExt2")

#: The 19 layers JetPointNet reads (no presamplers), in its order (``jets_root_to_awk.py``).
JETPOINTNET_LAYERS = ("EMB1", "EMB2", "EMB3", "EME1", "EME2", "EME3", "HEC0", "HEC1", "HEC2", "HEC3", "TileBar0",
                      "TileBar1", "TileBar2", "TileGap1", "TileGap2", "TileGap3", "TileExt0", "TileExt1", "TileExt2")

#: ATLAS ``CaloSampling`` numbers (athena ``CaloGeoHelpers/CaloSampling.def``; the order is repeated in a comment of
#: MLTreeMaker.cxx l. 889-897): the values of ``cell_geo_sampling``.
CALO_SAMPLING = {"PreSamplerB": 0, "EMB1": 1, "EMB2": 2, "EMB3": 3, "PreSamplerE": 4, "EME1": 5, "EME2": 6,
                 "EME3": 7, "HEC0": 8, "HEC1": 9, "HEC2": 10, "HEC3": 11, "TileBar0": 12, "TileBar1": 13,
                 "TileBar2": 14, "TileGap1": 15, "TileGap2": 16, "TileGap3": 17, "TileExt0": 18, "TileExt1": 19,
                 "TileExt2": 20, "FCAL0": 21, "FCAL1": 22, "FCAL2": 23, "MINIFCAL0": 24, "MINIFCAL1": 25,
                 "MINIFCAL2": 26, "MINIFCAL3": 27, "Unknown": 28}
SAMPLING_NAME = {v: k for k, v in CALO_SAMPLING.items()}

#: Cylinder radius (mm) on which JetPointNet places the track point of a barrel-like layer
#: (``track_metadata.py``, identical in both public versions).
#:
#: pcloud's ``atlas`` geometry (:mod:`pcloud.geometry.atlas`) puts its cell centres and track points at the mid radius
#: of each layer: EMB1 1541.0, EMB2 1735.5, EMB3 1908.0, TileBar0 2426.0, TileBar1 2970.5, TileBar2 3544.0 mm, i.e.
#: +8.8, +11.6, -15.0, -24.0, -24.5, -86.0 mm from these values (<= 1% except TileBar2, -2.4%). They are not aligned:
#: changing the layer boundaries would change the simulation, its E/p table and every particle-flow result, while
#: MLTree files store cells and tracks by (eta, phi), which do not depend on the radius of a projective cell (only
#: ``cell_geo_rPerp`` and the track bending between layers do). A consumer that needs 3-D positions recomputes them
#: from (eta, phi) on its own radii, as JetPointNet does.
JETPOINTNET_RADIUS_MM = {"EMB1": 1532.18, "EMB2": 1723.89, "EMB3": 1923.02, "TileBar0": 2450.0, "TileBar1": 2995.0,
                         "TileBar2": 3630.0, "TileGap1": 3215.0, "TileGap2": 3630.0, "TileGap3": 2246.5,
                         "TileExt0": 2450.0, "TileExt1": 2870.0, "TileExt2": 3480.0}
#: Plane |z| (mm) of the end-cap layers in JetPointNet's ``track_metadata.py``.
JETPOINTNET_Z_MM = {"EME1": 3790.03, "EME2": 3983.68, "EME3": 4195.84, "HEC0": 4461.25, "HEC1": 4869.5,
                    "HEC2": 5424.5, "HEC3": 5905.0}


@dataclass(frozen=True)
class Branch:
    """One branch: ``name``, C++ type as ROOT names it, ``depth`` (0 scalar, 1 vector per event, 2 per cluster and
    cell, 3 per cluster, cell and truth particle), unit and meaning."""

    name: str
    ctype: str
    depth: int
    unit: str
    doc: str


def _b(name, ctype, depth, unit, doc):
    return Branch(name, ctype, depth, unit, doc)


#: Event scalars MLTreeMaker always writes (MLTreeMaker.cxx l. 73-80).
EVENT_BRANCHES = (
    _b("runNumber", "int", 0, "", "run number (pcloud simulation: 0)"),
    _b("eventNumber", "Long64_t", 0, "", "event number"),
    _b("lumiBlock", "int", 0, "", "luminosity block (pcloud: 0)"),
    _b("coreFlags", "unsigned int", 0, "", "eventFlags(Core) (pcloud: 0)"),
    _b("mcEventNumber", "int", 0, "", "MC event number (pcloud: the event number)"),
    _b("mcChannelNumber", "int", 0, "", "MC dataset id (pcloud: 0)"),
    _b("mcEventWeight", "float", 0, "", "MC event weight (pcloud: 1)"),
)

#: Truth particles (TruthParticles / ClusterCalibHits / TrackTruthMatching flags, l. 124-145).
TRUTH_BRANCHES = (
    _b("nTruthPart", "int", 0, "", "number of truth particles"),
    _b("truthPartPdgId", "int", 1, "", "PDG id"),
    _b("truthPartStatus", "int", 1, "", "generator status (pcloud: 1, final state)"),
    _b("truthPartBarcode", "int", 1, "", "barcode (pcloud: index + 1)"),
    _b("truthPartPt", "float", 1, "GeV", "transverse momentum"),
    _b("truthPartE", "float", 1, "GeV", "energy"),
    _b("truthPartMass", "float", 1, "GeV", "mass"),
    _b("truthPartEta", "float", 1, "", "pseudorapidity"),
    _b("truthPartPhi", "float", 1, "rad", "azimuth"),
)

#: Tracks (Tracking + DetailedTracking flags, l. 148-233); the layer branches follow in :func:`track_layer_branches`.
TRACK_BRANCHES = (
    _b("nTrack", "int", 0, "", "number of tracks"),
    _b("trackPt", "float", 1, "GeV", "measured transverse momentum"),
    _b("trackP", "float", 1, "GeV", "measured momentum |1/qOverP|"),
    _b("trackMass", "float", 1, "GeV", "track mass (pion hypothesis)"),
    _b("trackEta", "float", 1, "", "perigee pseudorapidity"),
    _b("trackPhi", "float", 1, "rad", "perigee azimuth"),
    _b("trackTruthParticleIndex", "int", 1, "", "index into truthPart*, -1 none"),
    _b("trackVisibleCalHitCaloEnergy", "float", 1, "GeV", "visible calibration-hit energy of the track's particle "
       "in clustered cells (pcloud: its true deposits there)"),
    _b("trackFullCalHitCaloEnergy", "float", 1, "GeV", "full calibration-hit energy of the track's particle in "
       "clustered cells (pcloud has no invisible/escaped part: equal to the visible one)"),
    _b("trackSubtractedCaloEnergy", "float", 1, "MeV", "energy subtracted by particle flow, -999 if the track is not "
       "a charged particle-flow object"),
    _b("trackChiSquared", "float", 1, "", "track-fit chi2"),
    _b("trackNumberDOF", "int", 1, "", "track-fit degrees of freedom"),
    _b("trackD0", "float", 1, "mm", "transverse impact parameter (pcloud: 0)"),
    _b("trackZ0", "float", 1, "mm", "longitudinal impact parameter (pcloud: 0)"),
    _b("trackCharge", "int", 1, "e", "pcloud extension: measured charge"),
)


def track_layer_branches() -> tuple:
    """``trackEta_<L>`` and ``trackPhi_<L>`` for the 21 :data:`TRACK_LAYERS` (sentinel :data:`NO_POINT`)."""
    out = []
    for lay in TRACK_LAYERS:
        out.append(_b(f"trackEta_{lay}", "float", 1, "", f"track eta at the entry of {lay}, -999999999 none"))
        out.append(_b(f"trackPhi_{lay}", "float", 1, "rad", f"track phi at the entry of {lay}, -999999999 none"))
    return tuple(out)


#: Clusters (Clusters + ClusterCells + ClusterCalibHits(PerCell) + TruthParticlesPerCell, l. 281-332).
CLUSTER_BRANCHES = (
    _b("nCluster", "int", 0, "", "number of clusters"),
    _b("cluster_E", "float", 1, "GeV", "EM-scale energy, clusters by decreasing energy"),
    _b("cluster_E_LCCalib", "float", 1, "GeV", "LC-calibrated energy (pcloud: equal to the EM-scale energy)"),
    _b("cluster_Pt", "float", 1, "GeV", "E / cosh(eta)"),
    _b("cluster_Eta", "float", 1, "", "energy-weighted centroid"),
    _b("cluster_Phi", "float", 1, "rad", "energy-weighted centroid"),
    _b("cluster_nCells", "int", 1, "", "cells of the cluster before the 5 MeV cell threshold"),
    _b("cluster_cell_ID", "vector<vector<unsigned long> >", 2, "", "cell identifier (pcloud: flat cell index)"),
    _b("cluster_cell_E", "vector<vector<float> >", 2, "GeV", "cell energy (x cluster weight)"),
    _b("cluster_cell_hitsE_EM", "vector<vector<float> >", 2, "GeV", "EM calibration-hit energy of the cell"),
    _b("cluster_cell_hitsE_nonEM", "vector<vector<float> >", 2, "GeV", "non-EM calibration-hit energy"),
    _b("cluster_cell_hitsE_Invisible", "vector<vector<float> >", 2, "GeV", "invisible calibration-hit energy "
       "(pcloud: 0)"),
    _b("cluster_cell_hitsE_Escaped", "vector<vector<float> >", 2, "GeV", "escaped calibration-hit energy (pcloud: 0)"),
    _b("cluster_cell_hitsTruthIndex", "vector<vector<vector<int> > >", 3, "", "truth particles of each cell, by "
       "increasing energy"),
    _b("cluster_cell_hitsTruthE", "vector<vector<vector<float> > >", 3, "MeV", "their calibration-hit energies"),
    _b("cluster_cell_hitsTruthE_EM", "vector<vector<vector<float> > >", 3, "MeV", "pcloud extension: EM part of each "
       "truth energy"),
)

#: CellGeo (CellGeometryTreeMaker): one entry, one value per cell. Neighbour indices are not written by pcloud.
CELLGEO_BRANCHES = (
    _b("cell_geo_ID", "unsigned long", 1, "", "cell identifier, strictly increasing (pcloud: flat cell index)"),
    _b("cell_geo_sampling", "unsigned short", 1, "", "CaloSampling number"),
    _b("cell_geo_eta", "float", 1, "", "cell centre"),
    _b("cell_geo_phi", "float", 1, "rad", "cell centre"),
    _b("cell_geo_rPerp", "float", 1, "mm", "transverse radius of the cell centre"),
    _b("cell_geo_deta", "float", 1, "", "cell size"),
    _b("cell_geo_dphi", "float", 1, "rad", "cell size"),
    _b("cell_geo_volume", "float", 1, "mm3", "cell volume"),
    _b("cell_geo_sigma", "float", 1, "MeV", "electronic noise"),
)

#: Every branch pcloud writes into EventTree, in order.
def event_tree_branches() -> tuple:
    return EVENT_BRANCHES + TRUTH_BRANCHES + TRACK_BRANCHES + track_layer_branches() + CLUSTER_BRANCHES


#: Branches a reader cannot do without.
REQUIRED = ("cluster_cell_ID", "cluster_cell_E", "trackPt", "trackEta", "trackPhi")
#: Per-cell truth branches (TruthParticlesPerCell flag).
CELL_TRUTH = ("cluster_cell_hitsTruthIndex", "cluster_cell_hitsTruthE")
#: Noise branch names accepted in CellGeo: master's ``cell_geo_sigma`` or the ``mhodgkin_updateNoise`` branch's.
NOISE_BRANCHES = ("cell_geo_sigma", "cell_geo_electronicNoise", "cell_geo_totalNoise")
