"""Deployment files: the compose file validates, the manifests and configs parse and agree, the
Kubernetes manifests are valid for the minimum version they claim, and every pod runs with the
least privilege it can."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .deploy_support import require_compose
from .servers import REPO

DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
K8S = DEPLOY / "k8s"
CORE_SERVICES = {"redis", "api", "worker"}
IMAGE = "${AZR_VERIFY_IMAGE:-azr-verify:latest}"
# The oldest Kubernetes the manifests support (stated in README.md, deploy/README.md and
# kustomization.yaml), and the newest whose schema kubernetes-validate ships.
K8S_MINIMUM = "1.30"
K8S_NEWEST = "1.37"
SERVICE_UID = 10001


@pytest.mark.parametrize("overrides", [[], ["deploy/compose/embedded.yml"],
                                       ["deploy/compose/production.yml"]],
                         ids=["base", "embedded", "production"])
@pytest.mark.parametrize("profile", [[], ["--profile", "monitoring"]], ids=["core", "monitoring"])
def test_compose_config_validates(overrides: list[str], profile: list[str]) -> None:
    command = require_compose()
    files = [arg for path in ["docker-compose.yml", *overrides] for arg in ("-f", path)]
    done = subprocess.run([*command, *files, *profile, "config", "-q"], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                               "AZR_VERIFY_API_KEYS": '{"ci": "k"}'})
    assert done.returncode == 0, done.stderr


def test_compose_core_stack_needs_no_pull() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {name for name, s in services.items() if "profiles" not in s} == CORE_SERVICES
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
    for name in CORE_SERVICES:
        assert services[name]["image"] == IMAGE, name
        assert services[name]["pull_policy"] == "never", name
        assert "build" not in services[name], name
    assert services["api"]["environment"]["AZR_VERIFY_REDIS_URL"] == "redis://redis:6379/0"
    # Passed through only when set: a braced default breaks compose v1's interpolation.
    assert services["api"]["environment"]["AZR_VERIFY_API_KEYS"] is None
    assert services["worker"]["command"] == ["azr-verify", "worker"]
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


def test_compose_least_privilege() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name in CORE_SERVICES:
        service = services[name]
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert service["read_only"] is True, name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert not service.get("privileged") and "user" not in service, name  # image: 10001
    # Only the workers (bubblewrap) lift seccomp and AppArmor, and nothing else.
    assert set(services["worker"]["security_opt"]) == {
        "no-new-privileges:true", "seccomp=unconfined", "apparmor=unconfined"}
    assert services["api"]["security_opt"] == ["no-new-privileges:true"]
    assert compose["networks"]["backend"]["internal"] is True
    assert services["worker"]["networks"] == ["backend"]
    assert services["redis"]["networks"] == ["backend"]
    assert "ports" not in services["redis"] and "ports" not in services["worker"]


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's own file, not an API object
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_kubernetes_manifests_parse_and_agree() -> None:
    docs = k8s_documents()
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert {("Deployment", "azr-verify-api"), ("Deployment", "azr-verify-worker"),
            ("StatefulSet", "azr-verify-redis"), ("Service", "azr-verify-api"),
            ("Service", "azr-verify-redis"),
            ("HorizontalPodAutoscaler", "azr-verify-worker")} <= kinds
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"]
        if doc["kind"] in ("Deployment", "StatefulSet"):
            selector = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), doc["metadata"]["name"]
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"].startswith("azr-verify:")
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    hpa = by_name[("HorizontalPodAutoscaler", "azr-verify-worker")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "azr-verify-worker"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    config = by_name[("ConfigMap", "azr-verify")]["data"]
    assert "AZR_VERIFY_REDIS_URL" not in config  # built from the password Secret instead
    api = by_name[("Deployment", "azr-verify-api")]["spec"]["template"]
    assert api["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    probes = api["spec"]["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "networkpolicy.yaml" in kustomization["resources"]
    assert "secret.example.yaml" not in kustomization["resources"]  # never apply a sample


@pytest.mark.parametrize("version", [K8S_MINIMUM, K8S_NEWEST])
def test_kubernetes_manifests_are_valid(version: str) -> None:
    """Kubernetes' own OpenAPI schema of that version (pinned in kubernetes-validate), strict:
    an unknown field is an error, as the API server's field validation makes it."""
    for doc in k8s_documents():
        kubernetes_validate.validate(doc, f"{version}.0", strict=True)


