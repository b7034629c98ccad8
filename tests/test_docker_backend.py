"""The docker sandbox backend against a real dockerd and the real sandbox image.

Skipped when dockerd or the image is missing, unless AZR_VERIFY_REQUIRE_DOCKER=1 (CI, `make
test`), which turns that into a failure. The pure parts (stream demultiplexing, orphan rules,
a missing daemon) run everywhere.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from azr_verify.service.engine import Engine
from azr_verify.service.errors import SandboxUnavailableError, ZygoteDiedError
from azr_verify.service.models import CheckItem, CheckResult, PolicyName
from azr_verify.service.sandbox.docker.attach_stream import ContainerConnection
from azr_verify.service.sandbox.docker.hardening import RUNNER_COMMAND
from azr_verify.service.sandbox.docker.labels import (
    LABEL_OWNER,
    LABEL_OWNER_PROCESS,
    LABEL_RUNNER,
    LABEL_SANDBOX,
)
from azr_verify.service.sandbox.docker.launcher import DockerLauncher
from azr_verify.service.sandbox.docker.orphans import is_orphan, owner_process_label
from azr_verify.service.sandbox.docker.preflight import DEFAULT_SECCOMP_PROFILE, runner_sha256
from azr_verify.service.sandbox.pool import ZygotePool, ZygoteState, draw_secrets
from azr_verify.service.sandbox.protocol import ExecRequest
from azr_verify.service.sandbox.seccomp.zygote_filter import native_zygote_filter
from azr_verify.service.verify.run_outcome import ExecOutcome, OutcomeKind

from .guards import fresh
from .hostile_cases import HOSTILE_CASES, PROJECT_DIR, HostileCase
from .sandboxes import docker_settings
from .test_engine_verdicts import EQUALITY_CASES, VERDICT_CASES, case_limits
from .test_hostile import assert_contained, hostile_items

SANDBOX_UID = 65534


# -- helpers (what a conftest_docker.py would hold) ---------------------------------------------


def sdk() -> docker.APIClient:
    return docker.from_env(timeout=30).api


def inspect(container_id: str) -> dict[str, Any]:
    """`docker inspect`, through the CLI when there is one (as an operator would read it)."""
    cli = shutil.which("docker")
    if cli is None:
        attributes: dict[str, Any] = sdk().inspect_container(container_id)
        return attributes
    output = subprocess.run([cli, "inspect", container_id], capture_output=True, text=True,
                            check=True, timeout=30).stdout
    parsed: dict[str, Any] = json.loads(output)[0]
    return parsed


def container_exists(container_id: str) -> bool:
    try:
        sdk().inspect_container(container_id)
    except NotFound:
        return False
    return True


def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def container_of(pool: ZygotePool, index: int) -> str:
    connection = pool.zygote_threads[index].connection
    assert isinstance(connection, ContainerConnection), connection
    return connection.container_id


def request(program: str, args: str = "0", timeout_s: float = 5.0) -> ExecRequest:
    return ExecRequest(program, "f", args, timeout_s, 256, 10_000)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


@pytest.fixture
def docker_pool(docker_ready: None) -> Iterator[ZygotePool]:
    pool = ZygotePool(DockerLauncher(docker_settings()), zygotes=2, seed_groups=2,
                      batch_size=4, recycle_after=10_000)
    pool.start()
    try:
        yield pool
    finally:
        pool.close()


# -- the hostile suite and the verdict suite, on both backends ----------------------------------


@pytest.fixture(scope="module")
def docker_hostile_results(docker_engine: Engine) -> dict[str, CheckResult]:
    restarts_before = docker_engine.pool.stats().restarts
    results = docker_engine.check(hostile_items(), PolicyName.PERMISSIVE)
    # No hostile program may take a container down: that would cost a restart.
    assert docker_engine.pool.stats().restarts == restarts_before
    return {str(result.id): result for result in results}


@pytest.mark.docker
@pytest.mark.parametrize("case", HOSTILE_CASES, ids=lambda case: case.name)
def test_hostile_program_is_contained_in_docker(
        case: HostileCase, docker_hostile_results: dict[str, CheckResult]) -> None:
    assert_contained(case, docker_hostile_results[case.name])


@pytest.mark.docker
def test_hostile_verdicts_match_the_process_backend(
        engine: Engine, docker_hostile_results: dict[str, CheckResult]) -> None:
    process = {str(r.id): r for r in engine.check(hostile_items(), PolicyName.PERMISSIVE)}
    differences = {
        name: (process[name].verdict, result.verdict)
        for name, result in docker_hostile_results.items()
        if (process[name].verdict, process[name].output) != (result.verdict, result.output)
    }
    assert not differences, differences
    assert not os.path.exists("/tmp/azr-pwned")
    assert not os.path.exists(os.path.join(PROJECT_DIR, "pwned.txt"))


def _suite_items() -> list[CheckItem]:
    items = [CheckItem(id=f"verdict-{name}", program=fresh(program), input=input_text,
                       output=output, **case_limits(verdict))
             for name, program, input_text, output, verdict, _shown in VERDICT_CASES]
    items += [CheckItem(id=f"equality-{name}", program=fresh(f"def f(a):\n    {body}\n"),
                        input="0", output=output)
              for name, body, output, _verdict in EQUALITY_CASES]
    return items


@pytest.mark.docker
def test_verdict_and_equality_suites_identical_on_both_backends(
        engine: Engine, docker_engine: Engine) -> None:
    items = _suite_items()
    on_process = engine.check(items, PolicyName.AZR)
    on_docker = docker_engine.check(items, PolicyName.AZR)
    seen = [(r.id, r.verdict, r.output, r.error_type) for r in on_docker]
    assert seen == [(r.id, r.verdict, r.output, r.error_type) for r in on_process]
    expected = [case[4] for case in VERDICT_CASES] + [case[3] for case in EQUALITY_CASES]
    assert [r.verdict for r in on_docker] == expected


# -- hardening, read back from docker inspect ---------------------------------------------------


@pytest.mark.docker
def test_pool_container_has_every_hardening_setting(docker_pool: ZygotePool) -> None:
    launcher = docker_pool.launcher
    assert isinstance(launcher, DockerLauncher)
    settings = docker_settings()
    container_id = container_of(docker_pool, 0)
    details = inspect(container_id)
    host, config = details["HostConfig"], details["Config"]

    assert host["NetworkMode"] == "none"
    assert details["NetworkSettings"]["Networks"].keys() <= {"none"}
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["Privileged"] is False
    assert "no-new-privileges:true" in host["SecurityOpt"]
    profiles = [opt.split("=", 1)[1] for opt in host["SecurityOpt"] if opt.startswith("seccomp=")]
    assert [json.loads(p) for p in profiles] == [json.loads(DEFAULT_SECCOMP_PROFILE.read_text())]
    assert config["User"] == f"{SANDBOX_UID}:{SANDBOX_UID}"
    assert host["PidsLimit"] == settings.docker_pids_limit
    assert host["Memory"] == (settings.max_memory_mb + 128) * 1024 * 1024
    if launcher.cgroups.swap:
        assert host["MemorySwap"] == host["Memory"]
    if launcher.cgroups.cpu_quota:
        assert host["NanoCpus"] == int(settings.docker_cpus * 1e9)
    assert host["IpcMode"] == "none"
    assert not host.get("Init")
    # No writable mounts: no volumes or tmpfs, the root filesystem is read-only, and the only
    # binds put /dev/null (read-only) over the random devices.
    assert sorted(host.get("Binds") or []) == ["/dev/null:/dev/random:ro",
                                               "/dev/null:/dev/urandom:ro"]
    assert {(m["Source"], m["Destination"], m["RW"]) for m in details["Mounts"]} == {
        ("/dev/null", "/dev/random", False), ("/dev/null", "/dev/urandom", False)}
    assert not host.get("Tmpfs") and not config.get("Volumes")
    assert set(host["MaskedPaths"]) >= {"/proc/1/stat", "/proc/1/task/1/stat", "/proc/sys",
                                        "/proc/kcore", "/proc/keys"}
    assert host["LogConfig"]["Type"] == "none"
    assert host["AutoRemove"] is True
    assert config["Labels"][LABEL_SANDBOX] == "1"
    assert config["Labels"][LABEL_OWNER] == launcher.instance_id
    assert config["Labels"][LABEL_RUNNER] == runner_sha256()
    assert [details["Path"], *details["Args"]] == list(RUNNER_COMMAND)
    assert config["OpenStdin"] is True and config["StdinOnce"] is True and config["Tty"] is False
    env = dict(entry.split("=", 1) for entry in config["Env"])
    group = next(group for group, drawn in enumerate(docker_pool.secrets)
                 if env["PYTHONHASHSEED"] == str(drawn.hash_seed))
    assert env.pop("AZR_LAYOUT") == docker_pool.secrets[group].layout
    # The filter the service compiled, there from the container's start (docs/design.md §4).
    assert bytes.fromhex(env.pop("AZR_SECCOMP_FILTER")) == native_zygote_filter() \
        == docker_pool.secrets[group].seccomp_filter
    env.pop("PYTHONHASHSEED")
    assert env.pop("LD_BIND_NOW") == "1"  # symbols bound once in the zygote, not per child
    assert set(env) <= {"PATH", "HOSTNAME", "HOME"}

    # The kernel's view of the runner process itself.
    status = proc_status(details["State"]["Pid"])
    assert status["Uid"].split() == [str(SANDBOX_UID)] * 4
    assert status["Gid"].split() == [str(SANDBOX_UID)] * 4
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode
    if "Seccomp_filters" in status:
        assert int(status["Seccomp_filters"]) >= 2  # docker's profile, then the runner's own
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NSpid"].split()[-1] == "1"  # PID 1 of its own pid namespace: no --init


_SYSCALL_PROBE = textwrap.dedent("""
    import ctypes, json, os
    libc = ctypes.CDLL(None, use_errno=True)
    numbers = {"socket": 41, "ptrace": 101, "mount": 165, "unshare": 272, "setns": 308,
               "keyctl": 250, "add_key": 248, "bpf": 321, "perf_event_open": 298,
               "personality": 135, "userfaultfd": 323, "io_uring_setup": 425, "chroot": 161,
               "memfd_create": 319, "mkdir": 83, "clone3": 435}
    errors = {}
    for name, number in numbers.items():
        ctypes.set_errno(0)
        errors[name] = ctypes.get_errno() if libc.syscall(number, 0, 0, 0, 0, 0, 0) == -1 else 0
    pid = os.fork()  # clone without namespace flags stays allowed
    if pid == 0:
        os._exit(7)
    errors["fork"] = os.waitpid(pid, 0)[1] >> 8
    print(json.dumps(errors))
