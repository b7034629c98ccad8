"""The docker backend: the shared runner's fork-server in warm, hardened containers.

Each zygote is one container of the sandbox image (`sandbox_images/`), created through the
Docker API with no network, a read-only root filesystem and no writable mount, every capability
dropped, no-new-privileges, the project's seccomp profile, uid 65534, pids/memory/CPU limits and
no IPC namespace sharing. The runner is the container's PID 1 (no init process). Requests and
answers travel over the container's attached stdin/stdout; nothing is `docker exec`ed per item.

Why the attach stream of the Docker API rather than `docker run -i` behind a
SubprocessConnection: no docker CLI process per zygote (a worker needs only the SDK and the
daemon socket, not the CLI), one process hop fewer per frame, and the container is created with
exactly the settings the tests read back with `docker inspect`. The price is demultiplexing
Docker's 8-byte stream headers, done in `ContainerConnection`.

Lifecycle: the pool replaces a zygote after `docker_recycle_after` executions or any failure,
and `kill` removes its container (`auto_remove`). Containers are labelled with their owner; at
start-up the launcher removes the containers a dead owner left behind. A crashed service's
containers also end by themselves: closing the attach stream closes their stdin (`stdin_once`),
the runner exits and Docker removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.types import LogConfig

from azr_verify.service.config import Settings
from azr_verify.service.errors import SandboxUnavailableError, ZygoteDiedError
from azr_verify.service.sandbox.protocol import ZygoteSecrets

log = logging.getLogger(__name__)

RUNNER_PATH = Path(__file__).with_name("runner.py")
# In a source checkout (editable install) the profile sits beside the images it belongs to.
DEFAULT_SECCOMP_PROFILE = Path(__file__).resolve().parents[2] / "sandbox_images" / "seccomp.json"
SANDBOX_RUNNER = "/opt/azr/runner.py"
# Not `-I`: isolated mode implies -E, and -E makes Python ignore PYTHONHASHSEED, which each
# seed group depends on. The container's environment is wholly set here, so -s -S -B -P give
# everything else -I would.
RUNNER_COMMAND = ("python3", "-s", "-S", "-B", "-P", SANDBOX_RUNNER)
SANDBOX_USER = "65534:65534"
SANDBOX_HOSTNAME = "sandbox"
# Headroom above the largest per-execution address-space limit: the zygote itself.
ZYGOTE_MEMORY_MB = 128
NANO = 1_000_000_000

LABEL_SANDBOX = "azr-verify.sandbox"
LABEL_OWNER = "azr-verify.owner"
LABEL_OWNER_PROCESS = "azr-verify.owner-process"
LABEL_RUNNER = "azr-verify.runner-sha256"
# Docker's default /dev has the random devices; /dev/null bound over them makes every read of
# randomness fail inside the sandbox (the runner's filter refuses getrandom).
RANDOM_DEVICES = ("/dev/random", "/dev/urandom")
# Docker's own masked paths, then ours: the runner is PID 1 and reaps every child, so its stat,
# status and sched files carry what earlier items did (their summed CPU time and page faults,
# its context switches and peak memory); /proc/sys holds a randomness source
# (kernel/random/uuid); the host-wide files tell what the rest of the host is doing (and
# /proc/uptime is a clock).
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    *(f"/proc/1/{name}" for name in ("stat", "status", "sched", "schedstat", "statm",
                                     "mountinfo", "mounts", "wchan")),
    *(f"/proc/1/task/1/{name}" for name in ("stat", "status", "sched", "schedstat", "statm")),
    "/proc/sys", "/proc/stat", "/proc/loadavg", "/proc/pressure", "/proc/vmstat",
    "/proc/meminfo", "/proc/interrupts", "/proc/softirqs", "/proc/uptime", "/proc/diskstats",
    "/proc/schedstat", "/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo",
)

# Docker's multiplexed attach stream (no TTY): 1 byte stream id, 3 zero bytes, 4 bytes length.
STREAM_HEADER = struct.Struct(">BxxxI")
STDIN, STDOUT, STDERR = 0, 1, 2
STDERR_TAIL_BYTES = 4000
READ_CHUNK = 1 << 20

# What a Docker API call can raise: the SDK's errors, requests' (timeouts, refused
# connections) and socket errors.
DOCKER_ERRORS = (DockerException, requests.exceptions.RequestException, OSError)


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


@dataclass(frozen=True)
class ContainerLimits:
    memory_bytes: int
    nano_cpus: int
    pids_limit: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ContainerLimits:
        memory_mb = settings.docker_memory_mb or settings.max_memory_mb + ZYGOTE_MEMORY_MB
        return cls(memory_bytes=memory_mb * 1024 * 1024,
                   nano_cpus=int(settings.docker_cpus * NANO),
                   pids_limit=settings.docker_pids_limit)


def hardening(seccomp_json: str, limits: ContainerLimits, cgroups: CgroupSupport) \
        -> dict[str, Any]:
    """Host-config arguments of every sandbox container (`APIClient.create_host_config`)."""
    options: dict[str, Any] = {
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true", f"seccomp={seccomp_json}"],
        "ipc_mode": "none",
        "privileged": False,
        "init": False,  # the runner must be PID 1: signals from its children cannot kill it
        "auto_remove": True,
        # Frames are not logs: the json-file driver would copy every answer to disk.
        "log_config": LogConfig(type=LogConfig.types.NONE),
        "pids_limit": limits.pids_limit,
        "mem_limit": limits.memory_bytes,
        "binds": [f"/dev/null:{device}:ro" for device in RANDOM_DEVICES],
    }
    if cgroups.swap:
        options["memswap_limit"] = limits.memory_bytes  # no swap beyond the memory limit
    if cgroups.cpu_quota:
        options["nano_cpus"] = limits.nano_cpus
    return options


# --- owners and orphans ------------------------------------------------------------------------


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
            _remove_quietly(api, container["Id"])
            removed.append(container["Id"])
    if removed:
        log.info("removed %d orphaned sandbox container(s)", len(removed))
    return removed


def _remove_quietly(api: docker.APIClient, container_id: str) -> None:
    try:
        api.remove_container(container_id, force=True)
    except NotFound:
        pass
    except DOCKER_ERRORS as exc:  # e.g. 409 "removal already in progress" (auto_remove)
        log.debug("removing container %s: %s", container_id[:12], exc)


# --- one zygote --------------------------------------------------------------------------------


def _raw_socket(stream: Any) -> socket.socket:
    """The socket under what `attach_socket` returns (a SocketIO over a unix or TCP socket)."""
    if isinstance(stream, socket.socket):
        return stream
    inner = getattr(stream, "_sock", None)
    if isinstance(inner, socket.socket):
        return inner
    raise SandboxUnavailableError(
        f"unsupported Docker transport for attach ({type(stream).__name__}); use a unix or "
        "tcp DOCKER_HOST")


class ContainerConnection:
    """A zygote in a container, spoken to over the container's attach stream.

    The stream carries our frames to the runner's stdin and brings back its stdout and stderr
    multiplexed; stdout is demultiplexed into a buffer that `recv_exact` serves from, stderr
    is kept (a short tail) to explain a death. Without a TTY, Docker copies stdin verbatim (no
    detach-key scanning), so binary frame headers are safe.
    """

    def __init__(self, name: str, container_id: str, stream: Any, api: docker.APIClient,
                 on_close: Callable[[str], None]) -> None:
        self.name = name
        self.container_id = container_id
        self._stream = stream  # owns the socket's io reference; closed in kill()
        self._socket = _raw_socket(stream)
        # Non-blocking: `send` writes what fits and reads meanwhile, so a zygote that answers
        # while it still reads a frame never waits for us, nor we for it.
        self._socket.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self._socket.fileno(), select.POLLIN)
        self._api = api
        self._on_close = on_close
        self._pending = bytearray()  # multiplexed bytes not yet decoded
        self._outgoing = bytearray()  # frame bytes not yet taken by the socket
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._eof = False
        self._closed = False
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """Host pid of the runner (the container's PID 1): one API call on first use.

        Lets `ZygotePool.zygote_pids` (operators, tests that SIGKILL zygotes) work as for the
        process backend.
        """
        if self._pid is None and not self._closed:
            try:
                self._pid = int(self._api.inspect_container(self.container_id)["State"]["Pid"])
            except (*DOCKER_ERRORS, KeyError, TypeError, ValueError):
                return None
        return self._pid or None

    def send(self, data: bytes) -> None:
        """Queues a frame and writes what the socket takes now; `recv_exact` writes the rest
        while it waits (see connection.py: the zygote takes a frame item by item)."""
        if self._closed:
            raise ZygoteDiedError(f"{self.name}: already killed")
        self._outgoing += data
        self._write_some()

    def _write_some(self) -> None:
        while self._outgoing:
            try:
                written = self._socket.send(self._outgoing)
            except BlockingIOError:
                return
            except OSError as exc:
                raise ZygoteDiedError(f"{self.name}: cannot write: {exc}") from exc
            del self._outgoing[:written]

    def recv_exact(self, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        fd = self._socket.fileno()
        while len(self._stdout) < size:
            remaining_ms = (deadline - time.monotonic()) * 1000.0
            if self._closed or remaining_ms <= 0:
                raise ZygoteDiedError(f"{self.name}: no answer within {timeout_s:.1f}s")
            poller = select.poll()
            poller.register(fd, select.POLLIN | (select.POLLOUT if self._outgoing else 0))
            events = poller.poll(remaining_ms)
            if not events:
                raise ZygoteDiedError(f"{self.name}: no answer within {timeout_s:.1f}s")
            for _, mask in events:
                if mask & select.POLLOUT:
                    self._write_some()
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self._read_chunk()
        data = bytes(self._stdout[:size])
        del self._stdout[:size]
        return data

    def _read_chunk(self) -> None:
        try:
            chunk = self._socket.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            raise ZygoteDiedError(f"{self.name}: cannot read: {exc}") from exc
        if not chunk:
            self._eof = True
            raise ZygoteDiedError(f"{self.name}: container exited ({self._describe_exit()})")
        self._pending += chunk
        self._demultiplex()

    def _demultiplex(self) -> None:
        pending = self._pending
        while len(pending) >= STREAM_HEADER.size:
            stream_id, length = STREAM_HEADER.unpack_from(pending)
            if stream_id not in (STDIN, STDOUT, STDERR):
                raise ZygoteDiedError(f"{self.name}: malformed attach stream")
            end = STREAM_HEADER.size + length
            if len(pending) < end:
                return
            if stream_id == STDERR:
                self._stderr += pending[STREAM_HEADER.size:end]
                del self._stderr[:-STDERR_TAIL_BYTES]
            else:
                self._stdout += pending[STREAM_HEADER.size:end]
            del pending[:end]

    def _describe_exit(self) -> str:
        try:
            state = self._api.inspect_container(self.container_id).get("State") or {}
            detail = f"exit code {state.get('ExitCode')}"
            if state.get("OOMKilled"):
                detail += ", killed by the OOM killer"
        except NotFound:
            detail = "container removed"
        except DOCKER_ERRORS as exc:
            detail = f"state unknown: {exc}"
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return detail + (f": {' | '.join(lines)}" if lines else "")

    def alive(self) -> bool:
        """Cheap (one poll, no API call): the pool asks before every batch.

        A killed container shows up as end-of-stream on the attach socket.
        """
        if self._closed or self._eof:
            return False
        if not self._poller.poll(0):
            return True
        try:
            self._read_chunk()  # readable while idle: usually end-of-stream
        except ZygoteDiedError:
            return False
        return True

    def kill(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._api.kill(self.container_id)  # auto_remove then deletes it
        except NotFound:
            pass
        except DOCKER_ERRORS as exc:
            # Already stopped (409), or the daemon is unwell: closing the stream below still
            # ends the runner (stdin_once), and the next start-up sweeps what is left.
            log.debug("killing %s: %s", self.name, exc)
        for closable in (self._stream, self._socket):
            with contextlib.suppress(OSError):
                closable.close()
        self._on_close(self.container_id)


# --- the launcher ------------------------------------------------------------------------------


class DockerLauncher:
    """Starts zygotes in hardened containers of the sandbox image (ZygoteLauncher protocol).

    Construction checks everything a container needs and fails with SandboxUnavailableError,
    never hangs: the daemon answers (every API call has a timeout), the image exists and holds
    this service's runner, the seccomp profile loads. It also removes orphaned containers.
    """

    backend = "docker"

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
            # type would end its worker thread before it reports having booted.
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
        _remove_quietly(self._api, container_id)

    def close(self) -> None:
        """Removes every container still running (the pool normally killed them already)."""
        for container_id in self.containers():
            self._discard(container_id)
        self._api.close()


def pool_startup_seconds(settings: Settings, workers: int | None = None) -> float:
    """Wall time from nothing to a started docker pool (launcher checks + every zygote's hello)."""
    from azr_verify.service.sandbox.pool import ZygotePool

    started = time.perf_counter()
    pool = ZygotePool(DockerLauncher(settings), workers=workers or settings.workers,
                      seed_groups=settings.determinism_seeds, batch_size=settings.zygote_batch,
                      recycle_after=settings.docker_recycle_after)
    try:
        pool.start()
        return time.perf_counter() - started
    finally:
        pool.close()

