"""The prepared models, shared by every test that runs a real model.

`make test` prepares them into var/models first (the same folder `make demo` uses), so tests
only verify the stamps; CAMD_TEST_MODELS_DIR points elsewhere when wanted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from camd.assets import prepare_all

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    override = os.environ.get("CAMD_TEST_MODELS_DIR")
    folder = Path(override) if override else REPO / "var" / "models"
    prepare_all(folder, progress=False)
    return folder