def test_kubernetes_minimum_is_the_oldest_that_validates() -> None:
    """1.29 rejects the worker's securityContext.appArmorProfile: the stated minimum is real."""
    worker = next(d for d in k8s_documents() if d["metadata"]["name"] == "azr-verify-worker"
                  and d["kind"] == "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError, match="appArmorProfile"):
        kubernetes_validate.validate(worker, "1.29.0", strict=True)
    for text in ((REPO / "README.md").read_text(), (DEPLOY / "README.md").read_text(),
                 (K8S / "kustomization.yaml").read_text()):
        assert f"Kubernetes {K8S_MINIMUM} or newer" in " ".join(text.split())


def workloads() -> dict[str, dict[str, Any]]:
    """Pod templates by workload name."""
    return {d["metadata"]["name"]: d["spec"]["template"] for d in k8s_documents()
            if d["kind"] in ("Deployment", "StatefulSet")}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kubernetes_pods_run_with_least_privilege() -> None:
    pods = workloads()
    assert set(pods) == {"azr-verify-api", "azr-verify-worker", "azr-verify-redis"}
    for name, pod in pods.items():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == SERVICE_UID, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert not context.get("privileged"), name
    # Only the workers lift seccomp and AppArmor (bubblewrap's user namespaces), and say why.
    for name in ("azr-verify-api", "azr-verify-redis"):
        assert pods[name]["spec"]["securityContext"]["seccompProfile"] == {
            "type": "RuntimeDefault"}, name
        assert "appArmorProfile" not in pods[name]["spec"]["containers"][0]["securityContext"]
    worker = pods["azr-verify-worker"]["spec"]
    assert worker["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert worker["containers"][0]["securityContext"]["appArmorProfile"] == {
        "type": "Unconfined"}
    assert "bubblewrap" in (K8S / "worker.yaml").read_text()


def test_kubernetes_redis_requires_the_secret_password() -> None:
    pods = workloads()
    redis = pods["azr-verify-redis"]["spec"]["containers"][0]
    password = env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "azr-verify-redis", "key": "password"}
    script = " ".join(redis["command"])
    assert "requirepass" in script and "--protected-mode" not in script
    assert "$REDISCLI_AUTH" in script and "redis-server /run/redis/auth.conf" in script
    for name in ("azr-verify-api", "azr-verify-worker"):
        container = pods[name]["spec"]["containers"][0]
        names = [e["name"] for e in container["env"]]
        env = env_of(container)
        assert env["AZR_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == password, name
        # $(VAR) expands only from variables defined before it in the list.
        assert names.index("AZR_REDIS_PASSWORD") < names.index("AZR_VERIFY_REDIS_URL"), name
        assert env["AZR_VERIFY_REDIS_URL"]["value"] == \
            "redis://:$(AZR_REDIS_PASSWORD)@azr-verify-redis:6379/0", name


def test_kubernetes_network_policies() -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in k8s_documents()
                if d["kind"] == "NetworkPolicy"}
    labels = {name: pod["metadata"]["labels"] for name, pod in workloads().items()}

    def selects(selector: dict[str, Any], workload: str) -> bool:
        return selector["matchLabels"].items() <= labels[workload].items()

    redis = policies["azr-verify-redis"]
    assert selects(redis["podSelector"], "azr-verify-redis")
    assert redis["policyTypes"] == ["Ingress"]
    [rule] = redis["ingress"]
    allowed = {w for w in labels for peer in rule["from"] if selects(peer["podSelector"], w)}
    assert allowed == {"azr-verify-api", "azr-verify-worker"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]

    worker = policies["azr-verify-worker"]
    assert selects(worker["podSelector"], "azr-verify-worker")
    assert worker["policyTypes"] == ["Ingress", "Egress"] and worker["ingress"] == []
    to_redis, to_dns = worker["egress"]
    assert [w for w in labels if selects(to_redis["to"][0]["podSelector"], w)] == [
        "azr-verify-redis"]
    assert to_dns["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}]
    assert {p["port"] for p in to_dns["ports"]} == {53}


def test_prometheus_and_grafana_configs() -> None:
    for name in ("prometheus.yml", "prometheus-kubernetes.yml"):
        config = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
        assert all(job["job_name"] for job in config["scrape_configs"])
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/azr-verify.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/azr-verify.json").read_text())
    expressions = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("azr_verify_items_total", "azr_verify_request_seconds_bucket",
                   "azr_verify_execution_seconds_bucket", "azr_verify_queue_depth_items",
                   "azr_verify_pool_workers", "azr_verify_cache_hits_total",
                   "azr_verify_sandbox_restarts_total"):
        assert metric in expressions, metric
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])


def test_dashboard_metrics_exist_in_the_service() -> None:
    """Every metric the dashboard queries is one the service exports."""
    from azr_verify.service.metrics import NAMESPACE

    source = (REPO / "service" / "metrics.py").read_text()
    dashboard = json.loads((DEPLOY / "grafana/dashboards/azr-verify.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for token in target["expr"].replace("(", " ").replace(")", " ").split():
                name = token.split("{")[0].split("[")[0]
                if name.startswith(NAMESPACE + "_"):
                    base = name.removeprefix(NAMESPACE + "_")
                    for suffix in ("_total", "_bucket", "_count", "_sum"):
                        base = base.removesuffix(suffix)
                    assert f'_{base}"' in source or f"{{NAMESPACE}}_{base}" in source, name


def test_dockerfile_and_build_script_exist() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ARG BASE=" in dockerfile and "--no-index" in dockerfile
    script = DEPLOY / "build-images.sh"
    assert script.stat().st_mode & 0o111
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_readmes_name_the_tested_commands() -> None:
    deploy = " ".join((DEPLOY / "README.md").read_text().split())
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "build-images.sh" in deploy and "docker load" in deploy
    for text in (deploy, readme):
        assert "docker-compose up -d" in text
        assert "docker-compose 1.29" in text  # the version CI runs
        assert "--profile monitoring" in text
    assert Path(DEPLOY / "build-images.sh").exists()
