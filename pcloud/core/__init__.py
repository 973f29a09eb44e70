"""The ground floor: the data types that pass between pcloud's layers, and the file conventions they all share.

=====================  ===============================================================================
module                 holds
=====================  ===============================================================================
``particles``          particle names, PDG ids, masses and charges (PDG 2024)
``showers``            :class:`ShowerImages`: dense single-particle shower images with truth
``schema``             the point-cloud schema (fields, units, dtypes), building and checking cloud arrays,
                       the label policy for segmentation truth
``events``             :class:`TruthParticles`, :class:`TrackCellEvents` (particles, tracks, cells, per-cell
                       truth) and :func:`select_events`
``clusters``           :class:`TopoClusters`
``atomic``             :func:`atomic_output`: files appear complete or not at all
=====================  ===============================================================================

``sim``, ``io``, ``data`` and ``pflow`` import from here; nothing here imports from them.
"""
from __future__ import annotations

from .atomic import atomic_output
from .clusters import TopoClusters
from .events import TrackCellEvents, TruthParticles, offsets_from_index, select_events
from .particles import PARTICLES, PDG_CHARGE, PDG_MASS, PDG_NAMES, charge_of, mass_of, particle_pdg
from .schema import (NO_PARTICLE, SCHEMA_VERSION, PointType, SchemaError, binary_labels, build_clouds, hard_labels,
                     make_particles, n_points, soft_fractions, target_fractions, validate_clouds)
from .showers import ShowerImages

__all__ = ["atomic_output", "TopoClusters", "TrackCellEvents", "TruthParticles", "offsets_from_index",
           "select_events", "PARTICLES", "PDG_CHARGE", "PDG_MASS", "PDG_NAMES", "charge_of", "mass_of",
           "particle_pdg", "NO_PARTICLE", "SCHEMA_VERSION", "PointType", "SchemaError", "binary_labels",
           "build_clouds", "hard_labels", "make_particles", "n_points", "soft_fractions", "target_fractions",
           "validate_clouds", "ShowerImages"]
