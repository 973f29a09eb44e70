"""From a user's files to models: one path shared by the command line, training and the benchmarks.

==============  ======================================================================================
module          holds
==============  ======================================================================================
``inputs``      ``FILE[:LABEL]`` specs, globs, formats, classes, the one-geometry check, in-memory showers
``store``       the conversion of any inputs into one streamed native store (fixed per-event fields)
``batches``     clouds -> model batches (point and dense models), shared with the singles benchmark
``models``      the task models by name, their JSON specs (bundles) and the dense adapter
``config``      the declarative recipe of ``pcloud train`` (``pcloud/configs/train.yaml``)
``bundle``      model bundles: save, safe load, refusal of corrupted or foreign bundles
``train``       ``pcloud train`` (identification and energy tasks)
``evaluate``    ``pcloud evaluate`` and ``pcloud predict``
``pflow``       particle flow on MLTree files (train, evaluate, predict)
``describe``    ``pcloud info`` and ``pcloud show`` of any file
==============  ======================================================================================
"""
from __future__ import annotations

from .describe import describe_file, load_event

__all__ = ["describe_file", "load_event"]
