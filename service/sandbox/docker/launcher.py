"""`DockerLauncher`: starts zygotes in hardened containers of the sandbox image."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading

from azr_verify.service.config import BackendName, Settings
from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.docker.attach_stream import ContainerConnection
from azr_verify.service.sandbox.docker.daemon import connect
from azr_verify.service.sandbox.docker.hardening import (
    MASKED_PATHS,
    RUNNER_COMMAND,
    SANDBOX_HOSTNAME,
    SANDBOX_USER,
    ContainerLimits,
    hardening,
)
from azr_verify.service.sandbox.docker.labels import (
    LABEL_OWNER,
    LABEL_OWNER_PROCESS,
    LABEL_RUNNER,
    LABEL_SANDBOX,
)
from azr_verify.service.sandbox.docker.orphans import (
    owner_process_label,
    remove_orphans,
    remove_quietly,
)
from azr_verify.service.sandbox.docker.preflight import (
    DEFAULT_SECCOMP_PROFILE,
    CgroupSupport,
    check_image,
    load_seccomp_profile,
    runner_sha256,
)
from azr_verify.service.sandbox.protocol import ZygoteSecrets

log = logging.getLogger(__name__)


class DockerLauncher:
    """Starts zygotes in hardened containers of the sandbox image (ZygoteLauncher protocol).

    Construction checks everything a container needs and fails with SandboxUnavailableError,
    never hangs: the daemon answers (every API call has a timeout), the image exists and holds
    this service's runner, the seccomp profile loads. It also removes orphaned containers.
    """

    backend = BackendName.DOCKER

    def __init__(self, settings: Settings, *, instance_id: str | None = None) -> None:
        self.image = settings.docker_image
        self.runner_sha256 = runner_sha256()
        self._seccomp = load_seccomp_profile(
            settings.docker_seccomp_profile or DEFAULT_SECCOMP_PROFILE)
        self.instance_id = (instance_id or settings.docker_instance_id
                            or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
        self.limits = ContainerLimits.from_settings(settings)
        self._api = connect(settings.docker_api_timeout_s)
        self._live: set[str] = set()
        self._lock = threading.Lock()
        try:
            check_image(self._api, self.image, self.runner_sha256)
            self.cgroups = CgroupSupport.detect(self._api)
            if self.cgroups.missing():
                log.warning("docker cannot enforce %s limits on this host (cgroup v%s)",
                            ", ".join(self.cgroups.missing()), self.cgroups.version)
            self._host_config = self._api.create_host_config(
                **hardening(self._seccomp, self.limits, self.cgroups))
            # Not an argument of the SDK's create_host_config, but part of the API.
            self._host_config["MaskedPaths"] = list(MASKED_PATHS)
            self.removed_orphans = remove_orphans(self._api, self.instance_id)
        except BaseException:
            self._api.close()
            raise

    def labels(self) -> dict[str, str]:
        return {
            LABEL_SANDBOX: "1",
            LABEL_OWNER: self.instance_id,
            LABEL_OWNER_PROCESS: owner_process_label(),
            LABEL_RUNNER: self.runner_sha256,
        }

    def create_container(self, secrets: ZygoteSecrets, name: str) -> str:
        """Creates (does not start) one hardened, labelled sandbox container; returns its id."""
        created = self._api.create_container(
            self.image,
            command=list(RUNNER_COMMAND),
            name=name,
            user=SANDBOX_USER,
            environment=secrets.environment(),
            labels=self.labels(),
            hostname=SANDBOX_HOSTNAME,
            working_dir="/",
            # With detach=False the SDK also sets StdinOnce: our stream closing (a crashed
            # service) closes the runner's stdin, and it exits.
            stdin_open=True,
            detach=False,
            tty=False,
            host_config=self._host_config,
        )
        container_id: str = created["Id"]
        with self._lock:
            self._live.add(container_id)
        return container_id

    def launch(self, zygote_secrets: ZygoteSecrets, index: int) -> ContainerConnection:
        name = f"azr-sbx-{index}-{secrets.token_hex(4)}"
        try:
            return self._create_and_attach(zygote_secrets, name)
        except SandboxUnavailableError:
            raise
        except Exception as exc:
            # Any failure must reach the pool as SandboxUnavailableError: another exception
            # type would end its pool thread before it reports having booted.
            raise SandboxUnavailableError(f"cannot start container {name}: {exc}") from exc

    def _create_and_attach(self, zygote_secrets: ZygoteSecrets,
                           name: str) -> ContainerConnection:
        container_id = self.create_container(zygote_secrets, name)
        stream = None
        try:
            # Attach before start: the hello frame cannot be missed, and nothing is in flight
            # yet that the SDK's HTTP reader could have buffered past the response headers.
            stream = self._api.attach_socket(
                container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            connection = ContainerConnection(name, container_id, stream, self._api,
                                             on_close=self._forget)
            self._api.start(container_id)
        except BaseException:
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
            self._discard(container_id)
            raise
        return connection

    def containers(self) -> list[str]:
        """Ids of the containers this launcher created that have not been killed."""
        with self._lock:
            return sorted(self._live)

    def _forget(self, container_id: str) -> None:
        with self._lock:
            self._live.discard(container_id)

    def _discard(self, container_id: str) -> None:
        self._forget(container_id)
        remove_quietly(self._api, container_id)

    def close(self) -> None:
        """Removes every container still running (the pool normally killed them already)."""
        for container_id in self.containers():
            self._discard(container_id)
        self._api.close()
