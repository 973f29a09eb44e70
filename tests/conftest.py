"""Fixtures shared by every test folder; puts ``tests/`` on ``sys.path`` so ``helpers`` can be imported."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pcloud.geometry import get_geometry  # noqa: E402


@pytest.fixture(scope="session")
def atlas():
    return get_geometry("atlas")


@pytest.fixture(scope="session")
def deposit_fn():
    """The real shower deposit function (an import error must fail the tests, not switch to a stand-in)."""
    from pcloud.sim.deposit import deposit_particles
    return deposit_particles
