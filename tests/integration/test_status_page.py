"""The status page at `/` in a real headless Chromium, against a real tierwatch daemon
watching the real topology, behind basic auth: every target with its role and lag, a frozen
Redis shown as down on the open page within two polls and up again after it thaws.

One stack for the module: one daemon (1 s poll) and one browser; the tests run in order on
the same open page.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import bcrypt
import pytest
import yaml

from exporter import statuspage
from tests.browser import Browser, Page, chromium_binary
from tests.support import DaemonProcess, wait_until
from tests.topology import Topology
from tests.unit.test_statuspage import Page as Html

pytestmark = pytest.mark.skipif(chromium_binary() is None,
                                reason="chromium not installed (scripts/install-deps.sh)")

INTERVAL = 1.0
# the daemon publishes "down" within two polls of the freeze (the next poll starts within an
# interval plus its 0.1 s jitter and is abandoned at 0.8 x the interval); the page re-reads
# every half interval; 0.4 s more for the fetch on a busy 2-core machine. Seen: 1.4-2.0 s.
WITHIN = 2 * INTERVAL + 0.1 + INTERVAL / 2 + 0.4
USER, PASSWORD = "oncall", "page-pw-0x51"
# a Redis target whose name is markup: it must show as text, and nothing of it may run
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ROLES = {"primary": "primary", "replica-1": "replica", "bouncer": "—", "cache": "—",
         HOSTILE: "—"}
ROWS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('tr[data-target]')]
  .map(tr => [tr.dataset.target, Object.fromEntries([...tr.cells]
    .map(td => [td.dataset.field, td.textContent]))])))"""


@pytest.fixture(scope="module")
def daemon(topology: Topology, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[DaemonProcess]:
    doc = yaml.safe_load(topology.tierwatch_config(poll_interval=INTERVAL))
    cluster = doc["clusters"][0]
    cluster["redis"].append({**cluster["redis"][0], "name": HOSTILE})
    web = tmp_path_factory.mktemp("web") / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web.write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
    doc["web_config_file"] = str(web)
    proc = DaemonProcess(yaml.safe_dump(doc, sort_keys=False))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def page(daemon: DaemonProcess) -> Iterator[Page]:
    with Browser() as browser:
        tab = browser.page()
        tab.answer_auth(USER, PASSWORD)  # as a person would at the browser's dialog
        tab.navigate(daemon.url + "/")
        yield tab


def get(url: str, auth: bool) -> tuple[int, dict[str, str], bytes]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"}
                                     if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def rows(page: Page) -> dict[str, dict[str, str]]:
    return dict(json.loads(page.evaluate(ROWS)))


def updated_rows(page: Page, check: Callable[[dict[str, dict[str, str]]], bool],
                 timeout: float, what: str) -> dict[str, dict[str, str]]:
    """The page's rows once `check` holds for them, after at least one script refresh."""
    def current() -> dict[str, dict[str, str]] | None:
        note = page.evaluate("document.getElementById('refreshed').textContent")
        found = rows(page)
        return found if note.startswith("Updated") and check(found) else None

    try:
        return wait_until(current, timeout, what, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; page rows: {rows(page)}; "
                             f"errors: {page.console_errors()}") from None


def test_page_is_under_the_same_auth_as_metrics_with_a_strict_csp(daemon: DaemonProcess
                                                                  ) -> None:
    for path in ("/", "/metrics"):
        assert get(daemon.url + path, auth=False)[0] == 401, path
    status, headers, body = get(daemon.url + "/", auth=True)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == statuspage.CSP
    assert headers["Cache-Control"] == "no-store"
    assert get(daemon.url + "/metrics", auth=True)[0] == 200
    assert set(Html(body).rows) == set(ROLES)


def all_up_with_lag(found: dict[str, dict[str, str]]) -> bool:
    return set(found) == set(ROLES) and all(r["state"] == "up" for r in found.values()) \
        and found["replica-1"]["traffic"] == "reads: yes"


def test_browser_shows_every_target_with_role_and_lag(daemon: DaemonProcess, page: Page
                                                      ) -> None:
    found = updated_rows(page, all_up_with_lag, 20, "every target up, the replica readable")
    for name, role in ROLES.items():
        assert found[name]["target"] == name and found[name]["role"] == role, found[name]
    assert found["primary"]["traffic"] == "writes: yes"
    lag = found["replica-1"]["lag"]
    assert lag.endswith(" s") and float(lag[:-2]) <= 1.0, lag
    assert found["replica-1"]["detail"].endswith("of WAL not replayed")
    assert "clients waiting, worst pool saturation" in found["bouncer"]["detail"]
    assert found["cache"]["detail"].startswith("hit ratio ")
    assert all(float(r["age"][:-2]) < 3 * INTERVAL for r in found.values()), found
    # the markup in the name stayed text: no element, no dialog, and the CSP let the page's
    # own script run (the rows above came from it) and reported nothing
    assert page.evaluate("document.querySelectorAll('tbody script, tbody img').length") == 0
    assert page.events("Page.javascriptDialogOpening") == []
    assert page.console_errors() == []
    assert page.auth_challenges == 1  # the script's fetches reuse the browser's credentials
    # the script writes the cells the server writes
    served = Html(get(daemon.url + "/", auth=True)[2]).rows
    for name, cells in served.items():
        for field in ("target", "kind", "state", "role", "traffic"):
            assert cells[field] == found[name][field], (name, field)


def redis_state(state: str) -> Callable[[dict[str, dict[str, str]]], bool]:
    return lambda found: all(found[n]["state"] == state for n in ("cache", HOSTILE))


def test_frozen_redis_shows_down_on_the_open_page_and_up_after_it_thaws(
    topology: Topology, page: Page
) -> None:
    updated_rows(page, all_up_with_lag, 20, "every target up before the freeze")
    page.evaluate("window.notReloaded = true")
    topology.redis.kill(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        found = updated_rows(page, redis_state("down"), WITHIN + 2, "frozen Redis shown down")
        took = time.monotonic() - frozen_at
        assert took <= WITHIN, f"down shown after {took:.2f}s"
        assert found["cache"]["reason"] == "last poll failed"
        assert found["primary"]["state"] == "up" and found["bouncer"]["state"] == "up"
    finally:
        topology.redis.kill(signal.SIGCONT)
    thawed_at = time.monotonic()
    updated_rows(page, redis_state("up"), WITHIN + 2, "thawed Redis shown up")
    took = time.monotonic() - thawed_at
    assert took <= WITHIN, f"up shown after {took:.2f}s"
    assert page.evaluate("window.notReloaded") is True  # the same page, never reloaded
    assert page.console_errors() == []


def test_page_says_so_when_the_daemon_stops_answering(daemon: DaemonProcess, page: Page
                                                      ) -> None:
    # last in the module: it stops the module's daemon
    updated_rows(page, all_up_with_lag, 20, "every target up")
    daemon.stop()
    note = wait_until(
        lambda: page.evaluate("document.body.classList.contains('failing') && "
                              "document.getElementById('refreshed').textContent"),
        WITHIN, "the page saying it is no longer updated")
    assert note.startswith("Not updated since the last success"), note
