"""The error type of the command line."""
from __future__ import annotations


class CLIError(Exception):
    """An error reported to the user as one line, exit code 2."""
