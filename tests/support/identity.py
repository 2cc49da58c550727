"""Identity fixtures: the loaded models shared by a session, services on a test's own store.

A test module asks for them with `pytest_plugins = ["tests.support.identity"]`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from camd.identity.body_model import resolve_body_model
from camd.identity.extractors import Extractors
from camd.identity.service import IdentityService
from tests.support.identity_data import identity_config


@pytest.fixture(scope="session")
def identity_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Extractors:
    """Every identity model, loaded once for the session (loading dlib and LiteRT takes seconds)."""
    config = identity_config(tmp_path_factory.mktemp("models-config"), models_dir)
    return Extractors.load(config, resolve_body_model(config.identity, models_dir))


@pytest.fixture
def service_factory(tmp_path: Path, models_dir: Path, identity_models: Extractors) -> Any:
    """Open IdentityService(s) on this test's store; all are closed at the end of the test."""
    opened: list[IdentityService] = []

    def make(**identity: Any) -> IdentityService:
        service = IdentityService(
            identity_config(tmp_path / "state", models_dir, **identity), extractors=identity_models
        )
        opened.append(service)
        return service

    yield make
    for service in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            service.close()
