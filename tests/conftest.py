"""Fixtures shared by every test: a local container on a tmp data dir, function clients, and
CloudEvent delivery exactly as a Pub/Sub push subscription does it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from support import REPO, free_port, push_body

from shared import bootstrap, topology
from shared.bootstrap import Container
from shared.metering import OperationMeter
from shared.settings import Settings


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    """Local mode on a fresh data dir, free ports, and a fast-retrying bus."""
    return Settings(
        data_dir=tmp_path / "var",
        template_root=REPO / "templates",
        port=free_port(),
        smtp_port=free_port(),
        bus_min_backoff_s=0.05,
        bus_max_backoff_s=0.2,
        bus_max_attempts=3,
        bus_poll_interval_s=0.01,
        admin_api_key="test-admin-key",
    )


@pytest.fixture
def make_container(local_settings: Settings) -> Iterator[Callable[..., Container]]:
    """Builds and installs a Container (settings may be overridden by keyword)."""

    def make(overrides: dict[str, Any] | None = None, **changes: Any) -> Container:
        settings = replace(local_settings, **changes) if changes else local_settings
        container = Container(settings, meter=OperationMeter(), overrides=overrides)
        bootstrap.install(container)
        return container

    yield make
    bootstrap.install(None)


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container()


@pytest.fixture
def function_client() -> Callable[[str], Any]:
    """A functions-framework test client for the function called `name` in the topology."""

    def client(name: str) -> Any:
        f = topology.function(name)
        kind = "http" if f.is_http else "cloudevent"
        return functions_framework.create_app(f.entry_point, str(f.source), kind).test_client()

    return client


@pytest.fixture
def deliver(function_client: Callable[[str], Any]) -> Callable[..., Any]:
    """Push one message to a Pub/Sub-triggered function; returns the HTTP response."""

    def deliver(name: str, data: bytes, attributes: dict[str, str] | None = None) -> Any:
        f = topology.function(name)
        return function_client(name).post(
            f"/projects/local/topics/{f.trigger_topic}",
            data=json.dumps(push_body(data, attributes)),
            content_type="application/json",
        )

    return deliver
