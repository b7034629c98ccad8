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
- sysinfo returns the host's load averages, free memory, process count and uptime: the host-wide
  counters the container masks in /proc (/proc/loadavg, meminfo, uptime), and in the process
  backend (no /proc) the only way to them; free memory moves with what other sandboxes do.
- prctl(PR_SET_SECCOMP) stacks a filter as seccomp(2) does, which the policy refuses so that
  "no program stacks its own": live in both backends (a SECCOMP_RET_LOG filter would write the
  host's audit log at every syscall).
- Syscalls newer than the host's libseccomp (setxattrat, open_tree_attr, mseal...) could not be
  named by the deny-list and reached the kernel in the process backend: every number libseccomp
  has no name for now answers ENOSYS.
"""

from __future__ import annotations

import errno

import pytest

from azr_verify.service.config import BackendName

from .sandboxes import probe_report
from .test_seccomp_filter import (
    ALLOW,
    DENY,
    HIGH_WORD,
    NOT_IMPLEMENTED,
    number,
    run_filter,
)

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_PDEATHSIG = 38, 22, 1

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
    "sysinfo": "syslog",  # the host's state
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
    report = probe_report(request, backend, AIO_PROBE)
    assert report == ("io_setup", errno.EPERM)


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
            'inotify_add_watch': errno_of(254, -1, b'/', 1),
            'sysinfo': errno_of(99, ctypes.create_string_buffer(512))}
"""


@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_refused_calls_twins_are_refused_inside_the_sandbox(
        backend: BackendName, request: pytest.FixtureRequest) -> None:
    report = probe_report(request, backend, TWINS_PROBE)
    assert report == {
        "fchmodat2": errno.EPERM, "syncfs": errno.EPERM, "inotify_init1": errno.EPERM,
        "inotify_add_watch": errno.EPERM, "sysinfo": errno.EPERM}


def test_prctl_cannot_stack_a_filter() -> None:
    prctl = number("prctl")
    assert run_filter(number("seccomp")) == DENY
    assert run_filter(prctl, (PR_SET_SECCOMP, 2)) == DENY
    assert run_filter(prctl, (PR_SET_SECCOMP | HIGH_WORD, 2)) == DENY  # the kernel reads an int
    for option in (PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, 15, 16):  # PR_SET_NAME, PR_GET_NAME
        assert run_filter(prctl, (option,)) == ALLOW, option


# Stacks a filter on itself that makes getpid fail with errno 99: refused, getpid still works.
STACKED_FILTER_PROBE = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                       ctypes.c_ulong]
class Program(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
def f(x):
    code = b''.join(struct.pack('HBBI', *i) for i in (
        (0x20, 0, 0, 0), (0x15, 0, 1, 39), (0x06, 0, 0, 0x00050000 | 99),
        (0x06, 0, 0, 0x7FFF0000)))
    buffer = ctypes.create_string_buffer(code, len(code))
    program = Program(4, ctypes.addressof(buffer))
    ctypes.set_errno(0)
    installed = libc.prctl(22, 2, ctypes.byref(program), 0, 0)
    refused = ctypes.get_errno()
    return (installed, refused, libc.syscall(39) > 0)
"""


@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_a_program_cannot_stack_its_own_filter(backend: BackendName,
                                               request: pytest.FixtureRequest) -> None:
    report = probe_report(request, backend, STACKED_FILTER_PROBE)
    assert report == (-1, errno.EPERM, True)


# Syscalls newer than the host's libseccomp could not be named in the policy, so the zygote's
# deny-list let them through to a newer kernel (Docker's allow-list never did). libseccomp 2.5.4
# knows nothing past 456 (futex_requeue), nor uretprobe (335): statmount, listmount, lsm_*,
# mseal, setxattrat, getxattrat, listxattrat, removexattrat, open_tree_attr, file_getattr and
# file_setattr reached the kernel. setxattrat/removexattrat are setxattr/removexattr,
# open_tree_attr is open_tree, by new numbers. Now every number libseccomp has no name for
# answers ENOSYS ([zygote.unnamed_syscalls]); since Linux 5.1 a new syscall has one number on
# every architecture, so the same numbers hold on aarch64.
NEWER_THAN_LIBSECCOMP = {"statmount": 457, "listmount": 458, "mseal": 462, "setxattrat": 463,
                         "removexattrat": 466, "open_tree_attr": 467}


@pytest.mark.parametrize("architecture", ["x86_64", "aarch64"])
@pytest.mark.parametrize("name", sorted(NEWER_THAN_LIBSECCOMP))
def test_syscalls_newer_than_libseccomp_are_refused(name: str, architecture: str) -> None:
    assert run_filter(NEWER_THAN_LIBSECCOMP[name], architecture=architecture) \
        == NOT_IMPLEMENTED, name


# Each newer call and numbers no kernel has yet, from inside, every argument -1 so that one let
# through would fail harmlessly (a bad fd or pointer). Not uretprobe (335, a hole in
# libseccomp's x86_64 table, which the filter refuses all the same) nor uprobe (336): a recent
# kernel runs them without asking seccomp (on 6.18 a filter refusing 335 is passed by) and
# kills a caller outside a uprobe trampoline with SIGILL, so no filter decides them and a
# program gains nothing by them.
NEWER_CALLS_PROBE = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def errno_of(nr):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(-1) for _ in range(6)))
    return ctypes.get_errno() if result == -1 else 0
def f(x):
    return {{nr: errno_of(nr) for nr in {sorted({*NEWER_THAN_LIBSECCOMP.values(), 1000,
                                                  0x3FFFFFFF})!r}}}
"""


@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_syscalls_newer_than_libseccomp_are_refused_inside_the_sandbox(
        backend: BackendName, request: pytest.FixtureRequest) -> None:
    """ENOSYS in both backends: in a container the profile refuses them too, and the zygote's
    filter, installed last, gives the errno a program sees (docs/design.md §4)."""
    answers = probe_report(request, backend, NEWER_CALLS_PROBE)
    assert len(answers) == len(NEWER_THAN_LIBSECCOMP) + 2
    assert set(answers.values()) == {errno.ENOSYS}, answers
