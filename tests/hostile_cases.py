"""Hostile programs and the verdict each must get, shared by every sandbox backend's tests.

They are checked with policy `permissive`, so the sandbox, not the static policy, holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from azr_verify.service.models import Verdict

from .conftest import PLANTED_SECRET

PROJECT_FILE = os.path.abspath(__file__)
PROJECT_DIR = os.path.dirname(PROJECT_FILE)


@dataclass(frozen=True)
class HostileCase:
    name: str
    program: str
    verdict: Verdict
    error_types: frozenset[str] = field(default_factory=frozenset)  # empty: any
    output: str | None = None  # expected repr when the verdict is accepted
    input: str = "0"
    timeout_s: float = 2.0
    memory_mb: int | None = None


def _case(name: str, program: str, verdict: Verdict, *error_types: str, **kwargs: object) \
        -> HostileCase:
    return HostileCase(name, program, verdict, frozenset(error_types), **kwargs)  # type: ignore[arg-type]


HOSTILE_CASES: list[HostileCase] = [
    _case("infinite_loop", "def f(x):\n    while True:\n        pass\n", Verdict.TIMEOUT,
          timeout_s=1.0),
    _case("cpu_burn_in_c", "def f(x):\n    return sum(range(10**12))\n", Verdict.TIMEOUT,
          timeout_s=1.0),
    # One allocation far over any limit fails at once, without the memory ever being used: the
    # kernel saw no exhaustion, so it is the program's own MemoryError (docs/design.md §2).
    _case("memory_bomb_list", "def f(x):\n    return len([0] * 10**10)\n", Verdict.RUNTIME_ERROR,
          "MemoryError"),
    _case("memory_bomb_gradual",
          "def f(x):\n    chunks = []\n    while True:\n        chunks.append(bytearray(2**20))\n",
          Verdict.MEMORY_LIMIT, timeout_s=5.0, memory_mb=64),
    _case("fork_bomb", "import os\ndef f(x):\n    while True:\n        os.fork()\n",
          Verdict.RUNTIME_ERROR, "BlockingIOError", "PermissionError"),
    _case("thread_spawn",
          "import threading\ndef f(x):\n    t = threading.Thread(target=print)\n"
          "    t.start()\n    return 1\n",
          Verdict.RUNTIME_ERROR, "RuntimeError"),
    _case("huge_return", "def f(x):\n    return 'x' * 10**7\n", Verdict.OUTPUT_LIMIT),
    # Recursing through C (map) overflows the C stack: the classic interpreter crash.
    _case("deep_recursion_crash",
          "import sys\nsys.setrecursionlimit(10**6)\ndef f(x):\n    return list(map(f, [x + 1]))\n",
          Verdict.RUNTIME_ERROR, "SIGSEGV", timeout_s=5.0),
    _case("deep_python_recursion", "def f(x):\n    return f(x + 1)\n", Verdict.RUNTIME_ERROR,
          "RecursionError"),
    _case("ctypes_segfault", "import ctypes\ndef f(x):\n    return ctypes.string_at(0)\n",
          Verdict.RUNTIME_ERROR, "SIGSEGV"),
    _case("network_connect",
          "import socket\ndef f(x):\n    s = socket.create_connection(('127.0.0.1', 22), 1)\n"
          "    return 'connected'\n",
          Verdict.RUNTIME_ERROR, "PermissionError"),
    _case("write_tmp", "def f(x):\n    with open('/tmp/azr-pwned', 'w') as fh:\n"
          "        fh.write('x')\n    return 'written'\n",
          Verdict.RUNTIME_ERROR, "PermissionError", "FileNotFoundError", "OSError"),
    _case("read_host_etc", "def f(x):\n    return open('/etc/passwd').read()\n",
          Verdict.RUNTIME_ERROR, "FileNotFoundError", "PermissionError"),
    _case("read_shadow", "def f(x):\n    return open('/etc/shadow').read()\n",
          Verdict.RUNTIME_ERROR, "FileNotFoundError", "PermissionError"),
    _case("read_project_file", f"def f(x):\n    return open({PROJECT_FILE!r}).read()\n",
          Verdict.RUNTIME_ERROR, "FileNotFoundError", "PermissionError"),
    _case("write_project_dir",
          f"def f(x):\n    open({os.path.join(PROJECT_DIR, 'pwned.txt')!r}, 'w').write('x')\n"
          "    return 1\n",
          Verdict.RUNTIME_ERROR, "FileNotFoundError", "PermissionError", "OSError"),
    _case("proc_1_environ", "def f(x):\n    return open('/proc/1/environ').read()\n",
          Verdict.RUNTIME_ERROR, "FileNotFoundError", "PermissionError"),
    _case("environment_secret",
          "import os\ndef f(x):\n    return [k for k in os.environ if 'SECRET' in k] + "
          f"[v for v in os.environ.values() if {PLANTED_SECRET!r} in v]\n",
          Verdict.ACCEPTED, output="[]"),
    _case("kill_pid_1", "import os, signal\ndef f(x):\n    os.kill(1, signal.SIGKILL)\n"
          "    return 'alive'\n", Verdict.ACCEPTED, output="'alive'"),
    # kill(-1) signals every process the caller may signal but itself and PID 1: there is none.
    _case("kill_everyone", "import os, signal\ndef f(x):\n    os.kill(-1, signal.SIGKILL)\n"
          "    return 'alive'\n", Verdict.RUNTIME_ERROR, "ProcessLookupError"),
    _case("kill_service", f"import os, signal\ndef f(x):\n    os.kill({os.getpid()}, 9)\n",
          Verdict.RUNTIME_ERROR, "ProcessLookupError", "PermissionError"),
    _case("ptrace_attach",
          "import ctypes\ndef f(x):\n    libc = ctypes.CDLL(None, use_errno=True)\n"
          "    result = libc.ptrace(16, 1, 0, 0)\n    return [result, ctypes.get_errno()]\n",
          Verdict.ACCEPTED, output="[-1, 1]"),
    _case("exec_shell",
          "import os\ndef f(x):\n    os.execv('/bin/sh', ['sh', '-c', 'echo pwned'])\n",
          Verdict.RUNTIME_ERROR, "PermissionError", "FileNotFoundError"),
    # stdout and stderr are the child's own sink (writes succeed), stdin its own empty
    # /dev/null, read-only, as for `python prog.py < /dev/null`.
    _case("write_inherited_fds",
          "import os\ndef f(x):\n    for fd in (1, 2):\n        os.write(fd, b'garbage')\n"
          "    assert os.read(0, 10) == b''\n"
          "    for fd in (0, 1, 2):\n        os.close(fd)\n    return 7\n",
          Verdict.ACCEPTED, output="7"),
    _case("close_every_fd",
          "import os\ndef f(x):\n    os.closerange(0, 1024)\n    return 7\n",
          Verdict.RUNTIME_ERROR, "NoResult"),
    _case("exit_process", "import os\ndef f(x):\n    os._exit(0)\n",
          Verdict.RUNTIME_ERROR, "NoResult"),
    _case("system_exit", "def f(x):\n    raise SystemExit(3)\n", Verdict.RUNTIME_ERROR,
          "SystemExit"),
    _case("unshare_namespace",
          "import ctypes\ndef f(x):\n    libc = ctypes.CDLL(None, use_errno=True)\n"
          "    return [libc.unshare(0x10000000), ctypes.get_errno()]\n",
          Verdict.ACCEPTED, output="[-1, 1]"),
]
