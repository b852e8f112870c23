"""A real Patroni cluster for tests: one etcd member and three Patroni-managed PostgreSQL 15
members, all on free loopback ports, in one fresh temp dir.

The facts it is built on were measured here (shared/PATRONI.md): Patroni 4 from the venv
that scripts/install-patroni.sh caches under /var/tmp; etcd 3.4 from Debian; Patroni 4
has no ``bootstrap.users``, so the monitor role (LOGIN, IN ROLE pg_monitor, a password) is
made by a ``post_bootstrap`` script; Patroni detaches the postmaster, so teardown stops
leftover postmasters with ``pg_ctl stop -m fast``. Under root everything runs as the
``postgres`` user (``Popen(user=...)``, so the pid we hold is Patroni's own).

Timings: ``loop_wait`` 1 s keeps switchovers and /cluster fresh within a second or two; the
leader key's ``ttl`` cannot go below Patroni's minimum of 20 s, so a crashed leader is
replaced about 20 s after the crash.

Use it as ``with PatroniCluster() as pc: ...`` (a module-scoped fixture: one cluster per
test module) or as a script: ``python -m tests.patroni up --config-out FILE``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psycopg
import yaml

from tests.topology import (
    HOST,
    PG_BIN,
    ProcServer,
    _alive,
    _kill_all_under,
    _mkdir,
    _own,
    _run,
    free_port,
    pids_under,
    wait_until,
)

PATRONI_DIR = Path(os.environ.get("TIERWATCH_PATRONI_DIR", "/var/tmp/tierwatch-patroni"))
PATRONI_BIN = PATRONI_DIR / "venv" / "bin" / "patroni"
INSTALL_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-patroni.sh"
SCOPE = "tierwatch-test"
MEMBER_NAMES = ("pg-1", "pg-2", "pg-3")
# Patroni's minimum ttl; loop_wait + 2 * retry_timeout must stay within it.
DCS_TIMING = {"ttl": 20, "loop_wait": 1, "retry_timeout": 5}
START_TIMEOUT = 90.0
ROLE_TIMEOUT = 60.0


def install_patroni() -> Path:
    """The patroni executable, installed into the cache by scripts/install-patroni.sh first
    if it is missing (make deps does the same)."""
    if not PATRONI_BIN.exists():
        subprocess.run([str(INSTALL_SCRIPT)], check=True, capture_output=True, timeout=600)
    return PATRONI_BIN


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0
              ) -> tuple[int, Any]:
    """(status, parsed JSON or text) of a GET, or a POST of ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@dataclass
