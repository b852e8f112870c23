"""A real headless Chromium for tests, driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol commands from its fd 3 and write
answers and events to its fd 4, one JSON message per NUL-terminated chunk: no websocket, no
port, no Python package beyond the standard library. Each page is a target attached in
"flat" mode, so commands to it carry its `sessionId`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# what Chromium needs as root in a container (the sandbox needs user namespaces), and
# nothing that phones home during a test
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(AssertionError):
    pass


class Browser:
    """One Chromium process with a fresh profile; `page()` opens tabs."""

    def __init__(self, binary: str | None = None, timeout: float = 15.0) -> None:
        found = binary or chromium_binary()
        if found is None:
            raise BrowserError("chromium is not installed (scripts/install-deps.sh installs it)")
        self.binary = found
        self.timeout = timeout
        self.dir = Path(tempfile.mkdtemp(prefix="tierwatch-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._lock = threading.Lock()
        self._answers: dict[int, dict[str, Any]] = {}
        self._answered = threading.Condition(self._lock)
        self._handlers: dict[tuple[str | None, str], Callable[[dict[str, Any]], None]] = {}
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends go above fd 9, so that moving them onto 3 and 4 cannot overwrite
        # one with the other (bash does the move right before exec'ing Chromium)
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
                            for fd in (to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        moves = f"3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-"
        try:
            with (self.dir / "chromium.log").open("wb") as log:
                self.proc = subprocess.Popen(
                    ["bash", "-c", f'exec "$@" {moves}', "chromium",
                     self.binary, *FLAGS, f"--user-data-dir={self.dir / 'profile'}",
                     "--remote-debugging-pipe", "about:blank"],
                    pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            os.close(child_r)
            os.close(child_w)
        self._reader = threading.Thread(target=self._read, name="chromium-reader", daemon=True)
        self._reader.start()
        try:
            self.call("Browser.getVersion")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
                self.proc.wait(5)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        os.close(self._to_browser)
        # the reader ends at EOF once Chromium is gone; its fd is closed only then, so the
        # number cannot be reused under a read still in progress
        self._reader.join(5)
        if not self._reader.is_alive():
            os.close(self._from_browser)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, limit: int = 2000) -> str:
        path = self.dir / "chromium.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._answered.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._lock:
                self._answers[message["id"]] = message
                self._answered.notify_all()
            return
        with self._lock:
            self.events.append(message)
            handler = self._handlers.get((message.get("sessionId"), message["method"]))
        if handler is not None:
            handler(message["params"])

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> int:
        """Sends a command without waiting for its answer; returns its id."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        with self._lock:  # one writer at a time: messages must not interleave
            os.write(self._to_browser, data)
        return ident

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        ident = self.send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._lock:
            while ident not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    raise BrowserError(f"no answer to {method} ({self.log_tail(500)})")
                self._answered.wait(min(left, 0.5))
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    def on(self, session: str | None, method: str,
           handler: Callable[[dict[str, Any]], None]) -> None:
        """Calls `handler(params)` from the reader thread for each such event."""
        with self._lock:
            self._handlers[(session, method)] = handler

    def page(self, width: int = 1280, height: int = 800) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Log.enable")  # CSP violations are reported here
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    """One tab."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.auth_challenges = 0

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def events(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in list(self.browser.events)
                if e.get("sessionId") == self.session and e["method"] == method]

    def answer_auth(self, user: str, password: str) -> None:
        """Answers basic-auth challenges as a person at the browser's dialog would (and
        counts them); every other request goes on untouched."""
        def paused(params: dict[str, Any]) -> None:
            self.browser.send("Fetch.continueRequest", {"requestId": params["requestId"]},
                              self.session)

        def challenged(params: dict[str, Any]) -> None:
            self.auth_challenges += 1
            self.browser.send("Fetch.continueWithAuth", {
                "requestId": params["requestId"],
                "authChallengeResponse": {"response": "ProvideCredentials",
                                          "username": user, "password": password}},
                self.session)

        self.browser.on(self.session, "Fetch.requestPaused", paused)
        self.browser.on(self.session, "Fetch.authRequired", challenged)
        self.call("Fetch.enable", {"handleAuthRequests": True,
                                   "patterns": [{"urlPattern": "*"}]})

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        loads = len(self.events("Page.loadEventFired"))
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"navigate {url}: {answer['errorText']}")
        deadline = time.monotonic() + timeout
        while len(self.events("Page.loadEventFired")) <= loads:
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load within {timeout:g}s")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` in the page (promises awaited)."""
        answer = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression!r}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, exceptions and error log entries so far (a CSP violation, a
        failed fetch)."""
        texts = [e["exceptionDetails"].get("text", "") for e in
                 self.events("Runtime.exceptionThrown")]
        texts += [" ".join(str(a.get("value", a.get("description", ""))) for a in e["args"])
                  for e in self.events("Runtime.consoleAPICalled") if e["type"] == "error"]
        texts += [e["entry"]["text"] for e in self.events("Log.entryAdded")
                  if e["entry"]["level"] == "error"]
        return texts

    def screenshot(self, path: Path) -> None:
        height = self.evaluate("document.documentElement.scrollHeight")
        width = self.evaluate("document.documentElement.scrollWidth")
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
