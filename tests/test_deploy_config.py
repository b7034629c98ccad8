"""Deployment files: the compose file validates, the manifests and configs parse and agree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .servers import REPO, require

DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
K8S = DEPLOY / "k8s"


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1), whichever works here."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy and subprocess.run([legacy, "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [legacy]
    return None


@pytest.mark.parametrize("overrides", [[], ["deploy/compose/embedded.yml"],
                                       ["deploy/compose/production.yml"]],
                         ids=["base", "embedded", "production"])
def test_compose_config_validates(overrides: list[str]) -> None:
    command = compose_command()
    require("docker compose or docker-compose", command is not None,
            "AZR_VERIFY_REQUIRE_DOCKER")
    assert command is not None
    files = [arg for path in ["docker-compose.yml", *overrides] for arg in ("-f", path)]
    done = subprocess.run([*command, *files, "config", "-q"], cwd=REPO, capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                               "AZR_VERIFY_API_KEYS": '{"ci": "k"}'})
    assert done.returncode == 0, done.stderr


def test_compose_structure() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"redis", "api", "worker", "prometheus", "grafana"} <= set(services)
    for name in ("redis", "api", "worker"):
        assert services[name]["image"] == "${AZR_VERIFY_IMAGE:-azr-verify:latest}"
    assert services["api"]["environment"]["AZR_VERIFY_REDIS_URL"] == "redis://redis:6379/0"
    assert services["worker"]["command"] == ["azr-verify", "worker"]
    assert "seccomp=unconfined" in services["worker"]["security_opt"]
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


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
    assert config["AZR_VERIFY_REDIS_URL"].startswith("redis://azr-verify-redis:")
    api = by_name[("Deployment", "azr-verify-api")]["spec"]["template"]
    assert api["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    probes = api["spec"]["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


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


def test_readme_documents_offline_builds() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "build-images.sh" in readme and "docker load" in readme
    assert Path(DEPLOY / "build-images.sh").exists()