""")


@pytest.mark.docker
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall numbers")
def test_seccomp_profile_alone_denies_what_docker_default_allows(docker_ready: None) -> None:
    """The profile is a layer of its own: no runner filter here, only Docker's enforcement."""
    settings = docker_settings()
    profile = json.dumps(json.loads(DEFAULT_SECCOMP_PROFILE.read_text()))
    client = docker.from_env(timeout=30)
    output = client.containers.run(
        settings.docker_image, ["python3", "-s", "-S", "-c", _SYSCALL_PROBE], remove=True,
        user=f"{SANDBOX_UID}:{SANDBOX_UID}", network_mode="none", read_only=True,
        cap_drop=["ALL"], security_opt=["no-new-privileges:true", f"seccomp={profile}"])
    errors = json.loads(output)
    assert errors.pop("clone3") == 38  # ENOSYS: the C library falls back to clone
    assert errors.pop("fork") == 7
    assert errors == dict.fromkeys(errors, 1), errors  # every other one: EPERM


@pytest.mark.docker
def test_hash_seed_is_kept_per_group_across_container_restarts(docker_pool: ZygotePool) -> None:
    """Seeds are drawn per pool start; a replaced container serves its group with the same one."""
    program = "def f(x):\n    return hash('azr-verify')\n"
    first = [docker_pool.submit(request(program), group).result() for group in (0, 1)]
    assert all(outcome.kind is OutcomeKind.VALUE for outcome in first), first
    assert first[0].repr != first[1].repr
    for index in range(len(docker_pool.zygote_threads)):
        sdk().kill(container_of(docker_pool, index))
    again = [docker_pool.submit(request(program), group).result() for group in (0, 1)]
    assert [o.repr for o in again] == [o.repr for o in first]


