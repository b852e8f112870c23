"""deploy/compose: the file validates, every mounted file exists, and the configs agree on
service names, ports, users and passwords (the stack itself needs Docker and is not run)."""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    REPO,
    docker_compose,
    dockerfile_stages,
    host_port,
    load_yaml,
    settings_with_secrets,
    targets_of,
)

SECRETS_IN_CONTAINER = "/run/secrets"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def tierwatch_config(compose: dict[str, Any]) -> str:
    return mounted_source(compose["services"]["tierwatch"], "/etc/tierwatch/tierwatch.yaml") \
        .read_text()


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts (named volumes skipped)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), target))
    return mounts


def mounted_source(service: dict[str, Any], container_path: str) -> Path:
    for source, target in bind_mounts(service):
        if target == container_path:
            return source
        if container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target.rstrip("/")) + 1:]
    raise AssertionError(f"nothing mounted at {container_path}")


def secret_files(compose: dict[str, Any]) -> dict[str, Path]:
    return {name: (COMPOSE_DIR / spec["file"]).resolve()
            for name, spec in compose["secrets"].items()}


def service_secrets(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_docker_compose_config_validates() -> None:
    binary = docker_compose()
    proc = subprocess.run([binary, "-f", COMPOSE_FILE, "config", "-q"], cwd=COMPOSE_DIR,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        for source, target in bind_mounts(service):
            if source.is_relative_to(REPO / "dashboards"):
                continue  # test_grafana_mounts_the_shipped_dashboards
            if not source.exists():
                missing.append(f"{name}: {source} -> {target}")
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
    for name, path in secret_files(compose).items():
        if not path.is_file():
            missing.append(f"secret {name}: {path}")
    assert not missing, "\n".join(missing)


def test_grafana_mounts_the_shipped_dashboards(compose: dict[str, Any]) -> None:
    mounts = dict((target, source) for source, target in
                  bind_mounts(compose["services"]["grafana"]))
    assert mounts["/var/lib/grafana/dashboards"] == REPO / "dashboards"
    assert mounts["/etc/grafana/provisioning"] == REPO / "dashboards" / "provisioning"
    if not (REPO / "dashboards" / "provisioning").is_dir():
        pytest.skip("dashboards/provisioning/ does not exist yet")
    assert list((REPO / "dashboards").glob("*.json")), "no dashboards/*.json"
    grafana = compose["services"]["grafana"]
    provisioning = REPO / "dashboards" / "provisioning"
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
                 for p in (load_yaml(f) or {}).get("providers", [])]
    assert providers, "no dashboard provider in dashboards/provisioning/dashboards/"
    for provider in providers:
        # the provider's path, inside the container, must hold the shipped JSON files
        folder = mounted_source(grafana, provider["options"]["path"].rstrip("/"))
        assert list(folder.glob("*.json")), f"provider path {provider['options']['path']}"
    datasources = [d for f in sorted((provisioning / "datasources").glob("*.y*ml"))
                   for d in (load_yaml(f) or {}).get("datasources", [])]
    prometheus_urls = {d.get("url") for d in datasources if d.get("type") == "prometheus"}
    env = grafana.get("environment", {})
    resolved = {re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), u or "")
                for u in prometheus_urls}
    assert resolved == {"http://prometheus:9090"}, prometheus_urls


