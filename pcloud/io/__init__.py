"""Readers and writers: public calorimeter image formats and pcloud's own stores.

Image formats (read into / written from :class:`pcloud.core.showers.ShowerImages`, energies in GeV):

* :mod:`~pcloud.io.calogan` — CaloGAN HDF5 (seed 004): ``layer_0/1/2`` (MeV), ``energy`` (GeV), ``overflow``.
* :mod:`~pcloud.io.calochallenge` — CaloChallenge 2022 HDF5 + binning XML (MeV, polar voxels).
* :mod:`~pcloud.io.triforce` — Triforce/LCD HDF5 (seed 001): ``ECAL``/``HCAL`` windows (calibrated GeV),
  ``energy``, ``pdgID`` and the derived keys of the public files.
* :mod:`~pcloud.io.detect` — :func:`detect_format` from file content, :func:`read_images` dispatching to the above,
  :func:`check_same_layout` for files read together.

Shared: :class:`~pcloud.io.errors.FormatError` (every reader's bad-input error, naming file, field, expected,
found) and :func:`~pcloud.core.atomic.atomic_output` (crash-safe writes). Every reader takes ``start``/``stop``
(event range read from disk) and has an ``iter_*`` chunk generator for files larger than memory.
"""
from __future__ import annotations

from ..core.atomic import atomic_output
from .calochallenge import (CaloChallengeBinning, example_binning, iter_calochallenge, parse_binning,
                            read_calochallenge, write_binning_xml, write_calochallenge)
from .calogan import iter_calogan, read_calogan, write_calogan
from .detect import (FORMATS, IMAGE_FORMATS, check_same_layout, detect_format, image_layout, iter_images,
                     read_images, write_images)
from .errors import EnergyScaleWarning, FormatError
from .triforce import iter_triforce, read_triforce, write_triforce

__all__ = [
    "FormatError", "EnergyScaleWarning", "atomic_output",
    "read_calogan", "iter_calogan", "write_calogan",
    "CaloChallengeBinning", "parse_binning", "example_binning", "read_calochallenge", "iter_calochallenge",
    "write_calochallenge", "write_binning_xml",
    "read_triforce", "iter_triforce", "write_triforce",
    "detect_format", "read_images", "iter_images", "write_images", "image_layout", "check_same_layout", "FORMATS",
    "IMAGE_FORMATS",
]