# -- failures: killed containers, orphans, missing daemon or image ------------------------------


@pytest.mark.docker
def test_docker_kill_mid_batch_every_item_answered_and_pool_refills(
        docker_pool: ZygotePool) -> None:
    program = "import time\ndef f(x):\n    time.sleep(0.2)\n    return x * 2\n"
    victim = container_of(docker_pool, 0)
    restarts = docker_pool.stats().restarts
    futures = [docker_pool.submit(request(program, str(i)), 0) for i in range(12)]
    futures += [docker_pool.submit(request(program, str(i)), 1) for i in range(12, 16)]
    # Kill once the victim holds work: its first item sleeps, so it is still busy then.
    assert wait_until(lambda: docker_pool.zygote_threads[0].state is ZygoteState.BUSY, 120.0)
    subprocess.run([shutil.which("docker") or "docker", "kill", victim], capture_output=True,
                   check=False)
    outcomes = [future.result(timeout=120) for future in futures]
    for i, outcome in enumerate(outcomes):
        assert outcome.kind in (OutcomeKind.VALUE, OutcomeKind.SANDBOX_ERROR), outcome
        if outcome.kind is OutcomeKind.VALUE:
            assert outcome.repr == str(i * 2)
    assert docker_pool.stats().restarts > restarts
    assert wait_until(lambda: not container_exists(victim)), "killed container not removed"
    # Refilled: every worker serves again from a fresh container.
    healthy = [docker_pool.submit(request("def f(x):\n    return -x\n", "5"), group).result()
               for group in (0, 1, 0, 1)]
    assert [o.repr for o in healthy] == ["-5"] * 4
    assert victim not in {container_of(docker_pool, i) for i in range(2)}
    stats = docker_pool.stats()
    assert stats.states["dead"] == 0 and stats.states["starting"] == 0


