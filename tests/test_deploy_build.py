"""deploy/rootfs.sh and build-images.sh never put the host's /proc, /sys or /dev into an image
and never leave a mount behind, and a base polluted by an older build is rebuilt.

Real mounts (proc, sysfs, tmpfs) and real `docker import`s of tiny trees; the one stand-in is a
`debootstrap` that mounts /proc in its target and then fails, the failure the real one cannot
be made to produce on demand.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .deploy_support import DEPLOY, docker, require_dockerd, require_root
from .servers import REPO

pytestmark = pytest.mark.deploy

ROOTFS_SH = DEPLOY / "rootfs.sh"
PRELUDE = f"""set -euo pipefail
log() {{ printf 'test: %s\\n' "$*" >&2; }}
die() {{ log "$*"; exit 1; }}
DOCKER=docker
. {ROOTFS_SH}
"""


def mounts_below(directory: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == str(directory) or p.startswith(f"{directory}/")]


def unmount_all(directory: Path) -> None:
    """Whatever a failing test left mounted, so that deleting tmp_path cannot reach the host."""
    for point in sorted(mounts_below(directory), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


def shell(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", PRELUDE + script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[Path]:
    """A tiny root file system with the host's proc and sysfs, and a tmpfs with a file in it,
    mounted where debootstrap leaves them."""
    require_root()
    root = tmp_path / "rootfs"
    for name in ("etc", "proc", "sys", "dev"):
        (root / name).mkdir(parents=True)
    (root / "etc" / "hello").write_text("from the image\n")
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        subprocess.run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "dev")], check=True)
        (root / "dev" / "host-device").write_text("not for the image\n")
        assert len(mounts_below(root)) == 3
        yield root
    finally:
        unmount_all(root)


@pytest.fixture
def image_tags() -> Iterator[list[str]]:
    """Tags a test creates; removed afterwards."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        docker("image", "rm", "--force", tag, check=False)


def test_archive_unmounts_and_leaves_proc_sys_dev_empty(rootfs: Path) -> None:
    tarball = rootfs.parent / "rootfs.tar"
    done = shell(f'rootfs_archive "{rootfs}" "{tarball}"')
    assert done.returncode == 0, done.stderr
    assert mounts_below(rootfs) == []
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {"./etc/hello", "./proc", "./sys", "./dev"} <= names
    assert not [n for n in names if n.startswith(("./proc/", "./sys/", "./dev/"))]


def test_remove_never_deletes_through_a_mount(rootfs: Path) -> None:
    done = shell(f'rootfs_remove "{rootfs}"')
    assert done.returncode == 0, done.stderr
    assert not rootfs.exists() and mounts_below(rootfs) == []
    assert Path("/proc/self/status").exists()  # (the host's, untouched)


def import_tree(tag: str, members: dict[str, bytes]) -> None:
    """`docker import` of a tarball holding `members` (path -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    subprocess.run(["docker", "import", "-", tag], input=buffer.getvalue(), check=True,
                   capture_output=True, timeout=120)


def pollution(tag: str) -> int:
    done = shell(f'rootfs_image_pollution "{tag}"')
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_pollution_counts_host_entries_only(image_tags: list[str]) -> None:
    require_dockerd()
    clean, polluted = (f"azr-verify-rootfs-test:{kind}-{uuid.uuid4().hex[:8]}"
                       for kind in ("clean", "polluted"))
    image_tags += [clean, polluted]
    # debootstrap's own /dev nodes are expected in older bases; the host's /proc is not.
    import_tree(clean, {"etc/hello": b"hi\n", "dev/null": b""})
    import_tree(polluted, {"etc/hello": b"hi\n", "proc/1/status": b"Name: init\n",
                           "proc/bus/pci/00/00.0": b"\x86\x80", "sys/kernel/x": b"1",
                           "dev/vda": b""})
    assert pollution(clean) == 0
    # proc/1/, proc/1/status, proc/bus/ ... 00.0 (4), sys/kernel/, sys/kernel/x, dev/vda
    assert pollution(polluted) == 9


def fake_debootstrap(bin_dir: Path) -> None:
    """Mounts /proc in its target, as debootstrap does, and fails without unmounting it."""
    bin_dir.mkdir()
    script = bin_dir / "debootstrap"
    script.write_text('#!/bin/sh\n'
                      # debootstrap [OPTIONS] SUITE TARGET MIRROR: the last argument but one
                      'target=; previous=\n'
                      'for arg; do target=$previous; previous=$arg; done\n'
                      'mkdir -p "$target/proc" && mount -t proc proc "$target/proc"\n'
                      'echo "E: Couldn\'t download packages" >&2\n'
                      'exit 1\n')
    script.chmod(0o755)


def test_failed_build_rebuilds_a_polluted_base_and_leaves_no_mount(
        tmp_path: Path, image_tags: list[str]) -> None:
    """An older build's base, holding the host's /proc, is detected and removed; the new
    debootstrap fails with /proc mounted; the script exits 1 and unmounts on its way out."""
    require_root()
    require_dockerd()
    suite = f"azrtest-{uuid.uuid4().hex[:8]}"  # a base tag of this test's own
    base = f"azr-verify-service-base:{suite}"
    image_tags += [base, f"azr-verify:{suite}"]
    import_tree(base, {"etc/hello": b"hi\n", "proc/1/status": b"Name: init\n"})
    fake_debootstrap(tmp_path / "bin")
    rootfs = DEPLOY / ".build" / "rootfs"
    try:
        done = subprocess.run(
            ["bash", str(DEPLOY / "build-images.sh"), f"azr-verify:{suite}"], cwd=REPO,
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "AZR_DEBIAN_SUITE": suite,
                 "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
        assert done.returncode == 1, done.stderr
        assert f"{base} holds 2 entries of the host's /proc" in done.stderr
        assert "debootstrap failed" in done.stderr
        assert "unmounting" in done.stderr
        assert mounts_below(rootfs) == [] and not rootfs.exists()
        assert docker("image", "ls", "--quiet", base).strip() == ""
    finally:
        unmount_all(rootfs)
