"""The bubblewrap backend (configured as `process`): zygotes under bwrap, all namespaces unshared.

Each zygote runs as an unprivileged host uid (65534 when the service is root) inside fresh user,
pid, net, ipc, uts and cgroup namespaces, as PID 1 of its pid namespace, with no capabilities,
an environment holding only its secrets (which it removes before any child exists), a read-only
root, `/dev/null` as its only device (no random devices, no `/dev/shm`), and read-only binds of
only what the interpreter needs: the executable, its standard library and the shared libraries
they link against.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from azr_verify.service.config import BackendName
from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.connection import SubprocessConnection
from azr_verify.service.sandbox.protocol import ZygoteSecrets

RUNNER_PATH = Path(__file__).resolve().with_name("runner.py")
SANDBOX_RUNNER = "/azr/runner.py"
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
_LDD_PATH = re.compile(r"(/\S+)")
_PROBE = (
    "import json, os, sys, sysconfig\n"
    "stdlib = sysconfig.get_path('stdlib')\n"
    "print(json.dumps({'executable': os.path.realpath(sys.executable), 'stdlib': stdlib,\n"
    "  'version': sys.version.split()[0], 'version_info': list(sys.version_info[:2])}))\n"
)


@dataclass(frozen=True)
class Interpreter:
    """The Python that runs inside the sandbox, and the files it needs."""

    executable: str
    stdlib: str
    version: str
    files: tuple[str, ...]  # shared libraries (and the loader) to bind read-only


def _readable_by_others(path: str) -> bool:
    """Whether an unprivileged uid can reach `path`: o+x on every parent, o+r on the file."""
    current = Path(path)
    try:
        if not current.stat().st_mode & stat.S_IROTH:
            return False
        for parent in current.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def _shared_libraries(binaries: list[str]) -> set[str]:
    ldd = shutil.which("ldd")
    if ldd is None:
        raise SandboxUnavailableError("ldd is not installed; it lists the interpreter's libraries")
    libraries: set[str] = set()
    for chunk_start in range(0, len(binaries), 64):
        chunk = binaries[chunk_start:chunk_start + 64]
        result = subprocess.run([ldd, *chunk], capture_output=True, text=True,
                                check=False)
        for line in result.stdout.splitlines():
            if "=>" in line:
                line = line.split("=>", 1)[1]
            match = _LDD_PATH.search(line)
            if match and os.path.exists(match.group(1)):
                libraries.add(match.group(1))
    return libraries


def probe_interpreter(executable: str) -> Interpreter:
    """Asks `executable` where its standard library lives and lists its shared libraries."""
    try:
        result = subprocess.run([executable, "-I", "-S", "-c", _PROBE],
                                capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailableError(f"cannot run sandbox interpreter {executable}: {exc}") \
            from exc
    facts = json.loads(result.stdout)
    if tuple(facts["version_info"]) < (3, 11):
        raise SandboxUnavailableError(f"{executable} is Python {facts['version']}; need 3.11+")
    stdlib = facts["stdlib"]
    dynload = Path(stdlib) / "lib-dynload"
    extensions = sorted(str(p) for p in dynload.glob("*.so")) if dynload.is_dir() else []
    libraries = _shared_libraries([facts["executable"], *extensions])
    return Interpreter(executable=facts["executable"], stdlib=stdlib, version=facts["version"],
                       files=tuple(sorted(libraries)))


def choose_interpreter(configured: str | None, switch_uid: bool) -> Interpreter:
    """The configured interpreter, else this service's own, else the system's.

    When the sandbox runs under another uid, the interpreter must be readable by that uid (a
    pyenv Python under a private /root is not), so the system Python is the fallback.
    """
    if configured:
        candidates = [configured]
    else:
        own = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        candidates = [own, SYSTEM_PYTHON]
    rejected = []
    for candidate in candidates:
        if not os.path.exists(candidate):
            rejected.append(f"{candidate}: missing")
            continue
        interpreter = probe_interpreter(candidate)
        paths = [interpreter.executable, os.path.join(interpreter.stdlib, "os.py")]
        if switch_uid and not all(_readable_by_others(p) for p in paths):
            rejected.append(f"{candidate}: not readable by uid {NOBODY}")
            continue
        return interpreter
    raise SandboxUnavailableError("no usable sandbox interpreter (" + "; ".join(rejected)
                                  + "); set AZR_VERIFY_PYTHON")


class BubblewrapLauncher:
    """Starts zygotes under bubblewrap (ZygoteLauncher protocol)."""

    backend = BackendName.PROCESS

    def __init__(self, python: str | None = None) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailableError(
                "bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        self._bwrap = bwrap
        self._switch_uid = os.geteuid() == 0
        self.interpreter = choose_interpreter(python, self._switch_uid)
        self._base_argv = self._build_argv()

    def _build_argv(self) -> list[str]:
        interpreter = self.interpreter
        argv = [
            self._bwrap,
            "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox",
            "--ro-bind", interpreter.stdlib, interpreter.stdlib,
        ]
        site_packages = os.path.join(interpreter.stdlib, "site-packages")
        if os.path.isdir(site_packages):
            # Hide third-party packages installed beside the stdlib: an empty read-only tmpfs.
            argv += ["--tmpfs", site_packages, "--remount-ro", site_packages]
        for path in sorted({interpreter.executable, *interpreter.files}):
            argv += ["--ro-bind", os.path.realpath(path), path]
        argv += [
            "--ro-bind", str(RUNNER_PATH), SANDBOX_RUNNER,
            # Only /dev/null (the runner opens it before its filter closes open() for
            # writing): no /dev/urandom, /dev/random or /dev/shm.
            "--dir", "/dev", "--dev-bind", "/dev/null", "/dev/null",
            # Last: everything bubblewrap created (/, /dev, the mount points) is read-only.
            "--remount-ro", "/",
            "--chdir", "/",
        ]
        return argv

    def launch(self, secrets: ZygoteSecrets, index: int) -> SubprocessConnection:
        # Not -I: it implies -E, which would ignore PYTHONHASHSEED. -s -S -P keep user site,
        # site and cwd off sys.path.
        argv = [*self._base_argv,
                "--", self.interpreter.executable, "-s", "-S", "-B", "-P", SANDBOX_RUNNER]
        user = NOBODY if self._switch_uid else None
        # bubblewrap passes its own environment on: only the zygote's secrets, never on a
        # command line where `ps` would show them.
        return SubprocessConnection(f"zygote-{index}", argv, user=user, group=user,
                                    env=secrets.environment())

    def close(self) -> None:
        """Zygotes die with their bubblewrap parent; nothing else to release."""
