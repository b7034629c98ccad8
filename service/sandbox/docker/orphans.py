"""Owners and orphans: which sandbox containers nobody will use again, and their removal."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
from docker.errors import NotFound

from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.docker.daemon import DOCKER_ERRORS
from azr_verify.service.sandbox.docker.labels import LABEL_OWNER, LABEL_OWNER_PROCESS, LABEL_SANDBOX

log = logging.getLogger(__name__)


def _host_key() -> str:
    """Which pid namespace on which boot a pid belongs to: pids mean nothing elsewhere."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"
    return f"{boot}:{namespace}"


def _process_start(pid: int) -> str | None:
    """The start time (clock ticks after boot) of `pid`, which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5); fields start at 3


def owner_process_label(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{_host_key()}|{pid}|{_process_start(pid)}"


def _owner_is_dead(owner_process: str, host_key: str) -> bool:
    """True only when the owner ran in this pid namespace and is gone; unknown means alive."""
    host, _, rest = owner_process.partition("|")
    pid_text, _, started = rest.partition("|")
    if host != host_key or host == "unknown" or not pid_text.isdigit():
        return False
    return _process_start(int(pid_text)) != started


def is_orphan(container: Mapping[str, Any], instance_id: str, host_key: str) -> bool:
    """A sandbox container nobody will use again.

    Stopped ones always are; running ones when they carry this instance's stable id (a previous
    run of this service) or belong to a process of this host that has died. Containers of live
    services sharing the daemon are left alone.
    """
    labels = container.get("Labels") or {}
    if container.get("State") in ("exited", "dead"):
        return True
    if labels.get(LABEL_OWNER) == instance_id:
        return True
    return _owner_is_dead(labels.get(LABEL_OWNER_PROCESS, ""), host_key)


def remove_orphans(api: docker.APIClient, instance_id: str) -> list[str]:
    """Removes orphaned sandbox containers; returns their ids."""
    host_key = _host_key()
    try:
        containers = api.containers(all=True, filters={"label": f"{LABEL_SANDBOX}=1"})
    except DOCKER_ERRORS as exc:
        raise SandboxUnavailableError(f"cannot list sandbox containers: {exc}") from exc
    removed = []
    for container in containers:
        if is_orphan(container, instance_id, host_key):
            remove_quietly(api, container["Id"])
            removed.append(container["Id"])
    if removed:
        log.info("removed %d orphaned sandbox container(s)", len(removed))
    return removed


def remove_quietly(api: docker.APIClient, container_id: str) -> None:
    try:
        api.remove_container(container_id, force=True)
    except NotFound:
        pass
    except DOCKER_ERRORS as exc:  # e.g. 409 "removal already in progress" (auto_remove)
        log.debug("removing container %s: %s", container_id[:12], exc)
