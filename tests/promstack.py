"""A real Prometheus (and Alertmanager) on free loopback ports, for tests and scripts.

Each server runs as a child process in a temp dir of its own (config, storage, log), which
`stop()` removes again. The API is deliberately small::

    from tests.promstack import Alertmanager, Prometheus

    with Alertmanager(config_text).start() as am:                 # optional
        prom = Prometheus(
            scrape_targets=["127.0.0.1:9847"],    # host:port serving /metrics
            scrape_interval="1s",
            rule_files=["alerts/recording_rules.yml"],
            alertmanager_url=am.url,              # None: rules evaluate, nobody is notified
            evaluation_interval="1s",
        ).start()                                 # returns once /-/ready answers 200
        prom.query("up")                          # -> list of {"metric": {...}, "value": [t, "v"]}
        prom.query_range("up", start, end, step)  # -> list of {"metric": {...}, "values": [...]}
        prom.stop()

The scrape job is named `tierwatch` (the alert TierwatchExporterAbsent expects that).
A query that Prometheus rejects (bad PromQL) raises `PromQueryError` with Prometheus' own
message; a query that matches nothing returns `[]`. The binaries are looked up on PATH
(`prometheus`; `prometheus-alertmanager` as Debian names it, or `alertmanager`); when absent,
`Prometheus.available()` / `Alertmanager.available()` say so, so a test can skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import yaml

from tests.support import free_port

JOB = "tierwatch"
START_TIMEOUT = 30.0


class PromQueryError(RuntimeError):
    """Prometheus rejected a query (the message is Prometheus' error text)."""


class _Server:
    """A child server process on a free loopback port with its own temp dir."""

    binaries: tuple[str, ...] = ()
    prefix = "server"

    def __init__(self) -> None:
        self.port = 0
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def binary(cls) -> str | None:
        for name in cls.binaries:
            found = shutil.which(name)
            if found:
                return found
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.binary() is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "server.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AssertionError):
            return ""

    def _argv(self, binary: str) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Writes config files into self.dir before the process starts."""

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        binary = self.binary()
        if binary is None:
            raise FileNotFoundError(f"none of {self.binaries} on PATH")
        self.dir = Path(tempfile.mkdtemp(prefix=f"tierwatch-{self.prefix}-"))
        self._prepare()
        # A free port can be taken between the probe and the bind: try a few.
        for _attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    self._argv(binary), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready(timeout):
                return self
            if "address already in use" not in self.log_tail().lower():
                break
        self.stop()
        raise RuntimeError(f"{self.prefix} did not become ready: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Prometheus(_Server):
    """Prometheus scraping `scrape_targets` (host:port) as job `tierwatch`."""

    binaries = ("prometheus",)
    prefix = "prometheus"

    def __init__(
        self,
        scrape_targets: Sequence[str],
        scrape_interval: str = "1s",
        rule_files: Sequence[str | Path] = (),
        alertmanager_url: str | None = None,
        evaluation_interval: str = "1s",
    ) -> None:
        super().__init__()
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.rule_files = [str(Path(f).resolve()) for f in rule_files]
        self.alertmanager_url = alertmanager_url
        self.evaluation_interval = evaluation_interval

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": JOB,
                                "static_configs": [{"targets": self.scrape_targets}]}],
        }
        if self.alertmanager_url:
            target = urllib.parse.urlsplit(self.alertmanager_url).netloc
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        return config

    def _prepare(self) -> None:
        assert self.dir is not None
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def _argv(self, binary: str) -> list[str]:
        assert self.dir is not None
        return [binary, f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises PromQueryError on an error answer."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                body = json.load(exc)
            except ValueError:
                raise PromQueryError(f"HTTP {exc.code} for {path}") from None
        if body.get("status") != "success":
            raise PromQueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, time_: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result as a list (a scalar/string result becomes one entry)."""
        params = {"query": expr}
        if time_ is not None:
            params["time"] = f"{time_:.3f}"
        data = self.api("query", **params)
        result = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    def query_range(self, expr: str, start: float, end: float,
                    step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=f"{step:g}")
        return data["result"]

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        """Values of `label` (optionally only on series matching the selector `match`)."""
        params = {"match[]": match} if match else {}
        return list(self.api(f"label/{urllib.parse.quote(label)}/values", **params))

    def targets_up(self) -> bool:
        """True once every scrape target has been scraped successfully."""
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t.get("health") == "up" for t in active)


class Alertmanager(_Server):
    """Alertmanager with the given configuration text, clustering off."""

    binaries = ("prometheus-alertmanager", "alertmanager")
    prefix = "alertmanager"

    def __init__(self, config_text: str) -> None:
        super().__init__()
        self.config_text = config_text

    def _prepare(self) -> None:
        assert self.dir is not None
        (self.dir / "alertmanager.yml").write_text(self.config_text)

    def _argv(self, binary: str) -> list[str]:
        assert self.dir is not None
        return [binary, f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=", "--log.level=warn"]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (GET /api/v2/alerts)."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=10) as resp:
            return list(json.load(resp))