class Member:
    """One Patroni member: its Patroni process, its PostgreSQL and REST API ports."""

    name: str
    pg_port: int
    api_port: int
    home: Path
    process: ProcServer = field(repr=False)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.pg_port}/{dbname}"

    def postmaster_pid(self) -> int | None:
        """The live postmaster of the data dir, or None (a zombie counts as gone)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def in_recovery(self) -> bool:
        with psycopg.connect(self.superuser_dsn(), autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        assert row is not None
        return bool(row[0])

    def status(self) -> dict[str, Any]:
        """GET /patroni of this member: its own live view (role, state, timeline)."""
        code, body = http_json(self.api_url + "/patroni", timeout=3)
        if not isinstance(body, dict):
            raise RuntimeError(f"{self.name}: /patroni answered {code}: {body!r}")
        return body


class PatroniCluster:
    """etcd + three Patroni members; ``pg-1`` bootstraps and leads at first."""

    def __init__(self, base_dir: Path | None = None, pg_bin: Path = PG_BIN,
                 names: Sequence[str] = MEMBER_NAMES) -> None:
        self.base_dir = base_dir
        self.pg_bin = pg_bin
        self.names = tuple(names)
        self.monitor_password = secrets.token_hex(16)
        self._passwords = {role: secrets.token_hex(16)
                           for role in ("superuser", "replication", "rewind")}
        self.workdir: Path | None = None
        self.members: dict[str, Member] = {}
        self.etcd: ProcServer | None = None
        self.start_seconds = 0.0
        self._stopped = False

    # -- lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self.workdir is not None:
            raise RuntimeError("a PatroniCluster can be started only once")
        began = time.monotonic()
        patroni = install_patroni()
        self.workdir = Path(tempfile.mkdtemp(prefix="tierwatch-patroni-", dir=self.base_dir))
        os.chmod(self.workdir, 0o755)  # postgres must traverse it
        atexit.register(self.stop)
        try:
            for sub in ("run", "logs"):
                _mkdir(self.workdir / sub, 0o755)
            self._write_post_bootstrap()
            self._start_etcd()
            for name in self.names:
                self.members[name] = self._member(name, patroni)
            first, *others = self.members.values()
            first.process.start()
            self.wait_leader(first.name, timeout=START_TIMEOUT)
            for member in others:
                member.process.start()
            self.wait_healthy(timeout=START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every Patroni at once, then leftover postmasters, etcd; remove the dir."""
        if self.workdir is None or self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        # All at once: stopped one by one, each leader's exit would start a new election.
        running = [m.process for m in self.members.values() if m.process.is_running()]
        for proc in running:
            proc.kill(signal.SIGTERM)
        for proc in running:
            try:
                proc.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"patroni: stopping {proc.name} failed: {exc}", file=sys.stderr)
        for member in self.members.values():
            self._stop_postmaster(member)
        if self.etcd is not None:
            self.etcd.stop()
        _kill_all_under(self.workdir, grace=0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_postmaster(self, member: Member) -> None:
        # Patroni detaches PostgreSQL: one whose Patroni was killed keeps running unmanaged.
        if member.postmaster_pid() is None:
            return
        try:
            _run([self.pg_bin / "pg_ctl", "stop", "-m", "fast", "-w", "-t", "30",
                  "-D", member.data_dir], cwd=member.home)
        except RuntimeError as exc:
            print(f"patroni: {exc}", file=sys.stderr)

    # -- bring-up steps

    def _write_post_bootstrap(self) -> None:
        """The monitor role and a table to write to, made once by the bootstrapping member.

        Patroni runs the script with a superuser conninfo as its last argument. The role's
        part is the script docs/patroni.md shows (psql quotes the password itself)."""
        assert self.workdir is not None
        password = self.workdir / "post_bootstrap.password"
        password.write_text(self.monitor_password)
        _own(password, 0o600)
        psql = f'"{self.pg_bin / "psql"}" -X -q -v ON_ERROR_STOP=1'
        script = self.workdir / "post_bootstrap.sh"
        script.write_text(
            "#!/bin/sh\nset -e\nfor conninfo; do :; done   # the last argument\n"
            """echo "CREATE ROLE monitor LOGIN PASSWORD :'pw' IN ROLE pg_monitor;" |\n"""
            f'  {psql} -v pw="$(cat {password})" -d "$conninfo"\n'
            f'{psql} -d "$conninfo" -c "CREATE TABLE public.ticks '
            '(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"\n'
        )
        _own(script, 0o700)

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        home = _mkdir(self.workdir / "etcd")
        client, peer = free_port(), free_port()
        argv = [
            shutil.which("etcd") or "/usr/bin/etcd", "--name", "etcd0",
            "--data-dir", str(home / "data"),
            "--listen-client-urls", f"http://{HOST}:{client}",
            "--advertise-client-urls", f"http://{HOST}:{client}",
            "--listen-peer-urls", f"http://{HOST}:{peer}",
            "--initial-advertise-peer-urls", f"http://{HOST}:{peer}",
            "--initial-cluster", f"etcd0=http://{HOST}:{peer}",
            "--log-level", "warn",
        ]

        def healthy() -> bool:
            code, body = http_json(f"http://{HOST}:{client}/health", timeout=1)
            return code == 200 and isinstance(body, dict) and body.get("health") == "true"

        def ready() -> bool:
            try:
                return healthy()
            except OSError:
                return False

        self.etcd = ProcServer("etcd", HOST, client, argv=argv, cwd=home,
                               log_path=self.workdir / "logs" / "etcd.log", ready=ready)
        self.etcd.start()

    def _member(self, name: str, patroni: Path) -> Member:
        assert self.workdir is not None and self.etcd is not None
        home = _mkdir(self.workdir / name)
        pg_port, api_port = free_port(), free_port()
        config = home / "patroni.yml"
        config.write_text(yaml.safe_dump(self._patroni_config(name, home, pg_port, api_port),
                                         sort_keys=False))
        _own(config, 0o600)
        process = ProcServer(
            name, HOST, api_port, argv=[str(patroni), str(config)], cwd=home,
            log_path=self.workdir / "logs" / f"{name}.log",
            ready=lambda: _answers(f"http://{HOST}:{api_port}/patroni"))
        return Member(name, pg_port, api_port, home, process)

    def _patroni_config(self, name: str, home: Path, pg_port: int, api_port: int
                        ) -> dict[str, Any]:
        assert self.workdir is not None and self.etcd is not None
        users = {"superuser": "postgres", "replication": "replicator", "rewind": "rewinder"}
        return {
            "scope": SCOPE,
            "name": name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"{HOST}:{api_port}", "connect_address": f"{HOST}:{api_port}"},
            "etcd3": {"hosts": [f"{HOST}:{self.etcd.port}"]},
            "bootstrap": {
                "dcs": {**DCS_TIMING, "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                       "parameters": _CLUSTER_PARAMETERS}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "no-sync"],
                "post_bootstrap": str(self.workdir / "post_bootstrap.sh"),
            },
            "postgresql": {
                "listen": f"{HOST}:{pg_port}",
                "connect_address": f"{HOST}:{pg_port}",
                "data_dir": str(home / "data"),
                "bin_dir": str(self.pg_bin),
                "pgpass": str(home / "pgpass"),
                "authentication": {
                    role: {"username": user, "password": self._passwords[role]}
                    for role, user in users.items()
                },
                "parameters": {"unix_socket_directories": str(self.workdir / "run"),
                               "shared_buffers": "32MB", "fsync": "off",
                               "log_min_messages": "warning"},
                "pg_hba": [
                    "local all all trust",
                    "local replication all trust",
                    f"host all postgres {HOST}/32 trust",
                    f"host replication all {HOST}/32 trust",
                    f"host all all {HOST}/32 scram-sha-256",
                ],
                "basebackup": [{"checkpoint": "fast"}],
            },
        }

    # -- reading the cluster

    def cluster(self) -> dict[str, Any]:
        """GET /cluster from the first member whose REST API answers."""
        last: BaseException | None = None
        for member in self.members.values():
            try:
                code, body = http_json(member.api_url + "/cluster", timeout=2)
            except OSError as exc:
                last = exc
                continue
            if code == 200 and isinstance(body, dict):
                return body
        raise RuntimeError(f"no Patroni REST API answered /cluster (last error: {last!r})")

    def roles(self) -> dict[str, tuple[str, str]]:
        """member name -> (role, state) as /cluster reports them."""
        return {m["name"]: (m["role"], m["state"]) for m in self.cluster()["members"]}

    def leader(self) -> str | None:
        """The member /cluster calls leader and running, if any."""
        leaders = [n for n, (role, state) in self.roles().items()
                   if role == "leader" and state == "running"]
        return leaders[0] if len(leaders) == 1 else None

    def replicas(self) -> list[str]:
        return [n for n in self.names if n != self.leader()]

    def wait_leader(self, name: str, timeout: float = ROLE_TIMEOUT) -> None:
        wait_until(lambda: self.leader() == name, timeout, f"{name} leading (/cluster)",
                   interval=0.2, ignore=(OSError, RuntimeError))

    def wait_healthy(self, timeout: float = ROLE_TIMEOUT) -> dict[str, tuple[str, str]]:
        """Until one leader runs and every other member streams from it."""
        def healthy() -> dict[str, tuple[str, str]] | None:
            roles = self.roles()
            leaders = [n for n, rs in roles.items() if rs == ("leader", "running")]
            streaming = [n for n, rs in roles.items() if rs[1] == "streaming"]
            complete = set(roles) == set(self.names)
            return roles if complete and len(leaders) == 1 and len(streaming) == len(roles) - 1 \
                else None

        return wait_until(healthy, timeout, "one leader running, every other member streaming",
                          interval=0.2, ignore=(OSError, RuntimeError))

    # -- actions

    def switchover(self, candidate: str) -> float:
        """POST /switchover from the current leader to ``candidate`` (Patroni answers once
        the candidate has been promoted); returns the seconds it took to answer."""
        leader = self.leader()
        assert leader is not None and leader != candidate, (leader, candidate)
        began = time.monotonic()
        code, body = http_json(self.members[leader].api_url + "/switchover",
                               {"leader": leader, "candidate": candidate}, timeout=60)
        if code != 200:
            raise RuntimeError(f"switchover {leader} -> {candidate}: {code} {body!r}")
        return time.monotonic() - began

    def kill(self, name: str) -> None:
        """SIGKILL the member's Patroni and then every PostgreSQL process of it: a crash."""
        member = self.members[name]
        member.process.kill(signal.SIGKILL)
        member.process.stop()  # reaps it
        postmaster = member.postmaster_pid()
        if postmaster is not None:
            os.kill(postmaster, signal.SIGKILL)
        # The postmaster's children would otherwise linger (and still answer once).
        for pid in pids_under(member.data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pids_under(member.data_dir), 10.0, f"death of {name}'s postgres")

    def restart(self, name: str) -> None:
        """Start the member's Patroni again (after ``kill``); it rejoins as Patroni decides."""
        member = self.members[name]
        assert self.workdir is not None
        if member.postmaster_pid() is None:
            # A SIGKILLed postmaster may linger as a zombie (this machine's init reaps
            # lazily), which postgres would take for a live owner of its lock files.
            (member.data_dir / "postmaster.pid").unlink(missing_ok=True)
            (self.workdir / "run" / f".s.PGSQL.{member.pg_port}.lock").unlink(missing_ok=True)
        member.process.start()

    def add_member(self, name: str) -> Member:
        """A new member joining the running cluster (Patroni clones it from the leader)."""
        assert name not in self.members
        member = self.members[name] = self._member(name, install_patroni())
        self.names = (*self.names, name)
        member.process.start()
        return member

    def stop_member(self, name: str) -> None:
        """A clean stop of the member's Patroni: it stops PostgreSQL and reports ``stopped``
        in /cluster until its member key expires (ttl)."""
        member = self.members[name]
        member.process.kill(signal.SIGTERM)
        member.process.stop()

    def expire_member(self, name: str) -> None:
        """Delete a stopped member's key from etcd, as its ttl would 20 s later; the member
        is out of the cluster for good (its files stay for teardown)."""
        assert self.etcd is not None and not self.members[name].process.is_running()
        key = f"/service/{SCOPE}/members/{name}"
        env = {**os.environ, "ETCDCTL_API": "3"}
        subprocess.run([shutil.which("etcdctl") or "/usr/bin/etcdctl",
                        f"--endpoints=http://{HOST}:{self.etcd.port}", "del", key],
                       check=True, capture_output=True, timeout=10, env=env)
        self.names = tuple(n for n in self.names if n != name)

    # -- what tierwatch needs

    def urls(self) -> list[str]:
        return [m.api_url for m in self.members.values()]

    def monitor_dsn(self, name: str) -> str:
        """The monitor role's address of a member, without password."""
        return f"postgresql://monitor@{HOST}:{self.members[name].pg_port}/postgres"

    def dsn_template(self) -> str:
        """The ``patroni.dsn`` of CONTRACT §6: {host} and {port} come from /cluster."""
        return "postgresql://monitor@{host}:{port}/postgres"

    def write_password_file(self) -> Path:
        assert self.workdir is not None
        path = self.workdir / "monitor.password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.monitor_password)
        return path

    def write(self, rows: int = 1) -> None:
        """Insert ``rows`` rows on the current leader (WAL for the replicas to follow)."""
        leader = self.leader()
        assert leader is not None
        with psycopg.connect(self.members[leader].superuser_dsn(), autocommit=True,
                             connect_timeout=3) as conn:
            conn.execute("INSERT INTO public.ticks (at) SELECT now() FROM generate_series(1, %s)",
                         (rows,))

    def log_tail(self, name: str, limit: int = 3000) -> str:
        assert self.workdir is not None
        try:
            return (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-limit:]
        except OSError:
            return ""


_CLUSTER_PARAMETERS: dict[str, Any] = {
    "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
    "max_wal_senders": 10, "max_replication_slots": 10, "max_connections": 50,
    "wal_keep_size": "16MB", "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
    # With use_slots a replica may start before the leader made its slot: retry quickly.
    "wal_retrieve_retry_interval": "500ms",
}


def _answers(url: str) -> bool:
    try:
        return http_json(url, timeout=1)[0] in (200, 503)
    except OSError:
        return False


def tierwatch_config(pc: PatroniCluster, poll_interval: float = 1.0,
                     refresh_interval: float = 1.0, cluster: str = "demo") -> str:
    """A tierwatch config (CONTRACT §6) watching ``pc`` through its Patroni REST APIs."""
    doc = {
        "listen": "127.0.0.1:0",
        "poll_interval": poll_interval,
        "clusters": [{
            "name": cluster,
            "patroni": {"urls": pc.urls(), "dsn": pc.dsn_template(),
                        "password_file": str(pc.write_password_file()),
                        "refresh_interval": refresh_interval},
        }],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.patroni", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster, write a tierwatch config, wait")
    up.add_argument("--config-out", type=Path, required=True)
    up.add_argument("--poll-interval", type=float, default=5.0)
    args = parser.parse_args(argv)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    pc = PatroniCluster()
    try:
        pc.start()
        args.config_out.write_text(tierwatch_config(pc, args.poll_interval))
        print(f"patroni cluster {SCOPE} up in {pc.start_seconds:.1f}s, dir {pc.workdir}")
        for name, member in pc.members.items():
            print(f"  {name}  {member.superuser_dsn()}  api {member.api_url}")
        print(f"  config {args.config_out}\nCtrl-C / SIGTERM stops everything.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        pc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
