"""Fixtures: one real topology per test session, and tierwatch daemons as child processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support import DaemonProcess
from tests.topology import Topology


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for folder in ("integration", "faults", "e2e"):
            if f"/tests/{folder}/" in path:
                item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    """The shared topology. Tests that break it (stop, promote, freeze) must restore it, or
    use `private_topology` instead."""
    with Topology() as topo:
        yield topo


@pytest.fixture
def private_topology() -> Iterator[Topology]:
    """A topology of the test's own, for tests that destroy things."""
    with Topology() as topo:
        yield topo


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., DaemonProcess]]:
    """Starts `tierwatch run` child processes and stops them after the test."""
    started: list[DaemonProcess] = []

    def start(config_text: str, wait_ready: bool = True, **kwargs: object) -> DaemonProcess:
        daemon = DaemonProcess(config_text, **kwargs)  # type: ignore[arg-type]
        started.append(daemon)
        return daemon.start(wait_ready=wait_ready)

    yield start
    for daemon in started:
        daemon.stop()
