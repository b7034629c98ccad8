"""Red-team regressions for the policy-compiled seccomp filter (service/sandbox/seccomp/).

Holes found by attacking the zygote's deny-list: syscalls that do what a refused one does under
another number. The hand-built filter had the same holes; the policy closes them.

- Linux AIO: io_submit takes RWF_NOWAIT in each iocb's aio_rw_flags, so a read answers EAGAIN
  when the page is not cached: the page-cache probe preadv2 is refused for (design §9.3). Live
  in the process backend (Docker's allow-list never let io_setup through).
- fchmodat2 (Linux 6.6) is fchmodat with flags: a permission change under a new number.
- sync and syncfs write back the host's dirty pages: a stall and a timing channel between items.
- inotify: a watch on the stdlib directory (the host's files) saw another zygote's start-up
  imports, live in the process backend: fanotify_init and F_NOTIFY are refused for that.
- quotactl_fd is quotactl by file descriptor.
"""

from __future__ import annotations

import ast
import errno

import pytest

from azr_verify.service.config import BackendName
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName, Verdict

from .guards import assert_executed, fresh
from .test_seccomp_filter import DENY, number, run_filter

SAME_AS_A_REFUSED_CALL = {
    "io_setup": "preadv2",  # RWF_NOWAIT reads through AIO
    "io_submit": "preadv2",
    "fchmodat2": "fchmodat",
    "sync": "fadvise64",  # the page cache, host-wide
    "syncfs": "fadvise64",
    # The stdlib a child reads is the host's: a watch on it sees other sandboxes' and the
    # host's file accesses (which modules another item imports), as fanotify and F_NOTIFY would.
    "inotify_init": "fanotify_init",
    "inotify_init1": "fanotify_init",
    "inotify_add_watch": "fanotify_init",
    "quotactl_fd": "quotactl",
}


@pytest.mark.parametrize("name", sorted(SAME_AS_A_REFUSED_CALL))
def test_a_refused_calls_twin_is_refused(name: str) -> None:
    assert run_filter(number(SAME_AS_A_REFUSED_CALL[name])) == DENY
    assert run_filter(number(name)) == DENY, name


# A page-cache probe through Linux AIO: reads a stdlib file with RWF_NOWAIT; the completion says
# -EAGAIN where the page is not cached. With the filter, io_setup fails and nothing is probed.
AIO_PROBE = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
RWF_NOWAIT = 8
def f(x):
    context = ctypes.c_ulong(0)
    ctypes.set_errno(0)
    if libc.syscall(206, 8, ctypes.byref(context)) != 0:  # io_setup
        return ('io_setup', ctypes.get_errno())
    fd = os.open(os.__file__, os.O_RDONLY)
    buffer = ctypes.create_string_buffer(4096)
    iocb = ctypes.create_string_buffer(struct.pack(
        '<QIIHhIQQqQII', 1, 0, RWF_NOWAIT, 0, 0, fd, ctypes.addressof(buffer), 4096, 0, 0, 0,
        0))
    pointers = (ctypes.c_void_p * 1)(ctypes.addressof(iocb))
    ctypes.set_errno(0)
    if libc.syscall(209, context, 1, pointers) != 1:  # io_submit
        return ('io_submit', ctypes.get_errno())
    event = ctypes.create_string_buffer(32)
    libc.syscall(208, context, 1, 1, event, None)  # io_getevents
    return ('probed', struct.unpack('<QQqq', event.raw)[2])
"""


@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_no_page_cache_probe_through_linux_aio(backend: BackendName,
                                               request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(
        "engine" if backend is BackendName.PROCESS else "docker_engine")
    result = engine.check([CheckItem(program=fresh(AIO_PROBE), input="0")],
                          PolicyName.PERMISSIVE)[0]
    assert_executed([result])
    assert result.verdict is Verdict.ACCEPTED, result
    assert ast.literal_eval(result.output or "") == ("io_setup", errno.EPERM)


# fchmodat2, sync and syncfs from inside: each refused by the filter, with arguments that would
# fail harmlessly if one got through (a bad fd, a path that does not exist).
TWINS_PROBE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def errno_of(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) if isinstance(a, int) else a
                                                for a in args))
    return ctypes.get_errno() if result == -1 else 0
def f(x):
    return {'fchmodat2': errno_of(452, -100, b'/no-such-file', 0o777, 0),
            'syncfs': errno_of(306, -1), 'inotify_init1': errno_of(294, 0o4000),
            'inotify_add_watch': errno_of(254, -1, b'/', 1)}
"""


@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_refused_calls_twins_are_refused_inside_the_sandbox(
        backend: BackendName, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(
        "engine" if backend is BackendName.PROCESS else "docker_engine")
    result = engine.check([CheckItem(program=fresh(TWINS_PROBE), input="0")],
                          PolicyName.PERMISSIVE)[0]
    assert_executed([result])
    assert result.verdict is Verdict.ACCEPTED, result
    assert ast.literal_eval(result.output or "") == {
        "fchmodat2": errno.EPERM, "syncfs": errno.EPERM, "inotify_init1": errno.EPERM,
        "inotify_add_watch": errno.EPERM}
