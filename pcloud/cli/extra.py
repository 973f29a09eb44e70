"""Registration point for commands of later stages (bench, train, pflow)."""
from __future__ import annotations


def register(sub) -> None:
    """Add extra sub-commands to the ``pcloud`` parser. Each stage adds its own ``register_*`` call here."""
    return None