@pytest.mark.docker
def test_idle_container_killed_from_outside_is_replaced(docker_pool: ZygotePool) -> None:
    """SIGKILL from the host to the runner (the container's PID 1), as for the process backend."""
    victim = container_of(docker_pool, 1)
    runner_pid = docker_pool.zygote_pids()[1]
    assert runner_pid == sdk().inspect_container(victim)["State"]["Pid"]
    os.kill(runner_pid, signal.SIGKILL)
    assert wait_until(lambda: not container_exists(victim))
    outcome = docker_pool.submit(request("def f(x):\n    return 'ok'\n"), 1).result(timeout=60)
    assert outcome == ExecOutcome(OutcomeKind.VALUE, repr="'ok'", duration_ms=outcome.duration_ms)


@pytest.mark.docker
def test_recycling_replaces_the_container(docker_ready: None) -> None:
    pool = ZygotePool(DockerLauncher(docker_settings()), zygotes=1, seed_groups=1,
                      batch_size=1, recycle_after=3)
    pool.start()
    try:
        seen = set()
        for i in range(7):
            outcome = pool.submit(request("def f(x):\n    return x\n", str(i)), 0).result()
            assert outcome.repr == str(i)
            connection = pool.zygote_threads[0].connection
            if isinstance(connection, ContainerConnection):
                seen.add(connection.container_id)
        assert len(seen) >= 2
    finally:
        pool.close()
    assert wait_until(lambda: not any(container_exists(c) for c in seen))


_CRASHING_SERVICE = textwrap.dedent("""
    import os, secrets, docker
    from azr_verify.service.config import Settings
    from azr_verify.service.sandbox.docker.launcher import DockerLauncher
    from azr_verify.service.sandbox.pool import draw_secrets
    from azr_verify.service.sandbox.seccomp.zygote_filter import native_zygote_filter
    launcher = DockerLauncher(Settings(sandbox="docker"))
    container_id = launcher.create_container(draw_secrets(1, native_zygote_filter())[0],
                                             "azr-sbx-orphan-" + secrets.token_hex(4))
    docker.from_env().api.start(container_id)  # running, never attached: nothing ends it
    print(container_id, flush=True)
    os.kill(os.getpid(), 9)
""")


@pytest.mark.docker
def test_orphans_of_a_crashed_service_are_removed_at_start_up(docker_ready: None) -> None:
    crashed = subprocess.run([sys.executable, "-c", _CRASHING_SERVICE], capture_output=True,
                             text=True, timeout=60, check=False)
    assert crashed.returncode == -9, crashed.stderr
    orphan = crashed.stdout.strip()
    assert sdk().inspect_container(orphan)["State"]["Running"] is True
    launcher = DockerLauncher(docker_settings())
    try:
        assert orphan in launcher.removed_orphans
    finally:
        launcher.close()
    assert not container_exists(orphan)


