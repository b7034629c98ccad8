"""Copies the smallest root filesystem the sandbox runner needs into OUT.

Runs inside the first build stage with the base image's own Python (a debootstrapped Debian, a
python:3.x-slim image...): it copies that interpreter, its standard library minus the parts a
sandboxed program cannot use (tests, GUI, package installers, third-party packages) and the
shared libraries they link against, keeping symlinks (merged-/usr layouts) as they are. No
shell, package manager, coreutils or /etc/passwd reach the final image.

Usage: python3 -I -S make_rootfs.py OUT
"""

import os
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig

# Standard-library directories and extension modules a sandboxed program has no use for.
SKIPPED_DIRS = {
    "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "venv",
    "pydoc_data", "distutils", "site-packages", "dist-packages", "unittest",
}
SKIPPED_DIR_PREFIXES = ("config-",)  # the static libpython and its Makefile
SKIPPED_EXTENSION_PREFIXES = (
    "_test", "_xxtest", "xxlimited", "_ctypes_test", "_curses", "readline", "_ssl",
    "_hashlib", "_sqlite3", "_dbm", "_gdbm", "nis", "ossaudiodev", "_tkinter",
)
PT_INTERP = 3


def copy_path(path, out, seen):
    """Recreates `path` under `out`, recreating every symlink on the way and its target."""
    if path in seen:
        return
    seen.add(path)
    current = "/"
    parts = [part for part in path.split("/") if part]
    for position, part in enumerate(parts):
        candidate = os.path.join(current, part)
        target = os.path.join(out, candidate.lstrip("/"))
        if os.path.islink(candidate):
            if not os.path.lexists(target):
                os.symlink(os.readlink(candidate), target)
            resolved = os.path.realpath(candidate)
            copy_path(resolved, out, seen)
            current = resolved
            continue
        if position == len(parts) - 1 and not os.path.isdir(candidate):
            if not os.path.exists(target):
                shutil.copy2(candidate, target)
        elif not os.path.isdir(target):
            os.mkdir(target)
            shutil.copystat(candidate, target)
        current = candidate


def skipped(name, is_dir):
    if is_dir:
        return name in SKIPPED_DIRS or name.startswith(SKIPPED_DIR_PREFIXES)
    return name.endswith(".so") and name.startswith(SKIPPED_EXTENSION_PREFIXES)


def copy_tree(root, out, seen):
    copy_path(root, out, seen)
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not skipped(d, True)]
        for name in subdirs + files:
            if not skipped(name, False):
                copy_path(os.path.join(directory, name), out, seen)


def elf_interpreter(binary):
    """The dynamic loader named in the ELF program headers (PT_INTERP) of a 64-bit binary."""
    with open(binary, "rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return None
        endian = "<" if header[5] == 1 else ">"
        phoff, = struct.unpack_from(endian + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
        for index in range(phnum):
            handle.seek(phoff + index * phentsize)
            kind, _flags, offset, _vaddr, _paddr, size = struct.unpack(
                endian + "IIQQQQ", handle.read(40))
            if kind == PT_INTERP:
                handle.seek(offset)
                return handle.read(size).rstrip(b"\0").decode()
    return None


def shared_libraries(loader, binaries):
    """Asks the dynamic loader itself (what `ldd` does) which libraries the binaries load."""
    libraries = set()
    for binary in binaries:
        listing = subprocess.run([loader, "--list", binary], capture_output=True, text=True,
                                 check=False).stdout
        for line in listing.splitlines():
            words = line.replace("=>", " ").split()
            libraries.update(word for word in words if word.startswith("/"))
    return sorted(path for path in libraries if os.path.exists(path))


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    seen = set()
    executable = sys.executable
    stdlib = sysconfig.get_path("stdlib")
    dynload = os.path.join(stdlib, "lib-dynload")
    copy_path(executable, out, seen)
    copy_tree(stdlib, out, seen)
    extensions = [os.path.join(dynload, name) for name in sorted(os.listdir(dynload))
                  if name.endswith(".so") and not skipped(name, False)]
    loader = elf_interpreter(os.path.realpath(executable))
    if loader is None:
        sys.exit("cannot find the dynamic loader of " + executable)
    for library in [loader, *shared_libraries(loader, [executable, *extensions])]:
        copy_path(library, out, seen)
    if os.path.exists("/etc/ld.so.cache"):
        copy_path("/etc/ld.so.cache", out, seen)
    # A `python3` on the default PATH whatever the base image calls its interpreter.
    alias = os.path.join(out, "usr/bin/python3")
    local_alias = os.path.join(out, "usr/local/bin/python3")
    if not os.path.lexists(alias) and not os.path.lexists(local_alias):
        os.makedirs(os.path.dirname(alias), exist_ok=True)
        os.symlink(os.path.realpath(executable), alias)
    # Mount points and an (unwritable: the root filesystem is read-only) /tmp.
    for name, mode in (("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("etc", 0o755),
                       ("tmp", 0o1777), ("opt/azr", 0o755)):
        path = os.path.join(out, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    for directory, _subdirs, files in os.walk(out):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                # No setuid/setgid bits and nothing writable by anyone but root.
                mode = stat.S_IMODE(os.lstat(path).st_mode) & ~0o6022
                os.chmod(path, mode)


if __name__ == "__main__":
    main()
