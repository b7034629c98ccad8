"""The compose stack for real: build the service image (a no-op when it is up to date), run
`docker-compose up -d` on the repository's docker-compose.yml under a project name of its own,
wait for /readyz, send /v1/check batches of fresh programs through the API to the workers'
bubblewrap sandboxes, and tear everything down (`down -v`) whatever happens.

Also here, on the same image: the Redis command of deploy/k8s/redis.yaml with the password
from its Secret, reached through the URL api.yaml and worker.yaml build.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from .deploy_support import (
    BUILD_GIVE_UP_S,
    DEPLOY,
    build_service_image,
    docker,
    require_compose,
)
from .servers import REPO, free_port

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(BUILD_GIVE_UP_S + 900)]

KEY = "compose-ci-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
WORKERS = 2
CORE_SERVICES = {"redis": 1, "api": 1, "worker": WORKERS}
# Give-ups, not expectations: readiness takes seconds; these only turn a hang into a failure.
READY_GIVE_UP_S = 300
REQUEST_GIVE_UP_S = 300


@dataclass
class Stack:
    command: tuple[str, ...]
    project: str
    env: dict[str, str]
    url: str

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def containers(self) -> list[dict[str, Any]]:
        ids = docker("ps", "--all", "--quiet", "--filter",
                     f"label=com.docker.compose.project={self.project}").split()
        if not ids:
            return []
        inspected: list[dict[str, Any]] = json.loads(docker("inspect", *ids))
        return inspected

    def service_of(self, container: dict[str, Any]) -> str:
        return str(container["Config"]["Labels"]["com.docker.compose.service"])

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", timeout=60).stdout

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=REQUEST_GIVE_UP_S, **kwargs)


def compose_env(project: str, image: str, port: int) -> dict[str, str]:
    """This process's environment minus AZR_VERIFY_* settings, plus the stack's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZR_VERIFY_")}
    env.update(COMPOSE_PROJECT_NAME=project, AZR_VERIFY_IMAGE=image,
               AZR_VERIFY_BIND="127.0.0.1", AZR_VERIFY_PORT=str(port),
               AZR_VERIFY_ZYGOTES="2", AZR_VERIFY_API_KEYS=json.dumps({"ci": KEY}))
    return env


