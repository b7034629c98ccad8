"""What every sandbox container is created with: its command, user, limits and host config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.types import LogConfig

from azr_verify.service.config import Settings
from azr_verify.service.sandbox.docker.preflight import CgroupSupport

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
