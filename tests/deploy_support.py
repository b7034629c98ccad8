"""Shared by the deploy tests: the compose command, dockerd, and the service image build."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

from .servers import REPO, require

DEPLOY = REPO / "deploy"
SERVICE_IMAGE = os.environ.get("AZR_VERIFY_IMAGE", "azr-verify:latest")
# What CI sets so that a missing docker-compose, dockerd or root fails these tests.
REQUIRE_FLAG = "AZR_VERIFY_REQUIRE_DEPLOY"
# Give-up for a cold build (debootstrap, a wheelhouse, docker build: 1-5 minutes measured); it
# only turns a hung build into a failure, it decides nothing about a working one.
BUILD_GIVE_UP_S = 1800


@cache
def compose_command() -> tuple[str, ...] | None:
    """`docker-compose` (v1, what Debian 12 ships and CI tests), else `docker compose` (v2)."""
    legacy = shutil.which("docker-compose")
    if legacy and subprocess.run([legacy, "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return (legacy,)
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return (docker, "compose")
    return None


@cache
def dockerd_answers() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run(
        [docker, "info"], capture_output=True, timeout=60).returncode == 0


def require_dockerd() -> None:
    require("a running dockerd", dockerd_answers(), REQUIRE_FLAG)


def require_root() -> None:
    """debootstrap and mounts need root (CI runs as root)."""
    require("root", os.geteuid() == 0, REQUIRE_FLAG)


def require_compose() -> tuple[str, ...]:
    command = compose_command()
    require("docker-compose (or docker compose)", command is not None, REQUIRE_FLAG)
    assert command is not None
    return command


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@cache
def build_service_image() -> str:
    """deploy/build-images.sh, once per session: a no-op when the image is up to date."""
    require_dockerd()
    require_root()
    done = subprocess.run(["bash", str(DEPLOY / "build-images.sh"), SERVICE_IMAGE], cwd=REPO,
                          capture_output=True, text=True, timeout=BUILD_GIVE_UP_S)
    assert done.returncode == 0, f"build-images.sh failed:\n{done.stderr[-4000:]}"
    return SERVICE_IMAGE