@pytest.mark.docker
def test_restart_with_the_same_instance_id_removes_its_old_containers(docker_ready: None) \
        -> None:
    instance = f"azr-test-{os.getpid()}-{time.monotonic_ns()}"
    first = DockerLauncher(docker_settings(), instance_id=instance)
    leftover = first.create_container(draw_secrets(1, native_zygote_filter())[0],
                                      f"azr-sbx-leftover-{time.monotonic_ns()}")
    sdk().start(leftover)
    try:
        # Another live service (this process, another id) must leave it alone...
        neighbour = DockerLauncher(docker_settings())
        neighbour.close()
        assert leftover not in neighbour.removed_orphans and container_exists(leftover)
        # ...while the same instance, restarted, removes it.
        restarted = DockerLauncher(docker_settings(), instance_id=instance)
        restarted.close()
        assert leftover in restarted.removed_orphans
        assert not container_exists(leftover)
    finally:
        first.close()


@pytest.mark.docker
def test_missing_or_outdated_image_is_a_clear_error(docker_ready: None) -> None:
    with pytest.raises(SandboxUnavailableError, match=r"not found.*make sandbox-image"):
        DockerLauncher(docker_settings(docker_image="azr-verify-sandbox:no-such-tag"))
    tag = f"azr-verify-test-outdated:{os.getpid()}"
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    api = sdk()
    api.import_image_from_data(empty.getvalue(), repository=tag.split(":")[0],
                               tag=tag.split(":")[1],
                               changes=[f'LABEL {LABEL_RUNNER}="0123456789abcdef"'])
    try:
        with pytest.raises(SandboxUnavailableError, match=r"outdated.*0123456789ab"):
            DockerLauncher(docker_settings(docker_image=tag))
    finally:
        api.remove_image(tag, force=True)


def test_missing_daemon_is_a_clear_error_not_a_hang(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    started = time.monotonic()
    with pytest.raises(SandboxUnavailableError, match="cannot reach the Docker daemon"):
        DockerLauncher(docker_settings(docker_api_timeout_s=5.0))
    assert time.monotonic() - started < 10


def test_missing_seccomp_profile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="seccomp profile"):
        DockerLauncher(docker_settings(docker_seccomp_profile=tmp_path / "none.json"))


# -- pure parts: the attach-stream demultiplexer and the orphan rules ---------------------------


class _RemovedContainerApi:
    """Stands in for the Docker API once the container is gone."""

    def __init__(self) -> None:
        self.killed: list[str] = []

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        raise NotFound(f"no such container: {container_id}")

    def kill(self, container_id: str) -> None:
        self.killed.append(container_id)


def _frame(stream_id: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream_id, len(payload)) + payload


def test_attach_stream_is_demultiplexed() -> None:
    ours, theirs = socket.socketpair()
    api = _RemovedContainerApi()
    closed: list[str] = []
    connection = ContainerConnection("zygote-test", "c0ffee", ours, api,  # type: ignore[arg-type]
                                     on_close=closed.append)
    data = _frame(2, b"a warning\n") + _frame(1, b"hel") + _frame(1, b"lo") + _frame(1, b"!")
    theirs.sendall(data[:5])  # a header split across reads
    theirs.sendall(data[5:])
    assert connection.recv_exact(5, 2.0) == b"hello"
    assert connection.alive()
    assert connection.recv_exact(1, 2.0) == b"!"
    with pytest.raises(ZygoteDiedError, match="no answer"):
        connection.recv_exact(1, 0.05)
    connection.send(b"request")
    assert theirs.recv(100) == b"request"
    theirs.close()
    assert not connection.alive()
    with pytest.raises(ZygoteDiedError, match="container removed: a warning"):
        connection.recv_exact(1, 2.0)
    connection.kill()
    assert api.killed == ["c0ffee"] and closed == ["c0ffee"]


def test_orphan_rules() -> None:
    me = owner_process_label()
    host = me.split("|")[0]
    dead = f"{host}|{2**22 + 7}|12345"  # above any default pid_max: never alive

    def container(owner: str, owner_process: str, state: str = "running") -> dict[str, Any]:
        return {"State": state, "Labels": {LABEL_OWNER: owner, LABEL_OWNER_PROCESS: owner_process}}

    assert not is_orphan(container("other", me), "mine", host)  # a live neighbour
    assert is_orphan(container("other", dead), "mine", host)  # its owner died
    assert is_orphan(container("mine", me), "mine", host)  # our previous run
    assert is_orphan(container("other", me, "exited"), "mine", host)  # stopped: garbage
    elsewhere = "another-boot:pid:[1]|1|1"
    assert not is_orphan(container("other", elsewhere), "mine", host)  # liveness unknown
