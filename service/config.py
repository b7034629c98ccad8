"""Service configuration: one explicit `Settings` value, read from `AZR_VERIFY_*` variables.

Nothing here is instantiated at import time; callers build `Settings()` (or pass overrides) and
hand it down explicitly.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BackendName(StrEnum):
    """Which sandbox backend executes programs (not the execution mode, embedded or
    distributed). The values are configuration and API words and stay as they are."""

    PROCESS = "process"  # zygotes under bubblewrap: service/sandbox/bwrap_backend.py
    DOCKER = "docker"  # zygotes in hardened containers: service/sandbox/docker/


MIB = 1024 * 1024


def default_data_dir() -> Path:
    """Where state lives unless AZR_VERIFY_DATA_DIR says otherwise: an absolute path, so every
    command finds the same audit log whatever directory it runs in."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return Path(base).absolute() / "azr-verify"


def default_workers() -> int:
    return max(2, os.cpu_count() or 2)


class Settings(BaseSettings):
    """Every knob of the service. Environment variables use the prefix `AZR_VERIFY_`."""

    model_config = SettingsConfigDict(env_prefix="AZR_VERIFY_", extra="ignore")

    # Sandboxes
    sandbox: BackendName = Field(BackendName.PROCESS, description="Sandbox backend.")
    workers: int = Field(default_factory=default_workers, ge=1, le=256,
                         description="Fork-servers (zygotes) in the sandbox pool, each "
                         "driven by one pool thread; not RQ worker processes.")
    determinism_seeds: int = Field(3, ge=1, le=16,
                                   description="Distinct PYTHONHASHSEED groups; also the "
                                   "largest determinism_runs an item may ask for.")
    zygote_batch: int = Field(4, ge=1, le=1024,
                              description="Executions per frame sent to a zygote; frames are "
                              "pipelined one ahead, so this bounds how much other work runs "
                              "before a newly arrived item (docs/design.md §4).")
    python: str | None = Field(None, description="Interpreter run inside the process "
                               "sandbox; default: the service's own base interpreter.")
    bwrap_recycle_after: int = Field(100_000, ge=1, description="Executions before a "
                                     "bubblewrap zygote is replaced; bounds pid reuse inside "
                                     "its pid namespace.")
    docker_image: str = Field("azr-verify-sandbox:latest", description="Docker sandbox image.")
    docker_recycle_after: int = Field(2000, ge=1,
                                      description="Executions before a container is replaced.")
    docker_cpus: float = Field(1.0, gt=0, description="CPU quota of each sandbox container.")
    docker_pids_limit: int = Field(64, ge=8, description="pids limit of each container.")
    docker_memory_mb: int | None = Field(None, ge=64, description="Memory (= memory+swap) "
                                         "limit of each container; default max_memory_mb "
                                         "plus room for the zygote.")
    docker_seccomp_profile: Path | None = Field(None, description="Seccomp profile JSON for "
                                                "the containers; default: the source tree's "
                                                "sandbox_images/seccomp.json.")
    docker_instance_id: str | None = Field(None, description="Stable name of this service "
                                           "instance: its containers left over from a "
                                           "previous run are removed at start-up. Default: "
                                           "unique per process.")
    docker_api_timeout_s: float = Field(30.0, gt=0, description="Timeout of each Docker API "
                                        "call, so that a hung daemon is an error, not a hang.")

    # Per-item limits: defaults, and the caps a request cannot exceed.
    default_timeout_s: float = Field(5.0, gt=0)
    max_timeout_s: float = Field(30.0, gt=0)
    default_memory_mb: int = Field(256, ge=32)
    max_memory_mb: int = Field(2048, ge=32)
    output_limit_chars: int = Field(10_000, ge=16,
                                    description="Largest repr of a returned value.")
    default_determinism_runs: int = Field(2, ge=1, le=16)
    reject_none_output: bool = Field(False, description="Treat a returned None as not_literal.")

    # Programs run as scripts: test cases and /run_code (docs/design.md §10)
    script_output_limit_bytes: int = Field(MIB, ge=1024, le=64 * MIB,
                                           description="Most bytes kept of a script's "
                                           "stdout, and of its stderr; writing more is "
                                           "output_limit.")
    max_testcases: int = Field(16_384, ge=1, description="Test cases per /v1/testcases "
                               "request, over all its items (413 beyond).")
    testcase_excerpt_chars: int = Field(1000, ge=0, le=100_000, description="Characters of "
                                        "stdout (its start) and stderr (its end) a test "
                                        "case's result carries.")
    run_code_policy: str = Field("permissive", pattern="^(azr|permissive)$",
                                 description="Static policy of POST /run_code (its clients "
                                 "cannot choose one). azr refuses input() and sys, which "
                                 "stdin programs need; the sandbox holds under either.")

    # Engine: caches are bounded by the bytes they hold (docs/design.md §9.6)
    result_cache_bytes: int = Field(128 * MIB, ge=0, description="Bytes the in-process "
                                    "result cache may hold (embedded mode and the CLI).")
    program_cache_bytes: int = Field(32 * MIB, ge=0, description="Bytes the memo of static "
                                     "program checks may hold.")
    literal_cache_bytes: int = Field(32 * MIB, ge=0, description="Bytes the memo of parsed "
                                     "expected and returned outputs may hold.")
    max_program_chars: int = Field(32_768, ge=256, description="Longest program accepted; a "
                                   "longer one is a syntax_error. Parsing a program holds the "
                                   "interpreter lock for about 1 ms per KB.")

    # Service
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=lambda: default_data_dir(),
                           description="Audit database and other state; default "
                           "$XDG_DATA_HOME/azr-verify or ~/.local/share/azr-verify.")
    redis_url: str | None = Field(None, description="Set to run in distributed mode.")
    api_keys: dict[str, str] = Field(default_factory=dict,
                                     description='JSON {"name": "key"}; empty = no auth.')
    admin_keys: list[str] = Field(default_factory=list, description='JSON list of names in '
                                  'api_keys that read every key\'s audit records (any other '
                                  'key reads only its own).')
    max_body_bytes: int = Field(16 * MIB, ge=1024, description="Largest request body (413).")
    max_inflight_body_bytes: int = Field(64 * MIB, ge=1024, description="Request bodies held "
                                         "at once, across requests, from arrival to answer; "
                                         "beyond it a request gets 429.")
    body_timeout_s: float = Field(30.0, gt=0, description="Longest a request body may take "
                                  "to arrive; a slower one gets 408 and its connection is "
                                  "closed.")
    max_items: int = Field(4096, ge=1)
    max_queue_depth: int = Field(100_000, ge=1,
                                 description="Queued items beyond which requests get 429.")
    chunk_size: int = Field(64, ge=1, description="Items per RQ job in distributed mode.")
    job_ttl_s: int = Field(3600, ge=60)
    audit_retention: int = Field(200_000, ge=0, description="Audit records kept (the oldest "
                                 "go first).")
    audit_excerpt_chars: int = Field(2048, ge=64, description="Characters of program, input, "
                                     "output, error and meta an audit record keeps; the full "
                                     "texts are kept as sha256 and length.")

    # HTTP service and distributed mode (service/api, service/modes, service/queue)
    overload_retry_after_s: int = Field(2, ge=1, description="Retry-After sent with a 429.")
    switch_interval_ms: float = Field(1.0, gt=0, le=100, description="How often a thread "
                                      "doing Python work (parsing, checking) hands the "
                                      "interpreter lock to the event loop, in `serve`; "
                                      "CPython's default is 5.")
    embedded_job_threads: int = Field(2, ge=1, le=64,
                                      description="Threads running /v1/jobs in embedded mode.")
    check_timeout_s: float = Field(600.0, gt=0, description="Longest a distributed /v1/check "
                                   "waits for its chunks before answering 504.")
    queue_name: str = Field("azr-verify", description="RQ queue of chunk jobs.")
    redis_timeout_s: float = Field(2.0, gt=0, description="Redis connect/read timeout "
                                   "(blocking waits add their own time on top).")
    job_timeout_s: int = Field(600, ge=10, description="RQ timeout of one chunk job.")
    job_retries: int = Field(3, ge=0, le=100, description="Re-runs of a chunk whose job "
                             "failed or whose worker died.")
    worker_heartbeat_s: int = Field(2, ge=1, description="How often a busy worker proves it "
                                    "is alive; its job is re-run after 3 missed beats.")
    reap_interval_s: float = Field(2.0, gt=0, description="How often the API re-queues jobs "
                                   "of dead workers.")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="Lifetime of a result-cache "
                             "entry in Redis (distributed mode).")

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.default_timeout_s > self.max_timeout_s:
            raise ValueError("default_timeout_s exceeds max_timeout_s")
        if self.default_memory_mb > self.max_memory_mb:
            raise ValueError("default_memory_mb exceeds max_memory_mb")
        if self.default_determinism_runs > self.determinism_seeds:
            raise ValueError("default_determinism_runs exceeds determinism_seeds")
        if self.max_body_bytes > self.max_inflight_body_bytes:
            raise ValueError("max_body_bytes exceeds max_inflight_body_bytes")
        if "" in self.api_keys:
            raise ValueError("api_keys: every key needs a non-empty name (the audit log and "
                             "the access log record it)")
        unknown = sorted(set(self.admin_keys) - set(self.api_keys))
        if unknown:
            raise ValueError(f"admin_keys names keys that api_keys does not define: "
                             f"{', '.join(unknown)}")
        return self
