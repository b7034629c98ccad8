"""Checks made before any sandbox container starts, each failing with SandboxUnavailableError.

The image must exist and hold this service's runner (by its label), the seccomp profile must be
an allow-list, and what the daemon's cgroups can enforce is read, never assumed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import ImageNotFound

from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.docker.daemon import DOCKER_ERRORS
from azr_verify.service.sandbox.docker.labels import LABEL_RUNNER

RUNNER_PATH = Path(__file__).resolve().parents[1] / "runner.py"
# In a source checkout (editable install) the profile sits beside the images it belongs to.
DEFAULT_SECCOMP_PROFILE = Path(__file__).resolve().parents[3] / "sandbox_images" / "seccomp.json"


def build_hint(image: str) -> str:
    return f"build it with `make sandbox-image` or `bash sandbox_images/python/build.sh {image}`"


def runner_sha256() -> str:
    """The hash the sandbox image must carry in its `azr-verify.runner-sha256` label."""
    return hashlib.sha256(RUNNER_PATH.read_bytes()).hexdigest()


def load_seccomp_profile(path: Path) -> str:
    """The profile as the compact JSON text the Docker API expects in `seccomp=`."""
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SandboxUnavailableError(
            f"cannot read the seccomp profile {path}: {exc}; set AZR_VERIFY_DOCKER_SECCOMP_PROFILE"
        ) from exc
    if not isinstance(profile, dict) or profile.get("defaultAction") != "SCMP_ACT_ERRNO":
        raise SandboxUnavailableError(f"{path} is not an allow-list seccomp profile")
    return json.dumps(profile, separators=(",", ":"))


def check_image(api: docker.APIClient, image: str, expected_runner: str) -> None:
    """The image must exist and hold this service's runner (by its label)."""
    try:
        attributes = api.inspect_image(image)
    except ImageNotFound as exc:
        raise SandboxUnavailableError(
            f"sandbox image {image} not found: {build_hint(image)}") from exc
    except DOCKER_ERRORS as exc:
        raise SandboxUnavailableError(f"cannot inspect sandbox image {image}: {exc}") from exc
    labels = (attributes.get("Config") or {}).get("Labels") or {}
    found = labels.get(LABEL_RUNNER)
    if found != expected_runner:
        raise SandboxUnavailableError(
            f"sandbox image {image} is outdated: its runner is {str(found)[:12]}, this "
            f"service's is {expected_runner[:12]}; {build_hint(image)}")


@dataclass(frozen=True)
class CgroupSupport:
    """What the daemon's cgroups can enforce (v1 and v2 differ; read, never assumed)."""

    version: str
    memory: bool
    swap: bool
    pids: bool
    cpu_quota: bool

    @classmethod
    def detect(cls, api: docker.APIClient) -> CgroupSupport:
        try:
            info = api.info()
        except DOCKER_ERRORS as exc:
            raise SandboxUnavailableError(f"docker info failed: {exc}") from exc
        return cls(version=str(info.get("CgroupVersion") or "1"),
                   memory=bool(info.get("MemoryLimit")), swap=bool(info.get("SwapLimit")),
                   pids=bool(info.get("PidsLimit")), cpu_quota=bool(info.get("CpuCfsQuota")))

    def missing(self) -> list[str]:
        names = {"memory": self.memory, "pids": self.pids, "cpu quota": self.cpu_quota,
                 "swap accounting": self.swap}
        return [name for name, supported in names.items() if not supported]
