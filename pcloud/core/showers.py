"""Dense calorimeter images of single-particle showers: the container shared by the simulation, the image readers
and writers, the conversion to point clouds and the dense models.

:class:`ShowerImages` holds dense calorimeter images of single-particle showers on one :class:`Geometry`, with
per-event truth. Units: images in GeV (files may store MeV; readers convert), lengths in mm, angles in rad.

Truth keys (arrays of length N; readers fill what their format has):

=======================  =======  ==================================================================
key                      dtype    meaning
=======================  =======  ==================================================================
``event_number``         int64    unique event id (used for train/validation/test splits)
``pdg``                  int32    PDG id of the incident particle (11 e-, -11 e+, 22, 111, 211, -211)
``energy_gev``           float64  true incident energy (GeV)
``theta_rad``            float64  polar angle of the incident direction, collider frame
``phi_rad``              float64  azimuth of the incident direction, collider frame
``entry_x_mm``...        float64  ``entry_x_mm, entry_y_mm, entry_z_mm``: entry point, geometry frame
``window_eta``           float64  pseudorapidity the geometry window is centred on (local-frame geometries)
``photon1_energy_gev``   float64  pi0 only: the two decay photons' energies and their opening angle
``photon2_energy_gev``
``opening_angle_rad``
``deposited_gev``        float64  simulation only: true energy deposited in cells before noise/sampling
=======================  =======  ==================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import Geometry

@dataclass
class ShowerImages:
    """Dense images ``{section: (N, n_layers, n_u, n_v)}`` in GeV, per-event ``truth`` and free-form ``meta``."""

    geometry: Geometry
    images: dict[str, np.ndarray]
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = None
        for s in self.geometry.sections:
            if s.name not in self.images:
                raise KeyError(f"ShowerImages: missing image for section {s.name!r} of geometry "
                               f"{self.geometry.name!r}; found {sorted(self.images)}")
            a = self.images[s.name]
            if a.ndim != 4 or a.shape[1:] != s.shape:
                raise ValueError(f"ShowerImages: section {s.name!r} must be (N, {s.shape}), found {a.shape}")
            n = a.shape[0] if n is None else n
            if a.shape[0] != n:
                raise ValueError(f"ShowerImages: section {s.name!r} has {a.shape[0]} events, expected {n}")
        for k, v in self.truth.items():
            if len(v) != n:
                raise ValueError(f"ShowerImages: truth {k!r} has length {len(v)}, expected {n} events")
        if "event_number" not in self.truth:
            self.truth["event_number"] = np.arange(n, dtype=np.int64)

    @property
    def n_events(self) -> int:
        return next(iter(self.images.values())).shape[0]

    def __len__(self) -> int:
        return self.n_events

    def flat(self) -> np.ndarray:
        """Images as ``(N, n_cells)`` in the geometry's flat cell order."""
        return self.geometry.flatten_images(self.images)

    def section_energy(self) -> dict[str, np.ndarray]:
        """Total energy per section and event (GeV)."""
        return {k: v.reshape(v.shape[0], -1).sum(axis=1) for k, v in self.images.items()}

    def total_energy(self) -> np.ndarray:
        return sum(self.section_energy().values())

    def select(self, index) -> "ShowerImages":
        index = np.asarray(index)
        return ShowerImages(self.geometry, {k: v[index] for k, v in self.images.items()},
                            {k: np.asarray(v)[index] for k, v in self.truth.items()}, dict(self.meta))

    @staticmethod
    def concatenate(parts: list["ShowerImages"]) -> "ShowerImages":
        """Join samples of one geometry (truth keys common to all parts are kept). If event numbers collide, every
        part is shifted past the previous ones (order kept) and ``meta["event_numbers_renumbered"]`` is set."""
        if not parts:
            raise ValueError("ShowerImages.concatenate: nothing to concatenate")
        g = parts[0].geometry
        keys = set(parts[0].truth)
        for p in parts[1:]:
            if p.geometry.name != g.name:
                raise ValueError(f"cannot concatenate geometries {g.name!r} and {p.geometry.name!r}")
            keys &= set(p.truth)
        truth = {k: np.concatenate([p.truth[k] for p in parts]) for k in sorted(keys)}
        meta = dict(parts[0].meta)
        ev = truth["event_number"]
        if np.unique(ev).size != ev.size:
            # event numbers must stay unique (splits hash them): shift each part past the previous ones
            shifted, offset = [], 0
            for p in parts:
                e = np.asarray(p.truth["event_number"], dtype=np.int64)
                shifted.append(e - e.min() + offset if e.size else e)
                offset = (shifted[-1].max() + 1) if e.size else offset
            truth["event_number"] = np.concatenate(shifted)
            meta["event_numbers_renumbered"] = True
        return ShowerImages(g, {s.name: np.concatenate([p.images[s.name] for p in parts]) for s in g.sections},
                            truth, meta)
