"""From a user's files to models: one path shared by the command line, training and the benchmarks.

``describe`` summarises any file pcloud reads and loads single events for display.
"""
from __future__ import annotations

from .describe import describe_file, load_event

__all__ = ["describe_file", "load_event"]