def test_scripts_are_executable(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for source, target in bind_mounts(service):
            if source.suffix == ".sh":
                assert os.access(source, os.X_OK), f"{source} (mounted at {target})"


def test_secret_files_hold_one_line_without_newline(compose: dict[str, Any]) -> None:
    for name, path in secret_files(compose).items():
        text = path.read_text()
        assert text and "\n" not in text, f"secret {name}: one password, no trailing newline"


def test_every_script_reads_only_secrets_its_service_has(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        has = service_secrets(service)
        assert has <= set(compose["secrets"]), name
        for source, _target in bind_mounts(service):
            if source.suffix != ".sh":
                continue
            used = set(re.findall(r"(?:secrets|/run/secrets)\}?/(\w+)", source.read_text()))
            assert used, f"{source.name} reads no secret?"
            assert used <= has, f"{name}: {source.name} reads {used - has} not given to it"


def test_tierwatch_config_points_at_the_compose_services(
        compose: dict[str, Any], tierwatch_config: str, tmp_path: Path) -> None:
    services = compose["services"]
    secrets = {n: p.read_text() for n, p in secret_files(compose).items()}
    settings = settings_with_secrets(tierwatch_config, SECRETS_IN_CONTAINER, tmp_path, secrets)
    assert settings.clusters, "the demo watches something"
    given = service_secrets(services["tierwatch"])
    pgbouncer_ini = pgbouncer_config(services)
    redis_conf = redis_config(services)
    for target in targets_of(tierwatch_config):
        assert target.host in services, f"{target.name}: {target.host} is no compose service"
        if target.kind == "postgres":
            assert services[target.host]["image"].startswith("postgres:")
            assert target.port == 5432
        elif target.kind == "pgbouncer":
            assert target.port == int(pgbouncer_ini["pgbouncer"]["listen_port"])
            assert target.path == "pgbouncer"
            stats_users = pgbouncer_ini["pgbouncer"]["stats_users"].replace(",", " ").split()
            assert target.user in stats_users
        else:
            assert target.port == int(redis_conf["port"][0])
        assert target.password_file, f"{target.name}: passwords come from files"
        secret = target.password_file.removeprefix(SECRETS_IN_CONTAINER + "/")
        assert secret in given, f"{target.name}: secret {secret} not given to tierwatch"


def pgbouncer_config(services: dict[str, Any]) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=None)
    parser.read_string(mounted_source(services["pgbouncer"],
                                      "/etc/pgbouncer/pgbouncer.ini").read_text())
    return parser


def redis_config(services: dict[str, Any]) -> dict[str, list[str]]:
    conf_path = services["redis"]["command"][-1]
    conf: dict[str, list[str]] = {}
    for line in mounted_source(services["redis"], conf_path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


def userlist(services: dict[str, Any]) -> dict[str, str]:
    path = pgbouncer_config(services)["pgbouncer"]["auth_file"]
    text = mounted_source(services["pgbouncer"], path).read_text()
    return dict(re.findall(r'^"([^"]+)"\s+"([^"]*)"', text, re.MULTILINE))


def test_passwords_agree_across_files(compose: dict[str, Any], tierwatch_config: str) -> None:
    services = compose["services"]
    secrets = {n: p.read_text() for n, p in secret_files(compose).items()}
    users = userlist(services)
    # PgBouncer authenticates monitor and app with the passwords the primary's roles got
    assert users["monitor"] == secrets["pg_monitor_password"]
    assert users["app"] == secrets["pg_app_password"]
    # Redis: the ACL stores the sha256 of the monitor user's password
    conf = redis_config(services)
    acl = mounted_source(services["redis"], conf["aclfile"][0]).read_text()
    match = re.search(r"^user monitor on .*#([0-9a-f]{64})", acl, re.MULTILINE)
    assert match, "users.acl has no monitor user with a password hash"
    assert match.group(1) == hashlib.sha256(
        secrets["redis_monitor_password"].encode()).hexdigest()
    redis_target = next(t for t in targets_of(tierwatch_config) if t.kind == "redis")
    assert redis_target.user == "monitor"
    assert redis_target.password_file == f"{SECRETS_IN_CONTAINER}/redis_monitor_password"
    for target in targets_of(tierwatch_config):
        if target.kind != "redis":
            assert target.user == "monitor"
            assert target.password_file == f"{SECRETS_IN_CONTAINER}/pg_monitor_password"


def test_pgbouncer_and_replica_reach_the_primary(compose: dict[str, Any]) -> None:
    services = compose["services"]
    databases = pgbouncer_config(services)["databases"]
    for spec in databases.values():
        fields = dict(kv.split("=", 1) for kv in spec.split())
        assert fields["host"] in services and fields["port"] == "5432", spec
    replica = services["replica"]
    assert replica["environment"]["PRIMARY_HOST"] in services
    init = mounted_source(services["primary"],
                          "/docker-entrypoint-initdb.d/10-tierwatch-demo.sh").read_text()
    slot = replica["environment"]["REPLICATION_SLOT"]
    assert f"pg_create_physical_replication_slot('{slot}')" in init
    assert "IN ROLE pg_monitor" in init


def test_replica_reports_the_name_tierwatch_knows(compose: dict[str, Any],
                                                  tierwatch_config: str) -> None:
    # cluster_name becomes the walreceiver's application_name on the primary, so the
    # replication metrics carry replica="<the configured target name>"
    command = compose["services"]["replica"]["command"]
    cluster_name = next(a.split("=", 1)[1] for a in command if a.startswith("cluster_name="))
    replicas = [t.name for t in targets_of(tierwatch_config)
                if t.kind == "postgres" and t.host == "replica"]
    assert replicas == [cluster_name]


def test_prometheus_scrapes_tierwatch_where_it_listens(
        compose: dict[str, Any], tierwatch_config: str, tmp_path: Path) -> None:
    services = compose["services"]
    settings = settings_with_secrets(tierwatch_config, SECRETS_IN_CONTAINER, tmp_path)
    listen_host, listen_port = host_port(settings.listen)
    assert listen_host == "0.0.0.0"
    _, stages = dockerfile_stages()
    assert str(listen_port) == stages[-1].last("EXPOSE")
    assert f"{listen_port}:{listen_port}" in services["tierwatch"]["ports"]

    prometheus = load_yaml(mounted_source(services["prometheus"],
                                          "/etc/prometheus/prometheus.yml"))
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    # TierwatchExporterAbsent watches up{job="tierwatch"}
    assert 'up{job="tierwatch"}' in (REPO / "alerts" / "alerting_rules.yml").read_text()
    targets = [t for sc in jobs["tierwatch"]["static_configs"] for t in sc["targets"]]
    assert targets == [f"tierwatch:{listen_port}"]


def test_prometheus_sends_alerts_to_the_alertmanager_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = load_yaml(mounted_source(services["prometheus"],
                                          "/etc/prometheus/prometheus.yml"))
    targets = [t for am in prometheus["alerting"]["alertmanagers"]
               for sc in am["static_configs"] for t in sc["targets"]]
    alertmanager = services["alertmanager"]
    listen = next((a.split("=", 1)[1] for a in alertmanager.get("command", [])
                   if a.startswith("--web.listen-address=")), ":9093")
    _, port = host_port(listen)
    assert targets == [f"alertmanager:{port}"]
    assert f"{port}:{port}" in alertmanager["ports"]
    config = alertmanager["command"][0].split("=", 1)[1]
    assert mounted_source(alertmanager, config) == REPO / "alerts" / "alertmanager.yml"


def test_prometheus_loads_the_shipped_rule_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = load_yaml(mounted_source(services["prometheus"],
                                          "/etc/prometheus/prometheus.yml"))
    loaded: set[Path] = set()
    for pattern in prometheus["rule_files"]:
        directory, _, glob = pattern.rpartition("/")
        loaded |= set(mounted_source(services["prometheus"], directory).glob(glob))
    shipped = {REPO / "alerts" / "recording_rules.yml", REPO / "alerts" / "alerting_rules.yml"}
    assert shipped <= loaded
    assert REPO / "alerts" / "alertmanager.yml" not in loaded
