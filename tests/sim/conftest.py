import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pcloud.geometry import get_geometry  # noqa: E402


@pytest.fixture(scope="session")
def calogan():
    return get_geometry("calogan")
