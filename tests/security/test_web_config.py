"""/metrics protection with the exporter-toolkit web-config file: real TLS, basic auth."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.webconfig import BasicAuth, load_web_config
from tests.support import DaemonProcess, http_get, wait_until

PASSWORD = "s3cret-scrape-pw"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
EMPTY_CONFIG = "poll_interval: 5\nclusters: []\n"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "server.crt", d / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True)
    return crt, key


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def https_get(url: str, ca: Path, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_with_web_config(daemon_factory: Callable[..., DaemonProcess], tmp_path: Path,
                          web: str, extra: str = "") -> DaemonProcess:
    web_path = tmp_path / "web.yml"
    web_path.write_text(web)
    daemon = daemon_factory(f"web_config_file: {web_path}\n{extra}{EMPTY_CONFIG}",
                            wait_ready=False)
    return daemon


def test_tls_and_basic_auth_with_real_clients(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, key = cert
    daemon = start_with_web_config(daemon_factory, tmp_path, (
        f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"))
    url = f"https://127.0.0.1:{daemon.port}"
    wait_until(lambda: https_get(url + "/readyz", crt)[0] == 200, 15, "TLS /readyz answers")
    status, body = https_get(url + "/metrics", crt, basic("prometheus", PASSWORD))
    assert status == 200 and b"tierwatch_build_info" in body
    assert https_get(url + "/metrics", crt)[0] == 401
    assert https_get(url + "/metrics", crt, basic("prometheus", "wrong"))[0] == 401
    assert https_get(url + "/metrics", crt, basic("nobody", PASSWORD))[0] == 401
    assert https_get(url + "/", crt)[0] == 401
    assert https_get(url + "/healthz", crt)[0] == 200  # probes stay open by default
    # the real openssl client negotiates TLS >= 1.2 and sees our certificate
    handshake = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{daemon.port}", "-CAfile", str(crt),
         "-verify_return_error", "-brief"], input=b"", capture_output=True, timeout=10)
    assert handshake.returncode == 0, handshake.stderr
    assert b"TLSv1.3" in handshake.stderr or b"TLSv1.2" in handshake.stderr
    # plain HTTP to the TLS port gets nowhere
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=5).read()


def test_health_endpoints_can_require_auth_too(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = start_with_web_config(daemon_factory, tmp_path,
                                   f"basic_auth_users:\n  prometheus: '{HASH}'\n",
                                   extra="health_without_auth: false\n")
    wait_until(lambda: http_get(daemon.url + "/healthz")[0] == 401, 15, "/healthz answers 401")
    assert http_get(daemon.url + "/healthz", headers=basic("prometheus", PASSWORD))[0] == 200


def test_unknown_user_still_pays_for_a_bcrypt_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    auth = BasicAuth({"prometheus": HASH})
    monkeypatch.setattr(bcrypt, "checkpw", spy)  # imported where it is used
    assert not auth.check(basic("nobody", PASSWORD)["Authorization"])
    assert not auth.check(basic("prometheus", "wrong")["Authorization"])
    assert len(calls) == 2  # same work whether or not the user exists
    assert auth.check(basic("prometheus", PASSWORD)["Authorization"])
    assert auth.check(basic("prometheus", PASSWORD)["Authorization"])  # cached
    assert len(calls) == 3
    assert not auth.check(basic("prometheus", "wrong")["Authorization"])  # cache is per pair
    for header in (None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert not auth.check(header)


@pytest.mark.parametrize("web, phrase", [
    ("basic_auth_users:\n  prometheus: plaintext\n",
     "basic_auth_users.prometheus: must be a bcrypt"),
    ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
     "cannot load certificate"),
    ("tls_server_confg: {}\n", "tls_server_confg: unknown setting"),
])
def test_bad_web_config_is_one_line_and_exit_2(tmp_path: Path, web: str, phrase: str) -> None:
    web_path = tmp_path / "web.yml"
    web_path.write_text(web)
    with pytest.raises(ConfigError, match=phrase):
        load_web_config(web_path)
    config = tmp_path / "tierwatch.yaml"
    config.write_text(f"web_config_file: {web_path}\n{EMPTY_CONFIG}")
    result = subprocess.run([sys.executable, "-m", "exporter", "run", "-c", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert phrase.split(":")[0] in result.stderr
