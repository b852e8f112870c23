"""Docs that are generated must match their source."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_readme_metrics_table_matches_catalogue() -> None:
    result = subprocess.run([sys.executable, "scripts/metrics_table.py", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    first_block = text.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands[:2] == ["make demo", "make test"]
