"""Fixtures shared by every test. The server itself comes from redmodel's pytest plugin
(redmodel/_pytest_plugin.py): a throwaway redis-server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, settings

import redmodel

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("default")


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[redmodel.Store]:
    """A Store on an empty throwaway server."""
    yield redmodel.Store(redis_client)
