"""bench/soak.py runs end to end and prints its figures (the 30-minute run is in
docs/reliability.md; this only keeps the script working)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO


def test_soak_prints_figures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out_json = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.2", "--report", "2",
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=180, cwd=REPO, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    header = next(line for line in out.splitlines() if line.split()[:2] == ["min", "rss_MB"])
    assert header.split() == [
        "min", "rss_MB", "fds", "thr", "tasks", "conns", "p/r/b/c", "up", "cpu%", "scrapes",
        "p50_ms", "p99_ms", "max_ms", "stall", "load", "faults"]
    rows = [line for line in out.splitlines() if re.match(r"^\s+\d+\.\d\d\s+\d+\.\d", line)]
    assert len(rows) >= 4, out
    for row in rows:
        fields = row.split()
        assert float(fields[1]) > 10, row  # RSS in MB
        assert int(fields[2]) > 3 and int(fields[3]) >= 1 and int(fields[4]) >= 1, row
    for label in ("rss_MB", "fds", "threads", "tasks", "scrapes", "verdict"):
        assert re.search(rf"^  {label}\s+\S", out, re.M), (label, out)
    assert "no_tracebacks=yes" in out and "no_leaked_backends=yes" in out, out
    assert out_json.exists()
