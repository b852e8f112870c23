"""The real image test: build with podman, lint, run against the topology (slow, ~10 s warm,
~1.5 min cold). `make image-test` runs it directly; here it runs only with
TIERWATCH_IMAGE_TEST=1, so a plain `pytest` stays fast and needs no container engine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.deploy.support import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("TIERWATCH_IMAGE_TEST") != "1",
                       reason="set TIERWATCH_IMAGE_TEST=1 (or run `make image-test`)"),
]


def test_image_builds_and_watches_the_real_topology() -> None:
    proc = subprocess.run([sys.executable, "scripts/image_test.py"], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "PASSED" in proc.stdout
