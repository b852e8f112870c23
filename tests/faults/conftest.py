"""The fault suite's own topology: its tests SIGKILL servers and fill connection slots, so
they do not share the session topology with the rest of the suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.faultkit import INTERVAL
from tests.support import DaemonProcess
from tests.topology import Topology


@pytest.fixture(scope="package")
def fault_topology() -> Iterator[Topology]:
    with Topology() as topo:
        yield topo


@pytest.fixture(scope="module")
def daemon(fault_topology: Topology) -> Iterator[DaemonProcess]:
    """One daemon per test module, polling the fault topology every INTERVAL."""
    proc = DaemonProcess(fault_topology.tierwatch_config(poll_interval=INTERVAL))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