def wait_until_ready(stack: Stack) -> None:
    """Polls /readyz and the live executors until both workers report. Fails at once when a
    container of the stack stops (its logs say why), else only at the give-up."""
    give_up = time.monotonic() + READY_GIVE_UP_S
    with stack.client(headers=AUTH) as client:
        while time.monotonic() < give_up:
            dead = [c["Name"] for c in stack.containers()
                    if c["State"]["Status"] in ("exited", "dead") or c["RestartCount"] > 0]
            assert not dead, f"containers stopped: {dead}\n{stack.logs()}"
            try:
                ready = client.get("/readyz").status_code == 200
                info = client.get("/v1/info").json() if ready else {}
            except httpx.TransportError:
                ready, info = False, {}
            if ready and info.get("executors", {}).get("processes") == WORKERS:
                return
            time.sleep(0.5)
    pytest.fail(f"the stack was not ready after {READY_GIVE_UP_S} s\n{stack.logs()}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    command = require_compose()
    image = build_service_image()
    project = f"azrtest{os.getpid()}{uuid.uuid4().hex[:6]}"
    port = free_port()
    running = Stack(command, project, compose_env(project, image, port),
                    f"http://127.0.0.1:{port}")
    try:
        # Exactly the documented command (plus the scale): no service names, no profile.
        up = running.compose("up", "-d", "--scale", f"worker={WORKERS}")
        assert up.returncode == 0, up.stderr
        assert "Pulling" not in up.stdout + up.stderr, "compose pulled an image"
        wait_until_ready(running)
        yield running
    finally:
        down = running.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")
        assert down.returncode == 0, down.stderr
        assert running.containers() == []


def test_up_starts_the_core_stack_without_monitoring(stack: Stack) -> None:
    started: dict[str, int] = {}
    for container in stack.containers():
        assert container["State"]["Status"] == "running", container["Name"]
        started[stack.service_of(container)] = started.get(stack.service_of(container), 0) + 1
    # Prometheus and Grafana are behind the `monitoring` profile: not even created.
    assert started == CORE_SERVICES
    images = {container["Config"]["Image"] for container in stack.containers()}
    assert images == {stack.env["AZR_VERIFY_IMAGE"]}


def fresh_batch(tag: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Programs unique to `tag` (never a cache hit), and the verdict each must get."""
    items: list[dict[str, Any]] = [
        {"id": f"ok-{i}", "program": f"def f(x):\n    return x * {i}  # {tag}",
         "input": str(i), "output": str(i * i)} for i in range(12)]
    items += [
        {"id": "wrong", "program": f"def f(x):\n    return x + 1  # {tag}", "input": "1",
         "output": "3"},
        {"id": "raise", "program": f"def f(x):\n    return 1 // x  # {tag}", "input": "0"},
        {"id": "unsafe", "program": f"import os  # {tag}\ndef f(x):\n    return os.getcwd()",
         "input": "0"},
        {"id": "syntax", "program": f"def f(x) return  # {tag}", "input": "0"},
        {"id": "loop", "program": f"def f(x):\n    while True:\n        pass  # {tag}",
         "input": "0", "timeout_s": 1.0},
        {"id": "gen", "program": f"def f(x):\n    return (i for i in range(x))  # {tag}",
         "input": "3"},
    ]
    expected = {f"ok-{i}": "accepted" for i in range(12)}
    expected |= {"wrong": "wrong_output", "raise": "runtime_error", "unsafe": "unsafe",
                 "syntax": "syntax_error", "loop": "timeout", "gen": "not_literal"}
    return items, expected


def test_check_through_the_stack(stack: Stack) -> None:
    items, expected = fresh_batch(uuid.uuid4().hex)
    with stack.client(headers=AUTH) as client:
        response = client.post("/v1/check", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [item["id"] for item in items]
    assert {r["id"]: r["verdict"] for r in results} == expected
    assert not any(r["cached"] for r in results)
    by_id = {r["id"]: r for r in results}
    assert by_id["ok-7"]["output"] == "49"
    assert by_id["raise"]["error_type"] == "ZeroDivisionError"
    assert by_id["unsafe"]["violations"][0]["name"] == "os"


def test_sandboxes_in_the_workers_hold(stack: Stack) -> None:
    """Policy `permissive`, so only the sandbox inside the worker container stands in the way."""
    tag = uuid.uuid4().hex
    items = [
        {"id": "passwd", "input": "0",
         "program": f"def f(x):\n    return open('/etc/passwd').read()  # {tag}"},
        {"id": "redis", "input": "0",
         "program": f"import socket\ndef f(x):\n    s = socket.socket()  # {tag}\n"
                    "    s.connect(('redis', 6379))\n    return 1"},
        {"id": "fork", "input": "0",
         "program": f"import os\ndef f(x):\n    return os.fork()  # {tag}"},
    ]
    with stack.client(headers=AUTH) as client:
        response = client.post("/v1/check", json={"items": items, "policy": "permissive"})
    assert response.status_code == 200, response.text
    results = {r["id"]: r for r in response.json()["results"]}
    assert {r["verdict"] for r in results.values()} == {"runtime_error"}, results
    assert results["passwd"]["error_type"] == "FileNotFoundError"
    assert results["redis"]["error_type"] in ("PermissionError", "OSError")
    assert results["fork"]["error_type"] in ("PermissionError", "BlockingIOError", "OSError")


def test_api_key_is_required(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post("/v1/check", json={"items": [
            {"program": "def f(x):\n    return x", "input": "1"}]})
    assert response.status_code == 401


def test_containers_run_unprivileged(stack: Stack) -> None:
    for container in stack.containers():
        service = stack.service_of(container)
        host = container["HostConfig"]
        assert container["Config"]["User"] == "10001:10001", service
        assert host["Privileged"] is False and host["CapDrop"] == ["ALL"], service
        assert not host["CapAdd"], service
        assert host["ReadonlyRootfs"] is True, service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        uid = docker("exec", container["Id"], "id", "-u").strip()
        assert uid == "10001", service
    networks = {c["Name"]: set(c["NetworkSettings"]["Networks"]) for c in stack.containers()}
    backend = f"{stack.project}_backend"
    assert json.loads(docker("network", "inspect", backend))[0]["Internal"] is True
    for name, attached in networks.items():
        if "_worker_" in name or "_redis_" in name:
            assert attached == {backend}, name


def test_kubernetes_redis_command_requires_its_password() -> None:
    """deploy/k8s/redis.yaml's command, run as the manifest runs it (non-root, read-only, no
    capabilities), reached through the URL that api.yaml and worker.yaml build."""
    image = build_service_image()
    statefulset = next(d for d in yaml.safe_load_all((DEPLOY / "k8s/redis.yaml").read_text())
                       if d["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    api = next(d for d in yaml.safe_load_all((DEPLOY / "k8s/api.yaml").read_text())
               if d["kind"] == "Deployment")
    api_container = api["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in api_container["env"]}
    password = uuid.uuid4().hex
    url = env["AZR_VERIFY_REDIS_URL"].replace("$(AZR_REDIS_PASSWORD)", password) \
        .replace("azr-verify-redis", "127.0.0.1")
    name = f"azrtest-redis-{uuid.uuid4().hex[:8]}"
    docker("run", "--detach", "--name", name, "--network", "none", "--read-only",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
           "--user", "10001:10001", "--tmpfs", "/run/redis:uid=10001",
           "--tmpfs", "/data:uid=10001", "--env", f"REDISCLI_AUTH={password}",
           image, *container["command"])
    try:
        probe = container["readinessProbe"]["exec"]["command"]
        give_up = time.monotonic() + READY_GIVE_UP_S
        while subprocess.run(["docker", "exec", name, *probe]).returncode != 0:
            assert time.monotonic() < give_up, docker("logs", name)
            time.sleep(0.2)
        check = ("import redis, sys\n"
                 "print(redis.Redis.from_url(sys.argv[1]).ping())\n"
                 "try:\n    redis.Redis.from_url(sys.argv[2]).ping()\n"
                 "except redis.exceptions.AuthenticationError:\n    print('refused')\n")
        anonymous = url.replace(f":{password}@", "")
        out = docker("exec", name, "python3", "-c", check, url, anonymous)
        assert out.split() == ["True", "refused"]
        assert password not in docker("exec", name, "cat", "/proc/1/cmdline")
    finally:
        docker("rm", "--force", name, check=False)
