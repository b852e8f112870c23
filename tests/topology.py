"""Local test topology: PostgreSQL 15 primary + streaming replica, PgBouncer and Redis.

Everything lives in one fresh temp dir on free loopback ports and is torn down by
``Topology.stop()`` (also from ``__exit__``, on a failed start and at interpreter exit).

Use it from pytest (``with Topology() as topo: ...`` in a fixture) or as a script::

    python -m tests.topology up --config-out /tmp/tierwatch.yaml [--poll-interval 5]

Root is supported: PostgreSQL and PgBouncer refuse to run as root, so they are started as
the ``postgres`` user (``Popen(user=...)`` rather than ``runuser``, because runuser forks
and we want the pid we hold to be the server's own).
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import psycopg
import redis
import yaml
from psycopg import sql

HOST = "127.0.0.1"
PG_BIN = Path(os.environ.get("TIERWATCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "postgres"
REPLICA_NAME = "replica-1"
SLOT_NAME = "replica_1"
READY_TIMEOUT = 30.0

T = TypeVar("T")


def wait_until(
    pred: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``pred`` until it returns something truthy (which is returned) or time runs out.

    Exceptions of the types in ``ignore`` count as "not yet" (e.g. connection refused).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = pred()
            if result:
                return result
        except ignore as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s") from last_exc
        time.sleep(interval)


# --------------------------------------------------------------------------- processes


def _service_user_kwargs() -> dict[str, Any]:
    """Popen kwargs that drop root to the postgres user (empty when not root)."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(SERVICE_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _own(path: Path, mode: int) -> Path:
    """Make ``path`` owned by the service user (when root) with ``mode``."""
    os.chmod(path, mode)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(SERVICE_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def _mkdir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return _own(path, mode)


def _child_env(home: Path) -> dict[str, str]:
    # Inherited PG* variables (PGHOST, PGPORT, ...) would redirect the client tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = str(home)
    return env


def _run(cmd: Sequence[str | Path], cwd: Path, timeout: float = 120.0) -> str:
    """Run a PostgreSQL tool as the service user; raise with its output on failure."""
    argv = [str(c) for c in cmd]
    proc = subprocess.run(
        argv, cwd=cwd, env=_child_env(cwd), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
        **_service_user_kwargs(),
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-2000:]
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1]} failed ({proc.returncode}): {out}")
    return proc.stdout


def _proc_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    # A killed daemon orphaned to a lazily reaping init stays a zombie for a while.
    return _proc_state(pid) not in (None, "Z", "X")


def pids_under(path: Path) -> list[int]:
    """Live processes whose cwd or command line lies inside ``path``.

    PostgreSQL backends rename themselves ("postgres: checkpointer"), but their cwd is the
    data directory, so the cwd catches them.
    """
    prefix = str(path)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        inside = cwd == prefix or cwd.startswith(prefix + "/") or prefix in cmdline
        if inside and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _kill_all_under(path: Path, grace: float = 10.0) -> None:
    """Wait up to ``grace`` s for processes inside ``path`` to exit, then SIGKILL them."""
    try:
        wait_until(lambda: not pids_under(path), grace, f"exit of processes in {path}")
        return
    except TimeoutError:
        pass
    for pid in pids_under(path):
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    wait_until(lambda: not pids_under(path), 10.0, f"death of processes in {path}")


_USED_PORTS: set[int] = set()


def free_port() -> int:
    """A currently free loopback port, never handed out before by this process.

    Picked below Linux's ephemeral range when possible: servers are restarted on the same
    port, and a port inside the range can meanwhile be taken by an outgoing client socket.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(500):
        if low > 12000:
            port = random.randrange(10000, low)
        else:
            with socket.socket() as probe:
                probe.bind((HOST, 0))
                port = probe.getsockname()[1]
        if port in _USED_PORTS:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        _USED_PORTS.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _query(dsn: str, query: str | sql.Composable, **kwargs: Any) -> tuple[Any, ...] | None:
    """First row of ``query`` (autocommit), or None."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5, **kwargs) as conn:
        cur = conn.execute(query)
        return cur.fetchone() if cur.description else None


def _setting(data_dir: Path, name: str) -> str:
    """Last value of ``name`` in the data dir's config files (auto.conf read last)."""
    value = ""
    for conf in ("postgresql.conf", "postgresql.auto.conf"):
        for line in (data_dir / conf).read_text().splitlines():
            key, _, rest = line.partition("=")
            if key.strip() == name:
                value = rest.split("#")[0].strip().strip("'")
    return value


def tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One started server process."""

    name: str
    host: str
    port: int

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        raise NotImplementedError

    def kill(self, sig: int) -> None:
        """Send ``sig`` (SIGSTOP, SIGCONT, SIGKILL, ...) to the main server process."""
        os.kill(self.pid, sig)


@dataclass
class ProcServer(Server):
    """A foreground server we own as a child process (PgBouncer, Redis)."""

    argv: list[str] = field(default_factory=list)
    cwd: Path = Path("/")
    log_path: Path = Path("/dev/null")
    ready: Callable[[], bool] = lambda: True
    as_service_user: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ProcessLookupError(f"{self.name} was never started")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.is_running():
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=_child_env(self.cwd), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C on the terminal must not reach it before we stop it.
                start_new_session=True,
                **(_service_user_kwargs() if self.as_service_user else {}),
            )

        def up() -> bool:
            if not self.is_running():
                raise RuntimeError(f"{self.name} exited on start: {_tail(self.log_path)}")
            return self.ready()

        wait_until(up, READY_TIMEOUT, f"{self.name} accepting connections on port {self.port}")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGCONT)  # a stopped process would never see SIGTERM
        # PgBouncer 1.23+ waits after a first SIGTERM until every client has left; a second
        # one makes it exit at once, as the first does on 1.18 (and on Redis).
        for timeout in (1, 10):
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        self._proc.kill()
        self._proc.wait(timeout=10)


@dataclass
class PgServer(Server):
    """A PostgreSQL instance controlled with pg_ctl (it daemonizes; the pid is the postmaster)."""

    data_dir: Path = Path("/nonexistent")
    log_path: Path = Path("/dev/null")
    pg_bin: Path = PG_BIN
    _last_pid: int = field(default=0, init=False, repr=False)

    @property
    def pid(self) -> int:
        try:
            self._last_pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            if not self._last_pid:
                raise ProcessLookupError(f"{self.name} has no postmaster.pid") from None
        return self._last_pid

    def is_running(self) -> bool:
        try:
            pid = self.pid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (ProcessLookupError, OSError):
            return False
        # Guard against pid reuse: the process must be a postmaster for our data dir.
        return _alive(pid) and str(self.data_dir) in cmdline

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def start(self) -> None:
        if self.is_running():
            return
        # Backends of a SIGKILLed postmaster hold its shared memory until they notice.
        _kill_all_under(self.data_dir)
        # PID 1 of this machine reaps orphans only lazily, so a SIGKILLed postmaster lingers
        # as a zombie, which postgres takes for a live owner of its lock files: remove them.
        socket_dir = _setting(self.data_dir, "unix_socket_directories")
        for lock in (self.data_dir / "postmaster.pid",
                     Path(socket_dir) / f".s.PGSQL.{self.port}.lock"):
            lock.unlink(missing_ok=True)
        try:
            _run([self.pg_bin / "pg_ctl", "start", "-w", "-t", "60", "-D", self.data_dir,
                  "-l", self.log_path], cwd=self.data_dir)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{_tail(self.log_path)}") from None

    def stop(self) -> None:
        if self.is_running():
            pid = self.pid
            os.kill(pid, signal.SIGCONT)  # a SIGSTOPped postmaster ignores the stop request
            try:
                _run([self.pg_bin / "pg_ctl", "stop", "-m", "fast", "-w", "-t", "30",
                      "-D", self.data_dir], cwd=self.data_dir)
            except RuntimeError:
                if _alive(pid):
                    os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        _kill_all_under(self.data_dir)

    def promote(self) -> None:
        """Promote this standby and wait until it accepts writes."""
        _run([self.pg_bin / "pg_ctl", "promote", "-w", "-t", "60", "-D", self.data_dir],
             cwd=self.data_dir)
        wait_until(lambda: _query(self.superuser_dsn(), "SELECT NOT pg_is_in_recovery()")
                   == (True,), READY_TIMEOUT, f"promotion of {self.name}",
                   ignore=(psycopg.Error,))


# --------------------------------------------------------------------------- topology


class Topology:
    """Primary + streaming replica + PgBouncer + Redis, all on free loopback ports.

    ``base_dir`` is the parent of the fresh temp dir (default: the system temp dir);
    ``workdir`` is that temp dir, removed again by ``stop()``.
    """

    primary: PgServer
    replica: PgServer
    pgbouncer: ProcServer
    redis: ProcServer

    def __init__(self, base_dir: Path | None = None, redis_server_binary: str = "redis-server",
                 pg_bin: Path = PG_BIN, *, redis_server_command: Sequence[str] = (),
                 pgbouncer_command: Sequence[str] = ()):
        # A command (argv before the config file) wins over the binary: e.g. a Debian 13
        # build run through its own loader (tests/trixieservers.py).
        self.base_dir = base_dir
        self.redis_server_binary = redis_server_binary
        self.redis_server_command = list(redis_server_command)
        self.pgbouncer_command = list(pgbouncer_command)
        self.pg_bin = pg_bin
        self.monitor_password = secrets.token_hex(16)
        self.app_password = secrets.token_hex(16)
        self.redis_monitor_password = secrets.token_hex(16)
        self.workdir: Path | None = None
        self.start_seconds = 0.0
        self._servers: list[Server] = []
        self._replica_generation = 0
        self._stopped = False

    # -- lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self.workdir is not None:
            raise RuntimeError("a Topology can be started only once")
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="tierwatch-topo-", dir=self.base_dir))
        os.chmod(self.workdir, 0o755)  # postgres must traverse it
        atexit.register(self.stop)
        try:
            for sub in ("run", "logs", "pgbouncer"):
                _mkdir(self.workdir / sub, 0o755)
            self._start_primary()
            self._start_replica()
            self._start_pgbouncer()
            self._start_redis()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop everything (idempotent), kill leftovers and remove the temp dir."""
        if self.workdir is None or self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        # Replica before primary: a primary's shutdown waits for its walsenders.
        for server in reversed(self._servers):
            try:
                server.stop()
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                # keep going: the sweep below cleans up
                print(f"topology: stopping {server.name} failed: {exc}", file=sys.stderr)
        _kill_all_under(self.workdir, grace=0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- bring-up steps

    def _start_primary(self) -> None:
        assert self.workdir is not None
        data = _mkdir(self.workdir / "primary")
        _run([self.pg_bin / "initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C",
              "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], cwd=data)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# tierwatch topology\n"
                f"listen_addresses = '{HOST}'\n"
                f"unix_socket_directories = '{self.workdir / 'run'}'\n"
                "wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n"
                "wal_keep_size = '16MB'\nshared_buffers = '32MB'\nmax_connections = 50\n"
                "fsync = off\nfull_page_writes = off\nlog_min_messages = warning\n"
                # Read by the replica, which starts from a copy of this file.
                "hot_standby = on\nhot_standby_feedback = on\n"
                "wal_receiver_status_interval = '1s'\n"
            )
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "local replication all trust\n"
            f"host all postgres {HOST}/32 trust\n"
            f"host replication all {HOST}/32 trust\n"
            f"host all all {HOST}/32 scram-sha-256\n"
        )
        self._set_port(data, port := free_port())
        self.primary = PgServer("primary", HOST, port, data_dir=data, pg_bin=self.pg_bin,
                                log_path=self.workdir / "logs" / "primary.log")
        self._servers.append(self.primary)
        self.primary.start()

        dsn = self.primary.superuser_dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE monitor LOGIN PASSWORD {} IN ROLE pg_monitor")
                         .format(sql.Literal(self.monitor_password)))
            conn.execute(sql.SQL("CREATE ROLE app LOGIN PASSWORD {}")
                         .format(sql.Literal(self.app_password)))
            conn.execute("CREATE DATABASE app OWNER app")
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (SLOT_NAME,))
        with psycopg.connect(self.primary.superuser_dsn("app"), autocommit=True) as conn:
            conn.execute("SET ROLE app")
            conn.execute("CREATE TABLE public.items (id serial PRIMARY KEY, payload text)")

    @staticmethod
    def _set_port(data: Path, port: int) -> None:
        # postgresql.auto.conf is read last, so this wins over a copied postgresql.conf.
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {port}\n")

    def _start_replica(self, port: int | None = None) -> None:
        assert self.workdir is not None
        self._replica_generation += 1
        name = "replica" if self._replica_generation == 1 else f"replica-{self._replica_generation}"
        data = _mkdir(self.workdir / name)
        _run([self.pg_bin / "pg_basebackup", "-h", HOST, "-p", self.primary.port, "-U", "postgres",
              "-D", data, "-R", "-X", "stream", "-S", SLOT_NAME, "-c", "fast", "--no-sync"],
             cwd=data)
        port = port or free_port()
        self._set_port(data, port)
        with open(data / "postgresql.auto.conf", "a") as conf:
            # Replaces the one -R wrote: application_name is what pg_stat_replication shows.
            conf.write(
                f"primary_conninfo = 'host={HOST} port={self.primary.port} user=postgres "
                f"application_name={REPLICA_NAME}'\n"
                f"primary_slot_name = '{SLOT_NAME}'\n"
            )
        if self._replica_generation == 1:
            self.replica = PgServer(REPLICA_NAME, HOST, port, data_dir=data, pg_bin=self.pg_bin,
                                    log_path=self.workdir / "logs" / "replica.log")
            self._servers.append(self.replica)
        else:
            self.replica.data_dir = data
        self.replica.start()
        self.wait_replica_streaming()

    def wait_replica_streaming(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the primary's pg_stat_replication shows replica-1 streaming."""
        query = sql.SQL("SELECT 1 FROM pg_stat_replication WHERE application_name = {} "
                        "AND state = 'streaming'").format(sql.Literal(REPLICA_NAME))
        wait_until(lambda: _query(self.primary.superuser_dsn(), query), timeout,
                   f"{REPLICA_NAME} streaming", ignore=(psycopg.Error,))

    def _start_pgbouncer(self) -> None:
        assert self.workdir is not None
        d = self.workdir / "pgbouncer"
        port = free_port()
        userlist = d / "userlist.txt"
        userlist.write_text(f'"monitor" "{self.monitor_password}"\n'
                            f'"app" "{self.app_password}"\n')
        _own(userlist, 0o600)
        ini = d / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"app = host={HOST} port={self.primary.port} dbname=app\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\nlisten_port = {port}\n"
            f"unix_socket_dir = {self.workdir / 'run'}\n"
            f"auth_type = scram-sha-256\nauth_file = {userlist}\n"
            "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 50\n"
            "stats_users = monitor\nadmin_users =\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.workdir / 'logs' / 'pgbouncer.log'}\n"
            f"pidfile = {d / 'pgbouncer.pid'}\n"
        )
        command = self.pgbouncer_command or [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"]
        self.pgbouncer = ProcServer(
            "pgbouncer", HOST, port, argv=[*command, str(ini)], cwd=d,
            log_path=self.workdir / "logs" / "pgbouncer.out", ready=lambda: tcp_accepts(port))
        self._servers.append(self.pgbouncer)
        self.pgbouncer.start()

    def redis_command(self) -> list[str]:
        """The argv that starts this topology's Redis server, before its config file."""
        if self.redis_server_command:
            return list(self.redis_server_command)
        binary = shutil.which(self.redis_server_binary)
        if binary is None:
            raise FileNotFoundError(f"redis server binary {self.redis_server_binary!r} not found")
        return [binary]

    def _start_redis(self) -> None:
        assert self.workdir is not None
        command = self.redis_command()
        d = self.workdir / "redis"
        d.mkdir()
        port = free_port()
        conf = d / "redis.conf"
        conf.write_text(
            f"port {port}\nbind {HOST}\ndaemonize no\ndir {d}\nlogfile \"\"\n"
            "save \"\"\nappendonly no\nmaxmemory 16mb\nmaxmemory-policy allkeys-lru\n"
            f"user monitor on >{self.redis_monitor_password} -@all +info +ping +config|get\n"
        )
        os.chmod(conf, 0o600)

        def ready() -> bool:
            with redis.Redis(HOST, port, socket_timeout=1, socket_connect_timeout=1) as client:
                try:
                    return bool(client.ping())
                except redis.RedisError:
                    return False

        # Runs as the current user: Redis accepts root, and an alternative binary (e.g.
        # Valkey inside a venv) may not be executable by the postgres user.
        self.redis = ProcServer(
            "redis", HOST, port, argv=[*command, str(conf)], cwd=d,
            log_path=self.workdir / "logs" / "redis.log", ready=ready, as_service_user=False)
        self._servers.append(self.redis)
        self.redis.start()

    # -- addresses and secrets

    def superuser_dsn(self, server: PgServer, dbname: str = "postgres") -> str:
        return server.superuser_dsn(dbname)

    def monitor_dsn(self, server: Server) -> str:
        """The monitor user's address of ``server``, without password."""
        if server is self.redis:
            return f"redis://monitor@{server.host}:{server.port}/0"
        dbname = "pgbouncer" if server is self.pgbouncer else "postgres"
        return f"postgresql://monitor@{server.host}:{server.port}/{dbname}"

    def app_dsn_via_pgbouncer(self) -> str:
        return (f"postgresql://app:{self.app_password}@{self.pgbouncer.host}:"
                f"{self.pgbouncer.port}/app")

    def redis_url(self) -> str:
        return f"redis://{self.redis.host}:{self.redis.port}/0"

    def write_password_files(self) -> dict[str, Path]:
        """Write the monitor passwords to 0600 files; keys postgres, pgbouncer, redis."""
        assert self.workdir is not None
        d = self.workdir / "secrets"
        d.mkdir(mode=0o700, exist_ok=True)
        files = {"postgres": d / "pg-monitor.password", "redis": d / "redis-monitor.password"}
        for path, secret in ((files["postgres"], self.monitor_password),
                             (files["redis"], self.redis_monitor_password)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret)  # no trailing newline: the file is the password
        files["pgbouncer"] = files["postgres"]  # PgBouncer authenticates monitor likewise
        return files

    def tierwatch_config(
        self, poll_interval: float = 1.0, listen: str = "127.0.0.1:0", cluster: str = "main"
    ) -> str:
        """The YAML config (CONTRACT §2) for a tierwatch watching this topology."""
        pw = self.write_password_files()
        doc = {
            "listen": listen,
            "poll_interval": poll_interval,
            "clusters": [{
                "name": cluster,
                "postgres": [
                    {"name": s.name, "dsn": self.monitor_dsn(s),
                     "password_file": str(pw["postgres"])}
                    for s in (self.primary, self.replica)
                ],
                "pgbouncer": [{"name": "bouncer", "dsn": self.monitor_dsn(self.pgbouncer),
                               "password_file": str(pw["pgbouncer"])}],
                "redis": [{"name": "cache", "url": self.monitor_dsn(self.redis),
                           "password_file": str(pw["redis"])}],
            }],
        }
        return yaml.safe_dump(doc, sort_keys=False)

    # -- helpers for tests

    def psql(self, server: PgServer, query: str, dbname: str = "postgres") -> str:
        """Run ``query`` as superuser; first column of the first row, psql-style.

        Booleans come back as "t"/"f", NULL or no row as "".
        """
        row = _query(self.superuser_dsn(server, dbname), query)
        if not row or row[0] is None:
            return ""
        if isinstance(row[0], bool):
            return "t" if row[0] else "f"
        return str(row[0])

    def promote_replica(self) -> None:
        self.replica.promote()

    def rebuild_replica(self) -> None:
        """Turn the (promoted) replica back into a streaming standby of the primary.

        Stops it, makes sure the primary runs, recreates slot replica_1 and takes a fresh
        base backup into a new data dir served on the same port.
        """
        old = self.replica.data_dir
        self.replica.stop()
        self.primary.start()
        inactive = sql.SQL("SELECT NOT active FROM pg_replication_slots WHERE slot_name = {}"
                           ).format(sql.Literal(SLOT_NAME))
        wait_until(lambda: (_query(self.primary.superuser_dsn(), inactive) or (True,))[0],
                   READY_TIMEOUT, f"slot {SLOT_NAME} released")
        with psycopg.connect(self.primary.superuser_dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s", (SLOT_NAME,))
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (SLOT_NAME,))
        self._start_replica(port=self.replica.port)
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.topology", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the topology, write a tierwatch config, wait")
    up.add_argument("--config-out", type=Path, required=True)
    up.add_argument("--poll-interval", type=float, default=5.0)
    up.add_argument("--listen", default="127.0.0.1:9847")
    up.add_argument("--redis-server-binary", default="redis-server")
    args = parser.parse_args(argv)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    topo = Topology(redis_server_binary=args.redis_server_binary)
    try:
        topo.start()
        args.config_out.write_text(topo.tierwatch_config(args.poll_interval, args.listen))
        print(f"topology up in {topo.start_seconds:.1f}s, dir {topo.workdir}\n"
              f"  primary    {topo.superuser_dsn(topo.primary)}\n"
              f"  replica    {topo.superuser_dsn(topo.replica)}\n"
              f"  pgbouncer  {topo.monitor_dsn(topo.pgbouncer)}\n"
              f"  redis      {topo.redis_url()}\n"
              f"  config     {args.config_out}\n"
              "Ctrl-C / SIGTERM stops everything.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # let the teardown finish
        topo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
