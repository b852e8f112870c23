"""deploy/kubernetes: built-in kinds validate with `kubernetes-validate --strict`; the custom
resources (ServiceMonitor, PrometheusRule) and the cross-references are checked here."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

import exporter
from tests.deploy.support import (
    K8S_DIR,
    dockerfile_stages,
    env_of,
    host_port,
    load_script,
    load_yaml,
    load_yaml_docs,
    pip_tool,
    settings_with_secrets,
)

BUILT_IN_API_GROUPS = ("v1", "apps/v1")
LABELS = {"app.kubernetes.io/name": "tierwatch", "app.kubernetes.io/component": "exporter"}


def manifests() -> dict[Path, dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes (kustomization files excluded)."""
    found = {}
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs = load_yaml_docs(path)
        assert len(docs) == 1, f"{path}: one object per file"
        found[path] = docs[0]
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [obj for obj in manifests().values()
               if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{kind} {name or ''}: {len(matches)} found"
    return matches[0]


def workloads() -> list[dict[str, Any]]:
    return [one("Deployment"), one("StatefulSet")]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def volume_of(workload: dict[str, Any], mount_path: str) -> dict[str, Any]:
    mount = next(m for m in container(workload)["volumeMounts"] if m["mountPath"] == mount_path)
    return next(v for v in workload["spec"]["template"]["spec"]["volumes"]
                if v["name"] == mount["name"])


def config_text() -> str:
    return one("ConfigMap", "tierwatch-config")["data"]["tierwatch.yaml"]


def test_built_in_kinds_validate_strictly() -> None:
    validator = pip_tool("kubernetes-validate", "kubernetes-validate")
    files = [p for p, obj in manifests().items() if obj["apiVersion"] in BUILT_IN_API_GROUPS]
    assert len(files) >= 6
    proc = subprocess.run([validator, "--strict", "--quiet", *files], capture_output=True,
                          text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr


def test_every_manifest_belongs_to_a_kustomization() -> None:
    listed: set[Path] = set()
    for kustomization in K8S_DIR.rglob("kustomization.yaml"):
        doc = load_yaml(kustomization)
        assert doc["kind"] == "Kustomization"
        for resource in doc["resources"]:
            path = (kustomization.parent / resource).resolve()
            assert path.exists(), f"{kustomization}: {resource} missing"
            if path.is_file():
                listed.add(path)
            else:
                assert (path / "kustomization.yaml").is_file(), path
    assert set(manifests()) == listed
    for variant in ("single", "sharded"):
        assert "../base" in load_yaml(K8S_DIR / variant / "kustomization.yaml")["resources"]


def test_prometheus_rule_is_generated_from_alerts() -> None:
    generator = load_script("gen_k8s_rules")
    path = K8S_DIR / "base" / "prometheusrule.yaml"
    assert path.read_text() == generator.render(), \
        "out of date: run .venv/bin/python scripts/gen_k8s_rules.py"
    rule = load_yaml(path)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"]
    groups = rule["spec"]["groups"]
    expected = []
    for source in sorted(generator.ALERTS_DIR.glob("*rules*.yml")):
        expected += load_yaml(source)["groups"]
    assert groups == expected
    for group in groups:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert item["expr"]
            assert ("alert" in item) != ("record" in item), item


def test_gen_k8s_rules_check_mode_agrees() -> None:
    generator = load_script("gen_k8s_rules")
    assert generator.main(["--check"]) == 0


def test_service_monitor_selects_the_metrics_service() -> None:
    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in manifests().values() if s["kind"] == "Service"
                and selector.items() <= s["metadata"]["labels"].items()]
    # exactly one Service, or every shard would be scraped twice
    assert [s["metadata"]["name"] for s in services] == ["tierwatch"]
    service = services[0]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_services_select_the_pods_on_the_listen_port(tmp_path: Path) -> None:
    settings = settings_with_secrets(config_text(), "/run/secrets/tierwatch", tmp_path)
    listen_host, listen_port = host_port(settings.listen)
    assert listen_host == "0.0.0.0", "probes and Prometheus reach the pod by its IP"
    for workload in workloads():
        template_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        ports = {p["name"]: p["containerPort"] for p in container(workload)["ports"]}
        assert ports["http"] == listen_port
        for service in (s for s in manifests().values() if s["kind"] == "Service"):
            assert service["spec"]["selector"].items() <= template_labels.items()
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports
    assert one("Service", "tierwatch")["spec"]["ports"][0]["port"] == listen_port


def test_config_comes_from_the_configmap_and_passwords_from_the_secret(tmp_path: Path) -> None:
    secret = one("Secret", "tierwatch-secrets")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    _, stages = dockerfile_stages()
    image_config = env_of(stages[-1])["TIERWATCH_CONFIG"]
    for workload in workloads():
        config_dir, _, config_key = image_config.rpartition("/")
        config_volume = volume_of(workload, config_dir)
        assert config_volume["configMap"]["name"] == "tierwatch-config"
        assert config_key in one("ConfigMap", config_volume["configMap"]["name"])["data"]
        secret_volume = volume_of(workload, "/run/secrets/tierwatch")
        assert secret_volume["secret"]["secretName"] == "tierwatch-secrets"
        assert all(m.get("readOnly") for m in container(workload)["volumeMounts"]
                   if m["mountPath"] != "/tmp")
    settings = settings_with_secrets(config_text(), "/run/secrets/tierwatch", tmp_path)
    assert settings.clusters
    used = {p.name for p in (tmp_path / "secrets").iterdir()}
    assert used <= keys, f"password files {used - keys} are not keys of the Secret"


def test_probes() -> None:
    for workload in workloads():
        c = container(workload)
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_restrictive_security_context() -> None:
    _, stages = dockerfile_stages()
    image_uid = int(stages[-1].last("USER").split(":")[0])
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == image_uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        sc = container(workload)["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]


def test_resources_are_requested_and_memory_limited() -> None:
    for workload in workloads():
        resources = container(workload)["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


def test_image_tag_is_the_package_version() -> None:
    for workload in workloads():
        assert container(workload)["image"] == f"tierwatch:{exporter.__version__}", \
            "bump the image tag in deploy/kubernetes with the version"


def test_statefulset_is_the_deployment_plus_the_shard_variables() -> None:
    deployment, statefulset = workloads()
    template = copy.deepcopy(statefulset["spec"]["template"])
    env = template["spec"]["containers"][0].pop("env")
    assert template == deployment["spec"]["template"], "pod templates drifted apart"
    by_name = {e["name"]: e for e in env}
    assert set(by_name) == {"TIERWATCH_SHARD__INDEX", "TIERWATCH_SHARD__COUNT"}
    assert by_name["TIERWATCH_SHARD__INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    assert int(by_name["TIERWATCH_SHARD__COUNT"]["value"]) == statefulset["spec"]["replicas"]
    governing = one("Service", statefulset["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"


def test_shard_variables_reach_the_settings(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    statefulset = one("StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    env = {e["name"]: e for e in container(statefulset)["env"]}
    monkeypatch.setenv("TIERWATCH_SHARD__INDEX", str(replicas - 1))  # the last pod's ordinal
    monkeypatch.setenv("TIERWATCH_SHARD__COUNT", env["TIERWATCH_SHARD__COUNT"]["value"])
    settings = settings_with_secrets(config_text(), "/run/secrets/tierwatch", tmp_path)
    assert (settings.shard.index, settings.shard.count) == (replicas - 1, replicas)
