"""Reaching the Docker daemon: one client constructor, and what any API call can raise."""

from __future__ import annotations

import os

import docker
import requests
from docker.errors import DockerException

from azr_verify.service.errors import SandboxUnavailableError

# What a Docker API call can raise: the SDK's errors, requests' (timeouts, refused
# connections) and socket errors.
DOCKER_ERRORS = (DockerException, requests.exceptions.RequestException, OSError)


def connect(timeout_s: float) -> docker.APIClient:
    """A low-level client for the daemon named by DOCKER_HOST (or the default socket)."""
    try:
        client = docker.from_env(timeout=int(max(1, timeout_s)))
        client.api.ping()
    except DOCKER_ERRORS as exc:
        raise SandboxUnavailableError(
            f"cannot reach the Docker daemon ({os.environ.get('DOCKER_HOST', 'default socket')}): "
            f"{exc}. Start dockerd (e.g. `make dockerd`) or use AZR_VERIFY_SANDBOX=process."
        ) from exc
    api: docker.APIClient = client.api
    return api
